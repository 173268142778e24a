"""Tables of the decision store and the versioned migrations that create them.

`schema_migrations` records each applied version. Migrations run at start under a lock
(SQLite: the write lock of an IMMEDIATE transaction; PostgreSQL: a transaction-scoped
advisory lock), so several workers or instances starting together apply each version once.
DDL is transactional on both backends: a start killed half-way leaves the previous version.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    inspect,
    select,
    text,
)


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, on SQLite (no time zones) and PostgreSQL alike."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("store timestamps must be time-zone aware")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        stamp: datetime = value
        return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)


class Disposition(StrEnum):
    """What became of a card, as the decision log keeps it (`card_decisions.disposition`)."""

    SHOWN = "shown"  # returned to the client
    SILENT = "silent"  # its topic runs silently at this site: logged, never returned
    SNOOZED = "snoozed"  # a clinician snoozed its topic for this patient: logged, not returned


metadata = MetaData()
_ROW_ID = BigInteger().with_variant(Integer, "sqlite")  # SQLite: an alias of the rowid

schema_migrations = Table(
    "schema_migrations",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("description", Text, nullable=False),
    Column("applied_at", UtcDateTime, nullable=False),
)

store_meta = Table(
    "store_meta",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

# One row per card returned to a client (or, since version 3, held back by the site's
# configuration: see `disposition`). No names, identifiers or resource bodies: the
# patient appears only as a keyed HMAC of the patient id.
card_decisions = Table(
    "card_decisions",
    metadata,
    Column("card_uuid", String(64), primary_key=True),
    Column("issued_at", UtcDateTime, nullable=False, index=True),
    Column("service_id", String(100), nullable=False),
    Column("hook", String(64), nullable=False),
    Column("hook_instance", String(200), nullable=False),
    Column("topic", String(64), nullable=False, index=True),
    Column("indicator", String(16), nullable=False),
    Column("content_version", String(64), nullable=False),
    Column("suggestion_uuids", Text, nullable=False),  # JSON array of strings
    Column("patient_key", String(64), nullable=False),
    Column("patient_key_id", String(16), nullable=False),
    # Since version 3: a Disposition.
    Column("disposition", String(16), nullable=False, server_default=Disposition.SHOWN.value),
    # Since version 3: a snooze looks up the patient's overridden cards of a topic.
    Index("ix_card_decisions_patient_key_topic", "patient_key", "topic"),
)

# One row per distinct clinician response. entry_hash makes a repeated identical entry a
# no-op, also when two workers store it at the same moment.
feedback = Table(
    "feedback",
    metadata,
    Column("id", _ROW_ID, primary_key=True, autoincrement=True),
    Column("entry_hash", String(64), nullable=False, unique=True),
    Column("received_at", UtcDateTime, nullable=False, index=True),
    Column("service_id", String(100), nullable=False),
    Column("card_uuid", String(200), nullable=False, index=True),
    Column("card_known", Boolean, nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("outcome_at", UtcDateTime, nullable=False),
    Column("accepted_suggestions", Text, nullable=False),  # JSON array of strings
    Column("accepted_suggestion_count", Integer, nullable=False),
    Column("override_system", Text),
    Column("override_code", Text),
    Column("override_display", Text),
    Column("override_comment", Text),
)

# Cards issued but not logged, counted (never silently lost): dropped from a full queue,
# refused by the store, left over at a stop when neither the store nor the spool could take
# them, or queued in a worker that was killed. `source` names where a count was made, so a
# count imported twice (a spool file read again after a crash) is stored once.
decision_log_losses = Table(
    "decision_log_losses",
    metadata,
    Column("id", _ROW_ID, primary_key=True, autoincrement=True),
    Column("source", String(120), nullable=False, unique=True),
    Column("recorded_at", UtcDateTime, nullable=False, index=True),
    Column("reason", String(32), nullable=False),
    Column("cards", Integer, nullable=False),
)

# Token ids (`jti`) already used, shared by every instance that uses this store (PostgreSQL;
# a SQLite store keeps them in a file beside it instead). `expires_at` is seconds since the
# epoch after which the token could not be accepted anyway; rows past it are purged.
used_tokens = Table(
    "used_tokens",
    metadata,
    Column("issuer", Text, primary_key=True),
    Column("jti", Text, primary_key=True),
    Column("expires_at", Float, nullable=False),
    Index("ix_used_tokens_expires_at", "expires_at"),
)


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[Connection], None]


def _create_v1(connection: Connection) -> None:
    for table in (store_meta, card_decisions, feedback):
        table.create(connection, checkfirst=True)


def _create_v2(connection: Connection) -> None:
    for table in (decision_log_losses, used_tokens):
        table.create(connection, checkfirst=True)


def _add_dispositions_v3(connection: Connection) -> None:
    # A store made by this release has the column already (version 1 creates the table as it
    # is now); one made before gets it, every existing row a card that was shown.
    columns = {column["name"] for column in inspect(connection).get_columns(card_decisions.name)}
    if "disposition" not in columns:
        connection.execute(
            text(
                "ALTER TABLE card_decisions "
                "ADD COLUMN disposition VARCHAR(16) NOT NULL DEFAULT 'shown'"
            )
        )
    for index in card_decisions.indexes:
        index.create(connection, checkfirst=True)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "decision log, feedback and store settings", _create_v1),
    Migration(2, "cards not logged (counted) and used token ids", _create_v2),
    Migration(
        3,
        "silent and snoozed cards (disposition); cards by patient and topic",
        _add_dispositions_v3,
    ),
)
LATEST_VERSION = MIGRATIONS[-1].version
_POSTGRES_MIGRATION_LOCK = 0x43445348  # any constant shared by every instance ("CDSH")


class SchemaTooNew(Exception):
    """The store was migrated by a newer release of the service."""


def migrate(connection: Connection) -> list[int]:
    """Bring the schema to LATEST_VERSION inside the caller's transaction; versions applied."""
    if connection.dialect.name == "postgresql":
        connection.execute(
            text("SELECT pg_advisory_xact_lock(:key)"), {"key": _POSTGRES_MIGRATION_LOCK}
        )
    schema_migrations.create(connection, checkfirst=True)
    applied = set(connection.scalars(select(schema_migrations.c.version)))
    newest = max(applied, default=0)
    if newest > LATEST_VERSION:
        raise SchemaTooNew(
            f"the store's schema is version {newest}; this release knows up to {LATEST_VERSION}"
        )
    done = []
    for migration in MIGRATIONS:
        if migration.version in applied:
            continue
        migration.apply(connection)
        connection.execute(
            schema_migrations.insert().values(
                version=migration.version,
                description=migration.description,
                applied_at=datetime.now(UTC),
            )
        )
        done.append(migration.version)
    return done
