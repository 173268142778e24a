"""Compare cards with golden expectations by what matters clinically, not by wording.

A card is identified by its topic, its indicator and the actions of each suggestion, in the
order the client will meet them: a delete names the draft it removes, a create names the
resource type and the first code it orders.
UUIDs and text are left out, so editing card words never breaks a golden file.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
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
        # Suggestions in any order; actions in theirs (clients may apply only the first).
        "suggestions": sorted(
            [action_signature(a) for a in s.get("actions") or ()]
            for s in card.get("suggestions") or ()
        ),
    }


def _normalised(expected: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "topic": expected["topic"],
        "indicator": expected["indicator"],
        "suggestions": sorted(list(actions) for actions in expected.get("suggestions") or ()),
    }


def _key(signature: Mapping[str, Any]) -> str:
    return json.dumps(signature, sort_keys=True)


@dataclass(frozen=True)
class CardDifferences:
    """Golden cards the service did not return, and returned cards no golden card matches."""

    missing: list[dict[str, Any]]
    unexpected: list[dict[str, Any]]

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected)


def card_differences(
    expected: Iterable[Mapping[str, Any]], actual_cards: Iterable[Mapping[str, Any]]
) -> CardDifferences:
    wanted = Counter(_key(_normalised(e)) for e in expected)
    got = Counter(_key(card_signature(c)) for c in actual_cards)
    return CardDifferences(
        missing=[json.loads(key) for key in sorted((wanted - got).elements())],
        unexpected=[json.loads(key) for key in sorted((got - wanted).elements())],
    )


def describe_signature(signature: Mapping[str, Any]) -> str:
    """One line for people: `topic (indicator)` and the actions of each suggestion."""
    text = f"{signature['topic']} ({signature['indicator']})"
    suggestions = signature.get("suggestions") or []
    if suggestions:
        text += " suggestions: " + " | ".join(" + ".join(actions) for actions in suggestions)
    return text


def compare_cards(
    expected: Iterable[Mapping[str, Any]], actual_cards: Iterable[Mapping[str, Any]]
) -> list[str]:
    """Differences between golden signatures and returned cards; empty when they match."""
    differences = card_differences(expected, actual_cards)
    problems = [f"missing card: {_key(s)}" for s in differences.missing]
    problems += [f"unexpected card: {_key(s)}" for s in differences.unexpected]
    return problems
