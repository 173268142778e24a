"""Parsing JSON text as the service receives it (hook requests, feedback, FHIR answers): fast,
and strict about what no later step could hold. Depends on nothing else of the service."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import orjson


class NumberOutOfRange(json.JSONDecodeError):
    """A JSON number no 64-bit floating-point value can hold (1e400, a 5,000-digit integer, a
    nonzero 1e-400 that would read as 0), or NaN / Infinity, which JSON does not have."""

    def __init__(self) -> None:
        super().__init__("a number is out of the range this service can hold", "", 0)


def _checked_float(literal: str) -> float:
    value = float(literal)  # a literal beyond the range reads as inf, never raises
    if math.isinf(value):
        raise NumberOutOfRange()
    if value == 0.0 and _NONZERO_MANTISSA.match(literal):
        raise NumberOutOfRange()  # so small it would read as zero
    return value


def _checked_int(literal: str) -> int | float:
    # Integers beyond 64 bits read as floats, as orjson reads them; one beyond the range of a
    # float is refused (and never reaches int(), whose digit limit raises a plain ValueError).
    if len(literal) <= 19:
        return int(literal)
    return _checked_float(literal)


def _refuse_constant(_name: str) -> float:
    raise NumberOutOfRange()


_NONZERO_MANTISSA = re.compile(r"-?0*\.?0*[1-9]")
# A literal can read as zero though it is not only with an exponent of -100 or less, or a long
# run of zeros after the point. Each regex starts with a literal, so it scans at memchr speed
# (a mixed-case class would scan ten times slower); together about 1 ms per MB, under a tenth
# of orjson's parse of the same document.
_SMALL_EXPONENTS = (re.compile(rb"e-0*[1-9][0-9]{2}"), re.compile(rb"E-0*[1-9][0-9]{2}"))
_LONG_ZERO_FRACTION = b"." + b"0" * 250
_MANTISSA_BYTES = frozenset(b"0123456789.")
_BEFORE_A_NUMBER = frozenset(b":,[ \t\r\n")


def _is_number_literal(raw: bytes, exponent_at: int) -> bool:
    """Whether the exponent at `exponent_at` ends a JSON number (not, say, a UUID in a string
    such as "…-a94e-1234-…"): its mantissa follows a delimiter."""
    index = exponent_at - 1
    while index >= 0 and raw[index] in _MANTISSA_BYTES:
        index -= 1
    if index >= 0 and raw[index] == ord("-"):
        index -= 1
    return index < 0 or raw[index] in _BEFORE_A_NUMBER


def _may_underflow(raw: bytes) -> bool:
    """Whether the document may hold a nonzero literal that reads as 0.0 (then parsed again,
    slowly, to decide); a literal inside a string can only cost that second parse."""
    for pattern in _SMALL_EXPONENTS:
        for match in pattern.finditer(raw):
            if _is_number_literal(raw, match.start()):
                return True
    return _LONG_ZERO_FRACTION in raw


def _parse_checked(raw: bytes | str) -> Any:
    """`json.loads` with every number checked; also reads the encodings orjson does not."""
    return json.loads(
        raw, parse_float=_checked_float, parse_int=_checked_int, parse_constant=_refuse_constant
    )


def loads_json(raw: bytes | str) -> Any:
    """Parse JSON as `json.loads` does, fast; every number must fit a 64-bit float (the
    collector's pause during a hook call is performance.py's, not this function's).

    orjson parses UTF-8 JSON several times faster; what it refuses (other encodings, a number
    beyond the range of a float) goes to `json.loads` with checked numbers. Refused, with a
    JSONDecodeError: a number no float can hold (NumberOutOfRange: 1e400, a 5,000-digit
    integer, 1e-400, which would silently read as 0), NaN and Infinity (not JSON), and a string
    holding half of a UTF-16 surrogate pair (`"\\ud800"`), which no text can hold: it could
    not be logged, stored or sent on. Integers beyond 64 bits read as floats.
    """
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        document = _parse_checked(raw)
    else:
        candidate = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
        if _may_underflow(candidate):
            _parse_checked(raw)  # orjson read it as 0.0; refused if the literal was not 0
        return document
    try:
        json.dumps(document, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise json.JSONDecodeError("a string holds a lone surrogate", "", 0) from None
    return document
