"""GET /dashboard: the report's numbers as charts for a period, from the decision store."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from conftest import SETTINGS, load_fixture
from flask import Flask
from flask.testing import FlaskClient
from jwt_clients import PUBLIC_URL, bearer, es384_client
from test_store import _record

from cds_service.app import create_app
from cds_service.cli import main
from cds_service.http.pages.charts import Bar, Segment, Series, horizontal_bars, stacked_columns
from cds_service.http.pages.dashboard import PeriodError, parse_period, trend
from cds_service.protocol.feedback import FeedbackEntry, Outcome, OverrideReason
from cds_service.runtime import Runtime
from cds_service.store.database import parse_database_url
from cds_service.store.store import DecisionStore
from cds_service.store.trends import DailyCount
from cds_service.tooling.report_document import Period

SECRET = "dashboard-secret-" + "x" * 32
REASONS = "http://example.org/fhir/back-pain-cds/CodeSystem/override-reason"
ADMIN_TOKEN = "operator-" + "d" * 32
TODAY = date(2026, 11, 22)
SIGN = "/cds-services/back-pain-order-sign"
TRAMADOL = "opioid-tramadol-acute-low-back-pain"


def _at(day: date, hour: int = 12) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


# Known contents: (card, topic, day issued, outcome, override reason).
CARDS = [
    ("c1", "opioid-avoidance", date(2026, 11, 20), "accepted", None),
    ("c2", "opioid-avoidance", date(2026, 11, 20), "overridden", "nonopioid-therapy-failed"),
    ("c3", "opioid-avoidance", date(2026, 11, 21), "overridden", "nonopioid-therapy-failed"),
    ("c4", "opioid-avoidance", date(2026, 11, 22), None, None),
    ("c5", "exercise-therapy", date(2026, 11, 21), "accepted", None),
    ("c6", "exercise-therapy", date(2026, 11, 22), None, None),
    ("c7", "imaging-without-red-flags", date(2026, 10, 1), "overridden", None),  # before
]


def _fill(store: DecisionStore) -> None:
    store.record_decisions(
        [
            _record(card, topic=topic, issued_at=_at(day, hour=23 if day.day == 21 else 1))
            for card, topic, day, *_ in CARDS
        ]
    )
    entries = []
    for card, _topic, day, outcome, reason in CARDS:
        if outcome == "accepted":
            entries.append(FeedbackEntry(card, Outcome.ACCEPTED, ("s-1",), None, _at(day, 13)))
        elif outcome == "overridden":
            coded = OverrideReason(REASONS, reason, None, None) if reason else None
            entries.append(FeedbackEntry(card, Outcome.OVERRIDDEN, (), coded, _at(day, 13)))
    store.record_feedback("back-pain-order-sign", entries)


@pytest.fixture
def filled_app(runtime: Runtime, store_url: str) -> Iterator[Flask]:
    store = DecisionStore(parse_database_url(store_url), SECRET)
    _fill(store)
    store.dispose()
    settings = dataclasses.replace(SETTINGS, database_url=store_url, patient_key_secret=SECRET)
    application = create_app(settings, runtime=runtime)
    yield application
    application.extensions["cds_decision_log"].close()
    application.extensions["cds_store"].dispose()


def _cli_report(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], url: str, *args: str
) -> dict[str, Any]:
    monkeypatch.setenv("CDS_DATABASE_URL", url)
    monkeypatch.setenv("CDS_PATIENT_KEY_SECRET", SECRET)
    assert main(["report", "--format", "json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def _without_time(document: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in document.items() if key != "generatedAt"}


def test_the_dashboard_shows_the_reports_numbers_for_its_period(
    filled_app: Flask,
    store_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    client = filled_app.test_client()
    query = "from=2026-11-20&to=2026-11-22"
    document = client.get(f"/dashboard/report.json?{query}").get_json()
    cli = _cli_report(
        monkeypatch, capsys, store_url, "--since", "2026-11-20", "--until", "2026-11-22"
    )
    assert _without_time(document) == _without_time(cli)
    topics = {row["topic"]: row for row in document["topics"]}
    assert set(topics) == {"opioid-avoidance", "exercise-therapy"}  # c7 is before the period
    opioid = topics["opioid-avoidance"]
    assert (opioid["cardsIssued"], opioid["accepted"], opioid["overridden"]) == (4, 1, 2)
    assert opioid["topOverrideReasons"][0]["count"] == 2
    assert document["totals"]["cardsIssued"] == 6

    # A call answered now (after the period): the answer-time chart has something to show.
    assert client.post(SIGN, json=load_fixture(TRAMADOL)[1]).status_code == 200
    page = client.get(f"/dashboard?{query}")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert "--since 2026-11-20 --until 2026-11-22 --format json" in html
    assert re.search(r'id="total-cards">6<', html)
    assert html.count('<svg class="chart"') == 4  # trend, outcomes, 1 topic's reasons, times
    assert "Non-opioid treatments tried and failed" in html  # the reason's display
    assert re.search(r"<tr><th>back-pain-order-sign</th><td>\d+</td>", html)  # answer times
    assert 'value="2026-11-20"' in html and 'value="2026-11-22"' in html
    # Nothing that identifies a patient is on the page.
    assert "Moreno" not in html and "Patient-" not in html


def test_cards_are_counted_per_utc_day_and_topic(filled_app: Flask) -> None:
    store: DecisionStore = filled_app.extensions["cds_store"]
    from cds_service.store.trends import cards_per_day

    period = Period(date(2026, 11, 20), date(2026, 11, 22))
    with store.reading() as connection:
        daily = cards_per_day(connection, period.since, period.until)
    assert daily == [
        DailyCount(date(2026, 11, 20), "opioid-avoidance", 2),
        DailyCount(date(2026, 11, 21), "exercise-therapy", 1),  # 23:00 UTC stays on the 21st
        DailyCount(date(2026, 11, 21), "opioid-avoidance", 1),
        DailyCount(date(2026, 11, 22), "exercise-therapy", 1),
        DailyCount(date(2026, 11, 22), "opioid-avoidance", 1),
    ]


def test_the_period_comes_from_the_query_and_defaults_to_thirty_days() -> None:
    assert parse_period({}, TODAY) == Period(TODAY - timedelta(days=29), TODAY)
    assert parse_period({"from": "2026-11-01", "to": ""}, TODAY) == Period(date(2026, 11, 1))
    assert parse_period({"from": "", "to": ""}, TODAY) == Period()
    for bad in (
        {"from": "yesterday"},
        {"to": "2026-13-01"},
        {"from": "2026-11-02", "to": "2026-11-01"},
    ):
        with pytest.raises(PeriodError):
            parse_period(bad, TODAY)
    assert Period(date(2026, 11, 1), date(2026, 11, 2)).report_arguments() == [
        "--since",
        "2026-11-01",
        "--until",
        "2026-11-02",
    ]


def test_a_bad_period_or_an_unreadable_store_is_said_on_the_page(
    client: FlaskClient, runtime: Runtime
) -> None:
    bad = client.get("/dashboard?from=2026-11-22&to=2026-11-01")
    assert bad.status_code == 400 and "before its start" in bad.get_data(as_text=True)
    assert client.get("/dashboard/report.json?to=someday").status_code == 400
    down = dataclasses.replace(SETTINGS, database_url="postgresql://cds@127.0.0.1:1/cds")
    down_client = create_app(down, runtime=runtime).test_client()
    page = down_client.get("/dashboard")
    assert page.status_code == 503 and "cannot be read" in page.get_data(as_text=True)
    answer = down_client.get("/dashboard/report.json")
    assert answer.status_code == 503 and answer.headers["Retry-After"]


def test_the_trend_fills_empty_days_and_groups_long_periods_by_week_and_month() -> None:
    daily = [
        DailyCount(date(2026, 11, 20), "opioid-avoidance", 2),
        DailyCount(date(2026, 11, 22), "exercise-therapy", 1),
    ]
    short = trend(daily, Period(date(2026, 11, 19), date(2026, 11, 22)), TODAY)
    assert short.unit == "day"
    assert short.periods == ["2026-11-19", "2026-11-20", "2026-11-21", "2026-11-22"]
    assert {s.name: list(s.values) for s in short.series} == {
        "opioid-avoidance": [0, 2, 0, 0],
        "exercise-therapy": [0, 0, 0, 1],
    }
    weekly = trend(daily, Period(date(2026, 6, 1), TODAY), TODAY)
    assert weekly.unit == "week" and weekly.periods[-1] == "2026-11-16"  # the Monday
    assert {s.name: sum(s.values) for s in weekly.series} == {
        "opioid-avoidance": 2,
        "exercise-therapy": 1,
    }
    monthly = trend(daily, Period(date(2020, 1, 1), TODAY), TODAY)
    assert monthly.unit == "month" and monthly.periods[-1] == "2026-11"
    assert trend([], Period(), TODAY).periods == []


def test_a_far_fetched_period_draws_a_bounded_chart(filled_app: Flask) -> None:
    client = filled_app.test_client()
    for query in (
        "from=2026-01-01&to=9999-12-31",
        "to=9999-12-31",
        "from=0001-01-01&to=9999-12-31",
    ):
        page = client.get(f"/dashboard?{query}")
        assert page.status_code == 200, query
        assert client.get(f"/dashboard/report.json?{query}").status_code == 200
    daily = [DailyCount(date(2026, 11, 20), "opioid-avoidance", 2)]
    ages = trend(daily, Period(date(1, 1, 1), date.max), TODAY)
    assert ages.unit == "month" and ages.periods[-1] == "2026-11"  # no empty future
    assert len(ages.periods) <= 1201  # a century at most
    assert Period(date(2026, 1, 1), date.max).until is None


def test_charts_escape_every_text_they_draw() -> None:
    hostile = '<script>alert("x")</script>'
    columns = stacked_columns(hostile, [hostile], [Series(hostile, [3], "series-0")])
    bars = horizontal_bars(hostile, [Bar(hostile, [Segment("a", 1, hostile)], note=hostile)])
    for svg in (str(columns), str(bars)):
        assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert str(columns).count("<rect") == 1


@pytest.fixture
def protected_app(runtime: Runtime, app_settings: Any) -> Flask:
    settings = dataclasses.replace(
        app_settings,
        trusted_clients=(es384_client().trusted(),),
        public_url=PUBLIC_URL,
        admin_token=ADMIN_TOKEN,
    )
    return create_app(settings, runtime=runtime)


def test_with_trusted_clients_the_dashboard_needs_the_operator_token(protected_app: Flask) -> None:
    client = protected_app.test_client()
    for path in ("/dashboard", "/dashboard/report.json"):
        assert client.get(path).status_code == 401
        ehr = es384_client().token(audience=f"{PUBLIC_URL}{path}")
        assert client.get(path, headers=bearer(ehr)).status_code == 401
        assert client.get(path, headers=bearer(ADMIN_TOKEN)).status_code == 200
