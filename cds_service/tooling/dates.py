"""Move a fixture's dates so that it means the same on another day.

A fixture is written for its evaluation date ("today" = 2026-11-22): ten days of pain means an
onset ten days before that. A service running with today's real date sees the same story only
if every date moves by the same number of days. Full dates and dateTimes (YYYY-MM-DD, with or
without a time) are shifted; partial dates (YYYY, YYYY-MM) are left alone, because a bare year
cannot be told apart from a code. Identifiers, codes, systems, versions and references are never
touched, whatever they look like.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Any

_FULL_DATE = re.compile(r"^(\d{4}-\d{2}-\d{2})(T[0-9:.]+(?:Z|[+-]\d{2}:\d{2})?)?$")
_NEVER_DATES = frozenset({"id", "code", "system", "version", "reference", "fullUrl", "url"})


def shift_value(text: str, days: int) -> str:
    match = _FULL_DATE.match(text)
    if not match:
        return text
    try:
        moved = date.fromisoformat(match.group(1)) + timedelta(days=days)
    except ValueError:
        return text  # looks like a date but is not one (e.g. month 13): leave it
    return moved.isoformat() + (match.group(2) or "")


def shift_dates(document: Any, days: int) -> Any:
    """`document` with every full date and dateTime moved by `days` (a copy unless 0)."""
    if days == 0:
        return document
    return _shift(document, days)


def _shift(node: Any, days: int) -> Any:
    if isinstance(node, dict):
        return {
            key: value if key in _NEVER_DATES else _shift(value, days)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_shift(item, days) for item in node]
    if isinstance(node, str):
        return shift_value(node, days)
    return node
