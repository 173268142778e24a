"""Bounds on an answer: at most a configured number of cards, the most severe first.

(Identical draft orders are already answered by one card: rules/engine.py folds them.) A
clinician reads the first few cards at most.
"""

from __future__ import annotations

from collections.abc import Sequence

from cds_service.rules.findings import Indicator
from cds_service.vocabulary import CardRecord

DEFAULT_MAX_CARDS = 10
_SEVERITY = {Indicator.CRITICAL.value: 0, Indicator.WARNING.value: 1, Indicator.INFO.value: 2}


def most_severe_first(
    cards: Sequence[CardRecord], max_cards: int
) -> tuple[list[CardRecord], list[CardRecord]]:
    """(the cards answered, the cards left out): critical before warning before info, in the
    order the cards came within each, at most `max_cards`."""
    ordered = sorted(cards, key=lambda card: _SEVERITY.get(card.indicator, 3))
    return ordered[:max_cards], ordered[max_cards:]
