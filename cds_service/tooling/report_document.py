"""The outcome report as one JSON document: `cds-service report --format json` prints it and
`/dashboard` draws it, so both always show the same numbers for the same period.

A period is given in whole UTC days, both ends included; either end may be open.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from cds_service.card_builder.content import CardContent
from cds_service.rules.registry import TOPICS
from cds_service.store.report import TOP_REASONS, OutcomeReport, ReasonCount, TopicOutcomes


@dataclass(frozen=True)
class Names:
    """Readable names from the card content: recommendation titles and override reasons."""

    titles: dict[str, str]
    reason_system: str
    reasons: dict[str, str]

    @classmethod
    def from_content(cls, content: CardContent) -> Names:
        titles = {topic: content.topics[topic].title for topic in TOPICS}
        reasons = {
            reason.code: reason.display
            for topic in content.topics.values()
            for reason in topic.override_reasons
        }
        return cls(titles, content.override_reason_system, reasons)

    def title(self, topic: str) -> str:
        return self.titles.get(topic, topic)

    def reason(self, reason: ReasonCount) -> str:
        if reason.code is None:
            return "(no coded reason)"
        if reason.display:
            return reason.display
        if reason.system in (None, self.reason_system) and reason.code in self.reasons:
            return self.reasons[reason.code]
        return reason.code


@dataclass(frozen=True)
class Period:
    """Whole UTC days, both ends included; None: open."""

    first_day: date | None = None
    last_day: date | None = None

    @property
    def since(self) -> datetime | None:
        return datetime.combine(self.first_day, time(), UTC) if self.first_day else None

    @property
    def until(self) -> datetime | None:
        """The exclusive end: midnight after the last day (none after the last representable
        day, which every card precedes)."""
        if self.last_day is None or self.last_day == date.max:
            return None
        return datetime.combine(self.last_day + timedelta(days=1), time(), UTC)

    @classmethod
    def of(cls, report: OutcomeReport) -> Period:
        return cls(
            report.since.date() if report.since else None,
            (report.until - timedelta(days=1)).date() if report.until else None,
        )

    def report_arguments(self) -> list[str]:
        """The `cds-service report` options selecting this period."""
        arguments = []
        if self.first_day:
            arguments += ["--since", self.first_day.isoformat()]
        if self.last_day:
            arguments += ["--until", self.last_day.isoformat()]
        return arguments


def percent(rate: float | None) -> str:
    """A rate as people read it, in the report's table and on the dashboard alike."""
    return "—" if rate is None else f"{rate * 100:.1f}%"


def topic_document(row: TopicOutcomes, names: Names) -> dict[str, Any]:
    return {
        "topic": row.topic,
        "title": names.title(row.topic) if row.topic != "all" else "All recommendations",
        "cardsIssued": row.cards_issued,
        "feedbackReceived": row.feedback_received,
        "feedbackEntries": row.feedback_entries,
        "accepted": row.accepted,
        "overridden": row.overridden,
        "acceptanceRate": row.acceptance_rate,
        "overrideRate": row.override_rate,
        "suggestionsAccepted": row.suggestions_accepted,
        "overrideComments": row.override_comments,
        "topOverrideReasons": [
            {
                "system": r.system,
                "code": r.code,
                "display": names.reason(r),
                "count": r.count,
            }
            for r in row.override_reasons[:TOP_REASONS]
        ],
    }


def report_document(report: OutcomeReport, names: Names) -> dict[str, Any]:
    unknown = report.unknown_cards
    period = Period.of(report)
    return {
        "generatedAt": datetime.now(UTC).isoformat(timespec="seconds"),
        "since": period.first_day.isoformat() if period.first_day else None,
        "until": period.last_day.isoformat() if period.last_day else None,
        "contentVersions": report.content_versions,
        "topics": [topic_document(row, names) for row in report.topics],
        "totals": topic_document(report.totals, names),
        "unknownCardFeedback": {
            "entries": unknown.entries,
            "cards": unknown.cards,
            "accepted": unknown.accepted,
            "overridden": unknown.overridden,
        },
        "cardsNotLogged": {
            "total": sum(report.cards_not_logged.values()),
            "byReason": report.cards_not_logged,
        },
        # Held back by the site's configuration: silent topics (would have shown), snoozes.
        "cardsNotShown": {
            "silent": report.silent_total,
            "snoozed": report.snoozed_total,
            "topics": [
                {
                    "topic": row.topic,
                    "title": names.title(row.topic),
                    "silent": row.silent,
                    "snoozed": row.snoozed,
                }
                for row in report.not_shown
            ],
        },
    }
