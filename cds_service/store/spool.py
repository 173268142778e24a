"""The spool: a local folder that keeps the decision log's cards when a worker stops while the
store cannot take them, until a later start (or a running worker) writes them to the store.

Cards are spooled in the form the store keeps them (the patient only as its keyed HMAC), one
file per stop, written under a temporary name and renamed when complete, so a file is either
whole or absent. The folder is bounded (CDS_SPOOL_MAX_BYTES): what does not fit is counted,
and counts of cards that could not be kept travel in the spool too, to reach the store's
`decision_log_losses` table and `cds-service report`.

Each worker also keeps a tiny "pending" ledger here: the number of cards it holds that are not
yet in the store, in a memory-mapped file it holds an exclusive lock on. The kernel releases
the lock when the process ends however it ends, so a ledger found unlocked with a count above
zero belongs to a worker that was killed (SIGKILL, out of memory) with cards still queued: they
are counted as lost, not silently forgotten.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import mmap
import os
import secrets
import struct
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy.engine import URL

from cds_service import metrics
from cds_service.store.database import StoreUnavailable, ValuesRefused, is_sqlite
from cds_service.store.schema import Disposition
from cds_service.store.store import DECISION_COLUMNS, DecisionRow, DecisionStore

log = logging.getLogger(__name__)

DEFAULT_SPOOL_MAX_BYTES = 64 * 1024 * 1024
_SPOOL_PREFIX, _SPOOL_SUFFIX = "decisions-", ".jsonl"
_LEDGER_PREFIX, _LEDGER_SUFFIX = "pending-", ".count"
_LEDGER = struct.Struct("<q")
_IMPORT_ROWS = 1000


class LossReason:
    """Why a card was issued but never logged (stable codes: the report groups by them)."""

    QUEUE_FULL = "queue_full"  # the worker's queue was full while the store was slow or down
    REFUSED = "refused"  # the store cannot hold one of its values
    SPOOL_FULL = "spool_full"  # at a stop, the spool had reached CDS_SPOOL_MAX_BYTES
    NOT_SPOOLED = "not_spooled"  # at a stop, the spool could not be written (or no patient key)
    WORKER_ENDED = "worker_ended"  # the worker was killed with cards still queued
    UNREADABLE = "spool_unreadable"  # a spooled line could not be read back


def default_spool_folder(url: URL) -> str:
    """Beside a SQLite store (`<file>-spool`, as SQLite names its `-wal`); for PostgreSQL,
    `cds-spool` in the working folder (set CDS_SPOOL_DIR on a read-only file system)."""
    if is_sqlite(url) and url.database:
        return f"{url.database}-spool"
    return os.path.abspath("cds-spool")


@dataclass(frozen=True)
class SpoolOutcome:
    kept: int  # cards written to a spool file
    lost: int  # cards that could not be kept: counted in the spool file, unless `error`
    error: str | None = None  # why no spool file could be written


@dataclass(frozen=True)
class ImportOutcome:
    files: int
    cards: int
    lost: int  # cards counted as lost, from spool files and from the ledgers of killed workers


_COLUMNS_BEFORE_DISPOSITION = 11


def _encode(row: DecisionRow) -> str:
    values = list(row)
    values[1] = row[1].isoformat()  # issued_at, an aware datetime
    return json.dumps({"card": values}, ensure_ascii=False, separators=(",", ":"))


def _decode(line: str) -> DecisionRow:
    values = json.loads(line)["card"]
    if isinstance(values, list) and len(values) == _COLUMNS_BEFORE_DISPOSITION:
        values.append(Disposition.SHOWN)  # spooled by a release that logged shown cards only
    if not isinstance(values, list) or len(values) != len(DECISION_COLUMNS):
        raise ValueError("not a spooled card")
    values[1] = datetime.fromisoformat(values[1])
    if values[1].tzinfo is None:
        raise ValueError("a spooled time without a time zone")
    return tuple(values)


class PendingLedger:
    """The count of cards a process holds that are not in the store yet, readable after the
    process is gone (see the module's description)."""

    def __init__(self, path: Path, file: BinaryIO, view: mmap.mmap) -> None:
        self.path = path
        self._file = file
        self._view = view

    @classmethod
    def create(cls, folder: Path, prefix: str) -> PendingLedger:
        path = folder / f"{prefix}{os.getpid()}-{secrets.token_hex(4)}{_LEDGER_SUFFIX}"
        file = open(path, "w+b")  # noqa: SIM115 (held open for the life of the process)
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            file.write(bytes(_LEDGER.size))
            file.flush()
            view = mmap.mmap(file.fileno(), _LEDGER.size)
        except OSError:
            file.close()
            path.unlink(missing_ok=True)
            raise
        return cls(path, file, view)

    def set(self, cards: int) -> None:
        _LEDGER.pack_into(self._view, 0, cards)

    def close(self) -> None:
        """Remove the ledger: called once every card was written or handed to the spool."""
        self.path.unlink(missing_ok=True)
        self._view.close()
        self._file.close()


def store_key(url: URL) -> str:
    """Names the store a spool file or ledger belongs to (its URL without the password), so
    that services with different stores may share a spool folder."""
    name = url.set(drivername=url.get_backend_name()).render_as_string(hide_password=True)
    return hashlib.sha256(name.encode("utf-8")).hexdigest()[:12]


class Spool:
    """The spool folder's files for one store (see store_key)."""

    def __init__(
        self, folder: str | Path, store_url: URL, max_bytes: int = DEFAULT_SPOOL_MAX_BYTES
    ) -> None:
        self.folder = Path(folder)
        self.max_bytes = max_bytes
        key = store_key(store_url)
        self._spool_prefix = f"{_SPOOL_PREFIX}{key}-"
        self._ledger_prefix = f"{_LEDGER_PREFIX}{key}-"

    def __str__(self) -> str:
        return str(self.folder)

    def _ensure_folder(self) -> None:
        # Only the spool folder itself is made: a missing parent is a configuration mistake.
        self.folder.mkdir(mode=0o700, exist_ok=True)

    def ledger(self) -> PendingLedger | None:
        """A pending ledger for this process; None (and a warning) if the folder is unusable."""
        try:
            self._ensure_folder()
            return PendingLedger.create(self.folder, self._ledger_prefix)
        except OSError as error:
            log.warning(
                "the spool folder cannot be used: cards queued at a stop while the store is "
                "down, or in a killed worker, cannot be kept or counted (set CDS_SPOOL_DIR)",
                extra={"event": "spool_unavailable", "reason": error.strerror or str(error)},
            )
            return None

    def _used_bytes(self) -> int:
        total = 0
        for path in self.folder.glob(f"{_SPOOL_PREFIX}*"):  # every store's: one bound
            with contextlib.suppress(OSError):
                total += path.stat().st_size
        return total

    def write(self, rows: Sequence[DecisionRow], losses: Mapping[str, int]) -> SpoolOutcome:
        """Keep `rows` in a new spool file, as many as the bound allows, with the counts of
        cards lost (`losses`, by reason) and of rows that did not fit."""
        lines = [_encode(row) + "\n" for row in rows]
        try:
            self._ensure_folder()
            room = self.max_bytes - self._used_bytes()
        except OSError as error:
            return self._not_written(len(rows), losses, error)
        kept = 0
        size = 0
        for line in lines:
            size += len(line.encode("utf-8"))
            if size > room:
                break
            kept += 1
        counts = dict(losses)
        if kept < len(lines):
            counts[LossReason.SPOOL_FULL] = counts.get(LossReason.SPOOL_FULL, 0) + len(lines) - kept
        token = (
            f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{os.getpid()}-{secrets.token_hex(4)}"
        )
        final = self.folder / f"{self._spool_prefix}{token}{_SPOOL_SUFFIX}"
        temporary = self.folder / f".{final.name}.part"
        try:
            with open(temporary, "w", encoding="utf-8") as file:
                file.writelines(lines[:kept])
                for reason, cards in sorted(counts.items()):
                    if cards:
                        file.write(json.dumps({"lost": cards, "reason": reason}) + "\n")
                file.flush()
                os.fsync(file.fileno())
            os.chmod(temporary, 0o600)
            os.replace(temporary, final)
            with contextlib.suppress(OSError):  # the rename survives a power cut too
                directory = os.open(self.folder, os.O_RDONLY)
                try:
                    os.fsync(directory)
                finally:
                    os.close(directory)
        except OSError as error:
            temporary.unlink(missing_ok=True)
            return self._not_written(len(rows), losses, error)
        return SpoolOutcome(kept=kept, lost=len(lines) - kept + sum(losses.values()))

    @staticmethod
    def _not_written(cards: int, losses: Mapping[str, int], error: OSError) -> SpoolOutcome:
        reason = error.strerror or type(error).__name__
        return SpoolOutcome(kept=0, lost=cards + sum(losses.values()), error=reason)

    # --- back into the store ----------------------------------------------------------------

    def import_into(self, store: DecisionStore) -> ImportOutcome:
        """Write every complete spool file to the store (then remove it), and count the cards
        of killed workers. Safe to run from several processes at once: each file is taken by
        one. Raises StoreUnavailable when the store cannot take them now (nothing is lost)."""
        if not self.folder.is_dir():
            return ImportOutcome(0, 0, 0)
        files = cards = lost = 0
        for path in sorted(self.folder.glob(f"{self._spool_prefix}*{_SPOOL_SUFFIX}")):
            with self._taken(path) as file:
                if file is None:
                    continue
                rows, losses = self._read(path.name, file)
                refused = self._write_rows(store, rows)
                if refused:
                    losses.append((f"{path.name}#refused", LossReason.REFUSED, refused))
                store.record_losses(losses)
                path.unlink()
                files += 1
                cards += len(rows)
                lost += sum(count for _, _, count in losses)
        lost += self._reap_ledgers(store)
        if files:
            log.info(
                "spooled cards written to the store",
                extra={"event": "spool_imported", "files": files, "cards": cards, "lost": lost},
            )
        return ImportOutcome(files, cards, lost)

    @staticmethod
    def _write_rows(store: DecisionStore, rows: list[DecisionRow]) -> int:
        """Write spooled cards (idempotent); the number the store refuses to hold."""
        refused = 0
        for start in range(0, len(rows), _IMPORT_ROWS):
            chunk = rows[start : start + _IMPORT_ROWS]
            try:
                store.record_decision_rows(chunk)
            except ValuesRefused:  # one card cannot be held: the others still can
                for row in chunk:
                    try:
                        store.record_decision_rows([row])
                    except ValuesRefused:
                        refused += 1
        return refused

    @staticmethod
    @contextlib.contextmanager
    def _taken(path: Path, binary: bool = False) -> Iterator[Any]:
        """The open file (text, or binary for reading and writing), locked for this process;
        None when another process has it or it is gone (already imported, or reaped)."""
        try:
            file = (
                open(path, "r+b")  # noqa: SIM115 (closed below)
                if binary
                else open(path, encoding="utf-8")  # noqa: SIM115 (closed below)
            )
        except FileNotFoundError:
            yield None
            return
        try:
            try:
                fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield None
                return
            # Unlinked by the process that held it before: imported already.
            yield file if os.fstat(file.fileno()).st_nlink else None
        finally:
            file.close()

    @staticmethod
    def _read(name: str, file: Any) -> tuple[list[DecisionRow], list[tuple[str, str, int]]]:
        rows: list[DecisionRow] = []
        counts: dict[str, int] = {}
        for line in file:
            try:
                if line.startswith('{"card"'):
                    rows.append(_decode(line))
                    continue
                entry = json.loads(line)
                reason, number = str(entry["reason"]), int(entry["lost"])
            except (ValueError, KeyError, TypeError):
                reason, number = LossReason.UNREADABLE, 1
            counts[reason] = counts.get(reason, 0) + number
        # The file's name makes each count's source: importing it twice counts it once.
        return rows, [(f"{name}#{reason}", reason, n) for reason, n in sorted(counts.items())]

    def _reap_ledgers(self, store: DecisionStore) -> int:
        lost = 0
        for path in self.folder.glob(f"{self._ledger_prefix}*{_LEDGER_SUFFIX}"):
            with self._taken(path, binary=True) as file:
                if file is None:
                    continue  # its worker is alive, or another process reaped it
                data = file.read(_LEDGER.size)
                cards = _LEDGER.unpack(data)[0] if len(data) == _LEDGER.size else 0
                if cards > 0:
                    store.record_losses([(path.name, LossReason.WORKER_ENDED, cards)])
                    metrics.count_decisions_lost(LossReason.WORKER_ENDED, cards)
                    log.error(
                        "a worker ended with cards not logged (killed?); counted as lost",
                        extra={
                            "event": "decision_log_lost",
                            "cards": cards,
                            "reason": "worker ended",
                        },
                    )
                    lost += cards
                path.unlink()
        return lost


def import_spool(spool: Spool | None, store: DecisionStore) -> ImportOutcome | None:
    """Import the spool, logging (not raising) when the store or the folder fails."""
    if spool is None:
        return None
    try:
        return spool.import_into(store)
    except (StoreUnavailable, ValuesRefused) as error:
        log.warning(
            "spooled cards not written yet; tried again later",
            extra={"event": "spool_import_failed", "reason": str(error)},
        )
    except OSError as error:
        log.error(
            "the spool folder could not be read",
            extra={"event": "spool_import_failed", "reason": error.strerror or str(error)},
        )
    return None
