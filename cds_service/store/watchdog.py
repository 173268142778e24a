"""Client-side time limits on store operations: a hung store costs a caller seconds, not a worker.

A server-side `statement_timeout` cannot fire on a server that is frozen (stopped, swapping,
behind a dead link that still accepts packets), and neither can a TCP keepalive while the
server's kernel still answers. So every store operation runs under a deadline kept here: the
connections a thread checks out while a limit is set are watched by one thread per process,
which breaks a connection still in use at its deadline. On PostgreSQL its socket is shut down
(the blocked read returns at once and the driver raises a connection error); on SQLite the
running statement is interrupted (waits for a lock are bounded by the busy timeout instead).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

log = logging.getLogger(__name__)

_local = threading.local()


class StoreTimeout(Exception):
    """A store operation passed its deadline. Carries no data."""


@contextlib.contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Store connections this thread checks out inside the block are broken `seconds` from
    now if still in use; None: no limit (operator commands, reports)."""
    previous = getattr(_local, "deadline", None)
    _local.deadline = None if seconds is None else time.monotonic() + seconds
    try:
        yield
    finally:
        _local.deadline = previous


def current_deadline() -> float | None:
    deadline: float | None = getattr(_local, "deadline", None)
    return deadline


def shut_down_socket(dbapi_connection: Any) -> None:
    """Break a psycopg connection from another thread: its blocked read returns at once."""
    descriptor = dbapi_connection.pgconn.socket  # raises once the connection is closed
    duplicate = socket.socket(fileno=os.dup(descriptor))
    try:
        duplicate.shutdown(socket.SHUT_RDWR)
    finally:
        duplicate.close()


def interrupt_statement(dbapi_connection: Any) -> None:
    """Stop the SQLite statement running on a connection (thread-safe in SQLite)."""
    dbapi_connection.interrupt()


class Watchdog:
    """Breaks watched connections at their deadline; one daemon thread per process."""

    def __init__(self) -> None:
        self._changed = threading.Condition(threading.Lock())
        self._watched: dict[int, tuple[float, Callable[[], None]]] = {}
        self._pid: int | None = None

    def watch(self, key: int, deadline: float, interrupt: Callable[[], None]) -> None:
        with self._changed:
            if self._pid != os.getpid():
                # First use in this process (a forked worker inherits no thread).
                self._watched = {}
                threading.Thread(target=self._run, name="cds-store-watchdog", daemon=True).start()
                self._pid = os.getpid()
            self._watched[key] = (deadline, interrupt)
            self._changed.notify()

    def release(self, key: int) -> None:
        # Under the lock: once this returns, the connection can be handed to another thread
        # and is never broken on this thread's account.
        with self._changed:
            self._watched.pop(key, None)

    def _run(self) -> None:
        with self._changed:
            while True:
                if not self._watched:
                    self._changed.wait()
                    continue
                now = time.monotonic()
                due = [key for key, (deadline, _) in self._watched.items() if deadline <= now]
                for key in due:
                    _, interrupt = self._watched.pop(key)
                    try:
                        interrupt()
                    except Exception as error:  # closed meanwhile: nothing left to break
                        log.debug("store connection not interrupted: %s", type(error).__name__)
                    else:
                        log.warning(
                            "store operation ran out of time; its connection was broken",
                            extra={"event": "store_operation_timeout"},
                        )
                if not due:
                    earliest = min(deadline for deadline, _ in self._watched.values())
                    self._changed.wait(earliest - now)


WATCHDOG = Watchdog()
