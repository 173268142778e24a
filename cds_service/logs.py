"""Structured logging: one JSON object per line, carrying request ids, timings and decisions.

Nothing that identifies a patient is ever passed to a log call: no names, identifiers, birth
dates, tokens or bodies. Log lines carry only the fields the code puts in `extra`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson

_STANDARD_ATTRIBUTES = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__.keys()
    | {"message", "asctime", "taskName"}
)


def _extra_fields(record: logging.LogRecord) -> Iterator[tuple[str, Any]]:
    """The fields the log call put in `extra`."""
    for key, value in record.__dict__.items():
        if key not in _STANDARD_ATTRIBUTES and not key.startswith("_"):
            yield key, value


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(_extra_fields(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode("utf-8")


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(f"{key}={value}" for key, value in _extra_fields(record))
        line = f"{record.levelname.lower():7} {record.name}: {record.getMessage()}"
        line = f"{line} {extras}" if extras else line
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    # Neither format shows where a call was made, so the logging module is told not to walk
    # the stack to find the caller of every log call (most of a record's cost; the logging
    # HOWTO's own optimisation). Records still carry the pid: the request log prints it.
    logging._srcfile = None
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger("cds_service")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
