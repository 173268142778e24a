"""POST /cds-services/{id}/feedback through Flask's test client (SQLite store)."""

from __future__ import annotations

import copy
import dataclasses
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from cds_service.app import create_app
from cds_service.config import Settings
from cds_service.runtime import Runtime
from cds_service.store.decision_log import IssuedCards
from cds_service.store.schema import card_decisions, feedback
from cds_service.store.store import DecisionStore
from cds_service.vocabulary import CardRecord

SIGN = "/cds-services/back-pain-order-sign"
FEEDBACK = f"{SIGN}/feedback"
UPSTREAM = Path(__file__).parent / "data" / "upstream" / "cds-hooks"
REASON_SYSTEM = "http://example.org/fhir/back-pain-cds/CodeSystem/override-reason"


def _store(app: Flask) -> DecisionStore:
    return app.extensions["cds_store"]


def _rows(app: Flask, card_uuid: str) -> list[Any]:
    with _store(app).reading() as connection:
        return list(connection.execute(select(feedback).where(feedback.c.card_uuid == card_uuid)))


def _overridden(card: str, reason: dict[str, Any] | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "card": card,
        "outcome": "overridden",
        "outcomeTimestamp": "2026-11-22T10:05:31Z",
    }
    if reason is not None:
        entry["overrideReason"] = reason
    return entry


def _issue_cards(client: FlaskClient, app: Flask, fixture_request: Any) -> list[dict[str, Any]]:
    response = client.post(SIGN, json=fixture_request("opioid-tramadol-acute-low-back-pain"))
    assert response.status_code == 200
    assert app.extensions["cds_decision_log"].flush(10)
    return response.get_json()["cards"]


def _assert_400(response: Any) -> dict[str, Any]:
    assert response.status_code == 400
    assert response.mimetype == "application/json"
    issue = response.get_json()["issue"][0]
    assert response.get_json()["resourceType"] == "OperationOutcome"
    assert issue["severity"] == "error" and issue["code"] == "invalid"
    return issue


@pytest.mark.parametrize(
    "example",
    [
        "spec-2.0.1/feedback-accepted.json",
        "spec-2.0.1/feedback-overridden.json",
        "spec-2.0.1/feedback-overridden-with-reason.json",
        "spec-3.0.0-ballot/feedback-accepted.json",
        "spec-3.0.0-ballot/feedback-overridden-with-reason.json",
    ],
)
def test_spec_examples_are_accepted(client: FlaskClient, app: Flask, example: str) -> None:
    body = json.loads((UPSTREAM / example).read_text(encoding="utf-8"))
    card = str(uuid.uuid4())  # the examples' uuids are shared; keep each test's rows apart
    body["feedback"][0]["card"] = card
    response = client.post(FEEDBACK, json=body)
    assert response.status_code == 200
    assert response.get_json() == {
        "received": 1,
        "stored": 1,
        "alreadyStored": 0,
        "unknownCards": 1,
    }
    [row] = _rows(app, card)
    assert row.outcome == body["feedback"][0]["outcome"]
    assert row.card_known is False


def test_feedback_on_issued_cards_is_stored_with_its_details(
    client: FlaskClient, app: Flask, fixture_request: Any
) -> None:
    cards = {c["source"]["topic"]["code"]: c for c in _issue_cards(client, app, fixture_request)}
    opioid, exercise = cards["opioid-avoidance"], cards["exercise-therapy"]
    suggestion = opioid["suggestions"][0]["uuid"]
    body = {
        "feedback": [
            {
                "card": opioid["uuid"],
                "outcome": "accepted",
                "acceptedSuggestions": [{"id": suggestion}],
                "outcomeTimestamp": "2026-11-22T10:05:31+02:00",
            },
            _overridden(
                exercise["uuid"],
                {
                    "reason": {"system": REASON_SYSTEM, "code": "patient-declined-referral"},
                    "userComment": "Prefers to wait a week.",
                },
            ),
        ]
    }
    response = client.post(FEEDBACK, json=body)
    assert response.status_code == 200
    assert response.get_json()["stored"] == 2 and response.get_json()["unknownCards"] == 0

    [accepted] = _rows(app, opioid["uuid"])
    assert accepted.card_known is True
    assert json.loads(accepted.accepted_suggestions) == [suggestion]
    assert accepted.accepted_suggestion_count == 1
    assert accepted.outcome_at.isoformat() == "2026-11-22T08:05:31+00:00"  # kept in UTC
    assert accepted.service_id == "back-pain-order-sign"
    [overridden] = _rows(app, exercise["uuid"])
    assert (overridden.override_system, overridden.override_code) == (
        REASON_SYSTEM,
        "patient-declined-referral",
    )
    assert overridden.override_comment == "Prefers to wait a week."


def test_repeated_identical_entry_is_stored_once(client: FlaskClient, app: Flask) -> None:
    card = str(uuid.uuid4())
    entry = _overridden(card, {"reason": {"system": REASON_SYSTEM, "code": "exercise-deferred"}})
    first = client.post(FEEDBACK, json={"feedback": [entry, copy.deepcopy(entry)]})
    assert first.get_json() == {"received": 2, "stored": 1, "alreadyStored": 1, "unknownCards": 2}
    again = client.post(FEEDBACK, json={"feedback": [entry]})
    assert again.status_code == 200
    assert again.get_json()["stored"] == 0 and again.get_json()["alreadyStored"] == 1
    # The same instant written another way is the same entry...
    shifted = {**entry, "outcomeTimestamp": "2026-11-22T12:05:31+02:00"}
    assert client.post(FEEDBACK, json={"feedback": [shifted]}).get_json()["stored"] == 0
    # ...but a different response about the same card is a new entry.
    later = {**entry, "outcomeTimestamp": "2026-11-22T10:06:00Z"}
    assert client.post(FEEDBACK, json={"feedback": [later]}).get_json()["stored"] == 1
    assert len(_rows(app, card)) == 2


def test_sandbox_shape_bare_coding_is_the_same_entry_as_the_2_0_shape(
    client: FlaskClient, app: Flask
) -> None:
    card = str(uuid.uuid4())
    coding = {"system": REASON_SYSTEM, "code": "exercise-deferred", "display": "Deferred"}
    sandbox = client.post(FEEDBACK, json={"feedback": [_overridden(card, coding)]})
    assert sandbox.status_code == 200 and sandbox.get_json()["stored"] == 1
    spec = client.post(FEEDBACK, json={"feedback": [_overridden(card, {"reason": coding})]})
    assert spec.get_json()["alreadyStored"] == 1
    [row] = _rows(app, card)
    assert (row.override_code, row.override_display, row.override_comment) == (
        "exercise-deferred",
        "Deferred",
        None,
    )


def test_feedback_before_the_card_is_logged_is_flagged_then_linked(
    client: FlaskClient, app: Flask, fixture_request: Any
) -> None:
    log = app.extensions["cds_decision_log"]
    cards = _issue_cards(client, app, fixture_request)
    card = cards[0]
    # Simulate feedback that outran the decision log: drop the logged card, post, re-log.
    with _store(app).transaction() as connection:
        connection.execute(
            card_decisions.delete().where(card_decisions.c.card_uuid == card["uuid"])
        )
    response = client.post(FEEDBACK, json={"feedback": [_overridden(card["uuid"])]})
    assert response.get_json()["unknownCards"] == 1
    assert _rows(app, card["uuid"])[0].card_known is False
    log.record(
        IssuedCards(
            service_id="back-pain-order-sign",
            hook="order-sign",
            hook_instance=str(uuid.uuid4()),
            patient_id="example",
            cards=[CardRecord.from_json(card)],
        )
    )
    assert log.flush(10)
    assert _rows(app, card["uuid"])[0].card_known is True


def test_unknown_service_is_404(client: FlaskClient) -> None:
    body = {"feedback": [_overridden(str(uuid.uuid4()))]}
    response = client.post("/cds-services/no-such-service/feedback", json=body)
    assert response.status_code == 404
    assert response.get_json()["resourceType"] == "OperationOutcome"


def test_get_on_feedback_is_405(client: FlaskClient) -> None:
    assert client.get(FEEDBACK).status_code == 405


SECRET_LOOKING = "Jane-Q-Patient-1986"


@pytest.mark.parametrize(
    ("body", "paths"),
    [
        ({}, ["$"]),
        ({"feedback": []}, ["$.feedback"]),
        ({"feedback": "yes"}, ["$.feedback"]),
        ({"feedback": [{"card": SECRET_LOOKING}]}, ["$.feedback[0]"]),
        (
            {"feedback": [{"card": 7, "outcome": "accepted", "outcomeTimestamp": "x"}]},
            ["$.feedback[0].card", "$.feedback[0].outcomeTimestamp", "$.feedback[0]"],
        ),
        (
            {"feedback": [{**_overridden("c"), "outcome": SECRET_LOOKING}]},
            ["$.feedback[0].outcome"],
        ),
        (  # accepted needs acceptedSuggestions (cds-fb-2)
            {"feedback": [{**_overridden("c"), "outcome": "accepted"}]},
            ["$.feedback[0]"],
        ),
        (
            {"feedback": [{**_overridden("c"), "outcomeTimestamp": "2026-11-22T10:05:31"}]},
            ["$.feedback[0].outcomeTimestamp"],
        ),
        (
            {"feedback": [{**_overridden("c"), "outcomeTimestamp": "2026-02-30T10:05:31Z"}]},
            ["$.feedback[0].outcomeTimestamp"],
        ),
        (  # neither a reason nor a comment (cds-fb-3), nor a bare Coding
            {"feedback": [_overridden("c", {})]},
            ["$.feedback[0].overrideReason"],
        ),
        (
            {"feedback": [_overridden("c", {"reason": {"system": SECRET_LOOKING}})]},
            ["$.feedback[0].overrideReason.reason", "$.feedback[0].overrideReason"],
        ),
        (
            {"feedback": [_overridden("c", {"userComment": "x" * 5000})]},
            ["$.feedback[0].overrideReason.userComment"],
        ),
        (  # the two shapes mixed: a bare Coding's members beside a 2.0 member
            {"feedback": [_overridden("c", {"reason": 5, "code": "x"})]},
            ["$.feedback[0].overrideReason"],
        ),
        (
            {"feedback": [_overridden("c", {"userComment": ["x"], "code": "x"})]},
            ["$.feedback[0].overrideReason"],
        ),
        (  # a real offset, but after the last date-time UTC can represent
            {"feedback": [{**_overridden("c"), "outcomeTimestamp": "9999-12-31T23:59:59-23:59"}]},
            ["$.feedback[0].outcomeTimestamp"],
        ),
        (
            {"feedback": [{**_overridden("c"), "outcomeTimestamp": "0001-01-01T00:00:00+23:59"}]},
            ["$.feedback[0].outcomeTimestamp"],
        ),
        (
            {
                "feedback": [
                    {
                        **_overridden("c"),
                        "outcome": "accepted",
                        "acceptedSuggestions": [{"uuid": SECRET_LOOKING}],
                    }
                ]
            },
            ["$.feedback[0].acceptedSuggestions[0]"],
        ),
    ],
)
def test_bad_bodies_are_400_naming_paths_without_values(
    client: FlaskClient, body: dict[str, Any], paths: list[str]
) -> None:
    response = client.post(FEEDBACK, json=body)
    issue = _assert_400(response)
    assert set(paths) <= set(issue["expression"])
    assert SECRET_LOOKING not in response.get_data(as_text=True)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{not json",
        b"[]",
        b'"feedback"',
        # Lone surrogates: Python's JSON parser lets them through, no store or log can hold them.
        b'{"feedback": [{"card": "\\ud800", "outcome": "overridden",'
        b' "outcomeTimestamp": "2026-01-01T00:00:00Z"}]}',
        b'{"feedback": [{"card": "a", "outcome": "overridden", "outcomeTimestamp":'
        b' "2026-01-01T00:00:00Z", "overrideReason": {"userComment": "\\udfff"}}]}',
    ],
)
def test_malformed_bodies_are_400(client: FlaskClient, raw: bytes) -> None:
    _assert_400(client.post(FEEDBACK, data=raw, content_type="application/json"))


def test_nothing_is_stored_from_a_partly_bad_body(client: FlaskClient, app: Flask) -> None:
    good = str(uuid.uuid4())
    body = {"feedback": [_overridden(good), {"card": "bad", "outcome": "maybe"}]}
    _assert_400(client.post(FEEDBACK, json=body))
    assert _rows(app, good) == []


def test_text_a_store_cannot_hold_is_400_not_a_retry_forever(
    store_url: str, runtime: Runtime, app_settings: Settings
) -> None:
    app = create_app(dataclasses.replace(app_settings, database_url=store_url), runtime=runtime)
    card = str(uuid.uuid4())
    body = {"feedback": [_overridden(card, {"userComment": "nul\x00inside"})]}
    response = app.test_client().post(FEEDBACK, json=body)
    if store_url.startswith("sqlite"):
        assert response.status_code == 200 and len(_rows(app, card)) == 1
    else:  # PostgreSQL text cannot hold NUL: sending it again could never succeed
        _assert_400(response)
        assert "Retry-After" not in response.headers
        assert _rows(app, card) == []
    _store(app).dispose()
