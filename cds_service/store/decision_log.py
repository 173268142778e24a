"""The decision log: every card returned is written to the store off the request path.

A response only puts small records on a bounded in-process queue (microseconds); one writer
thread per worker process writes them in batches. A slow or down store therefore never
slows or fails a response. While the store is down the writer keeps its batch and retries
with back-off; when the queue is full, new records are dropped and counted.

At a stop (`cds-service serve` closes it as each worker stops, or atexit) the queue is written
for a bounded time; what the store cannot take then goes to the local spool (store/spool.py),
which the next start, or any running worker, writes to the store. No card goes unaccounted: a
card that is neither stored nor spooled is counted, in the log at once and in the store's
`decision_log_losses` (hence `cds-service report`) as soon as the store or the spool can take
the count; a worker killed outright is found by its pending ledger and its cards counted the
same way.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import secrets
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cds_service import metrics
from cds_service.store.database import StoreUnavailable, ValuesRefused
from cds_service.store.schema import Disposition
from cds_service.store.spool import LossReason, PendingLedger, Spool, import_spool
from cds_service.store.store import DecisionRecord, DecisionRow, DecisionStore, decision_rows
from cds_service.vocabulary import CardRecord

log = logging.getLogger(__name__)

DEFAULT_QUEUE_SIZE = 10_000
BATCH_SIZE = 1000
BATCH_WAIT_SECONDS = 0.25  # how long cards may wait to reach the store; 4 commits a second
# How often a writer looks for spool files and ledgers of other processes to write to the store.
SPOOL_CHECK_SECONDS = 30.0
_STOP = object()


@dataclass(frozen=True)
class IssuedCards:
    """The cards of one response and the call they answered."""

    service_id: str
    hook: str
    hook_instance: str
    patient_id: str = field(repr=False)  # only its keyed HMAC reaches the store
    cards: Sequence[CardRecord] = field(repr=False)  # returned to the client
    content_version: str = ""
    # Held back by the site's configuration: logged, never returned.
    silent: Sequence[CardRecord] = field(default=(), repr=False)
    snoozed: Sequence[CardRecord] = field(default=(), repr=False)

    def records(self, issued_at: datetime) -> list[DecisionRecord]:
        """What the log keeps of each card: ids, topic, indicator, whether it was shown;
        never the card's words."""
        return [
            DecisionRecord(
                card_uuid=card.uuid,
                issued_at=issued_at,
                service_id=self.service_id,
                hook=self.hook,
                hook_instance=self.hook_instance,
                topic=card.topic,
                indicator=card.indicator,
                content_version=self.content_version,
                suggestion_uuids=card.suggestion_uuids,
                patient_id=self.patient_id,
                disposition=disposition.value,
            )
            for disposition, cards in (
                (Disposition.SHOWN, self.cards),
                (Disposition.SILENT, self.silent),
                (Disposition.SNOOZED, self.snoozed),
            )
            for card in cards
            if card.uuid and card.topic  # no uuid, no feedback can ever name it
        ]


class DecisionLog:
    def __init__(
        self,
        store: DecisionStore,
        *,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        first_retry_seconds: float = 0.5,
        max_retry_seconds: float = 30.0,
        spool: Spool | None = None,
    ) -> None:
        self.store = store
        self.spool = spool
        self._queue_size = queue_size
        self._first_retry = first_retry_seconds
        self._max_retry = max_retry_seconds
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pid: int | None = None
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()  # ends a retry wait at once (set at a stop)
        self._pending = 0  # records queued or being written
        self._queued_cards = 0  # records waiting in the queue (bounded by queue_size)
        self._dropped = 0
        self._last_drop_log = 0.0
        self._stopping = False
        self._give_up_at = 0.0  # at a stop: what is not written by then goes to the spool
        self._ledger: PendingLedger | None = None
        self._losses: Counter[str] = Counter()  # cards lost, not yet counted in the store
        self._loss_source = ""  # names this process's counts in the store (see _count_losses)
        self._loss_counts = 0
        self._last_spool_check = 0.0

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
            if self._ledger is not None:
                self._ledger.set(self._pending)
            if dropped:
                self._dropped += dropped
                self._losses[LossReason.QUEUE_FULL] += dropped
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
            self._stopping = False
            self._wake = threading.Event()
            self._losses = Counter()
            self._loss_source = f"{pid}-{secrets.token_hex(6)}"
            self._ledger = self.spool.ledger() if self.spool is not None else None
            self._thread = threading.Thread(target=self._run, name="cds-decision-log", daemon=True)
            self._thread.start()
            self._pid = pid
            atexit.register(self.close)

    # --- writer side ----------------------------------------------------------------------

    def _run(self) -> None:
        source = self._queue
        backlog = False
        while True:
            first = source.get()
            if first is _STOP:
                break
            if not backlog and not self._stopping:
                # Let a burst of responses gather while sleeping, then take it at once: one
                # transaction per burst, and no wake-up (and GIL hand-over) per response.
                time.sleep(BATCH_WAIT_SECONDS)
            more, stop_seen = _take_queued(source, BATCH_SIZE - len(first))
            batch: list[DecisionRecord] = [*first, *more]
            backlog = len(batch) >= BATCH_SIZE
            with self._lock:
                self._queued_cards -= len(batch)
                metrics.set_decision_queue(self._queued_cards)
            if self._stopping and time.monotonic() >= self._give_up_at:
                unwritten = batch  # out of time at a stop
            else:
                unwritten = self._write(batch)
            if unwritten:  # only at a stop: the store cannot take them now
                rest = [] if stop_seen else self._drain(source)
                self._spool_at_stop(unwritten + rest)
                self._handled(len(batch) + len(rest))
                break
            self._handled(len(batch))
            if stop_seen:
                break
        self._settle_losses()

    def _drain(self, source: queue.SimpleQueue[Any]) -> list[DecisionRecord]:
        """Everything still queued, up to the stop marker."""
        records, _ = _take_queued(source, sys.maxsize)
        with self._lock:
            self._queued_cards -= len(records)
            metrics.set_decision_queue(self._queued_cards)
        return records

    def _handled(self, cards: int) -> None:
        """`cards` are written, spooled or counted as lost: no longer pending."""
        with self._idle:
            self._pending -= cards
            if self._ledger is not None:
                self._ledger.set(self._pending)
            self._idle.notify_all()

    def _write(self, batch: list[DecisionRecord]) -> list[DecisionRecord]:
        """Write a batch, retrying while the store is down. Returns the records left unwritten,
        which happens only at a stop (no retrying then: they go to the spool)."""
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
                self._after_write()
                return []
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
                    self._after_write()
                    return []
                failures += 1
            if self._stopping:
                return unwritten
            self._wake.wait(delay)
            delay = min(delay * 2, self._max_retry)

    def _write_one_by_one(self, records: list[DecisionRecord]) -> list[DecisionRecord]:
        """Write each record alone; drop (and count) those the store refuses.
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
            with self._lock:
                self._losses[LossReason.REFUSED] += sum(refused.values())
            log.error(
                "decision log dropped cards the store cannot hold",
                extra={
                    "event": "decision_log_refused",
                    "cards": sum(refused.values()),
                    "errors": refused,
                },
            )
        return left

    def _after_write(self) -> None:
        """The store took a write: count any lost cards there, and now and then write the
        spool (of this or another process) and the ledgers of killed workers."""
        self._count_losses()
        now = time.monotonic()
        if self.spool is not None and now - self._last_spool_check >= SPOOL_CHECK_SECONDS:
            self._last_spool_check = now
            import_spool(self.spool, self.store)

    def _take_losses(self) -> Counter[str]:
        with self._lock:
            losses, self._losses = self._losses, Counter()
        return losses

    def _count_losses(self) -> bool:
        """Store the counts of lost cards; True when none are left to store."""
        losses = self._take_losses()
        if not losses:
            return True
        self._loss_counts += 1
        source = f"{self._loss_source}-{self._loss_counts}"
        try:
            self.store.record_losses(
                [(f"{source}#{reason}", reason, cards) for reason, cards in losses.items()]
            )
        except Exception:  # stored with a later write, or spooled at the stop
            with self._lock:
                self._losses.update(losses)
            return False
        return True

    def _settle_losses(self) -> None:
        """At the end of the writer: counts the store cannot take go to the spool."""
        if not self._count_losses():
            self._spool_at_stop([])

    def _spool_at_stop(self, records: list[DecisionRecord]) -> None:
        """Keep in the spool what the store cannot take at a stop, with the counts of cards
        lost; what the spool cannot keep either is counted in the log."""
        losses = self._take_losses()
        error: str | None = "no spool"
        if self.spool is None:
            kept, lost = 0, len(records) + sum(losses.values())
        else:
            rows: list[DecisionRow] = []
            pseudonymizer = self.store.pseudonymizer()
            if pseudonymizer is None:  # never reached the store, and no configured secret
                losses[LossReason.NOT_SPOOLED] += len(records)
            else:
                for record in records:
                    try:
                        rows.extend(decision_rows([record], pseudonymizer))
                    except Exception:  # a value no row can be made of: the store refuses it too
                        losses[LossReason.REFUSED] += 1
            outcome = self.spool.write(rows, losses)
            kept, lost, error = outcome.kept, outcome.lost, outcome.error
        metrics.count_decisions_lost("shutdown", len(records) - kept)
        if kept:
            log.warning(
                "decision store unavailable at stop; cards kept in the spool",
                extra={"event": "decision_log_spooled", "cards": kept, "spool": str(self.spool)},
            )
        if lost:
            log.error(
                "cards were not logged",
                extra={
                    "event": "decision_log_lost",
                    "cards": lost,
                    # Counted in the spool, they reach the store (and the report) later.
                    "counted_in": "spool" if error is None else "log",
                    "reason": error,
                },
            )

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
        """Write what is queued for at most `timeout` seconds, spool what the store cannot take
        by then, and stop the writer (idempotent)."""
        if self._pid != os.getpid() or self._thread is None:
            return
        thread = self._thread
        self._give_up_at = time.monotonic() + timeout
        self._stopping = True
        self.store.end_cooldown()
        self._queue.put(_STOP)
        self._wake.set()
        # A store call under way ends within its own time limit; the writer then spools.
        limit = self.store.database.operation_seconds or timeout
        thread.join(timeout + limit + 1.0)
        with self._lock:
            if self._pending:
                log.error(
                    "decision log closed with cards not written",
                    extra={"event": "decision_log_lost", "cards": self._pending},
                )
                metrics.count_decisions_lost("shutdown", self._pending)
            elif self._ledger is not None:
                self._ledger.close()
                self._ledger = None
            self._thread = None
            self._pid = None


def _take_queued(source: queue.SimpleQueue[Any], cards: int) -> tuple[list[DecisionRecord], bool]:
    """What is queued now, without waiting, until at least `cards` cards are taken or the
    stop marker comes (then also True: the stop was seen)."""
    records: list[DecisionRecord] = []
    while len(records) < cards:
        try:
            item = source.get_nowait()
        except queue.Empty:
            break
        if item is _STOP:
            return records, True
        records.extend(item)
    return records, False
