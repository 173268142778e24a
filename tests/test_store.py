"""The decision store on SQLite and on a real PostgreSQL server: schema, decision log,
feedback, `cds-service report` and `cds-service purge`.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import hmac
import io
import json
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from conftest import SETTINGS
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Column, MetaData, Table, create_engine, func, inspect, select, text

from cds_service.app import create_app
from cds_service.cli import main
from cds_service.protocol.feedback import FeedbackEntry, Outcome, OverrideReason
from cds_service.runtime import Runtime
from cds_service.store import store as store_module
from cds_service.store.database import StoreUnavailable, parse_database_url
from cds_service.store.schema import (
    LATEST_VERSION,
    card_decisions,
    decision_log_losses,
    feedback,
    schema_migrations,
    store_meta,
    used_tokens,
)
from cds_service.store.store import DecisionRecord, DecisionStore

SECRET = "test-secret-" + "x" * 32
REASON_SYSTEM = "http://example.org/fhir/back-pain-cds/CodeSystem/override-reason"
PATIENT_ID = "Patient-Moreno-4711"


def _store(url: str, secret: str | None = SECRET) -> DecisionStore:
    return DecisionStore(parse_database_url(url), secret, cooldown_seconds=0)


@pytest.fixture
def store(store_url: str) -> Iterator[DecisionStore]:
    opened = _store(store_url)
    yield opened
    opened.dispose()


def _record(
    card_uuid: str,
    *,
    topic: str = "opioid-avoidance",
    issued_at: datetime | None = None,
    patient_id: str = PATIENT_ID,
) -> DecisionRecord:
    return DecisionRecord(
        card_uuid=card_uuid,
        issued_at=issued_at or datetime.now(UTC),
        service_id="back-pain-order-sign",
        hook="order-sign",
        hook_instance=str(uuid.uuid4()),
        topic=topic,
        indicator="warning",
        content_version="0.1.0+test",
        suggestion_uuids=("s-1", "s-2"),
        patient_id=patient_id,
    )


def _overridden(card_uuid: str, code: str | None = None, minute: int = 0) -> FeedbackEntry:
    reason = OverrideReason(REASON_SYSTEM, code, None, None) if code else None
    return FeedbackEntry(
        card_uuid, Outcome.OVERRIDDEN, (), reason, datetime(2026, 11, 22, 10, minute, tzinfo=UTC)
    )


def _accepted(card_uuid: str, *suggestions: str, minute: int = 0) -> FeedbackEntry:
    return FeedbackEntry(
        card_uuid,
        Outcome.ACCEPTED,
        suggestions,
        None,
        datetime(2026, 11, 22, 10, minute, tzinfo=UTC),
    )


# --- schema ---------------------------------------------------------------------------------


def test_schema_is_created_once_and_versioned(store_url: str) -> None:
    first, second = _store(store_url), _store(store_url)
    first.ensure_ready()
    second.ensure_ready()  # a second instance finds the schema in place
    with first.reading() as connection:
        versions = list(connection.scalars(select(schema_migrations.c.version)))
        assert versions == list(range(1, LATEST_VERSION + 1))
        assert connection.scalar(select(func.count()).select_from(card_decisions)) == 0
    first.dispose()
    second.dispose()


def test_a_forked_worker_uses_the_store_prepared_before_the_fork(
    store: DecisionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The server prepares the store before its workers fork; a worker's first hook call (the
    # snooze look-up has 0.25 s) must not run the migration's write transaction again.
    store.ensure_ready()
    store.dispose()

    def migrate_again(connection: Any) -> list[int]:
        raise AssertionError("migrated again after the fork")

    monkeypatch.setattr(store_module, "migrate", migrate_again)
    child = os.fork()
    if child == 0:  # the worker
        code = 1
        try:
            with store.reading(seconds=0.25) as connection:
                code = (
                    0
                    if connection.scalar(select(func.count()).select_from(card_decisions))
                    is not None
                    else 1
                )
        finally:
            os._exit(code)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_store_migrated_by_a_newer_release_is_refused(store: DecisionStore) -> None:
    with store.transaction() as connection:
        connection.execute(
            schema_migrations.insert().values(
                version=LATEST_VERSION + 1, description="future", applied_at=datetime.now(UTC)
            )
        )
    newer = _store(str(store.url.render_as_string(hide_password=False)))
    with pytest.raises(StoreUnavailable, match=r"knows up to"):
        newer.ensure_ready()
    newer.dispose()


def test_a_store_of_the_previous_release_gains_card_dispositions(store_url: str) -> None:
    """Version 2 had no `disposition`: every card it logged was shown."""
    engine = create_engine(store_url)
    previous = MetaData()
    Table(
        card_decisions.name,
        previous,
        *(
            Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable)
            for c in card_decisions.columns
            if c.name != "disposition"
        ),
    )
    for table in (schema_migrations, store_meta, feedback, decision_log_losses, used_tokens):
        table.to_metadata(previous)
    with engine.begin() as connection:
        previous.create_all(connection)
        for version in (1, 2):
            connection.execute(
                schema_migrations.insert().values(
                    version=version, description="before", applied_at=datetime.now(UTC)
                )
            )
        row = {c.name: None for c in card_decisions.columns if c.name != "disposition"}
        row.update(
            card_uuid="old-card",
            issued_at=datetime.now(UTC),
            service_id="s",
            hook="order-sign",
            hook_instance="h",
            topic="opioid-avoidance",
            indicator="warning",
            content_version="0.0.9",
            suggestion_uuids="[]",
            patient_key="k",
            patient_key_id="i",
        )
        connection.execute(previous.tables[card_decisions.name].insert().values(**row))
    engine.dispose()

    store = _store(store_url)
    store.ensure_ready()
    store.record_decisions([dataclasses.replace(_record("silent-card"), disposition="silent")])
    with store.reading() as connection:
        query = select(card_decisions.c.card_uuid, card_decisions.c.disposition)
        rows = {card: disposition for card, disposition in connection.execute(query)}
        versions = list(connection.scalars(select(schema_migrations.c.version)))
        indexes = {i["name"] for i in inspect(connection).get_indexes(card_decisions.name)}
    assert rows == {"old-card": "shown", "silent-card": "silent"}
    assert versions == [1, 2, 3] == list(range(1, LATEST_VERSION + 1))
    assert "ix_card_decisions_patient_key_topic" in indexes
    store.dispose()


# --- decision log rows ----------------------------------------------------------------------


def test_decisions_keep_a_keyed_pseudonym_never_the_patient_id(store: DecisionStore) -> None:
    card = str(uuid.uuid4())
    store.record_decisions([_record(card)])
    store.record_decisions([_record(card)])  # the same card again: kept once
    with store.reading() as connection:
        rows = list(connection.execute(select(card_decisions)))
    assert len(rows) == 1
    row = rows[0]._mapping
    expected = hmac.new(SECRET.encode(), PATIENT_ID.encode(), hashlib.sha256).hexdigest()
    assert row["patient_key"] == expected
    assert PATIENT_ID not in json.dumps({k: str(v) for k, v in row.items()})
    assert json.loads(row["suggestion_uuids"]) == ["s-1", "s-2"]
    assert row["issued_at"].tzinfo is not None


def test_a_batch_larger_than_one_statement_is_stored_whole_and_exactly(
    store: DecisionStore,
) -> None:
    # Several multi-row statements, a partial last one, a card already stored and cards
    # repeated inside the batch and inside one statement: every card once, values as given.
    issued = datetime(2026, 11, 22, 9, 30, 15, 123456, tzinfo=UTC)
    stored_before = str(uuid.uuid4())
    store.record_decisions([_record(stored_before, issued_at=issued)])
    cards = [str(uuid.uuid4()) for _ in range(203)]
    other_patient = dataclasses.replace(_record(cards[7], issued_at=issued), patient_id="P-2")
    batch = [_record(card, issued_at=issued) for card in cards]
    batch[7] = other_patient
    batch.insert(2, _record(cards[1], issued_at=issued))  # a repeat within one statement
    store.record_decisions([*batch, _record(stored_before), _record(cards[0])])
    with store.reading() as connection:
        rows = {r.card_uuid: r for r in connection.execute(select(card_decisions))}
    assert set(rows) == {stored_before, *cards}
    assert {r.issued_at for r in rows.values()} == {issued}
    assert {r.topic for r in rows.values()} == {"opioid-avoidance"}
    keys = {card: row.patient_key for card, row in rows.items()}
    second = hmac.new(SECRET.encode(), b"P-2", hashlib.sha256).hexdigest()
    assert keys[cards[7]] == second
    assert {key for card, key in keys.items() if card != cards[7]} == {
        hmac.new(SECRET.encode(), PATIENT_ID.encode(), hashlib.sha256).hexdigest()
    }
    assert all(json.loads(r.suggestion_uuids) == ["s-1", "s-2"] for r in rows.values())


def test_without_a_configured_secret_instances_share_a_generated_key(store_url: str) -> None:
    first, second = _store(store_url, secret=None), _store(store_url, secret=None)
    first.record_decisions([_record("card-a")])
    second.record_decisions([_record("card-b")])
    with first.reading() as connection:
        keys = set(connection.scalars(select(card_decisions.c.patient_key)))
        key_ids = set(connection.scalars(select(card_decisions.c.patient_key_id)))
    assert len(keys) == 1 and len(key_ids) == 1
    configured = hmac.new(SECRET.encode(), PATIENT_ID.encode(), hashlib.sha256).hexdigest()
    assert keys != {configured}
    first.dispose()
    second.dispose()


def test_feedback_is_idempotent_and_links_known_cards(store: DecisionStore) -> None:
    known, unknown = str(uuid.uuid4()), str(uuid.uuid4())
    store.record_decisions([_record(known)])
    entries = [_accepted(known, "s-1"), _overridden(unknown), _overridden(unknown)]
    receipt = store.record_feedback("back-pain-order-sign", entries)
    assert (receipt.received, receipt.stored, receipt.duplicates, receipt.unknown_cards) == (
        3,
        2,
        1,
        2,
    )
    assert store.record_feedback("back-pain-order-sign", entries[:1]).stored == 0
    with store.reading() as connection:
        flags = dict(connection.execute(select(feedback.c.card_uuid, feedback.c.card_known)).all())
    assert flags == {known: True, unknown: False}


# --- report ---------------------------------------------------------------------------------


@pytest.fixture
def store_app(runtime: Runtime, store_url: str) -> Iterator[Flask]:
    settings = dataclasses.replace(SETTINGS, database_url=store_url, patient_key_secret=SECRET)
    application = create_app(settings, runtime=runtime)
    yield application
    application.extensions["cds_decision_log"].close()
    application.extensions["cds_store"].dispose()


def _issue(client: FlaskClient, app: Flask, request: dict[str, Any]) -> dict[str, dict[str, Any]]:
    response = client.post("/cds-services/back-pain-order-sign", json=request)
    assert response.status_code == 200
    assert app.extensions["cds_decision_log"].flush(10)
    return {card["source"]["topic"]["code"]: card for card in response.get_json()["cards"]}


def _report(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], url: str, *arguments: str
) -> str:
    monkeypatch.setenv("CDS_DATABASE_URL", url)
    assert main(["report", *arguments]) == 0
    return capsys.readouterr().out


def test_issued_accepted_and_overridden_cards_show_up_in_the_report(
    store_app: Flask,
    store_url: str,
    fixture_request: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    client = store_app.test_client()
    first = _issue(client, store_app, fixture_request("opioid-tramadol-acute-low-back-pain"))
    second = _issue(client, store_app, fixture_request("opioid-tramadol-acute-low-back-pain"))
    assert set(first) == {"opioid-avoidance", "exercise-therapy"}

    suggestion = first["opioid-avoidance"]["suggestions"][0]["uuid"]
    body = {
        "feedback": [
            {  # accepted, with one suggestion taken
                "card": first["opioid-avoidance"]["uuid"],
                "outcome": "accepted",
                "acceptedSuggestions": [{"id": suggestion}],
                "outcomeTimestamp": "2026-11-22T10:00:00Z",
            },
            {  # overridden with a coded reason (no display: the report names it)
                "card": second["opioid-avoidance"]["uuid"],
                "outcome": "overridden",
                "overrideReason": {
                    "reason": {"system": REASON_SYSTEM, "code": "nonopioid-therapy-failed"},
                    "userComment": "Tried topical and oral NSAIDs.",
                },
                "outcomeTimestamp": "2026-11-22T10:01:00Z",
            },
            {  # overridden first, accepted later: the latest outcome counts
                "card": first["exercise-therapy"]["uuid"],
                "outcome": "overridden",
                "overrideReason": {"system": REASON_SYSTEM, "code": "exercise-deferred"},
                "outcomeTimestamp": "2026-11-22T10:02:00Z",
            },
            {
                "card": first["exercise-therapy"]["uuid"],
                "outcome": "accepted",
                "acceptedSuggestions": [
                    {"id": first["exercise-therapy"]["suggestions"][0]["uuid"]}
                ],
                "outcomeTimestamp": "2026-11-22T10:03:00Z",
            },
            {  # a card this store never issued
                "card": str(uuid.uuid4()),
                "outcome": "overridden",
                "outcomeTimestamp": "2026-11-22T10:04:00Z",
            },
        ]
    }
    response = client.post("/cds-services/back-pain-order-sign/feedback", json=body)
    assert response.get_json() == {
        "received": 5,
        "stored": 5,
        "alreadyStored": 0,
        "unknownCards": 1,
    }

    report = json.loads(_report(monkeypatch, capsys, store_url, "--format", "json"))
    topics = {row["topic"]: row for row in report["topics"]}
    opioid, exercise = topics["opioid-avoidance"], topics["exercise-therapy"]
    assert (opioid["cardsIssued"], opioid["feedbackReceived"]) == (2, 2)
    assert (opioid["accepted"], opioid["overridden"], opioid["suggestionsAccepted"]) == (1, 1, 1)
    assert opioid["acceptanceRate"] == 0.5 and opioid["overrideRate"] == 0.5
    assert opioid["topOverrideReasons"] == [
        {
            "system": REASON_SYSTEM,
            "code": "nonopioid-therapy-failed",
            "display": "Non-opioid treatments tried and failed or not tolerated",
            "count": 1,
        }
    ]
    assert opioid["overrideComments"] == 1
    assert (exercise["cardsIssued"], exercise["feedbackReceived"]) == (2, 1)
    assert (exercise["accepted"], exercise["overridden"], exercise["feedbackEntries"]) == (1, 0, 2)
    assert exercise["acceptanceRate"] == 1.0
    assert report["totals"]["cardsIssued"] == 4 and report["totals"]["accepted"] == 2
    assert report["unknownCardFeedback"] == {
        "entries": 1,
        "cards": 1,
        "accepted": 0,
        "overridden": 1,
    }
    assert report["contentVersions"] == [store_app.extensions["cds_runtime"].content_version]

    table = _report(monkeypatch, capsys, store_url)
    opioid_line = next(line for line in table.splitlines() if line.startswith("opioid-avoidance"))
    assert opioid_line.split() == ["opioid-avoidance", "2", "2", "1", "1", "50.0%", "50.0%", "1"]
    assert "Non-opioid treatments tried and failed or not tolerated" in table
    assert "Avoid opioids for back pain" in table
    assert "not in the decision log" in table
    assert "Tried topical" not in table  # clinicians' comments are counted, not printed

    rows = list(
        csv.DictReader(io.StringIO(_report(monkeypatch, capsys, store_url, "--format", "csv")))
    )
    by_topic = {row["topic"]: row for row in rows}
    assert by_topic["opioid-avoidance"]["acceptance_rate"] == "0.5000"
    assert by_topic["exercise-therapy"]["override_rate"] == "0.0000"
    assert by_topic["all"]["cards_issued"] == "4"


def test_report_since_counts_only_cards_issued_from_that_day(
    store: DecisionStore,
    store_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    old = datetime(2025, 3, 1, tzinfo=UTC)
    store.record_decisions(
        [_record("old-card", issued_at=old), _record("new-card", topic="avoid-glucosamine")]
    )
    store.record_feedback(
        "back-pain-order-sign", [_overridden("old-card", "established-opioid-therapy")]
    )
    everything = json.loads(_report(monkeypatch, capsys, store_url, "--format", "json"))
    assert {row["topic"] for row in everything["topics"]} == {
        "opioid-avoidance",
        "avoid-glucosamine",
    }
    recent = json.loads(
        _report(monkeypatch, capsys, store_url, "--format", "json", "--since", "2026-01-01")
    )
    assert [row["topic"] for row in recent["topics"]] == ["avoid-glucosamine"]
    assert recent["since"] == "2026-01-01"
    assert recent["topics"][0]["feedbackReceived"] == 0
    assert recent["topics"][0]["acceptanceRate"] is None


def test_report_until_counts_only_cards_issued_up_to_that_day(
    store: DecisionStore,
    store_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    store.record_decisions(
        [
            _record("first", issued_at=datetime(2026, 11, 20, 23, 59, tzinfo=UTC)),
            _record(
                "second", topic="avoid-glucosamine", issued_at=datetime(2026, 11, 21, 1, tzinfo=UTC)
            ),
            _record(
                "third", topic="avoid-glucosamine", issued_at=datetime(2026, 11, 22, 1, tzinfo=UTC)
            ),
        ]
    )
    early = json.loads(
        _report(monkeypatch, capsys, store_url, "--format", "json", "--until", "2026-11-20")
    )
    assert (early["since"], early["until"]) == (None, "2026-11-20")
    assert [(row["topic"], row["cardsIssued"]) for row in early["topics"]] == [
        ("opioid-avoidance", 1)
    ]
    one_day = _report(
        monkeypatch, capsys, store_url, "--since", "2026-11-21", "--until", "2026-11-21"
    )
    assert "cards issued from 2026-11-21 to 2026-11-21" in one_day
    assert next(line for line in one_day.splitlines() if line.startswith("All")).split()[2] == "1"
    assert main(["report", "--since", "2026-11-22", "--until", "2026-11-21"]) == 2
    assert "--until must not be before --since" in capsys.readouterr().err


def test_report_of_an_empty_store_says_so(
    store: DecisionStore,
    store_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    store.ensure_ready()
    assert "No cards were issued in this period." in _report(monkeypatch, capsys, store_url)


def test_report_without_a_store_file_is_a_one_line_error(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere.db"
    monkeypatch.setenv("CDS_DATABASE_URL", f"sqlite:///{missing}")
    assert main(["report"]) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "no decision store" in error[0]
    assert not missing.exists()  # the report did not create an empty store


def test_bad_report_arguments_are_rejected(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["report", "--since", "last tuesday"])
    assert exit_info.value.code == 2
    assert "--since" in capsys.readouterr().err


# --- retention ------------------------------------------------------------------------------


def test_purge_deletes_old_rows_and_says_what_it_deleted(
    store: DecisionStore,
    store_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    now = datetime.now(UTC)
    store.record_decisions(
        [_record("ancient", issued_at=now - timedelta(days=400)), _record("fresh", issued_at=now)]
    )
    store.record_feedback(
        "back-pain-order-sign", [_overridden("ancient")], now - timedelta(days=399)
    )
    store.record_feedback("back-pain-order-sign", [_overridden("fresh")], now)
    monkeypatch.setenv("CDS_DATABASE_URL", store_url)

    assert main(["purge", "--older-than", "365", "--dry-run"]) == 0
    assert "Would delete 1 card decision issued and 1 feedback entry" in capsys.readouterr().out
    with store.reading() as connection:
        assert connection.scalar(select(func.count()).select_from(card_decisions)) == 2

    assert main(["purge", "--older-than", "365"]) == 0
    assert "Deleted 1 card decision issued and 1 feedback entry" in capsys.readouterr().out
    with store.reading() as connection:
        assert list(connection.scalars(select(card_decisions.c.card_uuid))) == ["fresh"]
        assert list(connection.scalars(select(feedback.c.card_uuid))) == ["fresh"]
        if connection.dialect.name == "sqlite":
            assert connection.execute(text("PRAGMA integrity_check")).scalar() == "ok"


@pytest.mark.parametrize("days", ["0", "-3", "many"])
def test_purge_needs_a_positive_number_of_days(
    days: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["purge", "--older-than", days])
    assert exit_info.value.code == 2
    assert "--older-than" in capsys.readouterr().err


def test_a_report_in_progress_does_not_hold_up_writers(store_url: str) -> None:
    reader, writer = _store(store_url), _store(store_url)
    writer.record_decisions([_record("before")])
    with reader.reading() as connection:
        assert connection.scalar(select(func.count()).select_from(card_decisions)) == 1
        # The read transaction is still open while another process-like store writes.
        receipt = writer.record_feedback("back-pain-order-sign", [_overridden("before")])
        assert receipt.stored == 1
    reader.dispose()
    writer.dispose()


def test_report_on_an_unreachable_store_is_a_one_line_error(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CDS_DATABASE_URL", f"postgresql://cds@/cds?host={tmp_path}&port=5999")
    assert main(["report"]) == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("cds-service: cannot read the decision store")


def test_the_postgres_harness_says_what_it_tried(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import postgres_server

    monkeypatch.setattr(postgres_server, "_candidate_bindirs", lambda: [("empty folder", tmp_path)])
    with pytest.raises(postgres_server.PostgresUnavailable, match="empty folder: no initdb"):
        postgres_server.start_postgres()
