"""Plain records and names every layer may import: nothing here imports the rest of the service.

`DataCategory` names the kinds of patient data (the prefetch keys) that FHIR access gathers,
the record holds and the rules declare they need. The card builder makes `CardRecord`s; the
protocol handler bounds and answers them; the decision log, the metrics and the request log
read their fields. Nobody digs a topic or a uuid back out of a card's JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class DataCategory(StrEnum):
    """Kinds of patient data; each matches one prefetch key."""

    PATIENT = "patient"
    CONDITIONS = "conditions"
    MEDICATIONS = "medications"
    OBSERVATIONS = "observations"
    PROCEDURES = "procedures"
    SERVICE_REQUESTS = "servicerequests"


@dataclass(frozen=True)
class CardRecord:
    """One card as built: what the service logs and counts, and the JSON the client receives."""

    topic: str  # card.source.topic.code
    indicator: str  # info | warning | critical
    uuid: str
    suggestion_uuids: tuple[str, ...]
    json: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, card: Mapping[str, Any]) -> CardRecord:
        """The record of a card that exists only as JSON (a tool reading answers, a test)."""
        return cls(
            topic=str(((card.get("source") or {}).get("topic") or {}).get("code", "")),
            indicator=str(card.get("indicator", "")),
            uuid=str(card.get("uuid", "")),
            suggestion_uuids=tuple(
                str(s["uuid"]) for s in card.get("suggestions") or () if s.get("uuid")
            ),
            json=dict(card),
        )
