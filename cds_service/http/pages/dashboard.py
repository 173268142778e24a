"""GET /dashboard: what happened to the cards, as charts, for a period of whole UTC days.

The numbers are `cds-service report --format json` for the same period (one function makes
both; `/dashboard/report.json` serves that document), plus the cards issued per day and the
answer times this server measured. Nothing about patients is read: the store holds none.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, render_template, request
from markupsafe import Markup

from cds_service import metrics
from cds_service.http.errors import json_error
from cds_service.http.operator import OperatorAccess
from cds_service.http.pages.charts import Bar, Segment, Series, horizontal_bars, stacked_columns
from cds_service.rules.registry import TOPICS
from cds_service.runtime import Runtime
from cds_service.store.database import StoreUnavailable
from cds_service.store.report import OutcomeReport, build_report
from cds_service.store.store import DecisionStore
from cds_service.store.trends import DailyCount, cards_per_day
from cds_service.tooling.report_document import Names, Period, percent, report_document

log = logging.getLogger(__name__)

blueprint = Blueprint("dashboard", __name__)

DEFAULT_DAYS = 30
PALETTE_SIZE = 12  # series-0 ... series-11 in pages.css
# Beyond these lengths the trend chart counts per ISO week, then per month.
_DAILY_UP_TO_DAYS = 92
_WEEKLY_UP_TO_DAYS = 731
# The trend axis spans at most a century (1,200 monthly columns).
_LONGEST_TREND_DAYS = 36_525


class PeriodError(ValueError):
    """A date range the dashboard cannot show; the message is for the user."""


def parse_period(arguments: Mapping[str, str], today: date) -> Period:
    """`from` and `to` (YYYY-MM-DD, UTC, both included); an empty one is open. Without
    either, the last DEFAULT_DAYS days."""
    if "from" not in arguments and "to" not in arguments:
        return Period(today - timedelta(days=DEFAULT_DAYS - 1), today)
    first, last = _day(arguments, "from"), _day(arguments, "to")
    if first and last and last < first:
        raise PeriodError("The end of the period is before its start.")
    return Period(first, last)


def _day(arguments: Mapping[str, str], name: str) -> date | None:
    raw = (arguments.get(name) or "").strip()
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise PeriodError(f"'{name}' must be a date like 2026-11-22.") from None


@dataclass(frozen=True)
class Trend:
    periods: list[str]
    series: list[Series]
    unit: str  # day, week or month


def trend(daily: Sequence[DailyCount], period: Period, today: date) -> Trend:
    """Cards per topic per day (or week, or month for long periods), empty days included. The
    axis ends at the last day that can hold cards (today, or the latest card) and spans at most
    _LONGEST_TREND_DAYS, so an open or far-fetched period draws a bounded chart."""
    if not daily:
        return Trend([], [], "day")
    last = max(today, daily[-1].day)
    if period.last_day:
        last = min(last, period.last_day)
    first = max(period.first_day or daily[0].day, last - timedelta(days=_LONGEST_TREND_DAYS))
    length = (last - first).days + 1
    unit = (
        "day"
        if length <= _DAILY_UP_TO_DAYS
        else "week"
        if length <= _WEEKLY_UP_TO_DAYS
        else "month"
    )

    def bucket(day: date) -> date:
        if unit == "week":
            return day - timedelta(days=day.weekday())
        if unit == "month":
            return day.replace(day=1)
        return day

    def following(start: date) -> date:
        if unit == "month":
            return (start.replace(day=28) + timedelta(days=4)).replace(day=1)
        return start + timedelta(days=7 if unit == "week" else 1)

    buckets = [bucket(first)]
    while following(buckets[-1]) <= last:
        buckets.append(following(buckets[-1]))
    position = {start: index for index, start in enumerate(buckets)}
    counts: dict[str, list[int]] = defaultdict(lambda: [0] * len(buckets))
    for row in daily:
        index = position.get(bucket(row.day))
        if index is not None:
            counts[row.topic][index] += row.cards
    labels = [
        start.strftime("%Y-%m") if unit == "month" else start.isoformat() for start in buckets
    ]
    series = [
        Series(topic, counts[topic], f"series-{topic_colour(topic) % PALETTE_SIZE}")
        for topic in _topic_order(counts)
    ]
    return Trend(labels, series, unit)


def _topic_order(topics: Any) -> list[str]:
    """The content's topic order (stable colours from one period to the next), then others."""
    known = list(TOPICS)
    return sorted(topics, key=lambda t: (known.index(t) if t in known else len(known), t))


def topic_colour(topic: str) -> int:
    return _topic_order([*TOPICS, topic]).index(topic)


def outcome_chart(document: Mapping[str, Any]) -> Markup:
    bars = []
    for row in document["topics"]:
        issued = row["cardsIssued"]
        silent = issued - row["feedbackReceived"]
        bars.append(
            Bar(
                row["title"],
                [
                    Segment("outcome-accepted", row["accepted"], f"accepted: {row['accepted']}"),
                    Segment(
                        "outcome-overridden", row["overridden"], f"overridden: {row['overridden']}"
                    ),
                    Segment("outcome-none", silent, f"no feedback: {silent}"),
                ],
                note=f"{issued} cards, {percent(row['acceptanceRate'])} accepted",
            )
        )
    return horizontal_bars("Outcome of the cards issued, per recommendation", bars, label_width=300)


def reason_charts(document: Mapping[str, Any]) -> list[tuple[str, Markup]]:
    charts = []
    for row in document["topics"]:
        reasons = row["topOverrideReasons"]
        if not reasons:
            continue
        bars = [
            Bar(
                reason["display"],
                [Segment("outcome-overridden", reason["count"], f"{reason['count']} overrides")],
                note=str(reason["count"]),
            )
            for reason in reasons
        ]
        chart = horizontal_bars(f"Override reasons: {row['title']}", bars, label_width=400)
        charts.append((row["title"], chart))
    return charts


def answer_time_chart(times: Sequence[metrics.AnswerTimes]) -> Markup | None:
    measured = [t for t in times if t.calls and t.p99 is not None]
    if not measured:
        return None
    bars = []
    for summary in measured:
        p50, p90, p99 = (1000 * (value or 0.0) for value in (summary.p50, summary.p90, summary.p99))
        bars.append(
            Bar(
                summary.service,
                [
                    Segment("percentile-50", p50, f"p50 {p50:.0f} ms"),
                    Segment("percentile-90", max(0.0, p90 - p50), f"p90 {p90:.0f} ms"),
                    Segment("percentile-99", max(0.0, p99 - p90), f"p99 {p99:.0f} ms"),
                ],
                note=f"p99 {p99:.0f} ms, {percent(summary.share_within_budget)} in time",
            )
        )
    return horizontal_bars(
        "Answer times per service in milliseconds (p50, p90, p99)",
        bars,
        marker=metrics.BUDGET_SECONDS * 1000,
    )


def _load(store: DecisionStore, period: Period) -> tuple[OutcomeReport, list[DailyCount]]:
    with store.reading() as connection:
        return (
            build_report(connection, period.since, period.until),
            cards_per_day(connection, period.since, period.until),
        )


def _utc_today() -> date:
    return datetime.now(UTC).date()


@blueprint.before_request
def _operator_only() -> Response | None:
    access: OperatorAccess = current_app.extensions["cds_operator_access"]
    return access.refusal("The dashboard")


def _page(status: int, **context: Any) -> Response:
    response = Response(render_template("dashboard.html", **context), status=status)
    response.mimetype = "text/html"
    return response


@blueprint.get("/dashboard")
def dashboard() -> Response:
    runtime: Runtime = current_app.extensions["cds_runtime"]
    store: DecisionStore = current_app.extensions["cds_store"]
    today = _utc_today()
    raw = {"from": request.args.get("from", ""), "to": request.args.get("to", "")}
    try:
        period = parse_period(request.args, today)
    except PeriodError as error:
        return _page(400, error=str(error), form=raw)
    form = {
        "from": period.first_day.isoformat() if period.first_day else "",
        "to": period.last_day.isoformat() if period.last_day else "",
    }
    try:
        report, daily = _load(store, period)
    except StoreUnavailable as error:
        log.error(
            "dashboard: decision store unavailable",
            extra={"event": "dashboard_store_unavailable", "reason": str(error)},
        )
        return _page(503, error="The decision store cannot be read right now.", form=form)
    document = report_document(report, Names.from_content(runtime.content))
    cards_over_time = trend(daily, period, today)
    times = metrics.answer_times(metrics.snapshot())
    return _page(
        200,
        form=form,
        period=period,
        document=document,
        report_command=" ".join(
            ["cds-service report", *period.report_arguments(), "--format json"]
        ),
        trend=cards_over_time,
        trend_chart=stacked_columns(
            f"Cards issued per {cards_over_time.unit} and recommendation",
            cards_over_time.periods,
            cards_over_time.series,
        )
        if cards_over_time.periods
        else None,
        titles={row["topic"]: row["title"] for row in document["topics"]},
        outcome_chart=outcome_chart(document) if document["topics"] else None,
        reason_charts=reason_charts(document),
        answer_times=times,
        answer_time_chart=answer_time_chart(times),
        budget_ms=int(metrics.BUDGET_SECONDS * 1000),
        percent=percent,
    )


@blueprint.get("/dashboard/report.json")
def report_json() -> Response:
    runtime: Runtime = current_app.extensions["cds_runtime"]
    store: DecisionStore = current_app.extensions["cds_store"]
    try:
        period = parse_period(request.args, _utc_today())
    except PeriodError as error:
        return json_error(400, str(error))
    try:
        with store.reading() as connection:
            report = build_report(connection, period.since, period.until)
    except StoreUnavailable:
        response = json_error(503, "The decision store cannot be read right now.", "transient")
        response.headers["Retry-After"] = "30"
        return response
    return jsonify(report_document(report, Names.from_content(runtime.content)))
