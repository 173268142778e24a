"""No card issued without being logged, or counted: cards the store cannot take at a stop go to
the spool and reach the store at the next start; what the spool cannot keep (bound, no key),
what a full queue dropped and what a killed worker held are counted in the store and shown by
`cds-service report`."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import load_fixture
from live_server import child_pids, free_port, issue_cards, serve, wait_healthy
from sqlalchemy import func, select

from cds_service.cli import main as cli_main
from cds_service.config import ConfigError, Settings
from cds_service.protocol.feedback import parse_feedback
from cds_service.store.database import parse_database_url
from cds_service.store.decision_log import DecisionLog, IssuedCards
from cds_service.store.schema import card_decisions, decision_log_losses, feedback
from cds_service.store.spool import LossReason, Spool, default_spool_folder, import_spool
from cds_service.store.store import DecisionStore
from cds_service.vocabulary import CardRecord

PATIENT_ID = "Patient-Moreno-4711"
SECRET = "spool-test-secret-" + "s" * 32


def _issued(cards: int) -> IssuedCards:
    return IssuedCards(
        service_id="back-pain-order-sign",
        hook="order-sign",
        hook_instance=str(uuid.uuid4()),
        patient_id=PATIENT_ID,
        cards=[
            CardRecord("opioid-avoidance", "warning", str(uuid.uuid4()), (), {})
            for _ in range(cards)
        ],
        content_version="0.1.0+test",
    )


class Setup:
    """A SQLite store in a folder that does not exist yet (the store is down until made)."""

    def __init__(self, tmp_path: Path, secret: str | None = SECRET, max_bytes: int = 1 << 20):
        self.folder = tmp_path / "store"
        self.url = parse_database_url(f"sqlite:///{self.folder / 'cds-decisions.db'}")
        self.spool = Spool(tmp_path / "spool", self.url, max_bytes)
        self.secret = secret

    def log(self, **options: Any) -> DecisionLog:
        store = DecisionStore(self.url, self.secret, cooldown_seconds=0.01)
        return DecisionLog(
            store, first_retry_seconds=0.01, max_retry_seconds=0.05, spool=self.spool, **options
        )

    def bring_up(self) -> DecisionStore:
        self.folder.mkdir(exist_ok=True)
        store = DecisionStore(self.url, self.secret or SECRET)
        store.ensure_ready()
        return store

    def spooled_text(self) -> str:
        return "".join(p.read_text() for p in self.spool.folder.glob("decisions-*"))


def _logged(store: DecisionStore) -> set[str]:
    with store.reading() as connection:
        return set(connection.scalars(select(card_decisions.c.card_uuid)))


def _losses(store: DecisionStore) -> dict[str, int]:
    with store.reading() as connection:
        rows = connection.execute(
            select(decision_log_losses.c.reason, func.sum(decision_log_losses.c.cards)).group_by(
                decision_log_losses.c.reason
            )
        )
        return {reason: int(cards) for reason, cards in rows}


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    yield Setup(tmp_path)


def test_cards_queued_at_a_stop_with_the_store_down_reach_it_at_the_next_start(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    log = setup.log()
    issued = [_issued(3) for _ in range(300)]  # 900 cards, as in the issue's outage
    with caplog.at_level(logging.INFO, logger="cds_service"):
        for response in issued:
            log.record(response)
        log.close(timeout=0.5)
    assert "decision_log_spooled" in [getattr(r, "event", None) for r in caplog.records]
    text = setup.spooled_text()
    assert text.count('{"card"') == 900
    assert PATIENT_ID not in text  # only the keyed HMAC of the patient is spooled

    store = setup.bring_up()
    outcome = import_spool(setup.spool, store)
    assert outcome is not None and (outcome.files, outcome.cards, outcome.lost) == (1, 900, 0)
    assert _logged(store) == {card.uuid for r in issued for card in r.cards}
    assert not list(setup.spool.folder.glob("decisions-*"))
    assert _losses(store) == {}
    store.dispose()


def test_spool_files_of_the_previous_release_are_read_as_shown_cards(setup: Setup) -> None:
    """Version 2 spooled 11 values a card (no disposition): all of them were shown."""
    log = setup.log()
    log.record(IssuedCards(**{**_issued(2).__dict__, "silent": _issued(1).cards}))
    log.close(timeout=0.2)  # the store is down: the cards are spooled
    for path in setup.spool.folder.glob("decisions-*"):
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        assert [len(line["card"]) for line in lines] == [12, 12, 12]
        path.write_text("".join(json.dumps({"card": line["card"][:11]}) + "\n" for line in lines))
    store = setup.bring_up()
    outcome = import_spool(setup.spool, store)
    assert outcome is not None and (outcome.cards, outcome.lost) == (3, 0)
    with store.reading() as connection:
        found = list(connection.scalars(select(card_decisions.c.disposition)))
    assert found == ["shown", "shown", "shown"]
    store.dispose()


def test_silent_and_snoozed_cards_keep_their_disposition_through_the_spool(setup: Setup) -> None:
    log = setup.log()
    issued = _issued(1)
    log.record(
        IssuedCards(**{**issued.__dict__, "silent": _issued(2).cards, "snoozed": _issued(1).cards})
    )
    log.close(timeout=0.2)  # the store is down: everything is spooled
    store = setup.bring_up()
    import_spool(setup.spool, store)
    with store.reading() as connection:
        rows = connection.execute(
            select(card_decisions.c.disposition, func.count()).group_by(
                card_decisions.c.disposition
            )
        )
        assert dict(rows.all()) == {"shown": 1, "silent": 2, "snoozed": 1}
    store.dispose()


def test_feedback_stored_before_the_spool_is_written_is_linked_to_its_card(setup: Setup) -> None:
    log = setup.log()
    response = _issued(1)
    log.record(response)
    log.close(timeout=0.3)
    store = setup.bring_up()
    card = response.cards[0].uuid
    entries = parse_feedback(
        {
            "feedback": [
                {"card": card, "outcome": "overridden", "outcomeTimestamp": "2026-11-22T10:00:00Z"}
            ]
        }
    )
    assert store.record_feedback("back-pain-order-sign", entries).unknown_cards == 1
    import_spool(setup.spool, store)
    with store.reading() as connection:
        assert connection.scalar(select(feedback.c.card_known)) is True
    store.dispose()


def test_the_spool_is_bounded_and_what_does_not_fit_is_counted(tmp_path: Path) -> None:
    setup = Setup(tmp_path, max_bytes=2_000)  # room for a few cards only
    log = setup.log()
    for _ in range(50):
        log.record(_issued(2))
    log.close(timeout=0.3)
    spooled = setup.spooled_text().count('{"card"')
    assert 0 < spooled < 100
    store = setup.bring_up()
    import_spool(setup.spool, store)
    assert len(_logged(store)) == spooled
    assert _losses(store) == {LossReason.SPOOL_FULL: 100 - spooled}
    store.dispose()


def test_cards_dropped_from_a_full_queue_are_counted_in_the_store(setup: Setup) -> None:
    log = setup.log(queue_size=4)
    for _ in range(5):
        log.record(_issued(2))  # 4 queued, 6 dropped
    log.close(timeout=0.3)
    store = setup.bring_up()
    import_spool(setup.spool, store)
    assert len(_logged(store)) == 4
    assert _losses(store) == {LossReason.QUEUE_FULL: 6}
    store.dispose()


def test_without_a_patient_key_the_cards_are_counted_not_spooled(tmp_path: Path) -> None:
    setup = Setup(tmp_path, secret=None)  # a generated key lives in the store, never reached
    log = setup.log()
    log.record(_issued(3))
    log.close(timeout=0.3)
    assert '{"card"' not in setup.spooled_text()
    store = setup.bring_up()
    import_spool(setup.spool, store)
    assert _logged(store) == set()
    assert _losses(store) == {LossReason.NOT_SPOOLED: 3}
    store.dispose()


def test_a_spool_file_imported_twice_counts_once(setup: Setup) -> None:
    log = setup.log(queue_size=1)
    log.record(_issued(3))
    log.close(timeout=0.3)
    [path] = setup.spool.folder.glob("decisions-*")
    copy = path.read_bytes()
    store = setup.bring_up()
    import_spool(setup.spool, store)
    path.write_bytes(copy)  # as if a crash had come between the commit and the removal
    import_spool(setup.spool, store)
    assert len(_logged(store)) == 1
    assert _losses(store) == {LossReason.QUEUE_FULL: 2}
    store.dispose()


def test_spool_files_of_another_store_are_left_alone(setup: Setup, tmp_path: Path) -> None:
    log = setup.log()
    log.record(_issued(2))
    log.close(timeout=0.3)
    other_url = parse_database_url(f"sqlite:///{tmp_path / 'other.db'}")
    other = DecisionStore(other_url, SECRET)
    import_spool(Spool(setup.spool.folder, other_url), other)
    assert _logged(other) == set()
    assert list(setup.spool.folder.glob("decisions-*"))
    other.dispose()


_KILLED_WORKER = """
import os, signal, sys, uuid
from cds_service.store.database import parse_database_url
from cds_service.store.decision_log import DecisionLog, IssuedCards
from cds_service.store.spool import Spool
from cds_service.store.store import DecisionStore
from cds_service.vocabulary import CardRecord

url = parse_database_url(sys.argv[1])
log = DecisionLog(DecisionStore(url, "k" * 40), spool=Spool(sys.argv[2], url))
for _ in range(4):
    log.record(IssuedCards("svc", "order-sign", "hi", "p", [
        CardRecord("opioid-avoidance", "", str(uuid.uuid4()), (), {}) for _ in range(3)
    ]))
os.kill(os.getpid(), signal.SIGKILL)  # before the writer's first batch (it waits 0.25 s)
"""


def test_cards_queued_in_a_killed_worker_are_counted(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    store = setup.bring_up()
    url = setup.url.render_as_string(hide_password=False)
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_WORKER, url, str(setup.spool.folder)], timeout=60
    )
    assert killed.returncode == -9
    assert len(list(setup.spool.folder.glob("pending-*"))) == 1
    with caplog.at_level(logging.ERROR, logger="cds_service"):
        outcome = import_spool(setup.spool, store)
    assert outcome is not None and outcome.lost == 12
    assert _losses(store) == {LossReason.WORKER_ENDED: 12}
    assert "worker ended" in caplog.text
    assert not list(setup.spool.folder.glob("pending-*"))
    store.dispose()


def test_a_running_writer_keeps_its_ledger_locked_and_removes_it_at_a_clean_stop(
    setup: Setup,
) -> None:
    store = setup.bring_up()
    log = DecisionLog(store, spool=setup.spool)
    log.record(_issued(2))
    assert log.flush(10)
    [ledger] = setup.spool.folder.glob("pending-*")
    assert import_spool(setup.spool, store) is not None
    assert ledger.exists()  # locked by its live writer: not counted
    log.close()
    assert not ledger.exists()
    assert _losses(store) == {}
    store.dispose()


def test_the_report_counts_cards_not_logged(
    setup: Setup, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    log = setup.log(queue_size=1)
    log.record(_issued(3))
    log.close(timeout=0.3)
    store = setup.bring_up()
    import_spool(setup.spool, store)
    store.dispose()
    monkeypatch.setenv("CDS_DATABASE_URL", setup.url.render_as_string(hide_password=False))
    monkeypatch.setenv("CDS_PATIENT_KEY_SECRET", SECRET)
    assert cli_main(["report"]) == 0
    table = capsys.readouterr().out
    assert "Cards issued but not logged (not counted above): 2" in table
    assert cli_main(["report", "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["cardsNotLogged"] == {"total": 2, "byReason": {"queue_full": 2}}


def test_the_default_spool_is_beside_a_sqlite_store() -> None:
    url = parse_database_url("sqlite:////var/lib/cds/cds-decisions.db")
    assert default_spool_folder(url) == "/var/lib/cds/cds-decisions.db-spool"


def test_a_served_worker_killed_with_cards_queued_has_them_counted(tmp_path: Path) -> None:
    """SIGKILL a worker right after it answered: its queued cards cannot be written, but the
    worker that replaces it counts them in the store and the log, so issued = logged + lost."""
    store_url = f"sqlite:///{tmp_path / 'cds-decisions.db'}"
    env = {
        "CDS_DATABASE_URL": store_url,
        "CDS_PATIENT_KEY_SECRET": SECRET,
        "CDS_EVALUATION_DATE": "2026-11-22",
    }
    port, log_file = free_port(), tmp_path / "server.log"
    process = serve(port, env, workers=1, log_file=log_file)
    request = load_fixture("opioid-tramadol-acute-low-back-pain")[1]

    def call() -> list[str]:
        return issue_cards(port, request, 1)

    try:
        wait_healthy(port, process, seconds=60)
        call()  # the worker's writer is running and has written once
        time.sleep(1)
        [worker] = child_pids(process.pid)
        lost = call()  # queued; the writer waits 0.25 s to gather a batch
        os.kill(worker, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and child_pids(process.pid) in ([], [worker]):
            time.sleep(0.1)
        wait_healthy(port, process)
        later = call()  # the new worker's first write also counts the killed worker's cards
        time.sleep(1)
    finally:
        process.terminate()
        process.wait(timeout=60)
    log = log_file.read_text()
    assert "worker ended" in log
    store = DecisionStore(parse_database_url(store_url), SECRET)
    assert set(later) <= _logged(store) and not set(lost) & _logged(store)
    assert _losses(store) == {LossReason.WORKER_ENDED: len(lost)}
    store.dispose()


def test_the_spool_folder_setting_must_name_a_folder(tmp_path: Path) -> None:
    # Checked at start: a spool that cannot be written is found out only at a stop with the
    # store down, the one moment it is there for.
    new_folder = tmp_path / "spool"
    assert Settings.from_env({"CDS_SPOOL_DIR": str(new_folder)}).spool_dir == str(new_folder)
    (tmp_path / "a-file").write_text("")
    for bad in (tmp_path / "a-file", tmp_path / "no" / "spool"):
        with pytest.raises(ConfigError, match="CDS_SPOOL_DIR"):
            Settings.from_env({"CDS_SPOOL_DIR": str(bad)})
