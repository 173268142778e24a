"""Feedback for a card the decision log writes a moment later is linked to it (`card_known`),
also when the two transactions run side by side on PostgreSQL (READ COMMITTED: each is blind
to the other until it commits). The interleavings are forced by holding one transaction open
just before its commit."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from postgres_server import PostgresServer
from sqlalchemy import event, select

from cds_service.protocol.feedback import FeedbackEntry, Outcome
from cds_service.store.database import parse_database_url
from cds_service.store.schema import feedback
from cds_service.store.store import DecisionRecord, DecisionStore

SECRET = "link-test-secret-" + "l" * 32


def _record(card: str) -> DecisionRecord:
    return DecisionRecord(
        card, datetime.now(UTC), "svc", "order-sign", "hi", "opioid-avoidance", "warning", "v",
        (), "patient",
    )  # fmt: skip


def _entry(card: str) -> FeedbackEntry:
    return FeedbackEntry(card, Outcome.OVERRIDDEN, (), None, datetime.now(UTC))


@pytest.fixture
def store(postgres_server: PostgresServer) -> Iterator[DecisionStore]:
    opened = DecisionStore(parse_database_url(postgres_server.create_database()), SECRET)
    opened.ensure_ready()
    yield opened
    opened.dispose()


def _held_at_commit(
    store: DecisionStore, operation: Callable[[], Any]
) -> tuple[threading.Thread, threading.Event, threading.Event]:
    """Run `operation` in a thread whose first transaction stops just before COMMIT until
    released. Returns (thread, reached commit, release)."""
    reached, release = threading.Event(), threading.Event()
    holder = threading.current_thread()  # replaced by the worker thread below

    def _pause(_connection: Any) -> None:
        if threading.current_thread() is holder and not reached.is_set():
            reached.set()
            assert release.wait(10)

    event.listen(store.database.engine, "commit", _pause)
    thread = threading.Thread(target=operation)
    holder = thread
    thread.start()
    assert reached.wait(10)
    return thread, reached, release


def _card_known(store: DecisionStore, card: str) -> bool:
    with store.reading() as connection:
        return bool(
            connection.scalar(select(feedback.c.card_known).where(feedback.c.card_uuid == card))
        )


def test_feedback_committed_while_the_card_is_being_written_is_linked(
    store: DecisionStore,
) -> None:
    card = str(uuid.uuid4())
    writer, _, release = _held_at_commit(store, lambda: store.record_decisions([_record(card)]))
    receipt = store.record_feedback("svc", [_entry(card)])  # the card is not committed yet
    assert receipt.unknown_cards == 1
    release.set()
    writer.join(10)
    assert _card_known(store, card)


def test_a_card_committed_while_the_feedback_is_being_written_is_linked_and_counted(
    store: DecisionStore,
) -> None:
    card = str(uuid.uuid4())
    receipts: list[Any] = []
    poster, _, release = _held_at_commit(
        store, lambda: receipts.append(store.record_feedback("svc", [_entry(card)]))
    )
    store.record_decisions([_record(card)])  # its link update cannot see the feedback yet
    release.set()
    poster.join(10)
    assert _card_known(store, card)
    assert receipts[0].unknown_cards == 0  # the client hears the card is known
