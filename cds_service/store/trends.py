"""Cards issued per UTC day and topic: the time series behind the dashboard's trend chart."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, func, select

from cds_service.store.report import issued_between
from cds_service.store.schema import card_decisions


@dataclass(frozen=True)
class DailyCount:
    day: date
    topic: str
    cards: int


def _utc_day(dialect: str) -> Any:
    issued_at = card_decisions.c.issued_at
    if dialect == "postgresql":
        # timestamptz -> UTC wall time -> its date, whatever the session's TimeZone.
        return func.date(func.timezone("UTC", issued_at))
    return func.date(issued_at)  # SQLite keeps UTC text; date() takes its day


def _as_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value))


def cards_per_day(
    connection: Connection, since: datetime | None = None, until: datetime | None = None
) -> list[DailyCount]:
    """Cards issued per day and topic in [since, until), days without cards left out."""
    day = _utc_day(connection.dialect.name).label("day")
    query = (
        select(day, card_decisions.c.topic, func.count())
        .where(*issued_between(since, until))
        .group_by(day, card_decisions.c.topic)
        .order_by(day, card_decisions.c.topic)
    )
    return [
        DailyCount(_as_date(found_day), topic, int(count))
        for found_day, topic, count in connection.execute(query)
    ]
