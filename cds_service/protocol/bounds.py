"""Bounds on an answer: identical draft orders are answered by one card, and an answer holds
at most a configured number of cards, the most severe first.

An EHR that sends 500 identical draft orders would otherwise get 500 identical cards (a
multi-megabyte answer, each card logged); a clinician reads the first few cards at most.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cds_service.card_builder.profiles import DEFAULT_PROFILE, ClientProfile
from cds_service.ids import time_ordered_uuid
from cds_service.rules.findings import Indicator

DEFAULT_MAX_CARDS = 10
_SEVERITY = {Indicator.CRITICAL.value: 0, Indicator.WARNING.value: 1, Indicator.INFO.value: 2}


def act_on_folded_drafts(
    cards: Sequence[dict[str, Any]],
    folded: Mapping[tuple[str, str], tuple[str, ...]],
    profile: ClientProfile = DEFAULT_PROFILE,
) -> None:
    """Let each card that stands for several identical drafts act on all of them.

    Where a card's suggestion deletes its draft, each identical draft is deleted as well: by
    the same action with another `resourceId`, after the card's own delete (standard profile);
    or, for clients that take one action per suggestion (single-action profile), by a sibling
    suggestion with that one action. The card is otherwise as the card builder made it.
    """
    if not folded:
        return
    for card in cards:
        topic = str(card.get("source", {}).get("topic", {}).get("code"))
        suggestions: list[dict[str, Any]] = card.get("suggestions", [])
        siblings: list[dict[str, Any]] = []
        for suggestion in suggestions:
            actions: list[dict[str, Any]] = suggestion.get("actions", [])
            for index in reversed(range(len(actions))):
                action = actions[index]
                if action.get("type") != "delete":
                    continue
                also = folded.get((topic, str(action.get("resourceId"))), ())
                copies = [{**action, "resourceId": reference} for reference in also]
                if profile is ClientProfile.SINGLE_ACTION:
                    siblings += [
                        {**suggestion, "uuid": time_ordered_uuid(), "actions": [copy]}
                        for copy in copies
                    ]
                else:
                    actions[index + 1 : index + 1] = copies
        if siblings:
            suggestions.extend(siblings)


def most_severe_first(
    cards: Sequence[dict[str, Any]], max_cards: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(the cards answered, the cards left out): critical before warning before info, in the
    order the cards came within each, at most `max_cards`."""
    ordered = sorted(cards, key=lambda card: _SEVERITY.get(card.get("indicator", ""), 3))
    return ordered[:max_cards], ordered[max_cards:]
