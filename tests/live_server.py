"""A real `cds-service serve` (granian, forked workers) started by a test, on a free local port."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve(
    port: int,
    env: dict[str, str],
    workers: int = 1,
    *,
    log_file: Path | None = None,
    extra_args: Sequence[str] = (),
) -> subprocess.Popen[str]:
    """`cds-service serve` in a subprocess. Its output goes to pipes, or to `log_file` when
    the test makes many requests (a full pipe that nobody reads would stall the server).
    """
    output: Any = subprocess.PIPE if log_file is None else log_file.open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cds_service",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            *extra_args,
        ],
        env={**os.environ, **env},
        stdout=output,
        stderr=output,
        text=True,
    )
    if log_file is not None:
        output.close()  # the server has its own copy of the file
    return process


def wait_healthy(port: int, process: subprocess.Popen[str], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(
                f"server exited: {process.stderr.read() if process.stderr else 'see its log'}"
            )
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.1)
    raise AssertionError("server did not become healthy")


@dataclass
class RunningServer:
    port: int
    process: subprocess.Popen[str]
    # The server's stderr (its log), complete once the `with` block has ended.
    log: str = ""

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def running_server(port: int, env: dict[str, str], workers: int = 1) -> Iterator[RunningServer]:
    server = RunningServer(port, serve(port, env, workers))
    try:
        wait_healthy(port, server.process)
        yield server
    finally:
        server.process.terminate()
        _, server.log = server.process.communicate(timeout=20)


def child_pids(parent: int) -> list[int]:
    """Processes whose parent is `parent` (Linux /proc): the server's workers."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended meanwhile
        if int(fields[1]) == parent:
            children.append(int(stat.parent.name))
    return children


def post_json(port: int, path: str, body: Any, timeout: float = 60) -> tuple[int, Any]:
    """POST a JSON body to a local server: (status, parsed answer), error answers included."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def issue_cards(port: int, request: dict[str, Any], calls: int) -> list[str]:
    """Send `request` to order-sign `calls` times, each with a new hookInstance: the uuids of
    the cards answered."""
    cards: list[str] = []
    for _ in range(calls):
        request = {**request, "hookInstance": str(uuid.uuid4())}
        status, answer = post_json(port, "/cds-services/back-pain-order-sign", request)
        assert status == 200, answer
        cards += [card["uuid"] for card in answer["cards"]]
    return cards
