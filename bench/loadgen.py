"""Drive one HTTP endpoint with a fixed number of concurrent connections for a fixed time.

Two generators with the same contract: `wrk` when it is installed (it costs the shared CPU
least), otherwise a single-threaded Python generator on non-blocking sockets. Both keep a
connection alive while the server allows it and reconnect when it closes (gunicorn's sync
workers close after every answer), and both count every answer that is not 2xx, every failed
connection and every timeout as an error.
"""

from __future__ import annotations

import json
import math
import os
import selectors
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class LoadResult:
    generator: str
    connections: int
    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list (0.0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = math.ceil(fraction * len(sorted_values)) - 1
    return sorted_values[max(0, min(len(sorted_values) - 1, rank))]


# wrk reports its own histogram; this script posts the body and prints one JSON line at the end.
_WRK_SCRIPT = """
local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests": %d, "duration_us": %d, "errors": %d, '
    .. '"p50": %d, "p95": %d, "p99": %d, "max": %d}\\n',
    summary.requests, summary.duration,
    e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max))
end
"""


def run_wrk(url: str, body: bytes, connections: int, seconds: float) -> LoadResult:
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as folder:
        body_path = Path(folder) / "body.json"
        body_path.write_bytes(body)
        script_path = Path(folder) / "post.lua"
        script_path.write_text(_WRK_SCRIPT)
        # One wrk thread: on a 2-core machine it leaves the most CPU to the servers.
        completed = subprocess.run(
            [
                "wrk",
                "-t1",
                f"-c{connections}",
                f"-d{max(1, round(seconds))}s",
                f"--timeout={int(_TIMEOUT_SECONDS)}s",
                "-s",
                str(script_path),
                url,
            ],
            env={**os.environ, "BENCH_BODY": str(body_path)},
            capture_output=True,
            text=True,
            check=False,
        )
    line = next((x for x in completed.stdout.splitlines() if x.startswith("BENCH ")), None)
    if completed.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed: {completed.stdout}{completed.stderr}")
    report = json.loads(line[len("BENCH ") :])
    return LoadResult(
        generator="wrk",
        connections=connections,
        requests=report["requests"],
        seconds=report["duration_us"] / 1e6,
        errors=report["errors"],
        p50_ms=report["p50"] / 1000,
        p95_ms=report["p95"] / 1000,
        p99_ms=report["p99"] / 1000,
        max_ms=report["max"] / 1000,
    )


class _Connection:
    """One client connection: sends the request, reads one answer, repeats."""

    def __init__(self, address: tuple[str, int], request: bytes) -> None:
        self.address = address
        self.request = request
        self.sock: socket.socket | None = None
        self.sent = 0
        self.received = bytearray()
        self.started = 0.0
        self.expected: int | None = None  # total bytes of the answer, once the head is read
        self.status = 0
        self.keep_alive = False

    def open(self, selector: selectors.BaseSelector) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.connect_ex(self.address)
        self.sock = sock
        selector.register(sock, selectors.EVENT_WRITE, self)

    def begin(self, now: float) -> None:
        self.sent = 0
        self.received.clear()
        self.expected = None
        self.started = now

    def close(self, selector: selectors.BaseSelector) -> None:
        if self.sock is not None:
            selector.unregister(self.sock)
            self.sock.close()
            self.sock = None

    def parse_head(self) -> None:
        end = self.received.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.received[:end]).decode("latin-1").split("\r\n")
        self.status = int(head[0].split(" ", 2)[1])
        length = 0
        connection = ""
        for line in head[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value.strip())
            elif name == "connection":
                connection = value.strip().lower()
        self.keep_alive = head[0].startswith("HTTP/1.1") and connection != "close"
        self.expected = end + 4 + length


def run_python(url: str, body: bytes, connections: int, seconds: float) -> LoadResult:
    """A single-threaded, non-blocking HTTP/1.1 load generator (wrk's way, in Python)."""
    rest = url.split("://", 1)[1]
    authority, _, path = rest.partition("/")
    host, _, port = authority.partition(":")
    address = (host, int(port or 80))
    request = (
        f"POST /{path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n"
    ).encode() + body
    selector = selectors.DefaultSelector()
    latencies: list[float] = []
    errors = 0
    started = time.perf_counter()
    stop_at = started + seconds
    pool = [_Connection(address, request) for _ in range(connections)]
    for connection in pool:
        connection.open(selector)
        connection.begin(time.perf_counter())

    def fail(connection: _Connection) -> None:
        nonlocal errors
        errors += 1
        connection.close(selector)
        connection.open(selector)
        connection.begin(time.perf_counter())

    while True:
        now = time.perf_counter()
        if now >= stop_at:
            break
        for key, events in selector.select(timeout=min(0.05, stop_at - now)):
            connection: _Connection = key.data
            assert connection.sock is not None
            try:
                if events & selectors.EVENT_WRITE:
                    connection.sent += connection.sock.send(request[connection.sent :])
                    if connection.sent == len(request):
                        selector.modify(connection.sock, selectors.EVENT_READ, connection)
                    continue
                chunk = connection.sock.recv(256 * 1024)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                fail(connection)
                continue
            if not chunk:  # closed before a complete answer
                fail(connection)
                continue
            connection.received += chunk
            if connection.expected is None:
                connection.parse_head()
            if connection.expected is None or len(connection.received) < connection.expected:
                continue
            done = time.perf_counter()
            latencies.append(done - connection.started)
            if not 200 <= connection.status < 300:
                errors += 1
            if connection.keep_alive:
                selector.modify(connection.sock, selectors.EVENT_WRITE, connection)
            else:
                connection.close(selector)
                connection.open(selector)
            connection.begin(done)
        for connection in pool:  # an answer that never comes counts once, then we move on
            if connection.sock is not None and now - connection.started > _TIMEOUT_SECONDS:
                fail(connection)
    elapsed = time.perf_counter() - started
    for connection in pool:
        connection.close(selector)
    selector.close()
    latencies.sort()
    return LoadResult(
        generator="python",
        connections=connections,
        requests=len(latencies),
        seconds=elapsed,
        errors=errors,
        p50_ms=percentile(latencies, 0.50) * 1000,
        p95_ms=percentile(latencies, 0.95) * 1000,
        p99_ms=percentile(latencies, 0.99) * 1000,
        max_ms=(latencies[-1] if latencies else 0.0) * 1000,
    )


def drive(url: str, body: bytes, connections: int, seconds: float, generator: str) -> LoadResult:
    if generator == "wrk":
        return run_wrk(url, body, connections, seconds)
    return run_python(url, body, connections, seconds)
