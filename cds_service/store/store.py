"""The decision store: what the service said (card decisions) and what clinicians did about it
(feedback). SQLAlchemy Core over SQLite or PostgreSQL.

Every database failure leaves as StoreUnavailable, without the driver's message (which can
quote stored values). After a connection failure the store is not tried again for a short
cool-down, so a down store costs callers nothing rather than a connect timeout each.
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
    Database,
    StoreUnavailable,
    ValuesRefused,
    describe_url,
    is_sqlite,
)
from cds_service.store.pseudonym import PatientPseudonymizer
from cds_service.store.schema import SchemaTooNew, card_decisions, feedback, migrate, store_meta

log = logging.getLogger(__name__)

_PATIENT_KEY_SECRET = "patient_key_secret"
_UNREACHABLE = (OperationalError, InterfaceError, PoolTimeout)


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
    return statement.execution_options(preserve_rowcount=True)


# Card decisions are written many rows to a statement: one driver call (and, on SQLite, one
# release of the GIL) per chunk instead of per card, so the writer thread hardly competes with
# the requests being answered. 90 rows of 11 values stay under SQLite's oldest bound-value limit.
_DECISION_ROWS_PER_STATEMENT = 90
_DECISION_COLUMNS = (
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
)


def _decision_insert_sql(connection: Connection, rows: int) -> str:
    dialect = connection.dialect
    quote = dialect.identifier_preparer.quote
    marker = "?" if dialect.paramstyle == "qmark" else "%s"
    row = "(" + ", ".join([marker] * len(_DECISION_COLUMNS)) + ")"
    return (
        f"INSERT INTO {quote(card_decisions.name)} "
        f"({', '.join(quote(name) for name in _DECISION_COLUMNS)}) "
        f"VALUES {', '.join([row] * rows)} "
        f"ON CONFLICT ({quote('card_uuid')}) DO NOTHING"
    )


def _insert_decision_rows(
    connection: Connection, records: Sequence[DecisionRecord], pseudonymizer: PatientPseudonymizer
) -> None:
    dialect = connection.dialect
    # Values are converted by the columns' own types, exactly as SQLAlchemy would bind them.
    converters = [card_decisions.c[name].type.bind_processor(dialect) for name in _DECISION_COLUMNS]
    patient_keys: dict[str, str] = {}  # a response's cards share one patient: one HMAC
    values: list[Any] = []
    for r in records:
        patient_key = patient_keys.get(r.patient_id)
        if patient_key is None:
            patient_key = patient_keys[r.patient_id] = pseudonymizer.pseudonym(r.patient_id)
        row = (
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
        )
        values.extend(
            value if convert is None else convert(value)
            for convert, value in zip(converters, row, strict=True)
        )
    width = len(_DECISION_COLUMNS)
    step = _DECISION_ROWS_PER_STATEMENT * width
    full_sql = _decision_insert_sql(connection, _DECISION_ROWS_PER_STATEMENT)
    for start in range(0, len(values), step):
        chunk = tuple(values[start : start + step])
        rows = len(chunk) // width
        sql = (
            full_sql
            if rows == _DECISION_ROWS_PER_STATEMENT
            else _decision_insert_sql(connection, rows)
        )
        connection.exec_driver_sql(sql, chunk)


class DecisionStore:
    def __init__(
        self, url: URL, patient_key_secret: str | None = None, *, cooldown_seconds: float = 2.0
    ) -> None:
        self.database = Database(url)
        self._configured_secret = patient_key_secret
        self._cooldown = cooldown_seconds
        self._unavailable_until = 0.0
        self._ready_pid: int | None = None
        self._pseudonymizer: PatientPseudonymizer | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> URL:
        return self.database.url

    def describe(self) -> str:
        return describe_url(self.database.url)

    @contextmanager
    def _guard(self) -> Iterator[None]:
        if time.monotonic() < self._unavailable_until:
            raise StoreUnavailable("the decision store was unreachable moments ago")
        try:
            yield
        except _UNREACHABLE as error:
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

    def ensure_ready(self) -> None:
        """Create or migrate the schema and load the patient key, once per process."""
        pid = os.getpid()
        if self._ready_pid == pid:
            return
        with self._lock:
            if self._ready_pid == pid:
                return
            with self._guard():
                try:
                    with self.database.engine.begin() as connection:
                        applied = migrate(connection)
                        secret = self._configured_secret or self._stored_secret(connection)
                except SchemaTooNew as error:
                    raise StoreUnavailable(str(error)) from None
            self._pseudonymizer = PatientPseudonymizer(secret)
            self._ready_pid = pid
            if applied:
                log.info(
                    "decision store schema migrated",
                    extra={
                        "event": "store_migrated",
                        "versions": applied,
                        "store": self.describe(),
                    },
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
        value: str = connection.scalar(
            select(store_meta.c.value).where(store_meta.c.name == _PATIENT_KEY_SECRET)
        )
        return value

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A write transaction on a ready store; any failure is StoreUnavailable."""
        self.ensure_ready()
        with self._guard(), self.database.engine.begin() as connection:
            yield connection

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A read-only connection for reports; any failure is StoreUnavailable."""
        self.ensure_ready()
        with self._guard(), self.database.engine.connect() as connection:
            connection.execution_options(**{READ_ONLY_OPTION: True})
            if connection.dialect.name == "postgresql":
                # The service's 5 s statement limit is for requests; a report over a year
                # of cards may take longer, and an operator can interrupt it.
                connection.execute(text("SET LOCAL statement_timeout = 0"))
            yield connection

    def dispose(self) -> None:
        self.database.dispose()

    # --- writes ---------------------------------------------------------------------------

    def record_decisions(self, records: Sequence[DecisionRecord]) -> None:
        """Store cards as issued. Idempotent: a card uuid already stored is skipped."""
        if not records:
            return
        with self.transaction() as connection:
            pseudonymizer = self._pseudonymizer
            assert pseudonymizer is not None  # set by ensure_ready
            _insert_decision_rows(connection, records, pseudonymizer)
            # Feedback can outrun the decision log; it is no longer "unknown" once the card is.
            connection.execute(
                update(feedback)
                .where(feedback.c.card_uuid.in_([r.card_uuid for r in records]))
                .where(feedback.c.card_known.is_(False))
                .values(card_known=True)
            )

    def record_feedback(
        self, service_id: str, entries: Iterable[FeedbackEntry], received_at: datetime | None = None
    ) -> FeedbackReceipt:
        """Store clinician responses. A repeated identical entry is stored once."""
        entries = list(entries)
        received_at = received_at or datetime.now(UTC)
        with self.transaction() as connection:
            known = set(
                connection.scalars(
                    select(card_decisions.c.card_uuid).where(
                        card_decisions.c.card_uuid.in_(sorted({e.card_uuid for e in entries}))
                    )
                )
            )
            statement = insert_ignoring_duplicates(connection, feedback, ["entry_hash"])
            stored = 0
            for entry in entries:
                result = connection.execute(
                    statement.values(_feedback_row(service_id, entry, known, received_at))
                )
                stored += result.rowcount
        unknown = sum(1 for e in entries if e.card_uuid not in known)
        return FeedbackReceipt(received=len(entries), stored=stored, unknown_cards=unknown)


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


def open_existing_store(url: URL, patient_key_secret: str | None = None) -> DecisionStore:
    """The store for an operator command. A SQLite file that does not exist is an error here
    (a report run from the wrong folder must not create an empty store and report zeros).
    """
    if is_sqlite(url) and not os.path.isfile(url.database or ""):
        raise StoreUnavailable(
            f"there is no decision store at {url.database} (set CDS_DATABASE_URL to the "
            "store the service writes)"
        )
    return DecisionStore(url, patient_key_secret)
