"""What the site's configuration does to the cards of one answer: cards of silent topics are
kept out of the answer (and logged as silent), and info cards a clinician snoozed for this
patient are kept out too (and logged as snoozed). Warning and critical cards always show.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from cds_service.rules.findings import Indicator
from cds_service.site.resolved import Site, SnoozeRule
from cds_service.vocabulary import CardRecord


class SnoozeCheck(Protocol):
    def snoozed_topics(
        self, patient_id: str, rules: Mapping[str, SnoozeRule]
    ) -> frozenset[str] | None:
        """The topics among `rules` snoozed for the patient now; None when that cannot be
        told in time (the cards then show)."""
        ...


def split_silent(
    cards: Sequence[CardRecord], site: Site
) -> tuple[list[CardRecord], list[CardRecord]]:
    """(cards to answer with, cards of silent topics)."""
    silent_topics = site.config.silent_topics
    if not silent_topics:
        return list(cards), []
    shown = [card for card in cards if card.topic not in silent_topics]
    silent = [card for card in cards if card.topic in silent_topics]
    return shown, silent


def snooze_candidates(cards: Sequence[CardRecord], site: Site) -> dict[str, SnoozeRule]:
    """The snooze rules of the info cards in `cards`: the only ones a snooze can hold back."""
    info_topics = {c.topic for c in cards if c.indicator == Indicator.INFO.value}
    return {topic: site.snooze[topic] for topic in info_topics if topic in site.snooze}


def hold_back_snoozed(
    cards: Sequence[CardRecord], snoozed_topics: frozenset[str]
) -> tuple[list[CardRecord], list[CardRecord]]:
    """(cards to answer with, info cards of snoozed topics)."""
    shown: list[CardRecord] = []
    held: list[CardRecord] = []
    for card in cards:
        info = card.indicator == Indicator.INFO.value
        (held if info and card.topic in snoozed_topics else shown).append(card)
    return shown, held
