"""Identifiers the service mints: card and suggestion uuids, request ids.

Card uuids are time-ordered UUIDs (version 7, RFC 9562): standard UUIDs that sort by the
millisecond they were made, so the decision log appends to the end of its primary-key index
instead of writing at random places in it (a random key slows every insert as the log grows).
They name cards for feedback and audit; they are not secrets, so the random bits come from a
per-process generator seeded from the operating system, not a system call per id.
"""

from __future__ import annotations

import os
import random
import time

_RAND_A_BITS = 12
_RAND_B_BITS = 62
_VERSION_7 = 0x7
_VARIANT_RFC = 0b10

_generator = random.Random(os.urandom(32))


def _reseed_after_fork() -> None:
    # A forked worker must not repeat its parent's (or a sibling's) sequence.
    _generator.seed(os.urandom(32))


os.register_at_fork(after_in_child=_reseed_after_fork)


def time_ordered_uuid(now_ns: int | None = None) -> str:
    """A version 7 UUID as its canonical 36-character string."""
    millis = (time.time_ns() if now_ns is None else now_ns) // 1_000_000
    random_bits = _generator.getrandbits(_RAND_A_BITS + _RAND_B_BITS)
    value = (
        (millis & ((1 << 48) - 1)) << 80
        | _VERSION_7 << 76
        | (random_bits >> _RAND_B_BITS) << 64
        | _VARIANT_RFC << 62
        | (random_bits & ((1 << _RAND_B_BITS) - 1))
    )
    digits = f"{value:032x}"
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


def request_id() -> str:
    """A request id for the logs when the caller sent none: 32 hex digits."""
    return f"{_generator.getrandbits(128):032x}"
