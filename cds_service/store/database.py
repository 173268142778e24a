"""Where the decision store lives: the URL, and one SQLAlchemy engine per process.

SQLite (the default, a file) runs in WAL mode with a busy timeout and takes the write lock
at the start of every transaction, so concurrent writers from several worker processes wait
for each other instead of failing. PostgreSQL (psycopg 3) lets several service instances
share one store. Engines are never shared across `fork()`: gunicorn loads the app in its
master process, so each worker makes its own engine on first use.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

DEFAULT_DATABASE_URL = "sqlite:///cds-decisions.db"
SQLITE_BUSY_TIMEOUT_MS = 5_000
POSTGRES_CONNECT_TIMEOUT_S = 3
POSTGRES_STATEMENT_TIMEOUT_MS = 5_000
_POSTGRES_SCHEMES = {"postgresql", "postgres", "postgresql+psycopg"}
_SQLITE_SCHEMES = {"sqlite", "sqlite+pysqlite"}
READ_ONLY_OPTION = "cds_read_only"  # execution option: a transaction that only reads


class StoreUnavailable(Exception):
    """The store could not be reached or could not complete a write. Carries no data."""


class ValuesRefused(Exception):
    """The store is up but cannot hold these values (text it cannot store, a value longer than
    its column): writing them again cannot succeed. Carries no data."""


def parse_database_url(raw: str) -> URL:
    """A checked store URL: SQLite file (made absolute) or PostgreSQL through psycopg 3.

    Raises ValueError with a reason that never repeats the URL (it may hold a password).
    """
    try:
        url = make_url(raw.strip())
    except ArgumentError:
        raise ValueError(
            "is not a database URL (expected sqlite:///path/to/file.db or "
            "postgresql://user:password@host:5432/database)"
        ) from None
    scheme = url.drivername
    if scheme in _SQLITE_SCHEMES:
        if not url.database or url.database == ":memory:" or url.database.startswith("file:"):
            raise ValueError(
                "must name a SQLite file (sqlite:///path/to/file.db); an in-memory "
                "database would not be shared by the worker processes"
            )
        return url.set(drivername="sqlite+pysqlite", database=os.path.abspath(url.database))
    if scheme in _POSTGRES_SCHEMES:
        if not url.database:
            raise ValueError("must name the PostgreSQL database (postgresql://host/database)")
        return url.set(drivername="postgresql+psycopg")
    raise ValueError(
        f"must be a sqlite:/// or postgresql:// URL; the '{scheme}' scheme is not supported"
    )


def describe_url(url: URL) -> str:
    """The store as it may appear in logs and command output: password hidden."""
    if is_sqlite(url):
        return f"SQLite file {url.database}"
    return f"PostgreSQL {url.set(drivername='postgresql').render_as_string(hide_password=True)}"


def is_sqlite(url: URL) -> bool:
    return url.get_backend_name() == "sqlite"


def _sqlite_engine(url: URL) -> Engine:
    engine = create_engine(
        url,
        # One connection per thread at a time; the pool hands them between the request
        # thread and the decision-log writer thread.
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, say when a transaction begins (see _on_begin).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        # FULL: a feedback entry the service answered 200 for survives a power cut too.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # IMMEDIATE takes the write lock up front. A deferred transaction that reads and
        # then writes can fail at once with SQLITE_BUSY when another process wrote in
        # between; waiting at BEGIN is what busy_timeout can handle. Reads (reports) stay
        # deferred, so that a long report never holds up the writers (WAL lets both run).
        read_only = connection.get_execution_options().get(READ_ONLY_OPTION, False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


def _postgres_engine(url: URL) -> Engine:
    return create_engine(
        url,
        pool_size=4,
        max_overflow=4,
        pool_timeout=POSTGRES_CONNECT_TIMEOUT_S,
        pool_pre_ping=True,  # a restarted server costs one failed ping, not a failed write
        connect_args={
            "connect_timeout": POSTGRES_CONNECT_TIMEOUT_S,
            "options": f"-c statement_timeout={POSTGRES_STATEMENT_TIMEOUT_MS}",
            "application_name": "cds-service",
        },
    )


def create_store_engine(url: URL) -> Engine:
    return _sqlite_engine(url) if is_sqlite(url) else _postgres_engine(url)


class Database:
    """The engine for the current process, made on first use and again after a fork."""

    def __init__(self, url: URL) -> None:
        self.url = url
        self._engine: Engine | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()

    @property
    def engine(self) -> Engine:
        pid = os.getpid()
        engine = self._engine
        if engine is not None and self._pid == pid:
            return engine
        with self._lock:
            if self._engine is not None and self._pid != pid:
                # Inherited from the parent: drop it without closing the parent's sockets.
                self._engine.dispose(close=False)
                self._engine = None
            if self._engine is None:
                self._engine = create_store_engine(self.url)
                self._pid = pid
            return self._engine

    def dispose(self) -> None:
        """Close this process's connections (before forking workers, or at exit)."""
        with self._lock:
            if self._engine is not None and self._pid == os.getpid():
                self._engine.dispose()
            self._engine = None
            self._pid = None
