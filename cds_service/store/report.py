"""What happened to the cards: acceptance and override per recommendation (card topic).

Counted per card: a card's outcome is its latest feedback (by outcomeTimestamp), since a
client may send feedback for one card more than once. Feedback naming a card the decision
log does not hold (issued before the log, purged, or from elsewhere) is counted apart, and so
are cards the site's configuration held back (silent topics: "would have shown"; snoozed).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, and_, case, distinct, func, select

from cds_service.protocol.feedback import Outcome
from cds_service.store.schema import Disposition, card_decisions, decision_log_losses, feedback

TOP_REASONS = 3


@dataclass(frozen=True)
class ReasonCount:
    system: str | None
    code: str | None
    display: str | None
    count: int


@dataclass
class TopicOutcomes:
    topic: str
    cards_issued: int = 0
    feedback_received: int = 0  # cards with at least one feedback entry
    feedback_entries: int = 0
    accepted: int = 0
    overridden: int = 0
    suggestions_accepted: int = 0
    override_comments: int = 0
    override_reasons: list[ReasonCount] = field(default_factory=list)  # most frequent first

    @property
    def acceptance_rate(self) -> float | None:
        return self.accepted / self.feedback_received if self.feedback_received else None

    @property
    def override_rate(self) -> float | None:
        return self.overridden / self.feedback_received if self.feedback_received else None


@dataclass(frozen=True)
class NotShown:
    """Cards of a topic logged but never returned, by why."""

    topic: str
    silent: int = 0  # the topic runs silently at this site: these would have shown
    snoozed: int = 0  # a clinician snoozed the topic for the patient


@dataclass(frozen=True)
class UnknownCardFeedback:
    entries: int
    cards: int
    accepted: int
    overridden: int


@dataclass(frozen=True)
class OutcomeReport:
    since: datetime | None
    topics: list[TopicOutcomes]
    unknown_cards: UnknownCardFeedback
    content_versions: list[str]
    until: datetime | None = None  # exclusive
    # Cards issued but never logged, by reason (see spool.LossReason); not in `topics`.
    cards_not_logged: dict[str, int] = field(default_factory=dict)
    # Cards held back by the site's configuration, per topic; not in `topics`.
    not_shown: list[NotShown] = field(default_factory=list)

    @property
    def silent_total(self) -> int:
        return sum(row.silent for row in self.not_shown)

    @property
    def snoozed_total(self) -> int:
        return sum(row.snoozed for row in self.not_shown)

    @property
    def totals(self) -> TopicOutcomes:
        total = TopicOutcomes(topic="all")
        for row in self.topics:
            total.cards_issued += row.cards_issued
            total.feedback_received += row.feedback_received
            total.feedback_entries += row.feedback_entries
            total.accepted += row.accepted
            total.overridden += row.overridden
            total.suggestions_accepted += row.suggestions_accepted
            total.override_comments += row.override_comments
        return total


def _latest_feedback() -> Select[tuple[object, ...]]:
    ranked = select(
        feedback.c.card_uuid,
        feedback.c.outcome,
        feedback.c.accepted_suggestion_count,
        feedback.c.override_system,
        feedback.c.override_code,
        feedback.c.override_display,
        feedback.c.override_comment,
        func.row_number()
        .over(
            partition_by=feedback.c.card_uuid,
            order_by=(feedback.c.outcome_at.desc(), feedback.c.id.desc()),
        )
        .label("position"),
    ).subquery("ranked")
    return select(ranked).where(ranked.c.position == 1)


def issued_between(
    since: datetime | None, until: datetime | None, *, shown_only: bool = True
) -> list[Any]:
    """Cards issued from `since` (inclusive) to `until` (exclusive); either may be open. Only
    the cards returned to clients unless `shown_only` is False."""
    shown: list[Any] = (
        [card_decisions.c.disposition == Disposition.SHOWN.value] if shown_only else []
    )
    return shown + between(card_decisions.c.issued_at, since, until)


def between(column: Any, since: datetime | None, until: datetime | None) -> list[Any]:
    """`column` from `since` (inclusive) to `until` (exclusive); either may be open."""
    return [*([column >= since] if since else []), *([column < until] if until else [])]


def build_report(
    connection: Connection, since: datetime | None = None, until: datetime | None = None
) -> OutcomeReport:
    latest = _latest_feedback().subquery("latest")
    issued = issued_between(since, until)
    is_accepted = latest.c.outcome == Outcome.ACCEPTED.value
    is_overridden = latest.c.outcome == Outcome.OVERRIDDEN.value

    rows: dict[str, TopicOutcomes] = {}
    per_topic = (
        select(
            card_decisions.c.topic,
            func.count(),
            func.count(latest.c.card_uuid),
            func.sum(case((is_accepted, 1), else_=0)),
            func.sum(case((is_overridden, 1), else_=0)),
            func.sum(case((is_accepted, latest.c.accepted_suggestion_count), else_=0)),
            func.sum(
                case((and_(is_overridden, latest.c.override_comment.is_not(None)), 1), else_=0)
            ),
        )
        .select_from(
            card_decisions.outerjoin(latest, latest.c.card_uuid == card_decisions.c.card_uuid)
        )
        .where(*issued)
        .group_by(card_decisions.c.topic)
    )
    for topic, count, responded, accepted, overridden, suggestions, comments in connection.execute(
        per_topic
    ):
        rows[topic] = TopicOutcomes(
            topic=topic,
            cards_issued=count,
            feedback_received=responded,
            accepted=int(accepted or 0),
            overridden=int(overridden or 0),
            suggestions_accepted=int(suggestions or 0),
            override_comments=int(comments or 0),
        )

    entries = (
        select(card_decisions.c.topic, func.count())
        .select_from(
            feedback.join(card_decisions, feedback.c.card_uuid == card_decisions.c.card_uuid)
        )
        .where(*issued)
        .group_by(card_decisions.c.topic)
    )
    for topic, count in connection.execute(entries):
        rows[topic].feedback_entries = count

    reasons: dict[str, list[ReasonCount]] = defaultdict(list)
    reason_query = (
        select(
            card_decisions.c.topic,
            latest.c.override_system,
            latest.c.override_code,
            func.max(latest.c.override_display),
            func.count(),
        )
        .select_from(latest.join(card_decisions, latest.c.card_uuid == card_decisions.c.card_uuid))
        .where(is_overridden, *issued)
        .group_by(card_decisions.c.topic, latest.c.override_system, latest.c.override_code)
    )
    for topic, system, code, display, count in connection.execute(reason_query):
        reasons[topic].append(ReasonCount(system, code, display, count))
    for topic, found in reasons.items():
        # Most frequent first; ties in a stable order; "no reason given" last among equals.
        found.sort(key=lambda r: (-r.count, r.code is None, r.code or "", r.system or ""))
        rows[topic].override_reasons = found

    everything = issued_between(since, until, shown_only=False)
    versions = sorted(
        connection.scalars(select(card_decisions.c.content_version).where(*everything).distinct())
    )
    return OutcomeReport(
        since=since,
        topics=sorted(rows.values(), key=lambda r: r.topic),
        unknown_cards=_unknown_card_feedback(connection, since, until),
        content_versions=versions,
        until=until,
        cards_not_logged=_cards_not_logged(connection, since, until),
        not_shown=_not_shown(connection, everything),
    )


def _not_shown(connection: Connection, issued: list[Any]) -> list[NotShown]:
    disposition = card_decisions.c.disposition
    query = (
        select(
            card_decisions.c.topic,
            func.sum(case((disposition == Disposition.SILENT.value, 1), else_=0)),
            func.sum(case((disposition == Disposition.SNOOZED.value, 1), else_=0)),
        )
        .where(disposition != Disposition.SHOWN.value, *issued)
        .group_by(card_decisions.c.topic)
        .order_by(card_decisions.c.topic)
    )
    return [
        NotShown(topic, int(silent or 0), int(snoozed or 0))
        for topic, silent, snoozed in connection.execute(query)
    ]


def _cards_not_logged(
    connection: Connection, since: datetime | None, until: datetime | None
) -> dict[str, int]:
    """Counted when they were found lost, in the period."""
    query = (
        select(decision_log_losses.c.reason, func.sum(decision_log_losses.c.cards))
        .where(*between(decision_log_losses.c.recorded_at, since, until))
        .group_by(decision_log_losses.c.reason)
        .order_by(decision_log_losses.c.reason)
    )
    return {reason: int(cards) for reason, cards in connection.execute(query) if cards}


def _unknown_card_feedback(
    connection: Connection, since: datetime | None, until: datetime | None
) -> UnknownCardFeedback:
    orphan = (
        select(feedback.c.card_uuid, feedback.c.outcome)
        .select_from(
            feedback.outerjoin(card_decisions, feedback.c.card_uuid == card_decisions.c.card_uuid)
        )
        .where(card_decisions.c.card_uuid.is_(None))
        .where(*between(feedback.c.received_at, since, until))
        .subquery("orphan")
    )
    entries, cards, accepted, overridden = connection.execute(
        select(
            func.count(),
            func.count(distinct(orphan.c.card_uuid)),
            func.sum(case((orphan.c.outcome == Outcome.ACCEPTED.value, 1), else_=0)),
            func.sum(case((orphan.c.outcome == Outcome.OVERRIDDEN.value, 1), else_=0)),
        )
    ).one()
    return UnknownCardFeedback(int(entries), int(cards), int(accepted or 0), int(overridden or 0))
