"""The store under real processes: `cds-service serve --workers 3` on SQLite and on PostgreSQL,
1,000 concurrent feedback posts, workers and writers killed mid-write, a store that is down.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from live_server import child_pids, free_port, serve, wait_healthy
from sqlalchemy import func, select, text

from cds_service.protocol.feedback import parse_feedback
from cds_service.store.database import parse_database_url
from cds_service.store.schema import (
    LATEST_VERSION,
    card_decisions,
    feedback,
    schema_migrations,
)
from cds_service.store.store import DecisionStore

PROJECT = Path(__file__).resolve().parents[1]
FIXTURE = PROJECT / "fhir_fixtures" / "opioid-tramadol-acute-low-back-pain" / "request.json"
SIGN = "back-pain-order-sign"
REASON = {
    "system": "http://example.org/fhir/back-pain-cds/CodeSystem/override-reason",
    "code": "nonopioid-therapy-failed",
}
SECRET = "process-test-secret-" + "y" * 32
PHI = ("Moreno", "1986-04-12")  # the fixture patient's name and birth date


def _post(port: int, path: str, body: Any, attempts: int = 1) -> tuple[int, dict[str, Any]]:
    """POST JSON; a connection or answer cut off (a killed worker) is retried like a client
    would. The entry may already be stored by then: the retry finds it already stored."""
    data = json.dumps(body).encode()
    for attempt in range(attempts):
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}{path}",
            data=data,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as error:
            return error.code, json.load(error)
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.2)
    raise AssertionError("unreachable")


class Service:
    def __init__(self, store_url: str, log_file: Path, workers: int = 3) -> None:
        self.port = free_port()
        self.log_file = log_file
        env = {
            "CDS_DATABASE_URL": store_url,
            "CDS_PATIENT_KEY_SECRET": SECRET,
            "CDS_EVALUATION_DATE": "2026-11-22",
        }
        self.process = serve(self.port, env, workers=workers, log_file=log_file)
        wait_healthy(self.port, self.process, seconds=60)

    def stop(self) -> str:
        """Graceful stop (SIGTERM, as a process manager would); the server's log."""
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=60)
        return self.log_file.read_text()


@pytest.fixture
def service(store_url: str, tmp_path: Path) -> Iterator[Service]:
    running = Service(store_url, tmp_path / "server.log")
    yield running
    running.stop()


def _issue_cards(port: int, calls: int) -> list[dict[str, Any]]:
    request = json.loads(FIXTURE.read_text())
    cards = []
    for _ in range(calls):
        request["hookInstance"] = str(uuid.uuid4())
        status, body = _post(port, f"/cds-services/{SIGN}", request)
        assert status == 200
        cards.extend(body["cards"])
    return cards


def _entry(card: dict[str, Any] | str, index: int) -> dict[str, Any]:
    """One distinct clinician response; the index makes its timestamp unique."""
    stamp = f"2026-11-22T{index // 3600:02d}:{index // 60 % 60:02d}:{index % 60:02d}Z"
    if isinstance(card, dict) and card.get("suggestions") and index % 2:
        return {
            "card": card["uuid"],
            "outcome": "accepted",
            "acceptedSuggestions": [{"id": card["suggestions"][0]["uuid"]}],
            "outcomeTimestamp": stamp,
        }
    return {
        "card": card["uuid"] if isinstance(card, dict) else card,
        "outcome": "overridden",
        "overrideReason": {"reason": REASON, "userComment": f"comment {index}"},
        "outcomeTimestamp": stamp,
    }


def _stored(store_url: str) -> tuple[Counter[str], dict[str, bool], set[str]]:
    """(entry hash → rows, card uuid → card_known, logged card uuids) as now in the store."""
    store = DecisionStore(parse_database_url(store_url), SECRET)
    try:
        with store.reading() as connection:
            hashes = Counter(connection.scalars(select(feedback.c.entry_hash)))
            known = dict(
                connection.execute(select(feedback.c.card_uuid, feedback.c.card_known)).all()
            )
            logged = set(connection.scalars(select(card_decisions.c.card_uuid)))
            if connection.dialect.name == "sqlite":
                assert connection.execute(text("PRAGMA integrity_check")).scalar() == "ok"
    finally:
        store.dispose()
    return hashes, known, logged


def test_a_thousand_concurrent_feedback_posts_are_each_stored_exactly_once(
    service: Service, store_url: str
) -> None:
    cards = _issue_cards(service.port, 20)  # 40 cards, logged by whichever worker served them
    unique = [
        _entry(cards[i % len(cards)] if i < 400 else str(uuid.uuid4()), i) for i in range(800)
    ]
    # 1,000 posts: every entry once, and 200 of them a second time right behind the first,
    # so that the two copies race each other through different workers.
    posts = []
    for index, entry in enumerate(unique):
        posts.append({"feedback": [entry]})
        if index % 4 == 0:
            posts.append({"feedback": [entry]})
    assert len(posts) == 1000

    with ThreadPoolExecutor(max_workers=24) as pool:
        answers = list(
            pool.map(
                lambda body: _post(service.port, f"/cds-services/{SIGN}/feedback", body), posts
            )
        )
    assert Counter(status for status, _ in answers) == {200: 1000}
    assert sum(body["stored"] for _, body in answers) == 800
    assert sum(body["alreadyStored"] for _, body in answers) == 200

    log = service.stop()  # workers flush their decision log on the way out
    assert log.count("Spawning worker-") >= 3
    hashes, known, logged = _stored(store_url)
    expected = {entry.fingerprint(SIGN) for entry in parse_feedback({"feedback": unique})}
    assert set(hashes) == expected and set(hashes.values()) == {1}
    assert logged == {card["uuid"] for card in cards}
    assert {uuid for uuid, flag in known.items() if flag} == logged & set(known)
    assert not any(marker in log for marker in PHI)


def test_a_worker_killed_mid_write_loses_and_doubles_nothing(
    service: Service, store_url: str
) -> None:
    entries = [_entry(str(uuid.uuid4()), i) for i in range(300)]
    batches = [{"feedback": entries[i : i + 3]} for i in range(0, 300, 3)]
    deadline = time.monotonic() + 60
    while len(workers := child_pids(service.process.pid)) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)  # wait_healthy saw one worker; the others may still be booting
    assert len(workers) == 3

    def post(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return _post(service.port, f"/cds-services/{SIGN}/feedback", body, attempts=10)

    with ThreadPoolExecutor(max_workers=12) as pool:
        pending = [pool.submit(post, body) for body in batches]
        time.sleep(0.3)  # let writes get under way in every worker
        victim = random.choice(workers)
        os.kill(victim, signal.SIGKILL)
        answers = [future.result() for future in pending]
    assert {status for status, _ in answers} == {200}
    log = service.stop()
    assert "Unexpected exit from worker-" in log and "Respawning worker-" in log  # replaced
    hashes, _, _ = _stored(store_url)
    # A post cut off by the kill was sent again: each entry is in the store exactly once.
    assert set(hashes) == {e.fingerprint(SIGN) for e in parse_feedback({"feedback": entries})}
    assert set(hashes.values()) == {1}


_WRITER = """
import sys
from datetime import UTC, datetime
from cds_service.protocol.feedback import FeedbackEntry, Outcome
from cds_service.store.database import parse_database_url
from cds_service.store.store import DecisionRecord, DecisionStore

url, first, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
store = DecisionStore(parse_database_url(url), "w" * 40)
store.ensure_ready()
batch = first
while True:
    now = datetime.now(UTC)
    cards = [f"b{batch}-c{i}" for i in range(size)]
    print(f"writing {batch}", flush=True)
    store.record_decisions([
        DecisionRecord(c, now, "svc", "order-sign", "hi", "opioid-avoidance", "warning", "v",
                       (), "p")
        for c in cards
    ])
    store.record_feedback(
        "svc", [FeedbackEntry(c, Outcome.OVERRIDDEN, (), None, now) for c in cards]
    )
    print(f"done {batch}", flush=True)
    batch += 1
"""


def test_a_writer_killed_mid_transaction_leaves_a_consistent_store(store_url: str) -> None:
    size, first = 300, 0
    for _round in range(3):
        writer = subprocess.Popen(
            [sys.executable, "-c", _WRITER, store_url, str(first), str(size)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert writer.stdout is not None
        done: list[int] = []
        killed_during = -1
        for line in writer.stdout:
            word, number = line.split()
            if word == "done":
                done.append(int(number))
            elif int(number) >= first + 3:  # a few batches in, kill it inside the next one
                time.sleep(random.uniform(0.001, 0.02))
                writer.send_signal(signal.SIGKILL)
                killed_during = int(number)
                break
        writer.wait(timeout=30)
        assert killed_during >= 0 and writer.returncode == -signal.SIGKILL

        store = DecisionStore(parse_database_url(store_url), "w" * 40)
        with store.reading() as connection:
            if connection.dialect.name == "sqlite":
                assert connection.execute(text("PRAGMA integrity_check")).scalar() == "ok"
            per_batch: dict[str, Counter[int]] = {}
            for table, column in (
                (card_decisions, card_decisions.c.card_uuid),
                (feedback, feedback.c.card_uuid),
            ):
                per_batch[table.name] = Counter(
                    int(card.split("-")[0][1:]) for card in connection.scalars(select(column))
                )
            total = connection.scalar(select(func.count()).select_from(feedback))
        store.dispose()
        for counts in per_batch.values():
            assert set(counts.values()) <= {size}  # every batch whole or absent
        for batch in done:  # everything confirmed before the kill is there
            assert per_batch["card_decisions"][batch] == size
            assert per_batch["feedback"][batch] == size
        assert total == size * len(per_batch["feedback"])
        first = killed_during + 1  # the next round writes new batches into the same store


# --- start-up -------------------------------------------------------------------------------


def test_cards_are_served_while_the_store_is_down(tmp_path: Path) -> None:
    url = f"postgresql://cds@/cds?host={tmp_path}&port=5999"  # nothing listens there
    running = Service(url, tmp_path / "server.log", workers=2)
    try:
        cards = _issue_cards(running.port, 2)
        assert len(cards) == 4
        status, body = _post(
            running.port, f"/cds-services/{SIGN}/feedback", {"feedback": [_entry(cards[0], 0)]}
        )
        assert status == 503 and body["resourceType"] == "OperationOutcome"
    finally:
        log = running.stop()
    events = [json.loads(line).get("event") for line in log.splitlines() if line.startswith("{")]
    assert "store_unavailable" in events
    assert "decision_log_write_failed" in events
    assert not any(marker in log for marker in PHI)


@pytest.mark.parametrize(
    ("place", "reason"),
    [
        ("missing-folder/cds-decisions.db", "does not exist"),
        ("a-folder", "cannot be opened and written"),
    ],
)
def test_a_sqlite_store_that_cannot_be_opened_stops_serve_with_one_line(
    tmp_path: Path, place: str, reason: str
) -> None:
    (tmp_path / "a-folder").mkdir()
    env = {"CDS_DATABASE_URL": f"sqlite:///{tmp_path / place}"}
    process = serve(free_port(), env)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 2
    [line] = stderr.strip().splitlines()
    assert line.startswith("cds-service: configuration error: CDS_DATABASE_URL")
    assert reason in line


def test_a_store_migrated_by_a_newer_release_stops_serve(store_url: str) -> None:
    store = DecisionStore(parse_database_url(store_url), SECRET)
    with store.transaction() as connection:
        connection.execute(
            schema_migrations.insert().values(
                version=LATEST_VERSION + 1, description="future", applied_at=datetime.now(UTC)
            )
        )
    store.dispose()
    process = serve(free_port(), {"CDS_DATABASE_URL": store_url})
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 2
    [line] = stderr.strip().splitlines()
    assert "knows up to" in line


def test_a_bad_database_url_stops_serve_with_one_line(tmp_path: Path) -> None:
    process = serve(free_port(), {"CDS_DATABASE_URL": "mysql://admin:hunter2@db.example/cds"})
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 2
    [line] = stderr.strip().splitlines()
    assert line.startswith("cds-service: configuration error: CDS_DATABASE_URL")
    assert "hunter2" not in line


def test_a_short_patient_key_secret_stops_serve(tmp_path: Path) -> None:
    env = {"CDS_DATABASE_URL": f"sqlite:///{tmp_path}/d.db", "CDS_PATIENT_KEY_SECRET": "short"}
    process = serve(free_port(), env)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 2
    assert "CDS_PATIENT_KEY_SECRET must be at least 32 characters" in stderr
    assert "short" not in stderr.replace("CDS_PATIENT_KEY_SECRET", "")


def test_cards_still_queued_at_shutdown_are_written(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cds-decisions.db'}"
    running = Service(url, tmp_path / "server.log", workers=1)
    cards = _issue_cards(running.port, 5)
    running.stop()  # at once: the last cards are still in the worker's queue
    _, _, logged = _stored(url)
    assert logged == {card["uuid"] for card in cards}
