"""The decision log: every card returned is written to the store off the request path.

A response only puts small records on a bounded in-process queue (microseconds); one writer
thread per worker process writes them in batches. A slow or down store therefore never
slows or fails a response. While the store is down the writer keeps its batch and retries
with back-off; when the queue is full, new records are dropped and counted in the log.
At exit (gunicorn's worker_exit hook, or atexit) the queue is flushed for a bounded time.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cds_service import metrics
from cds_service.store.database import StoreUnavailable, ValuesRefused
from cds_service.store.store import DecisionRecord, DecisionStore

log = logging.getLogger(__name__)

DEFAULT_QUEUE_SIZE = 10_000
BATCH_SIZE = 1000
BATCH_WAIT_SECONDS = 0.25  # how long cards may wait to reach the store; 4 commits a second
_STOP = object()


@dataclass(frozen=True)
class IssuedCards:
    """The cards of one response and the call they answered."""

    service_id: str
    hook: str
    hook_instance: str
    patient_id: str = field(repr=False)  # only its keyed HMAC reaches the store
    cards: Sequence[Mapping[str, Any]] = field(repr=False)
    content_version: str = ""

    def records(self, issued_at: datetime) -> list[DecisionRecord]:
        """What the log keeps of each card: ids, topic, indicator; never the card's words."""
        records = []
        for card in self.cards:
            topic = card.get("source", {}).get("topic", {}).get("code")
            if not card.get("uuid") or not topic:
                continue  # no uuid, no feedback can ever name it
            records.append(
                DecisionRecord(
                    card_uuid=card["uuid"],
                    issued_at=issued_at,
                    service_id=self.service_id,
                    hook=self.hook,
                    hook_instance=self.hook_instance,
                    topic=topic,
                    indicator=card.get("indicator", ""),
                    content_version=self.content_version,
                    suggestion_uuids=tuple(
                        s["uuid"] for s in card.get("suggestions", ()) if s.get("uuid")
                    ),
                    patient_id=self.patient_id,
                )
            )
        return records


class DecisionLog:
    def __init__(
        self,
        store: DecisionStore,
        *,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        first_retry_seconds: float = 0.5,
        max_retry_seconds: float = 30.0,
    ) -> None:
        self.store = store
        self._queue_size = queue_size
        self._first_retry = first_retry_seconds
        self._max_retry = max_retry_seconds
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pid: int | None = None
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._pending = 0  # records queued or being written
        self._queued_cards = 0  # records waiting in the queue (bounded by queue_size)
        self._dropped = 0
        self._last_drop_log = 0.0
        self._give_up_at: float | None = None  # set by close(): stop retrying after this

    # --- request side ---------------------------------------------------------------------

    def record(self, issued: IssuedCards) -> None:
        """Queue the cards of one response. Never raises, never blocks."""
        try:
            records = issued.records(datetime.now(UTC))
            if records:
                self._ensure_writer()
                self._enqueue(records)
        except Exception as error:  # the response must go out whatever happens here
            log.exception(
                "decision log could not queue cards",
                extra={"event": "decision_log_error", "error_type": type(error).__name__},
            )

    def _enqueue(self, records: list[DecisionRecord]) -> None:
        """One queue item per response: the writer is not woken once per card."""
        with self._lock:
            room = max(0, self._queue_size - self._queued_cards)
            taken, dropped = records[:room], len(records) - min(room, len(records))
            self._queued_cards += len(taken)
            self._pending += len(taken)
            metrics.set_decision_queue(self._queued_cards)
            if dropped:
                self._dropped += dropped
                metrics.count_decisions_lost("queue_full", dropped)
                now = time.monotonic()
                if now - self._last_drop_log >= 60:
                    self._last_drop_log = now
                    log.error(
                        "decision log queue full; cards were not logged",
                        extra={
                            "event": "decision_log_dropped",
                            "dropped_total": self._dropped,
                            "queue_size": self._queue_size,
                        },
                    )
        if taken:
            self._queue.put_nowait(taken)

    def _ensure_writer(self) -> None:
        pid = os.getpid()
        if self._pid == pid:
            return
        with self._lock:
            if self._pid == pid:
                return
            # A forked worker inherits no running thread: start its own, with a fresh queue.
            self._queue = queue.SimpleQueue()
            self._pending = 0
            self._queued_cards = 0
            self._give_up_at = None
            self._thread = threading.Thread(target=self._run, name="cds-decision-log", daemon=True)
            self._thread.start()
            self._pid = pid
            atexit.register(self.close)

    # --- writer side ----------------------------------------------------------------------

    def _run(self) -> None:
        source = self._queue
        stopping = False
        backlog = False
        while not stopping:
            first = source.get()
            if first is _STOP:
                break
            if not backlog:
                # Let a burst of responses gather while sleeping, then take it at once: one
                # transaction per burst, and no wake-up (and GIL hand-over) per response.
                time.sleep(BATCH_WAIT_SECONDS)
            batch: list[DecisionRecord] = list(first)
            while len(batch) < BATCH_SIZE:
                try:
                    item = source.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                batch.extend(item)
            backlog = len(batch) >= BATCH_SIZE
            with self._lock:
                self._queued_cards -= len(batch)
                metrics.set_decision_queue(self._queued_cards)
            self._write(batch)

    def _write(self, batch: list[DecisionRecord]) -> None:
        delay = self._first_retry
        failures = 0
        unwritten = batch
        while True:
            try:
                self.store.record_decisions(unwritten)
                metrics.count_decisions_written(len(unwritten))
                if failures:
                    log.info(
                        "decision log writes resumed",
                        extra={"event": "decision_log_recovered", "failed_attempts": failures},
                    )
                break
            except StoreUnavailable as error:
                failures += 1
                if failures == 1 or failures % 20 == 0:
                    log.error(
                        "decision log write failed; retrying",
                        extra={
                            "event": "decision_log_write_failed",
                            "reason": str(error),
                            "cards": len(unwritten),
                            "attempt": failures,
                        },
                    )
            except Exception as error:
                # Some card can never be stored (or a bug): retrying the same batch would hold
                # up every later card forever, so its cards are written one by one instead.
                if not isinstance(error, ValuesRefused):
                    log.exception(
                        "decision log write failed unexpectedly; writing its cards one by one",
                        extra={
                            "event": "decision_log_write_failed",
                            "error_type": type(error).__name__,
                        },
                    )
                unwritten = self._write_one_by_one(unwritten)
                if not unwritten:
                    break
                failures += 1
            give_up_at = self._give_up_at
            if give_up_at is not None and time.monotonic() + delay > give_up_at:
                log.error(
                    "decision log gave up at shutdown; cards were not logged",
                    extra={"event": "decision_log_lost", "cards": len(unwritten)},
                )
                metrics.count_decisions_lost("shutdown", len(unwritten))
                break
            time.sleep(delay)
            delay = min(delay * 2, self._max_retry)
        with self._idle:
            self._pending -= len(batch)
            self._idle.notify_all()

    def _write_one_by_one(self, records: list[DecisionRecord]) -> list[DecisionRecord]:
        """Write each record alone; drop (and count in the log) those the store refuses.
        Returns the records left for a retry because the store went away meanwhile."""
        left: list[DecisionRecord] = []
        refused: dict[str, int] = {}
        for record in records:
            try:
                self.store.record_decisions([record])
                metrics.count_decisions_written(1)
            except StoreUnavailable:
                left.append(record)
            except Exception as error:  # ValuesRefused, or a value no row can be made of
                refused[type(error).__name__] = refused.get(type(error).__name__, 0) + 1
        if refused:
            metrics.count_decisions_lost("refused", sum(refused.values()))
            log.error(
                "decision log dropped cards the store cannot hold",
                extra={
                    "event": "decision_log_refused",
                    "cards": sum(refused.values()),
                    "errors": refused,
                },
            )
        return left

    # --- flushing -------------------------------------------------------------------------

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued card is written (or given up); True when the queue is empty."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Flush for at most `timeout` seconds and stop the writer (idempotent)."""
        if self._pid != os.getpid() or self._thread is None:
            return
        thread = self._thread
        deadline = time.monotonic() + timeout
        self._give_up_at = deadline
        self._queue.put(_STOP)
        thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            if self._pending:
                log.error(
                    "decision log closed with cards not written",
                    extra={"event": "decision_log_lost", "cards": self._pending},
                )
                metrics.count_decisions_lost("shutdown", self._pending)
            self._thread = None
            self._pid = None
