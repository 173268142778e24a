"""Read and check a CDS Hooks 2.0 feedback request (`POST /cds-services/{id}/feedback`).

Each entry becomes a plain value. The older sandbox shape, where `overrideReason` is a bare
Coding instead of `{reason, userComment}`, is read as the 2.0 shape, so the same clinician
response sent either way is the same entry.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from cds_service.protocol.errors import bad_request
from cds_service.protocol.request import check_schema


class Outcome(StrEnum):
    ACCEPTED = "accepted"
    OVERRIDDEN = "overridden"


@dataclass(frozen=True)
class OverrideReason:
    system: str | None
    code: str | None
    display: str | None
    comment: str | None


@dataclass(frozen=True)
class FeedbackEntry:
    card_uuid: str
    outcome: Outcome
    accepted_suggestions: tuple[str, ...]
    override_reason: OverrideReason | None
    outcome_at: datetime  # aware, UTC

    def fingerprint(self, service_id: str) -> str:
        """Identity of this response: a repeated identical entry has the same fingerprint.

        Suggestion order and the timestamp's spelling (offset, `Z`) do not change it.
        """
        reason = self.override_reason
        canonical = {
            "service": service_id,
            "card": self.card_uuid,
            "outcome": self.outcome.value,
            "acceptedSuggestions": sorted(self.accepted_suggestions),
            "overrideReason": None
            if reason is None
            else [reason.system, reason.code, reason.display, reason.comment],
            "outcomeTimestamp": self.outcome_at.isoformat(),
        }
        text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _timestamp(raw: str, path: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(raw.upper())  # RFC 3339 allows "t" and "z"
    except ValueError:
        raise bad_request(f"{path}: is not a valid date-time", [path]) from None
    if parsed.tzinfo is None:  # the schema's pattern requires an offset; belt and braces
        raise bad_request(f"{path}: must carry a time zone", [path])
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31T23:59:59-23:59 is after the last representable UTC
        raise bad_request(f"{path}: is outside the representable date-times", [path]) from None


def _override_reason(raw: dict[str, Any] | None) -> OverrideReason | None:
    if raw is None:
        return None
    coding = raw.get("reason") if ("reason" in raw or "userComment" in raw) else raw
    coding = coding or {}
    return OverrideReason(
        system=coding.get("system"),
        code=coding.get("code"),
        display=coding.get("display"),
        comment=raw.get("userComment"),
    )


def parse_feedback(document: dict[str, Any]) -> list[FeedbackEntry]:
    """Every entry of a feedback request, checked; a bad body is a 400 naming JSON paths."""
    check_schema("feedback", document)
    entries = []
    for index, item in enumerate(document["feedback"]):
        entries.append(
            FeedbackEntry(
                card_uuid=item["card"],
                outcome=Outcome(item["outcome"]),
                accepted_suggestions=tuple(s["id"] for s in item.get("acceptedSuggestions", ())),
                override_reason=_override_reason(item.get("overrideReason")),
                outcome_at=_timestamp(
                    item["outcomeTimestamp"], f"$.feedback[{index}].outcomeTimestamp"
                ),
            )
        )
    return entries
