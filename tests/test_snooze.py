"""Snooze end to end, on SQLite and on a real PostgreSQL server: a clinician overrides an info
card with a reason the site marks as snoozing, through the feedback endpoint; the topic then
stays out of that patient's answers (logged as snoozed) until the snooze expires. Warning cards
always show; a store that cannot answer in time never holds up the call."""

from __future__ import annotations

import copy
import dataclasses
import time
import tomllib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from conftest import SETTINGS, load_fixture
from flask import Flask
from flask.testing import FlaskClient
from metrics_text import Samples, parse, value
from postgres_server import PostgresServer
from sqlalchemy import select

from cds_service.runtime import Runtime
from cds_service.site.config import parse_site_config
from cds_service.store.schema import card_decisions
from cds_service.store.snooze import SNOOZE_CHECK_SECONDS, StoreSnoozeCheck

SECRET = "snooze-test-secret-" + "z" * 32
CONTENT_REASONS = "http://example.org/fhir/back-pain-cds/CodeSystem/override-reason"
HL7 = "http://terminology.hl7.org/CodeSystem/non-adherence-reason-codes"
VIEW = "/cds-services/back-pain-patient-view"
SIGN = "/cds-services/back-pain-order-sign"
# Chronic pain of 16 weeks: chronic-pain-assessment and exercise-therapy, both info cards.
CHRONIC = "patient-view-chronic-pain-16-weeks"
TRAMADOL = "opioid-tramadol-acute-low-back-pain"  # another patient: opioid (warning), exercise
# A TENS unit without exercise therapy: the passive-modality card offers the PT referral, and the
# exercise card, which would offer it too, gives way to it.
TENS = "tens-without-exercise-therapy"
SITE = """
[topics."exercise-therapy".override_reasons]
sets = ["hl7-non-adherence-clinical"]

[topics."exercise-therapy".snooze]
days = 30
reasons = ["exercise-deferred", "action-completed"]

[topics."avoid-passive-modalities".snooze]
days = 30
reasons = ["adjunct-to-exercise-planned"]
"""


class Clock:
    """The snooze check's "now", moved by the test."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(scope="module")
def snooze_runtime() -> Runtime:
    site = parse_site_config(tomllib.loads(SITE), "site.toml")
    return Runtime.load(dataclasses.replace(SETTINGS, site=site))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def snooze_app(
    snooze_runtime: Runtime, store_url: str, clock: Clock, make_app: Callable[..., Flask]
) -> Flask:
    settings = dataclasses.replace(
        snooze_runtime.settings, database_url=store_url, patient_key_secret=SECRET
    )
    app = make_app(settings, snooze_runtime)
    app.extensions["cds_snooze_check"] = StoreSnoozeCheck(app.extensions["cds_store"], now=clock)
    return app


def _cards(client: FlaskClient, path: str, request: dict[str, Any]) -> dict[str, dict[str, Any]]:
    response = client.post(path, json=request)
    assert response.status_code == 200, response.get_json()
    return {card["source"]["topic"]["code"]: card for card in response.get_json()["cards"]}


def _override(
    client: FlaskClient, path: str, card: dict[str, Any], system: str | None, code: str
) -> None:
    reason: dict[str, Any] = {"code": code}
    if system:
        reason["system"] = system
    entry = {
        "card": card["uuid"],
        "outcome": "overridden",
        "overrideReason": {"reason": reason, "userComment": "not today"},
        "outcomeTimestamp": datetime.now(UTC).isoformat(),
    }
    response = client.post(f"{path}/feedback", json={"feedback": [entry]})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["unknownCards"] == 0


def _metrics(client: FlaskClient) -> Samples:
    return parse(client.get("/metrics").get_data(as_text=True))


def _dispositions(app: Flask) -> list[tuple[str, str]]:
    assert app.extensions["cds_decision_log"].flush(10)
    with app.extensions["cds_store"].reading() as connection:
        query = select(card_decisions.c.topic, card_decisions.c.disposition).order_by(
            card_decisions.c.issued_at, card_decisions.c.topic
        )
        return [(topic, disposition) for topic, disposition in connection.execute(query)]


def _logged_before_feedback(app: Flask) -> None:
    # Feedback names a card the decision log wrote (it is written off the request path).
    assert app.extensions["cds_decision_log"].flush(10)


def test_a_snoozed_topic_stays_out_of_that_patients_answers_until_it_expires(
    snooze_app: Flask, clock: Clock
) -> None:
    client = snooze_app.test_client()
    chronic = load_fixture(CHRONIC)[1]
    first = _cards(client, VIEW, chronic)
    assert set(first) == {"chronic-pain-assessment", "exercise-therapy"}
    _logged_before_feedback(snooze_app)
    _override(client, VIEW, first["exercise-therapy"], CONTENT_REASONS, "exercise-deferred")

    # Snoozed for this patient: not returned, logged as snoozed; other topics still show.
    snoozed = {"service": "back-pain-patient-view", "topic": "exercise-therapy"}
    counted = value(_metrics(client), "cds_cards_held_back_total", **snoozed, disposition="snoozed")
    again = _cards(client, VIEW, chronic)
    assert set(again) == {"chronic-pain-assessment"}
    assert (
        value(_metrics(client), "cds_cards_held_back_total", **snoozed, disposition="snoozed")
        == counted + 1
    )
    # Another patient is not affected.
    other = _cards(client, SIGN, load_fixture(TRAMADOL)[1])
    assert set(other) == {"opioid-avoidance", "exercise-therapy"}

    clock.now += timedelta(days=29)
    assert set(_cards(client, VIEW, chronic)) == {"chronic-pain-assessment"}
    clock.now += timedelta(days=1, seconds=1)  # 30 days after the override: expired
    assert set(_cards(client, VIEW, chronic)) == {"chronic-pain-assessment", "exercise-therapy"}

    assert _dispositions(snooze_app) == [
        ("chronic-pain-assessment", "shown"),
        ("exercise-therapy", "shown"),
        ("chronic-pain-assessment", "shown"),
        ("exercise-therapy", "snoozed"),
        ("exercise-therapy", "shown"),
        ("opioid-avoidance", "shown"),
        ("chronic-pain-assessment", "shown"),
        ("exercise-therapy", "snoozed"),
        ("chronic-pain-assessment", "shown"),
        ("exercise-therapy", "shown"),
    ]


def _creates(card: dict[str, Any]) -> list[str]:
    return [
        action["resource"]["resourceType"]
        for suggestion in card.get("suggestions", [])
        for action in suggestion["actions"]
        if action["type"] == "create"
    ]


def test_a_snoozed_cards_order_goes_to_the_card_that_had_given_way_to_it(
    snooze_app: Flask,
) -> None:
    client = snooze_app.test_client()
    tens = load_fixture(TENS)[1]
    first = _cards(client, SIGN, tens)
    assert set(first) == {"avoid-passive-modalities"}
    assert _creates(first["avoid-passive-modalities"]) == ["ServiceRequest"]
    _logged_before_feedback(snooze_app)
    _override(
        client,
        SIGN,
        first["avoid-passive-modalities"],
        CONTENT_REASONS,
        "adjunct-to-exercise-planned",
    )

    # Snoozing the card must not take the referral away: the exercise card now offers it.
    second = _cards(client, SIGN, tens)
    assert set(second) == {"exercise-therapy"}
    assert _creates(second["exercise-therapy"]) == ["ServiceRequest"]
    _logged_before_feedback(snooze_app)
    _override(client, SIGN, second["exercise-therapy"], CONTENT_REASONS, "exercise-deferred")

    # Both snoozed: the exercise card, brought out by the first snooze, is looked up too and
    # held back. The log keeps what would have shown with nothing held back: the one card.
    assert _cards(client, SIGN, tens) == {}
    assert _dispositions(snooze_app) == [
        ("avoid-passive-modalities", "shown"),
        ("avoid-passive-modalities", "snoozed"),
        ("exercise-therapy", "shown"),
        ("avoid-passive-modalities", "snoozed"),
    ]


def test_only_the_reasons_the_site_marks_snooze(snooze_app: Flask) -> None:
    client = snooze_app.test_client()
    chronic = load_fixture(CHRONIC)[1]
    first = _cards(client, VIEW, chronic)
    _logged_before_feedback(snooze_app)
    _override(client, VIEW, first["exercise-therapy"], CONTENT_REASONS, "patient-declined-referral")
    # The same code from another system is another reason.
    _override(client, VIEW, first["exercise-therapy"], "urn:other", "exercise-deferred")
    accepted = {
        "card": first["exercise-therapy"]["uuid"],
        "outcome": "accepted",
        "acceptedSuggestions": [{"id": first["exercise-therapy"]["suggestions"][0]["uuid"]}],
        "outcomeTimestamp": datetime.now(UTC).isoformat(),
    }
    assert client.post(f"{VIEW}/feedback", json={"feedback": [accepted]}).status_code == 200
    assert "exercise-therapy" in _cards(client, VIEW, chronic)
    # A ready-made HL7 reason the site marks, sent without its system, snoozes.
    _override(client, VIEW, first["exercise-therapy"], None, "action-completed")
    assert "exercise-therapy" not in _cards(client, VIEW, chronic)


def test_warning_cards_always_show(snooze_app: Flask) -> None:
    client = snooze_app.test_client()
    tramadol = load_fixture(TRAMADOL)[1]
    first = _cards(client, SIGN, tramadol)
    _logged_before_feedback(snooze_app)
    opioid = first["opioid-avoidance"]
    assert opioid["indicator"] == "warning"
    _override(client, SIGN, opioid, CONTENT_REASONS, "nonopioid-therapy-failed")
    _override(client, SIGN, first["exercise-therapy"], HL7, "action-completed")
    assert set(_cards(client, SIGN, tramadol)) == {"opioid-avoidance"}


def test_a_store_that_cannot_answer_shows_the_cards(
    snooze_runtime: Runtime, make_app: Callable[..., Flask], caplog: Any
) -> None:
    # A PostgreSQL server that refuses connections (nothing listens on port 9).
    url = "postgresql://cds:secret@127.0.0.1:9/cds"
    app = make_app(dataclasses.replace(snooze_runtime.settings, database_url=url), snooze_runtime)
    client = app.test_client()
    with caplog.at_level("INFO", logger="cds_service"):
        started = time.monotonic()
        cards = _cards(client, VIEW, load_fixture(CHRONIC)[1])
        elapsed = time.monotonic() - started
    assert set(cards) == {"chronic-pain-assessment", "exercise-therapy"}
    assert elapsed < 2.0
    request_line = next(r for r in caplog.records if getattr(r, "event", "") == "request")
    assert "snooze not checked (store unavailable)" in request_line.decision
    assert any(getattr(r, "event", "") == "snooze_check_unavailable" for r in caplog.records)


def test_a_failing_lookup_never_fails_the_call(
    snooze_runtime: Runtime, make_app: Callable[..., Flask], app_settings: Any
) -> None:
    class Broken:
        def snoozed_topics(self, patient_id: str, rules: Any) -> frozenset[str] | None:
            raise RuntimeError("a bug")

    app = make_app(
        dataclasses.replace(snooze_runtime.settings, database_url=app_settings.database_url),
        snooze_runtime,
    )
    app.extensions["cds_snooze_check"] = Broken()
    cards = _cards(app.test_client(), VIEW, load_fixture(CHRONIC)[1])
    assert "exercise-therapy" in cards


def test_no_lookup_without_an_info_card_that_could_be_snoozed(
    snooze_runtime: Runtime, make_app: Callable[..., Flask], app_settings: Any
) -> None:
    asked: list[frozenset[str]] = []

    class Recording:
        def snoozed_topics(self, patient_id: str, rules: Any) -> frozenset[str] | None:
            asked.append(frozenset(rules))
            return frozenset()

    app = make_app(
        dataclasses.replace(snooze_runtime.settings, database_url=app_settings.database_url),
        snooze_runtime,
    )
    app.extensions["cds_snooze_check"] = Recording()
    client = app.test_client()
    _cards(client, SIGN, load_fixture("imaging-mri-without-red-flags")[1])  # warning + exercise
    _cards(client, SIGN, load_fixture("antidepressant-axial-pain")[1])  # a warning card only
    assert asked == [frozenset({"exercise-therapy"})]


@pytest.fixture
def postgres_snooze_app(
    snooze_runtime: Runtime, postgres_server: PostgresServer, make_app: Callable[..., Flask]
) -> Iterator[tuple[Flask, PostgresServer]]:
    settings = dataclasses.replace(
        snooze_runtime.settings,
        database_url=postgres_server.create_database(),
        patient_key_secret=SECRET,
    )
    yield make_app(settings, snooze_runtime), postgres_server


def test_a_hung_store_costs_a_hook_call_at_most_the_snooze_limit(
    postgres_snooze_app: tuple[Flask, PostgresServer],
) -> None:
    app, server = postgres_snooze_app
    client = app.test_client()
    chronic = load_fixture(CHRONIC)[1]
    _cards(client, VIEW, chronic)  # the store is ready and a connection is pooled
    _logged_before_feedback(app)
    other = copy.deepcopy(chronic)
    with server.frozen():
        started = time.monotonic()
        cards = _cards(client, VIEW, other)
        elapsed = time.monotonic() - started
    assert set(cards) == {"chronic-pain-assessment", "exercise-therapy"}
    assert elapsed < SNOOZE_CHECK_SECONDS + 0.5, elapsed
