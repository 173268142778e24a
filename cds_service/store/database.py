"""Where the decision store lives: the URL, and one SQLAlchemy engine per process.

SQLite (the default, a file) runs in WAL mode with a busy timeout and takes the write lock
at the start of every transaction, so concurrent writers from several worker processes wait
for each other instead of failing. PostgreSQL (psycopg 3) lets several service instances
share one store. Engines are never shared across `fork()`: the server loads the app in its
master process, so each worker makes its own engine on first use.

Every operation of the service on the store is bounded on the client side (see watchdog.py):
connecting by libpq's connect timeout, waiting for a SQLite lock by the busy timeout, and
everything else by the operation's deadline. Operator commands (reports, purges) set none.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DisconnectionError

from cds_service.store.watchdog import (
    WATCHDOG,
    StoreTimeout,
    current_deadline,
    interrupt_statement,
    shut_down_socket,
)

DEFAULT_DATABASE_URL = "sqlite:///cds-decisions.db"
# The longest one store operation of the service may take (a feedback post, a decision-log
# batch, a token check): a hung store then costs a feedback post a 503 within 3 s.
STORE_OPERATION_SECONDS = 2.0
# Operator commands (report, purge) wait longer for the service's writers to let go.
OPERATOR_SQLITE_BUSY_SECONDS = 30.0
OPERATOR_STATEMENT_TIMEOUT_MS = 5_000  # a report lifts it (see DecisionStore.reading)
POSTGRES_CONNECT_TIMEOUT_S = 2  # libpq's smallest
# Idle connections to a host that went away are found by TCP (ignored on Unix sockets).
_POSTGRES_TCP_OPTIONS = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 3,
    "keepalives_count": 3,
    "tcp_user_timeout": 5_000,  # ms unacknowledged data may wait before the link counts as dead
}
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


def _bound_checkouts(
    engine: Engine, interrupt: Callable[[Any], None], ping: Callable[[Any], Any] | None
) -> None:
    """Watch every connection checked out under a deadline, and ping a reused connection
    (what pool_pre_ping does, but after the watch begins, so a frozen server cannot hold the
    ping either)."""

    @event.listens_for(engine, "connect")
    def _fresh(_dbapi_connection: Any, record: Any) -> None:
        record.info["fresh"] = True

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        deadline = current_deadline()
        if deadline is not None:
            WATCHDOG.watch(id(record), deadline, lambda: interrupt(dbapi_connection))
        if ping is None or record.info.pop("fresh", False):
            return
        try:
            ping(dbapi_connection)
        except Exception as error:
            if deadline is not None and time.monotonic() >= deadline:
                WATCHDOG.release(id(record))
                # Not a DisconnectionError: the pool would then connect again, past the deadline.
                raise StoreTimeout("the store did not answer a ping in time") from None
            raise DisconnectionError("the pooled connection is gone") from error

    @event.listens_for(engine, "checkin")
    def _checkin(_dbapi_connection: Any, record: Any) -> None:
        WATCHDOG.release(id(record))


def _sqlite_engine(url: URL, operation_seconds: float | None) -> Engine:
    busy_seconds = operation_seconds or OPERATOR_SQLITE_BUSY_SECONDS
    engine = create_engine(
        url,
        # One connection per thread at a time; the pool hands them between the request
        # thread and the decision-log writer thread.
        connect_args={"check_same_thread": False, "timeout": busy_seconds},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, say when a transaction begins (see _on_begin).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # A lock wait cannot be interrupted: the busy timeout is its bound.
        cursor.execute(f"PRAGMA busy_timeout={int(busy_seconds * 1000)}")
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

    _bound_checkouts(engine, interrupt_statement, ping=None)
    return engine


def server_statement_ms(seconds: float) -> int:
    """The PostgreSQL statement_timeout for a client limit of `seconds`: a quarter of a second
    (at most a quarter of the limit) earlier, so a slow statement ends on the server cleanly."""
    return int(seconds * 1000 - min(250, seconds * 250))


def _postgres_engine(url: URL, operation_seconds: float | None) -> Engine:
    # The server stops a statement a moment before the client breaks the connection, so a
    # slow (not hung) server ends an operation cleanly and keeps the connection.
    statement_ms = (
        server_statement_ms(operation_seconds)
        if operation_seconds
        else OPERATOR_STATEMENT_TIMEOUT_MS
    )
    engine = create_engine(
        url,
        pool_size=4,
        max_overflow=4,
        pool_timeout=operation_seconds or POSTGRES_CONNECT_TIMEOUT_S,
        connect_args={
            "connect_timeout": POSTGRES_CONNECT_TIMEOUT_S,
            "options": f"-c statement_timeout={statement_ms}",
            "application_name": "cds-service",
            **_POSTGRES_TCP_OPTIONS,
        },
    )
    # A restarted server costs one failed ping, not a failed write.
    _bound_checkouts(engine, shut_down_socket, ping=engine.dialect.do_ping)
    return engine


def create_store_engine(url: URL, operation_seconds: float | None = None) -> Engine:
    """An engine whose connections are bounded when an operation sets a deadline; sized for
    operations of `operation_seconds` (None: operator commands)."""
    if is_sqlite(url):
        return _sqlite_engine(url, operation_seconds)
    return _postgres_engine(url, operation_seconds)


class Database:
    """The engine for the current process, made on first use and again after a fork."""

    def __init__(self, url: URL, operation_seconds: float | None = STORE_OPERATION_SECONDS) -> None:
        self.url = url
        self.operation_seconds = operation_seconds
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
                self._engine = create_store_engine(self.url, self.operation_seconds)
                self._pid = pid
            return self._engine

    def dispose(self) -> None:
        """Close this process's connections (before forking workers, or at exit)."""
        with self._lock:
            if self._engine is not None and self._pid == os.getpid():
                self._engine.dispose()
            self._engine = None
            self._pid = None
