"""Start, probe and stop the servers under test: the baseline app, `cds-service serve`, and the
floor (the service with its guideline work replayed, bench/floor_app.py).

For the comparison of production servers (docs/operators.md, Performance) the service can also
be started under other WSGI servers, on `cds_service.wsgi:app`, each as its documentation
advises for a preloaded application with workers and threads (`SERVICE_SERVERS`).
"""

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


THREADS = 32  # threads per worker where a server has them (as `cds-service serve` runs)

SERVICE_SERVERS = ("serve", "gunicorn-sync", "gunicorn-gthread", "uwsgi")


def _service_command(server: str, port: int, workers: int) -> list[str]:
    bind = f"127.0.0.1:{port}"
    if server == "serve":  # granian: the production server
        command = [sys.executable, "-m", "cds_service", "serve", "--host", "127.0.0.1"]
        return [*command, "--port", str(port), "--workers", str(workers)]
    if server.startswith("gunicorn"):
        command = [sys.executable, "-m", "gunicorn", "cds_service.wsgi:app", "--bind", bind]
        command += ["--workers", str(workers), "--preload", "--no-control-socket"]
        if server == "gunicorn-gthread":
            command += ["--worker-class", "gthread", "--threads", str(THREADS)]
        return command
    if server == "uwsgi":
        # The HTTP router process reads requests asynchronously and passes whole headers on.
        uwsgi = str(Path(sys.executable).with_name("uwsgi"))
        return [
            uwsgi,
            "--http", bind, "--http-timeout", "10",
            "--module", "cds_service.wsgi:app",
            "--master", "--processes", str(workers), "--threads", str(THREADS),
            "--enable-threads", "--die-on-term", "--need-app", "--disable-logging",
            "--buffer-size", "32768",
        ]  # fmt: skip
    raise ValueError(f"unknown server {server!r}")


def start_service(
    port: int, workers: int, env: Mapping[str, str], logs: Path, server: str = "serve"
) -> Server:
    command = _service_command(server, port, workers)
    return _spawn("service", command, port, {**_decision_store(port, logs), **env}, logs)


def worker_rss_mb(server: Server) -> list[float]:
    """Resident memory of the server's worker processes (its children), in MB."""
    sizes = []
    for pid in _children(server.process.pid):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                sizes.append(int(line.split()[1]) / 1024)
    return sizes


def _children(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
                found.append(int(entry.name))
    return found


def start_floor(port: int, workers: int, service_id: str, request_file: Path, logs: Path) -> Server:
    command = [sys.executable, str(BENCH / "floor_app.py"), "--port", str(port)]
    command += ["--workers", str(workers), "--service", service_id, "--request", str(request_file)]
    return _spawn("floor", command, port, _decision_store(port, logs), logs)


def post(port: int, path: str, body: bytes | None, timeout: float = 30.0) -> tuple[int, bytes]:
    """POST `body` to `path` (a GET when `body` is None); the status and the answer."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        if body is None:
            connection.request("GET", path)
        else:
            headers = {"Content-Type": "application/json"}
            connection.request("POST", path, body=body, headers=headers)
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
