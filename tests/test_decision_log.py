"""The decision log: off the request path, never failing a response, retrying a down store."""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import SETTINGS
from flask import Flask
from sqlalchemy import func, select

from cds_service.app import create_app
from cds_service.runtime import Runtime
from cds_service.store.database import parse_database_url
from cds_service.store.decision_log import DecisionLog, IssuedCards
from cds_service.store.schema import card_decisions
from cds_service.store.store import DecisionStore
from cds_service.vocabulary import CardRecord

PATIENT_ID = "Patient-Moreno-4711"
SIGN = "/cds-services/back-pain-order-sign"


def _card(topic: str = "opioid-avoidance", **extra: Any) -> dict[str, Any]:
    return {
        "uuid": str(uuid.uuid4()),
        "indicator": "warning",
        "source": {"label": "x", "topic": {"code": topic}},
        "suggestions": [{"uuid": "s-1", "label": "x"}, {"label": "no uuid"}],
        **extra,
    }


def _record(log: DecisionLog, cards: list[dict[str, Any]]) -> None:
    log.record(_issued(cards))


def _issued(cards: list[dict[str, Any]]) -> IssuedCards:
    return IssuedCards(
        service_id="back-pain-order-sign",
        hook="order-sign",
        hook_instance=str(uuid.uuid4()),
        patient_id=PATIENT_ID,
        cards=[CardRecord.from_json(card) for card in cards],
        content_version="0.1.0+test",
    )


def _count(store: DecisionStore) -> int:
    with store.reading() as connection:
        return int(connection.scalar(select(func.count()).select_from(card_decisions)))


def _fast(url: str) -> tuple[DecisionStore, DecisionLog]:
    store = DecisionStore(parse_database_url(url), "s" * 40, cooldown_seconds=0.05)
    return store, DecisionLog(store, first_retry_seconds=0.05, max_retry_seconds=0.2)


def test_records_keep_ids_topic_and_suggestions_only() -> None:
    cards = [_card(), _card("exercise-therapy"), {"summary": "no uuid, no topic"}]
    records = _issued(cards).records(datetime.now(UTC))
    assert [r.topic for r in records] == ["opioid-avoidance", "exercise-therapy"]
    assert records[0].suggestion_uuids == ("s-1",)
    assert PATIENT_ID not in repr(records) + repr(_issued(cards))  # not even by repr


def test_close_writes_what_is_queued(tmp_path: Path) -> None:
    store, log = _fast(f"sqlite:///{tmp_path / 'd.db'}")
    _record(log, [_card(), _card()])
    _record(log, [_card()])
    log.close()
    assert _count(store) == 3
    store.dispose()


def test_a_down_store_is_retried_until_it_is_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "not-yet"  # SQLite cannot create a file in a missing folder
    store, log = _fast(f"sqlite:///{folder / 'd.db'}")
    with caplog.at_level(logging.INFO, logger="cds_service"):
        _record(log, [_card(), _card()])
        assert not log.flush(0.5)  # still pending: the store is down
        folder.mkdir()
        assert log.flush(10)
    assert _count(store) == 2
    events = [getattr(r, "event", None) for r in caplog.records]
    assert "decision_log_write_failed" in events and "decision_log_recovered" in events
    assert PATIENT_ID not in caplog.text
    log.close()
    store.dispose()


def test_a_full_queue_drops_and_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = DecisionStore(parse_database_url(f"sqlite:///{tmp_path / 'no' / 'd.db'}"), "s" * 40)
    log = DecisionLog(store, queue_size=2, first_retry_seconds=0.05, max_retry_seconds=0.1)
    with caplog.at_level(logging.ERROR, logger="cds_service"):
        _record(log, [_card() for _ in range(10)])  # never blocks, never raises
    assert any(getattr(r, "event", None) == "decision_log_dropped" for r in caplog.records)
    with caplog.at_level(logging.ERROR, logger="cds_service"):
        log.close(timeout=0.3)  # gives up on the down store instead of hanging
    assert any(getattr(r, "event", None) == "decision_log_lost" for r in caplog.records)


# --- through HTTP ---------------------------------------------------------------------------


@pytest.fixture
def down_app(runtime: Runtime, tmp_path: Path) -> Iterator[tuple[Flask, Path]]:
    folder = tmp_path / "store-folder"
    url = f"sqlite:///{folder / 'cds-decisions.db'}"
    application = create_app(dataclasses.replace(SETTINGS, database_url=url), runtime=runtime)
    store, log = _fast(url)
    application.extensions["cds_store"], application.extensions["cds_decision_log"] = store, log
    yield application, folder
    log.close(timeout=1)
    store.dispose()


def test_cards_go_out_while_the_store_is_down_and_are_logged_when_it_is_back(
    down_app: tuple[Flask, Path], fixture_request: Any, caplog: pytest.LogCaptureFixture
) -> None:
    app, folder = down_app
    client = app.test_client()
    with caplog.at_level(logging.INFO, logger="cds_service"):
        response = client.post(SIGN, json=fixture_request("opioid-tramadol-acute-low-back-pain"))
        assert response.status_code == 200
        cards = response.get_json()["cards"]
        assert len(cards) == 2

        feedback = {
            "feedback": [
                {
                    "card": cards[0]["uuid"],
                    "outcome": "overridden",
                    "outcomeTimestamp": "2026-11-22T10:00:00Z",
                }
            ]
        }
        refused = client.post(f"{SIGN}/feedback", json=feedback)
        assert refused.status_code == 503
        assert refused.headers["Retry-After"]
        assert refused.get_json()["issue"][0]["code"] == "transient"

        folder.mkdir()  # the store comes back
        assert app.extensions["cds_decision_log"].flush(10)
        stored = client.post(f"{SIGN}/feedback", json=feedback)
        assert stored.status_code == 200
        assert stored.get_json()["unknownCards"] == 0  # the cards were logged after all
    assert _count(app.extensions["cds_store"]) == 2
    assert "Moreno" not in caplog.text and PATIENT_ID not in caplog.text


@pytest.mark.parametrize(
    "unstorable",
    [
        {"hook_instance": "x" * 300},  # longer than its column (PostgreSQL refuses it)
        {"hook_instance": "nul\x00inside"},  # PostgreSQL text cannot hold NUL
        {"hook_instance": "\ud800"},  # no UTF-8 text can hold a lone surrogate
        {"patient_id": "\ud800"},  # nor can the patient key's HMAC input
    ],
    ids=["too-long", "nul", "surrogate", "surrogate-patient"],
)
def test_a_card_the_store_cannot_hold_is_dropped_and_the_others_are_written(
    store_url: str, unstorable: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    store, log = _fast(store_url)
    store.ensure_ready()
    refused_by_this_store = "\ud800" in "".join(unstorable.values()) or not store_url.startswith(
        "sqlite"
    )
    with caplog.at_level(logging.INFO, logger="cds_service"):
        _record(log, [_card(), _card()])
        log.record(dataclasses.replace(_issued([_card()]), **unstorable))
        _record(log, [_card()])
        assert log.flush(10)  # the batch is not retried forever
        _record(log, [_card()])  # and later cards still reach the store
        assert log.flush(10)
    assert _count(store) == (4 if refused_by_this_store else 5)
    refusals = [r for r in caplog.records if getattr(r, "event", None) == "decision_log_refused"]
    assert len(refusals) == (1 if refused_by_this_store else 0)
    assert "\ud800" not in caplog.text and PATIENT_ID not in caplog.text
    log.close()
    store.dispose()
