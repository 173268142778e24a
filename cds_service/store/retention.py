"""Retention: delete card decisions and feedback older than a cut-off.

Deleted in chunks, one short transaction each, so a large purge never holds the store's
write lock long enough to delay the decision log or a feedback post.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Column, Table, delete, func, select

from cds_service.store.schema import card_decisions, feedback
from cds_service.store.store import DecisionStore

CHUNK_ROWS = 5_000


@dataclass(frozen=True)
class PurgeResult:
    cutoff: datetime
    card_decisions: int
    feedback_entries: int
    dry_run: bool


def _count(store: DecisionStore, table: Table, stamp: Column[datetime], cutoff: datetime) -> int:
    with store.reading() as connection:
        counted = connection.scalar(select(func.count()).select_from(table).where(stamp < cutoff))
        return int(counted or 0)


def _delete(
    store: DecisionStore,
    table: Table,
    key: Column[object],
    stamp: Column[datetime],
    cutoff: datetime,
) -> int:
    deleted = 0
    while True:
        chunk = select(key).where(stamp < cutoff).limit(CHUNK_ROWS).scalar_subquery()
        with store.transaction() as connection:
            statement = delete(table).where(key.in_(chunk))
            count = connection.execute(statement.execution_options(preserve_rowcount=True)).rowcount
        deleted += count
        if count < CHUNK_ROWS:
            return deleted


def purge(store: DecisionStore, cutoff: datetime, *, dry_run: bool = False) -> PurgeResult:
    """Cards issued and feedback received before `cutoff` (aware datetime)."""
    targets = (
        (card_decisions, card_decisions.c.card_uuid, card_decisions.c.issued_at),
        (feedback, feedback.c.id, feedback.c.received_at),
    )
    if dry_run:
        counts = [_count(store, table, stamp, cutoff) for table, _, stamp in targets]
    else:
        counts = [_delete(store, table, key, stamp, cutoff) for table, key, stamp in targets]
    return PurgeResult(cutoff, counts[0], counts[1], dry_run)
