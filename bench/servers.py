"""Start, probe and stop the servers under test: the baseline app, `cds-service serve`, and the
floor (the service with its guideline work replayed, bench/floor_app.py)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

BENCH = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    started: float  # perf_counter() just before the process was spawned
    _log: IO[bytes]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 20) -> str:
        self._log.flush()
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()


def _spawn(name: str, command: list[str], port: int, env: Mapping[str, str], logs: Path) -> Server:
    log_path = logs / f"{name}-{port}.log"
    log = log_path.open("wb")
    started = time.perf_counter()
    process = subprocess.Popen(
        command,
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    return Server(name, port, process, log_path, started, log)


def start_baseline(port: int, workers: int, logs: Path) -> Server:
    command = [sys.executable, str(BENCH / "baseline_app.py"), "--port", str(port)]
    return _spawn("baseline", [*command, "--workers", str(workers)], port, {}, logs)


def _decision_store(port: int, logs: Path) -> dict[str, str]:
    # The decision log writes as in production, to a SQLite file beside the logs (not into
    # the working folder).
    return {"CDS_DATABASE_URL": f"sqlite:///{logs / f'decisions-{port}.db'}"}


def start_service(port: int, workers: int, env: Mapping[str, str], logs: Path) -> Server:
    command = [sys.executable, "-m", "cds_service", "serve", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--workers", str(workers)]
    return _spawn("service", command, port, {**_decision_store(port, logs), **env}, logs)


def start_floor(port: int, workers: int, service_id: str, request_file: Path, logs: Path) -> Server:
    command = [sys.executable, str(BENCH / "floor_app.py"), "--port", str(port)]
    command += ["--workers", str(workers), "--service", service_id, "--request", str(request_file)]
    return _spawn("floor", command, port, _decision_store(port, logs), logs)


def post(port: int, path: str, body: bytes, timeout: float = 30.0) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def wait_until_answering(server: Server, path: str, body: bytes, timeout: float = 60.0) -> float:
    """Seconds from spawning the process to its first 2xx answer to `body` at `path`."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited:\n{server.log_tail()}")
        try:
            status, _ = post(server.port, path, body, timeout=timeout)
        except (ConnectionError, OSError, http.client.HTTPException):
            time.sleep(0.01)
            continue
        if 200 <= status < 300:
            return time.perf_counter() - server.started
        raise RuntimeError(f"{server.name} answered HTTP {status} to {path}")
    raise RuntimeError(f"{server.name} did not answer within {timeout:g} s:\n{server.log_tail()}")


def card_topics(answer: bytes) -> set[str]:
    document: dict[str, Any] = json.loads(answer)
    return {card["source"]["topic"]["code"] for card in document["cards"]}
