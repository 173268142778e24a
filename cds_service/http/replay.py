"""Token ids (`jti`) already used: a token is accepted once, by any worker of any instance.

Where the record lives follows the decision store, so that every process that shares the store
shares the record too:

- PostgreSQL store: the store's `used_tokens` table, shared by every instance. While the store
  cannot be reached (a bounded wait, then a short cool-down), the check falls back to this
  host's own file, so authenticated calls go on; a token replayed to another instance during
  such an outage is not caught.
- SQLite store: a SQLite file beside the store (`<store>-used-tokens`), shared by the workers
  of the host and kept across restarts.
- CDS_REPLAY_DB: that SQLite file, whatever the store.

In every case one atomic upsert decides "first use", even when two workers or instances see
the same token at the same moment. Entries are kept until the token could no longer be
accepted anyway (its `exp` plus the clock skew) and purged after that. A SQLite record is
created before the workers fork; each process opens its own connection on first use (SQLite
connections must not cross a fork).
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import sqlite3
import tempfile
import threading
import time
from contextlib import closing
from typing import Protocol

from sqlalchemy import delete
from sqlalchemy.dialects import postgresql

from cds_service.store.database import StoreUnavailable, ValuesRefused, is_sqlite
from cds_service.store.schema import used_tokens
from cds_service.store.store import DecisionStore

log = logging.getLogger(__name__)

_PURGE_INTERVAL_SECONDS = 60.0
_BUSY_TIMEOUT_SECONDS = 5.0
# A token check waits this long for the shared store before using this host's record; it
# normally takes a millisecond.
STORE_CHECK_SECONDS = 0.5
_FALLBACK_LOG_INTERVAL_SECONDS = 60.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS used_tokens (
    issuer TEXT NOT NULL,
    jti TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (issuer, jti)
) WITHOUT ROWID
"""
# Inserts a new (issuer, jti); an existing row counts as free again only once it has expired.
_CLAIM = """
INSERT INTO used_tokens (issuer, jti, expires_at) VALUES (?, ?, ?)
ON CONFLICT (issuer, jti) DO UPDATE SET expires_at = excluded.expires_at
WHERE used_tokens.expires_at < ?
"""


class ReplayCacheError(Exception):
    """The replay record could not be read or written."""


class UsedTokens(Protocol):
    def first_use(self, issuer: str, jti: str, expires_at: float, now: float | None = None) -> bool:
        """Record the token id; False when it was already used and has not expired yet."""
        ...


class ReplayCache:
    """Used token ids in a SQLite file: every worker of one host (see the module doc)."""

    def __init__(self, path: str | None = None) -> None:
        if path is None:
            path = _private_temporary_file()
        self.path = path
        self._local = threading.local()
        self._last_purge = 0.0
        try:
            with closing(_connect(path)) as connection:
                connection.execute("PRAGMA journal_mode=WAL")
                connection.execute(_SCHEMA)
        except sqlite3.Error as error:
            raise ReplayCacheError(f"cannot use replay cache {path!r}: {error}") from None

    def first_use(self, issuer: str, jti: str, expires_at: float, now: float | None = None) -> bool:
        """Record the token id; False when it was already used and has not expired yet."""
        now = time.time() if now is None else now
        try:
            connection = self._connection()
            claimed = connection.execute(_CLAIM, (issuer, jti, expires_at, now)).rowcount == 1
            if now - self._last_purge >= _PURGE_INTERVAL_SECONDS:
                self._last_purge = now
                connection.execute("DELETE FROM used_tokens WHERE expires_at < ?", (now,))
        except sqlite3.Error as error:
            raise ReplayCacheError(str(error)) from None
        return claimed

    def _connection(self) -> sqlite3.Connection:
        # One connection per process and thread: never reuse one inherited across a fork.
        pid = os.getpid()
        if getattr(self._local, "pid", None) != pid:
            self._local.connection = _connect(self.path)
            self._local.pid = pid
        connection: sqlite3.Connection = self._local.connection
        return connection


def _connect(path: str) -> sqlite3.Connection:
    connection = sqlite3.connect(path, timeout=_BUSY_TIMEOUT_SECONDS, isolation_level=None)
    connection.execute("PRAGMA synchronous=NORMAL")
    return connection


def _private_temporary_file() -> str:
    folder = tempfile.mkdtemp(prefix="cds-service-replay-")  # mode 0700
    creator = os.getpid()

    def _remove() -> None:
        # Forked workers inherit this hook; only the process that made the folder removes it.
        if os.getpid() == creator:
            shutil.rmtree(folder, ignore_errors=True)

    atexit.register(_remove)
    return os.path.join(folder, "used-tokens.sqlite3")


class StoreReplayCache:
    """Used token ids in the PostgreSQL store, shared by every instance (see the module doc)."""

    def __init__(self, store: DecisionStore, fallback: ReplayCache) -> None:
        self._store = store
        self._fallback = fallback
        self._last_purge = 0.0
        self._last_fallback_log = 0.0

    def first_use(self, issuer: str, jti: str, expires_at: float, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        statement = postgresql.insert(used_tokens).values(
            issuer=issuer, jti=jti, expires_at=expires_at
        )
        # A new (issuer, jti), or one whose entry has expired, is claimed; rowcount says which.
        claim = statement.on_conflict_do_update(
            index_elements=[used_tokens.c.issuer, used_tokens.c.jti],
            set_={"expires_at": statement.excluded.expires_at},
            where=used_tokens.c.expires_at < now,
        ).execution_options(preserve_rowcount=True)
        try:
            with self._store.transaction(seconds=STORE_CHECK_SECONDS) as connection:
                claimed = connection.execute(claim).rowcount == 1
                if now - self._last_purge >= _PURGE_INTERVAL_SECONDS:
                    self._last_purge = now
                    connection.execute(delete(used_tokens).where(used_tokens.c.expires_at < now))
        except ValuesRefused as error:
            raise ReplayCacheError(str(error)) from None
        except StoreUnavailable as error:
            if time.monotonic() - self._last_fallback_log >= _FALLBACK_LOG_INTERVAL_SECONDS:
                self._last_fallback_log = time.monotonic()
                log.warning(
                    "replay check on this host only: the shared store is unavailable",
                    extra={"event": "replay_check_local", "reason": str(error)},
                )
            return self._fallback.first_use(issuer, jti, expires_at, now)
        # Recorded here too, so that a replay to this host is caught during a later outage.
        self._fallback.first_use(issuer, jti, expires_at, now)
        return claimed


def used_tokens_record(replay_db: str | None, store: DecisionStore) -> UsedTokens:
    """Where used token ids are kept, following the store (see the module doc)."""
    if replay_db:
        return ReplayCache(replay_db)
    if is_sqlite(store.url):
        return ReplayCache(f"{store.url.database}-used-tokens")
    return StoreReplayCache(store, fallback=ReplayCache())
