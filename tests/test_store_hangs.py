"""A hung store (the suite's own PostgreSQL frozen with SIGSTOP): every store operation is
bounded on the client side, feedback answers 503 with Retry-After within 3 s, hook calls
never wait on the store, no worker is killed, and the cards reach the store once it is back."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import load_fixture
from flask import Flask
from flask.testing import FlaskClient
from live_server import free_port, issue_cards, post_json, serve, wait_healthy
from postgres_server import PostgresServer
from sqlalchemy import select, text

from cds_service.app import create_app
from cds_service.config import Settings
from cds_service.protocol.feedback import FeedbackEntry, Outcome
from cds_service.runtime import Runtime
from cds_service.store import store as store_module
from cds_service.store.database import StoreUnavailable, parse_database_url
from cds_service.store.schema import card_decisions
from cds_service.store.store import DecisionStore

SIGN = "/cds-services/back-pain-order-sign"
FIXTURE = "opioid-tramadol-acute-low-back-pain"
SECRET = "hung-store-test-secret-" + "h" * 32
FEEDBACK_LIMIT_SECONDS = 3.0


def _entry(card: str) -> FeedbackEntry:
    return FeedbackEntry(card, Outcome.OVERRIDDEN, (), None, datetime.now(UTC))


def _feedback(card: str) -> dict[str, Any]:
    return {
        "feedback": [
            {"card": card, "outcome": "overridden", "outcomeTimestamp": "2026-11-22T10:00:00Z"}
        ]
    }


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    return postgres_server.create_database()


def _timed(call: Any) -> tuple[float, Any]:
    started = time.monotonic()
    try:
        result = call()
    except Exception as error:
        result = error
    return time.monotonic() - started, result


def test_every_store_operation_gives_up_on_a_frozen_server_within_the_limit(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    warm = DecisionStore(parse_database_url(postgres_url), SECRET)
    warm.record_feedback("svc", [_entry("before")])  # a pooled connection to reuse
    cold = DecisionStore(parse_database_url(postgres_url), SECRET)  # must connect
    try:
        with postgres_server.frozen():
            for store in (warm, cold):
                elapsed, outcome = _timed(
                    lambda s=store: s.record_feedback("svc", [_entry("frozen")])
                )
                assert isinstance(outcome, StoreUnavailable)
                assert elapsed < FEEDBACK_LIMIT_SECONDS
                # Within the cool-down that follows, a caller is answered at once.
                elapsed, outcome = _timed(
                    lambda s=store: s.record_feedback("svc", [_entry("again")])
                )
                assert isinstance(outcome, StoreUnavailable) and elapsed < 0.1
        time.sleep(2.1)  # past the cool-down, the store is used again
        assert warm.record_feedback("svc", [_entry("after")]).stored == 1
    finally:
        warm.dispose()
        cold.dispose()


@pytest.fixture
def postgres_app(runtime: Runtime, postgres_url: str) -> Iterator[Flask]:
    settings = dataclasses.replace(Settings(), database_url=postgres_url, patient_key_secret=SECRET)
    application = create_app(settings, runtime=runtime)
    yield application
    application.extensions["cds_decision_log"].close()
    application.extensions["cds_store"].dispose()



def test_a_read_over_its_callers_short_limit_does_not_close_the_store(tmp_path: Path) -> None:
    # The snooze look-up gives a hook call 0.25 s; a query slower than that is slow for that
    # call, and must not close the store to feedback and the decision log for the cool-down.
    store = DecisionStore(parse_database_url(f"sqlite:///{tmp_path / 'd.db'}"), "s" * 40)
    store.ensure_ready()
    slow = text(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500000000)"
        " SELECT count(*) FROM n"
    )
    with pytest.raises(StoreUnavailable), store.reading(seconds=0.25) as connection:
        connection.execute(slow).scalar()
    with store.transaction() as connection:
        assert connection.execute(text("SELECT 1")).scalar() == 1
    store.dispose()

def test_feedback_answers_503_in_time_and_hook_calls_go_on_while_the_store_hangs(
    postgres_server: PostgresServer, postgres_app: Flask, fixture_request: Any
) -> None:
    client: FlaskClient = postgres_app.test_client()
    request = fixture_request("opioid-tramadol-acute-low-back-pain")
    first = client.post(SIGN, json=request).get_json()["cards"]
    decision_log = postgres_app.extensions["cds_decision_log"]
    assert decision_log.flush(10)
    issued = [card["uuid"] for card in first]
    with postgres_server.frozen():
        elapsed, response = _timed(
            lambda: client.post(f"{SIGN}/feedback", json=_feedback(issued[0]))
        )
        assert response.status_code == 503
        assert response.headers["Retry-After"]
        assert response.get_json()["resourceType"] == "OperationOutcome"
        assert elapsed < FEEDBACK_LIMIT_SECONDS
        for _ in range(5):
            request["hookInstance"] = str(uuid.uuid4())
            elapsed, response = _timed(lambda: client.post(SIGN, json=request))
            assert response.status_code == 200 and elapsed < 1.0
            issued += [card["uuid"] for card in response.get_json()["cards"]]
        time.sleep(1.0)  # the decision-log writer tries the frozen store meanwhile
    # Once the store is back, the writer's retries store every card.
    assert decision_log.flush(30)
    with postgres_app.extensions["cds_store"].reading() as connection:
        logged = set(connection.scalars(select(card_decisions.c.card_uuid)))
    assert set(issued) <= logged


def test_a_served_instance_keeps_answering_and_loses_no_worker_while_the_store_hangs(
    postgres_server: PostgresServer, postgres_url: str, tmp_path: Path
) -> None:
    """Two workers, a 4 s worker timeout, the store frozen for 9 s under a steady load of
    feedback posts and hook calls: before client-side limits, the feedback posts held both
    workers, hook calls waited and gunicorn killed the workers (losing their queued cards)."""
    port = free_port()
    log_file = tmp_path / "server.log"
    env = {
        "CDS_DATABASE_URL": postgres_url,
        "CDS_PATIENT_KEY_SECRET": SECRET,
        "CDS_EVALUATION_DATE": "2026-11-22",
        "CDS_SPOOL_DIR": str(tmp_path / "spool"),
    }
    process = serve(port, env, workers=2, log_file=log_file, extra_args=["--timeout", "4"])
    try:
        wait_healthy(port, process, seconds=60)
        request = load_fixture(FIXTURE)[1]
        issued: list[str] = []
        timings: dict[str, list[tuple[int, float]]] = {"feedback": [], "hook": []}
        lock = threading.Lock()

        def post(path: str, body: dict[str, Any]) -> tuple[int, float, Any]:
            started = time.monotonic()
            status, payload = post_json(port, path, body)
            return status, time.monotonic() - started, payload

        def feedback_load(stop: threading.Event) -> None:
            while not stop.is_set():
                status, seconds, _ = post(f"{SIGN}/feedback", _feedback(str(uuid.uuid4())))
                with lock:
                    timings["feedback"].append((status, seconds))

        def hook_load(stop: threading.Event) -> None:
            body = json.loads(json.dumps(request))
            while not stop.is_set():
                body["hookInstance"] = str(uuid.uuid4())
                status, seconds, payload = post(SIGN, body)
                with lock:
                    timings["hook"].append((status, seconds))
                    issued.extend(card["uuid"] for card in payload.get("cards", ()))
                time.sleep(0.05)

        stop = threading.Event()
        with postgres_server.frozen(), ThreadPoolExecutor(max_workers=4) as pool:
            loads = [pool.submit(feedback_load, stop) for _ in range(2)]
            loads += [pool.submit(hook_load, stop) for _ in range(2)]
            time.sleep(9)
            stop.set()
            for load in loads:
                load.result()
        hooks, feedbacks = timings["hook"], timings["feedback"]
        assert hooks and feedbacks
        assert {status for status, _ in hooks} == {200}
        assert {status for status, _ in feedbacks} == {503}
        assert max(seconds for _, seconds in feedbacks) < FEEDBACK_LIMIT_SECONDS
        # A hook call may queue behind one feedback post on a worker, never longer.
        assert max(seconds for _, seconds in hooks) < FEEDBACK_LIMIT_SECONDS + 1
        time.sleep(1)  # the store is back: let the writers catch up
    finally:
        process.terminate()
        process.wait(timeout=60)
    log = log_file.read_text()
    # No worker was killed (the server's words for it, were it gunicorn or granian).
    for killed in ("WORKER TIMEOUT", "was sent SIGKILL", "refused to gracefully stop"):
        assert killed not in log
    assert "Unexpected exit from worker" not in log
    assert set(issued) <= _logged(postgres_url)  # no card issued during the hang was lost
    assert not list((tmp_path / "spool").glob("decisions-*"))  # nor left in the spool


def _logged(url: str) -> set[str]:
    store = DecisionStore(parse_database_url(url), SECRET)
    try:
        with store.reading() as connection:
            return set(connection.scalars(select(card_decisions.c.card_uuid)))
    finally:
        store.dispose()


def test_cards_queued_when_a_stop_meets_a_hung_store_reach_it_at_the_next_start(
    postgres_server: PostgresServer, postgres_url: str, tmp_path: Path
) -> None:
    """A stop while the store hangs used to lose every queued card (900 of 900); now they are
    spooled, and the next start writes them to the store."""
    env = {
        "CDS_DATABASE_URL": postgres_url,
        "CDS_PATIENT_KEY_SECRET": SECRET,
        "CDS_EVALUATION_DATE": "2026-11-22",
        "CDS_SPOOL_DIR": str(tmp_path / "spool"),
    }
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    port = free_port()
    process = serve(port, env, workers=2, log_file=first_log)
    try:
        wait_healthy(port, process, seconds=60)
        with postgres_server.frozen():
            # 300 cards, none of which can be written now
            issued = issue_cards(port, load_fixture(FIXTURE)[1], 150)
            started = time.monotonic()
            process.terminate()
            process.wait(timeout=60)
            stop_seconds = time.monotonic() - started
    finally:
        if process.poll() is None:
            process.kill()
    assert stop_seconds < 10  # well within the stop timeout: no worker was killed
    log = first_log.read_text()
    assert "decision_log_spooled" in log and "decision_log_lost" not in log
    assert list((tmp_path / "spool").glob("decisions-*"))

    port = free_port()
    process = serve(port, env, workers=1, log_file=second_log)
    try:
        wait_healthy(port, process, seconds=60)  # the spool is written before the workers start
    finally:
        process.terminate()
        process.wait(timeout=60)
    assert "spool_imported" in second_log.read_text()
    assert not list((tmp_path / "spool").glob("decisions-*"))
    assert set(issued) <= _logged(postgres_url)


def test_the_dashboard_gives_up_on_a_frozen_store_too(
    postgres_server: PostgresServer,
    postgres_app: Flask,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Reports read by the service itself are bounded too (10 s; 1 s here), so a dashboard
    page never holds a worker on a hung store."""
    monkeypatch.setattr(store_module, "READ_SECONDS", 1.0)
    client: FlaskClient = postgres_app.test_client()
    assert client.get("/dashboard/report.json").status_code == 200  # a pooled connection
    with postgres_server.frozen():
        elapsed, response = _timed(lambda: client.get("/dashboard/report.json"))
    assert response.status_code == 503 and response.headers["Retry-After"]
    assert elapsed < 2.0
