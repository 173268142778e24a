"""Ready-made override reason sets a site can offer by name (`sets = [...]`): the HL7
non-adherence reason codes (terminology.hl7.org), as data in `reason_sets.json` with its
provenance."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType


@dataclass(frozen=True)
class ReasonSet:
    name: str
    title: str
    # (system, code, display), in the order a card offers them.
    reasons: tuple[tuple[str, str, str], ...]


def _load() -> Mapping[str, ReasonSet]:
    document = json.loads(
        (resources.files("cds_service.site") / "reason_sets.json").read_text(encoding="utf-8")
    )
    displays = {
        (system, concept["code"]): concept["display"]
        for system, concepts in document["concepts"].items()
        for concept in concepts
    }
    sets = {}
    for name, spec in document["sets"].items():
        system = spec["system"]
        reasons = tuple((system, code, displays[(system, code)]) for code in spec["codes"])
        sets[name] = ReasonSet(name, spec["title"], reasons)
    return MappingProxyType(sets)


REASON_SETS: Mapping[str, ReasonSet] = _load()
