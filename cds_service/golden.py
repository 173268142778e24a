"""Compare cards with golden expectations by what matters clinically, not by wording.

A card is identified by its topic, its indicator and the actions of each suggestion: a delete
names the draft it removes, a create names the resource type and the first code it orders.
UUIDs and text are left out, so editing card words never breaks a golden file.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any


def action_signature(action: Mapping[str, Any]) -> str:
    kind = action.get("type", "?")
    if kind == "delete":
        return f"delete {action.get('resourceId', '?')}"
    resource = action.get("resource") or {}
    concept = resource.get("medicationCodeableConcept") or resource.get("code") or {}
    codings = concept.get("coding") or [{}]
    code = f"{codings[0].get('system', '')}|{codings[0].get('code', '')}"
    return f"{kind} {resource.get('resourceType', '?')} {code}"


def card_signature(card: Mapping[str, Any]) -> dict[str, Any]:
    """The golden-file form of a card returned by the service."""
    topic = ((card.get("source") or {}).get("topic") or {}).get("code", "")
    return {
        "topic": topic,
        "indicator": card.get("indicator", ""),
        "suggestions": sorted(
            [
                sorted(action_signature(a) for a in s.get("actions") or ())
                for s in card.get("suggestions") or ()
            ]
        ),
    }


def _normalised(expected: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "topic": expected["topic"],
        "indicator": expected["indicator"],
        "suggestions": sorted(sorted(actions) for actions in expected.get("suggestions") or ()),
    }


def _key(signature: Mapping[str, Any]) -> str:
    return json.dumps(signature, sort_keys=True)


def compare_cards(
    expected: Iterable[Mapping[str, Any]], actual_cards: Iterable[Mapping[str, Any]]
) -> list[str]:
    """Differences between golden signatures and returned cards; empty when they match."""
    wanted = Counter(_key(_normalised(e)) for e in expected)
    got = Counter(_key(card_signature(c)) for c in actual_cards)
    problems = [f"missing card: {key}" for key in sorted((wanted - got).elements())]
    problems += [f"unexpected card: {key}" for key in sorted((got - wanted).elements())]
    return problems
