"""The service's log lines: one JSON object per line with the fields the code put there."""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Callable, Iterator

import pytest

from cds_service.logs import configure_logging


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], io.StringIO]]:
    """Configure the service's logging in a format; its lines are written to the stream."""
    root = logging.getLogger("cds_service")
    saved = (root.handlers[:], root.level, root.propagate)
    monkeypatch.setattr(logging, "_srcfile", logging._srcfile)  # restored afterwards

    def configure(fmt: str) -> io.StringIO:
        configure_logging("INFO", fmt)
        stream = io.StringIO()
        handler = root.handlers[0]
        assert isinstance(handler, logging.StreamHandler)
        handler.setStream(stream)
        return stream

    yield configure
    root.handlers[:], root.level, root.propagate = saved


def test_a_request_line_is_one_json_object_with_its_fields(
    captured: Callable[[str], io.StringIO],
) -> None:
    stream = captured("json")
    records: list[logging.LogRecord] = []
    logging.getLogger("cds_service").handlers[0].addFilter(lambda r: records.append(r) or True)
    logging.getLogger("cds_service.requests").info(
        "request", extra={"event": "request", "status": 200, "topics": ["opioid-avoidance"]}
    )
    logging.getLogger("cds_service.requests").debug("not at INFO", extra={"event": "hidden"})
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["logger"] == "cds_service.requests" and entry["level"] == "info"
    assert entry["msg"] == "request" and entry["status"] == 200
    assert entry["topics"] == ["opioid-avoidance"]
    assert entry["ts"].endswith("+00:00")
    # Where the call was made is neither shown nor looked up; the pid is kept (gunicorn's
    # own log format prints it).
    assert not {"pathname", "lineno", "funcName", "thread", "process"} & set(entry)
    assert (records[0].lineno, records[0].funcName) == (0, "(unknown function)")
    assert records[0].process == os.getpid()


def test_the_text_format_keeps_the_extra_fields(captured: Callable[[str], io.StringIO]) -> None:
    stream = captured("text")
    logging.getLogger("cds_service.store").error("store down", extra={"event": "store_down"})
    assert stream.getvalue().strip() == "error   cds_service.store: store down event=store_down"
