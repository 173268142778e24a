"""`cds-service report`: which cards clinicians accept and which they override, and why.

Reads the decision store named by CDS_DATABASE_URL. The table is meant for a clinical
informaticist; csv and json carry the same numbers for spreadsheets and dashboards.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from collections.abc import Sequence
from datetime import date
from typing import Any

from cds_service.card_builder.content import load_card_content
from cds_service.config import Settings
from cds_service.store.database import StoreUnavailable, parse_database_url
from cds_service.store.report import (
    TOP_REASONS,
    NotShown,
    OutcomeReport,
    TopicOutcomes,
    build_report,
)
from cds_service.store.spool import LossReason
from cds_service.store.store import open_existing_store
from cds_service.tooling.report_document import Names, Period, percent, report_document

_LEGEND = """\
How to read this
  Cards issued       cards the service returned in the period, whatever happened next.
  Feedback           cards the EHR sent feedback for; the others were not acted on.
  Accepted           cards whose latest feedback is "accepted" (a suggestion was taken).
  Overridden         cards whose latest feedback is "overridden" (the clinician went ahead).
  Accept rate        accepted / feedback.
  Override rate      overridden / feedback.
  Suggestions taken  suggestions applied on accepted cards.
A high override rate, or many cards without feedback, points to alert fatigue: review the
recommendation's rule or its words."""
_LEGEND_NOT_SHOWN = """\
  Silent             cards of a topic the site runs silently: logged, never shown; what the
                     topic would have shown, to compare before switching it on.
  Snoozed            info cards held back because a clinician snoozed the topic for the
                     patient (an override reason the site marks as "not now")."""


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a date like 2026-01-31") from None


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "report",
        help="acceptance and override of cards per recommendation",
        description="Cards issued, feedback, acceptance and override rates, top override "
        "reasons and suggestions accepted, per recommendation (card topic). Reads the "
        "decision store named by CDS_DATABASE_URL.",
    )
    parser.add_argument(
        "--since",
        type=_day,
        metavar="DATE",
        help="only cards issued on or after DATE (YYYY-MM-DD, UTC); default: all",
    )
    parser.add_argument(
        "--until",
        type=_day,
        metavar="DATE",
        help="only cards issued on or before DATE (YYYY-MM-DD, UTC); default: up to now",
    )
    parser.add_argument(
        "--format", choices=("table", "csv", "json"), default="table", help="default: table"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    content = load_card_content(settings.cards_dir)
    period = Period(args.since, args.until)
    if args.since and args.until and args.until < args.since:
        print("cds-service: --until must not be before --since", file=sys.stderr)
        return 2
    try:
        store = open_existing_store(
            parse_database_url(settings.database_url), settings.patient_key_secret
        )
        try:
            with store.reading() as connection:
                report = build_report(connection, period.since, period.until)
        finally:
            store.dispose()
    except StoreUnavailable as error:
        print(f"cds-service: cannot read the decision store: {error}", file=sys.stderr)
        return 1
    render = {"table": render_table, "csv": render_csv, "json": render_json}[args.format]
    sys.stdout.write(render(report, Names.from_content(content), store.describe()))
    return 0


# --- formats --------------------------------------------------------------------------------


def _count(number: int, singular: str, plural: str = "") -> str:
    return f"{number} {singular if number == 1 else plural or singular + 's'}"


def _period(report: OutcomeReport) -> str:
    period = Period.of(report)
    if period.first_day and period.last_day:
        return f"cards issued from {period.first_day} to {period.last_day}"
    if period.first_day:
        return f"cards issued since {period.first_day}"
    if period.last_day:
        return f"cards issued up to {period.last_day}"
    return "all cards in the store"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Plain-text columns: the first left-aligned, the rest right-aligned (numbers)."""
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        first = str(cells[0]).ljust(widths[0])
        rest = [str(c).rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest]).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return [line(headers), rule, *(line(r) for r in rows[:-1]), rule, line(rows[-1])]


_COLUMNS = (
    "Recommendation",
    "Cards issued",
    "Feedback",
    "Accepted",
    "Overridden",
    "Accept rate",
    "Override rate",
    "Suggestions taken",
)


def _cells(label: str, row: TopicOutcomes) -> list[str]:
    return [
        label,
        str(row.cards_issued),
        str(row.feedback_received),
        str(row.accepted),
        str(row.overridden),
        percent(row.acceptance_rate),
        percent(row.override_rate),
        str(row.suggestions_accepted),
    ]


def render_table(report: OutcomeReport, names: Names, store: str) -> str:
    out = [
        f"Card outcomes by recommendation: {_period(report)}",
        f"Store: {store}",
        "Rules and content: " + (", ".join(report.content_versions) or "no cards logged"),
        "",
    ]
    if not report.topics:
        out.append("No cards were issued in this period.")
    else:
        rows = [_cells(row.topic, row) for row in report.topics]
        rows.append(_cells("All recommendations", report.totals))
        out.extend(_table(_COLUMNS, rows))
        width = max(len(row.topic) for row in report.topics)
        out += ["", "Recommendations"]
        out += [f"  {row.topic:<{width}}  {names.title(row.topic)}" for row in report.topics]
        out += ["", f"Top override reasons (up to {TOP_REASONS} per recommendation)"]
        overridden = [row for row in report.topics if row.overridden]
        for row in overridden:
            out.append(f"  {row.topic}")
            for reason in row.override_reasons[:TOP_REASONS]:
                out.append(f"    {reason.count:>5}  {names.reason(reason)}")
            if row.override_comments:
                out.append(
                    f"           ({row.override_comments} with a comment from the clinician)"
                )
        if not overridden:
            out.append("  No card was overridden in this period.")
    if report.not_shown:
        out += [
            "",
            "Cards not shown to clinicians (logged by the site's configuration, not counted above)",
        ]
        rows = [[row.topic, str(row.silent), str(row.snoozed)] for row in report.not_shown]
        rows.append(
            [
                "All recommendations",
                str(report.silent_total),
                str(report.snoozed_total),
            ]
        )
        out.extend(_table(("Recommendation", "Silent: would have shown", "Snoozed"), rows))
    if report.cards_not_logged:
        reasons = ", ".join(
            f"{cards} {_LOSS_REASONS.get(reason, reason)}"
            for reason, cards in report.cards_not_logged.items()
        )
        total = sum(report.cards_not_logged.values())
        out += [
            "",
            f"Cards issued but not logged (not counted above): {total} ({reasons}).",
        ]
    unknown = report.unknown_cards
    if unknown.entries:
        out += [
            "",
            f"Feedback for cards not in the decision log (not counted above): "
            f"{_count(unknown.entries, 'entry', 'entries')} for {_count(unknown.cards, 'card')}, "
            f"{unknown.accepted} accepted, {unknown.overridden} overridden.",
        ]
    out += ["", _LEGEND, *([_LEGEND_NOT_SHOWN] if report.not_shown else []), ""]
    return "\n".join(out)


_LOSS_REASONS = {
    LossReason.QUEUE_FULL: "while a worker's queue was full",
    LossReason.REFUSED: "refused by the store",
    LossReason.SPOOL_FULL: "at a stop, with the spool full",
    LossReason.NOT_SPOOLED: "at a stop, with no spool to keep them",
    LossReason.WORKER_ENDED: "queued in a worker that was killed",
    LossReason.UNREADABLE: "unreadable in the spool",
}


def _reasons_text(row: TopicOutcomes, names: Names) -> str:
    return "; ".join(f"{names.reason(r)} ({r.count})" for r in row.override_reasons[:TOP_REASONS])


def render_csv(report: OutcomeReport, names: Names, _store: str) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        [
            "topic",
            "title",
            "cards_issued",
            "feedback_received",
            "accepted",
            "overridden",
            "acceptance_rate",
            "override_rate",
            "suggestions_accepted",
            "override_comments",
            "top_override_reasons",
            "silent_would_have_shown",
            "snoozed",
        ]
    )

    def rate(value: float | None) -> str:
        return "" if value is None else f"{value:.4f}"

    not_shown = {row.topic: row for row in report.not_shown}
    shown = {row.topic for row in report.topics}
    # A topic whose cards were all held back (a silent topic) has a row too.
    topics = sorted(
        [*report.topics, *(TopicOutcomes(t) for t in not_shown if t not in shown)],
        key=lambda row: row.topic,
    )
    for row in [*topics, report.totals]:
        held = not_shown.get(row.topic, NotShown(row.topic))
        if row.topic == "all":
            held = NotShown(
                "all",
                report.silent_total,
                report.snoozed_total,
            )
        writer.writerow(
            [
                row.topic,
                names.title(row.topic) if row.topic != "all" else "All recommendations",
                row.cards_issued,
                row.feedback_received,
                row.accepted,
                row.overridden,
                rate(row.acceptance_rate),
                rate(row.override_rate),
                row.suggestions_accepted,
                row.override_comments,
                _reasons_text(row, names),
                held.silent,
                held.snoozed,
            ]
        )
    return buffer.getvalue()


def render_json(report: OutcomeReport, names: Names, _store: str) -> str:
    return json.dumps(report_document(report, names), indent=2, ensure_ascii=False) + "\n"
