"""Every performance mechanism of the service, in one place, each with the gain measured when
it was kept (`python bench/stages.py`: one realistic order-sign call in process; the HTTP
benchmark `bench/run.py` for the server-wide ones). Nothing here changes what an answer says.

Garbage collection (one policy):
- A hook call keeps the cyclic collector paused from before its parse until its answer is sent
  (`pause_for_request`, wired to Flask in `http/collector.py`): a parsed document holds no
  reference cycles, but its hundreds of thousands of allocations set off collections that walk
  it again and again. Measured in process on 2,000-resource records new to the service: 35 ms
  a call paused, 44 ms without (median of 30). Pausing around the parse alone (and in the FHIR
  reading threads) gained nothing measurable on top, so it is not done.
- What a worker loads at start (terminology, card content) is frozen out of the collector
  (`freeze_loaded_heap`): never scanned, and its pages not copied into each worker.
- At most two malloc arenas per process (`limit_malloc_arenas`): worker RSS after the large
  records 122-128 MB instead of 212 MB, the same throughput.

Memories (`Memo`, `remembered`): pure answers a worker gives again and again (what a code, a
text or a whole coding means; one shared fact per coding; a code system's canonical name) are
remembered per worker, bounded, and started afresh when full; long free text is never held.
Measured with `bench/stages.py` (a realistic order-sign call, ids new on every call, the codes
and displays recurring as real ones do): 0.6 ms a call with them, 7.7 ms without (text
matching every concept's patterns over every display, 12 times the whole call).
"""

from __future__ import annotations

import ctypes
import gc
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# Only short values are worth holding: long free text is read afresh each time.
MEMO_MAX_TEXT = 300


def worth_remembering(*values: object) -> bool:
    """Short enough to keep in a per-worker memory (the strings among `values`, together)."""
    return sum(len(v) for v in values if isinstance(v, str)) <= MEMO_MAX_TEXT


class Memo(Generic[K, V]):
    """A per-worker memory of a pure function's answers: bounded, started afresh when full
    (cheaper than tracking what was used least, and the working set refills in a few calls)."""

    __slots__ = ("_entries", "_limit")

    def __init__(self, limit: int) -> None:
        self._entries: dict[K, V] = {}
        self._limit = limit

    def get(self, key: K) -> V | None:
        return self._entries.get(key)

    def keep(self, key: K, value: V) -> V:
        if len(self._entries) >= self._limit:
            self._entries.clear()
        self._entries[key] = value
        return value

    def __len__(self) -> int:
        return len(self._entries)


def remembered(limit: int) -> Callable[[Callable[..., V]], Callable[..., V]]:
    """A function of short string arguments answered from a `Memo` (others computed afresh)."""

    def wrap(function: Callable[..., V]) -> Callable[..., V]:
        memo: Memo[tuple[object, ...], V] = Memo(limit)

        def answer(*args: object) -> V:
            found = memo.get(args)
            if found is None:
                found = function(*args)
                if worth_remembering(*args):
                    memo.keep(args, found)
            return found

        answer.__doc__ = function.__doc__
        answer.__wrapped__ = function  # type: ignore[attr-defined]
        return answer

    return wrap


# --- garbage collection ---------------------------------------------------------------------


class _RequestPause:
    paused = False  # this process's collector is paused by a hook call


_request_pause = _RequestPause()


def pause_for_request() -> None:
    """Pause the collector until the request is over (not when something else paused it)."""
    if gc.isenabled():
        gc.disable()
        _request_pause.paused = True


def end_request_pause() -> None:
    """End the pause a hook call made, if one is on."""
    if _request_pause.paused:
        _request_pause.paused = False
        gc.enable()


def freeze_loaded_heap() -> None:
    """Keep what is loaded now (it lives as long as the server) out of the collector's scans."""
    gc.freeze()


# glibc's mallopt parameter M_ARENA_MAX.
_M_ARENA_MAX = -8
MALLOC_ARENAS = 2


def limit_malloc_arenas() -> None:
    """At most MALLOC_ARENAS malloc arenas per process (glibc gives each thread its own, up to
    8 per core): memory one thread freed is reused by the others instead of staying with its
    thread. Elsewhere than glibc, nothing to do."""
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(_M_ARENA_MAX, MALLOC_ARENAS)
    except (OSError, AttributeError):
        pass
