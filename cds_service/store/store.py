"""The decision store: what the service said (card decisions) and what clinicians did about it
(feedback). SQLAlchemy Core over SQLite or PostgreSQL.

Every database failure leaves as StoreUnavailable, without the driver's message (which can
quote stored values). Every operation of the service is bounded in time on the client side
(database.STORE_OPERATION_SECONDS). After a connection failure or a timeout the store is not
tried again for a short cool-down, so a down or hung store costs callers nothing rather than
a timeout each.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Insert, Table, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
    StatementError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout

from cds_service.protocol.feedback import FeedbackEntry
from cds_service.store.database import (
    READ_ONLY_OPTION,
    STORE_OPERATION_SECONDS,
    Database,
    StoreUnavailable,
    ValuesRefused,
    describe_url,
    is_sqlite,
    server_statement_ms,
)
from cds_service.store.pseudonym import PatientPseudonymizer
from cds_service.store.schema import (
    Disposition,
    SchemaTooNew,
    card_decisions,
    decision_log_losses,
    feedback,
    migrate,
    store_meta,
)
from cds_service.store.watchdog import StoreTimeout, time_limit

log = logging.getLogger(__name__)

_PATIENT_KEY_SECRET = "patient_key_secret"
# How long a report read by the service itself (the dashboard) may take.
READ_SECONDS = 10.0
_UNREACHABLE = (OperationalError, InterfaceError, PoolTimeout, StoreTimeout)


def _values_refused(error: SQLAlchemyError) -> bool:
    """The database (or the driver, binding a value) refused what was sent, not the link."""
    if isinstance(error, DataError | IntegrityError):
        return True
    return isinstance(error, StatementError) and not isinstance(error, DBAPIError)


@dataclass(frozen=True)
class DecisionRecord:
    """One card returned to a client, as the decision log keeps it."""

    card_uuid: str
    issued_at: datetime
    service_id: str
    hook: str
    hook_instance: str
    topic: str
    indicator: str
    content_version: str
    suggestion_uuids: tuple[str, ...]
    # Held in memory until written; only its keyed HMAC reaches the store.
    patient_id: str = field(repr=False)
    # Shown, or held back by the site's configuration: silent or snoozed.
    disposition: str = Disposition.SHOWN


@dataclass(frozen=True)
class FeedbackReceipt:
    received: int
    stored: int
    unknown_cards: int

    @property
    def duplicates(self) -> int:
        return self.received - self.stored


def insert_ignoring_duplicates(connection: Connection, table: Table, keys: Sequence[str]) -> Insert:
    """INSERT … ON CONFLICT DO NOTHING: a row whose key is already stored is skipped."""
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table).on_conflict_do_nothing(index_elements=list(keys))
    # The row count (1 stored, 0 skipped) is the answer; keep it on every driver.
    insert: Insert = statement.execution_options(preserve_rowcount=True)
    return insert


# Card decisions are written many rows to a statement: one driver call (and, on SQLite, one
# release of the GIL) per chunk instead of per card, so the writer thread hardly competes with
# the requests being answered, in chunks that stay under SQLite's oldest bound-value limit (999).
DECISION_COLUMNS = (
    "card_uuid",
    "issued_at",
    "service_id",
    "hook",
    "hook_instance",
    "topic",
    "indicator",
    "content_version",
    "suggestion_uuids",
    "patient_key",
    "patient_key_id",
    "disposition",
)
_DECISION_ROWS_PER_STATEMENT = 999 // len(DECISION_COLUMNS)


def _decision_insert_sql(connection: Connection, rows: int) -> str:
    dialect = connection.dialect
    quote = dialect.identifier_preparer.quote
    marker = "?" if dialect.paramstyle == "qmark" else "%s"
    row = "(" + ", ".join([marker] * len(DECISION_COLUMNS)) + ")"
    return (
        f"INSERT INTO {quote(card_decisions.name)} "
        f"({', '.join(quote(name) for name in DECISION_COLUMNS)}) "
        f"VALUES {', '.join([row] * rows)} "
        f"ON CONFLICT ({quote('card_uuid')}) DO NOTHING"
    )


DecisionRow = tuple[Any, ...]  # a card as stored: the values of DECISION_COLUMNS, in order


def decision_rows(
    records: Sequence[DecisionRecord], pseudonymizer: PatientPseudonymizer
) -> list[DecisionRow]:
    """Cards as the store keeps them: the patient only as its keyed HMAC."""
    patient_keys: dict[str, str] = {}  # a response's cards share one patient: one HMAC
    rows = []
    for r in records:
        patient_key = patient_keys.get(r.patient_id)
        if patient_key is None:
            patient_key = patient_keys[r.patient_id] = pseudonymizer.pseudonym(r.patient_id)
        rows.append(
            (
                r.card_uuid,
                r.issued_at,
                r.service_id,
                r.hook,
                r.hook_instance,
                r.topic,
                r.indicator,
                r.content_version,
                json.dumps(list(r.suggestion_uuids)),
                patient_key,
                pseudonymizer.key_id,
                r.disposition,
            )
        )
    return rows


def _insert_decision_rows(connection: Connection, rows: Sequence[DecisionRow]) -> None:
    dialect = connection.dialect
    # Values are converted by the columns' own types, exactly as SQLAlchemy would bind them.
    converters = [card_decisions.c[name].type.bind_processor(dialect) for name in DECISION_COLUMNS]
    values: list[Any] = []
    for row in rows:
        values.extend(
            value if convert is None else convert(value)
            for convert, value in zip(converters, row, strict=True)
        )
    width = len(DECISION_COLUMNS)
    step = _DECISION_ROWS_PER_STATEMENT * width
    full_sql = _decision_insert_sql(connection, _DECISION_ROWS_PER_STATEMENT)
    for start in range(0, len(values), step):
        chunk = tuple(values[start : start + step])
        count = len(chunk) // width
        sql = (
            full_sql
            if count == _DECISION_ROWS_PER_STATEMENT
            else _decision_insert_sql(connection, count)
        )
        connection.exec_driver_sql(sql, chunk)


class DecisionStore:
    def __init__(
        self,
        url: URL,
        patient_key_secret: str | None = None,
        *,
        cooldown_seconds: float = 2.0,
        operation_seconds: float | None = STORE_OPERATION_SECONDS,
    ) -> None:
        """`operation_seconds`: the client-side limit of each operation; None for operator
        commands, which may wait."""
        self.database = Database(url, operation_seconds)
        self._configured_secret = patient_key_secret
        self._cooldown = cooldown_seconds
        self._unavailable_until = 0.0
        # Once ready, a forked worker inherits it: the schema is in the database, the patient key
        # in memory (the engine is made again per process by Database).
        self._ready = False
        self._pseudonymizer: PatientPseudonymizer | None = None
        self._lock = threading.Lock()
        # SQLite: one writing transaction per process at a time (see _one_writer).
        self._writer = threading.Lock()

    @property
    def url(self) -> URL:
        return self.database.url

    def describe(self) -> str:
        return describe_url(self.database.url)

    @contextmanager
    def _guard(self, *, limited: bool = True, seconds: float | None = None) -> Iterator[None]:
        """Store errors as StoreUnavailable or ValuesRefused; when `limited`, within `seconds`
        (default: the store's operation limit, if it has one)."""
        if time.monotonic() < self._unavailable_until:
            raise StoreUnavailable("the decision store was unreachable moments ago")
        own_limit = self.database.operation_seconds
        limit = (seconds or own_limit) if limited else None
        try:
            with time_limit(limit):
                yield
        except _UNREACHABLE as error:
            # A caller's own shorter limit running out (the snooze look-up's) says the store was
            # slow for that caller, not that it is down: it does not close the store to the
            # feedback and the decision log, which the store's own limit would.
            if limit is None or own_limit is None or limit >= own_limit:
                self._unavailable_until = time.monotonic() + self._cooldown
            raise StoreUnavailable(
                f"the decision store is unreachable ({type(error).__name__})"
            ) from error
        except SQLAlchemyError as error:
            if _values_refused(error):
                raise ValuesRefused(
                    f"the decision store cannot hold these values ({type(error).__name__})"
                ) from error
            raise StoreUnavailable(f"the decision store failed ({type(error).__name__})") from error

    def end_cooldown(self) -> None:
        """Let the next operation try the store even if it failed moments ago (at a stop, where
        one more attempt costs less than spooling)."""
        self._unavailable_until = 0.0

    def ensure_ready(self, seconds: float | None = None) -> None:
        """Create or migrate the schema and load the patient key, once (the server does it before
        its workers fork); within `seconds` when given (default: the store's operation limit)."""
        if self._ready:
            return
        # Another thread may be preparing the store: a caller with a limit waits no longer.
        if not self._lock.acquire(timeout=-1 if seconds is None else seconds):
            raise StoreUnavailable("the decision store is being prepared by another thread")
        try:
            if self._ready:
                return
            with self._guard(seconds=seconds):
                try:
                    with self.database.engine.begin() as connection:
                        applied = migrate(connection)
                        secret = self._configured_secret or self._stored_secret(connection)
                except SchemaTooNew as error:
                    raise StoreUnavailable(str(error)) from error
            self._pseudonymizer = PatientPseudonymizer(secret)
            self._ready = True
        finally:
            self._lock.release()
        if applied:
            log.info(
                "decision store schema migrated",
                extra={"event": "store_migrated", "versions": applied, "store": self.describe()},
            )

    def _stored_secret(self, connection: Connection) -> str:
        generated = connection.execute(
            insert_ignoring_duplicates(connection, store_meta, ["name"]).values(
                name=_PATIENT_KEY_SECRET, value=secrets.token_hex(32)
            )
        )
        if generated.rowcount:
            log.info(
                "generated a patient key secret and kept it in the decision store",
                extra={"event": "patient_key_generated"},
            )
        value = connection.scalar(
            select(store_meta.c.value).where(store_meta.c.name == _PATIENT_KEY_SECRET)
        )
        return str(value)

    @contextmanager
    def transaction(self, seconds: float | None = None) -> Iterator[Connection]:
        """A write transaction on a ready store, within `seconds` (default: the store's
        operation limit); any failure is StoreUnavailable."""
        self.ensure_ready()
        with (
            self._guard(seconds=seconds),
            self._one_writer(seconds),
            self.database.engine.begin() as connection,
        ):
            yield connection

    @contextmanager
    def _one_writer(self, seconds: float | None) -> Iterator[None]:
        """On SQLite, the threads of a worker write one after the other. SQLite has a single
        writer anyway, and its busy wait (sleep and retry) is unfair to a crowd: with 32
        threads per worker, 1,000 feedback posts from 24 clients at once through 3 workers got
        197 answers of 503 (a write waited past the limit); queued here, in order, none did."""
        if self.database.url.get_backend_name() != "sqlite":
            yield
            return
        limit = seconds or self.database.operation_seconds
        if not self._writer.acquire(timeout=-1 if limit is None else limit):
            raise StoreUnavailable("the decision store is busy with this worker's other writes")
        try:
            yield
        finally:
            self._writer.release()

    @contextmanager
    def reading(self, seconds: float | None = None) -> Iterator[Connection]:
        """A read-only connection; any failure is StoreUnavailable. An operator command's
        store reads without a limit (a report over a year may take a while, and an operator
        can interrupt it); the service's within `seconds` (default READ_SECONDS, for the
        dashboard; a hook call's snooze check asks for much less), so a hung store never holds
        a worker."""
        limit = None if self.database.operation_seconds is None else (seconds or READ_SECONDS)
        self.ensure_ready(limit)
        with (
            self._guard(limited=limit is not None, seconds=limit),
            self.database.engine.connect() as connection,
        ):
            connection.execution_options(**{READ_ONLY_OPTION: True})
            if connection.dialect.name == "postgresql":
                # The server stops the statement a moment before the client would give up.
                server_limit = 0 if limit is None else server_statement_ms(limit)
                connection.execute(text(f"SET LOCAL statement_timeout = {server_limit}"))
            yield connection

    def patient_key(self, patient_id: str) -> str:
        """The patient's pseudonym, as the decision log keeps it (on a ready store)."""
        assert self._pseudonymizer is not None, "ensure_ready first"
        return self._pseudonymizer.pseudonym(patient_id)

    def dispose(self) -> None:
        self.database.dispose()

    # --- writes ---------------------------------------------------------------------------

    def pseudonymizer(self) -> PatientPseudonymizer | None:
        """The patient key, also without the store: from the configured secret, or as loaded
        from the store by this process or the one it was forked from; None if neither."""
        if self._pseudonymizer is None and self._configured_secret:
            self._pseudonymizer = PatientPseudonymizer(self._configured_secret)
        return self._pseudonymizer

    def record_decisions(self, records: Sequence[DecisionRecord]) -> None:
        """Store cards as issued. Idempotent: a card uuid already stored is skipped."""
        if not records:
            return
        self.ensure_ready()
        pseudonymizer = self._pseudonymizer
        assert pseudonymizer is not None  # set by ensure_ready
        self.record_decision_rows(decision_rows(records, pseudonymizer))

    def record_decision_rows(
        self, rows: Sequence[DecisionRow], losses: Sequence[tuple[str, str, int]] = ()
    ) -> None:
        """Store cards in their stored form (as spooled), and counts of cards lost
        (source, reason, cards), in one transaction. Idempotent, like record_decisions."""
        card_uuids = [row[0] for row in rows]
        with self.transaction() as connection:
            if rows:
                _insert_decision_rows(connection, rows)
                # Feedback can outrun the decision log; it is not "unknown" once the card is.
                _link_feedback(connection, card_uuids)
            if losses:
                _insert_losses(connection, losses)
        if rows and self._concurrent_writers:
            # Feedback stored while this transaction was open was invisible to it (and this
            # card to the feedback's); whichever commits last links them (see record_feedback).
            with self.transaction() as connection:
                _link_feedback(connection, card_uuids)

    def record_losses(self, losses: Sequence[tuple[str, str, int]]) -> None:
        """Counts of cards issued but never logged: (source, reason, cards) each; a source
        already stored is skipped."""
        self.record_decision_rows((), losses)

    def record_feedback(
        self, service_id: str, entries: Iterable[FeedbackEntry], received_at: datetime | None = None
    ) -> FeedbackReceipt:
        """Store clinician responses. A repeated identical entry is stored once."""
        entries = list(entries)
        received_at = received_at or datetime.now(UTC)
        with self.transaction() as connection:
            known = _logged_cards(connection, {e.card_uuid for e in entries})
            statement = insert_ignoring_duplicates(connection, feedback, ["entry_hash"])
            stored = 0
            for entry in entries:
                result = connection.execute(
                    statement.values(_feedback_row(service_id, entry, known, received_at))
                )
                stored += result.rowcount
        unseen = {e.card_uuid for e in entries} - known
        if unseen and self._concurrent_writers:
            known |= self._link_after_commit(unseen)
        unknown = sum(1 for e in entries if e.card_uuid not in known)
        return FeedbackReceipt(received=len(entries), stored=stored, unknown_cards=unknown)

    @property
    def _concurrent_writers(self) -> bool:
        """PostgreSQL runs the decision log's and the feedback's transactions side by side,
        each blind to the other until it commits; SQLite runs them one after the other."""
        return not is_sqlite(self.url)

    def _link_after_commit(self, card_uuids: set[str]) -> set[str]:
        """Cards logged by a transaction that ran beside the feedback's: link the feedback to
        them now. Either this or the decision log's own check after its commit sees the other
        (READ COMMITTED: each statement sees every earlier commit), so no link is missed."""
        try:
            with self.transaction() as connection:
                logged = _logged_cards(connection, card_uuids)
                if logged:
                    _link_feedback(connection, logged)
        except StoreUnavailable:  # the feedback is stored; the decision log links it later
            return set()
        return logged


def _logged_cards(connection: Connection, card_uuids: Iterable[str]) -> set[str]:
    return set(
        connection.scalars(
            select(card_decisions.c.card_uuid).where(
                card_decisions.c.card_uuid.in_(sorted(card_uuids))
            )
        )
    )


def _link_feedback(connection: Connection, card_uuids: Iterable[str]) -> None:
    connection.execute(
        update(feedback)
        .where(feedback.c.card_uuid.in_(list(card_uuids)))
        .where(feedback.c.card_known.is_(False))
        .values(card_known=True)
    )


def _insert_losses(connection: Connection, losses: Sequence[tuple[str, str, int]]) -> None:
    statement = insert_ignoring_duplicates(connection, decision_log_losses, ["source"])
    now = datetime.now(UTC)
    for source, reason, cards in losses:
        connection.execute(
            statement.values(source=source, recorded_at=now, reason=reason, cards=cards)
        )


def _feedback_row(
    service_id: str, entry: FeedbackEntry, known: set[str], received_at: datetime
) -> dict[str, Any]:
    reason = entry.override_reason
    return {
        "entry_hash": entry.fingerprint(service_id),
        "received_at": received_at,
        "service_id": service_id,
        "card_uuid": entry.card_uuid,
        "card_known": entry.card_uuid in known,
        "outcome": entry.outcome.value,
        "outcome_at": entry.outcome_at,
        "accepted_suggestions": json.dumps(list(entry.accepted_suggestions)),
        "accepted_suggestion_count": len(set(entry.accepted_suggestions)),
        "override_system": reason.system if reason else None,
        "override_code": reason.code if reason else None,
        "override_display": reason.display if reason else None,
        "override_comment": reason.comment if reason else None,
    }


def start_up_problem(store: DecisionStore, error: StoreUnavailable) -> str | None:
    """Why the service must not start with this store, when `error` (from ensure_ready at
    start) cannot pass by itself: a SQLite file that cannot be opened or written (a missing
    folder, no permission, not a database), or a schema newer than this release. None when it
    may (a PostgreSQL server that is down or hung, a SQLite file locked for a moment): cards are
    served meanwhile, and the store is used once it is back."""
    cause = error.__cause__
    if isinstance(cause, SchemaTooNew):
        return str(cause)
    if not is_sqlite(store.url):
        return None
    driver_error = getattr(cause, "orig", None)
    if getattr(driver_error, "sqlite_errorname", "") in ("SQLITE_BUSY", "SQLITE_LOCKED"):
        return None
    path = store.url.database or ""
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        return f"the folder of the SQLite file {path} does not exist"
    name = getattr(driver_error, "sqlite_errorname", None) or type(cause or error).__name__
    return f"the SQLite file {path} cannot be opened and written ({name})"


def open_existing_store(url: URL, patient_key_secret: str | None = None) -> DecisionStore:
    """The store for an operator command. A SQLite file that does not exist is an error here
    (a report run from the wrong folder must not create an empty store and report zeros).
    """
    if is_sqlite(url) and not os.path.isfile(url.database or ""):
        raise StoreUnavailable(
            f"there is no decision store at {url.database} (set CDS_DATABASE_URL to the "
            "store the service writes)"
        )
    return DecisionStore(url, patient_key_secret, operation_seconds=None)
