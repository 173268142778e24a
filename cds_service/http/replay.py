"""Token ids (`jti`) already used, shared by every worker process of one server.

gunicorn runs several worker processes; a token replayed to a different worker must be caught
too, so the record lives in one SQLite file rather than in process memory. The file is created
before the workers fork; each process opens its own connection on first use (SQLite
connections must not cross a fork). One atomic upsert decides "first use" even when two
workers see the same token at the same moment. Entries are kept until the token could no
longer be accepted anyway (its `exp` plus the clock skew) and purged after that.
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

log = logging.getLogger(__name__)

_PURGE_INTERVAL_SECONDS = 60.0
_BUSY_TIMEOUT_SECONDS = 5.0

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


class ReplayCache:
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
