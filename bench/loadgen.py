"""Drive a server with a fixed number of concurrent connections for a fixed time.

Two generators with the same contract: `wrk` when it is installed (it costs the shared CPU
least), otherwise a single-threaded Python generator on non-blocking sockets. Both keep a
connection alive while the server allows it and reconnect when it closes (gunicorn's sync
workers close after every answer), and both count every answer that is not 2xx, every failed
connection and every timeout as an error.

Requests cycle through the calls given (path and body template). With fresh numbers (the
default of bench/run.py) each request's template gets the next request number in every id,
reference and hookInstance, so that no request repeats content the server saw before; without,
every request of a call is the same (the repeated figure, which caches help).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import selectors
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

_TIMEOUT_SECONDS = 10.0


MARK = b"~" * 12  # bench/workloads.py's mark, replaced by the request number


@dataclass(frozen=True)
class Call:
    path: str
    template: bytes  # the JSON body, with MARK where the request number goes


def numbered(template: bytes, number: int) -> bytes:
    return template.replace(MARK, b"%012d" % number)


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


# wrk reports its own histogram; this script posts the calls in turn (each template cut at the
# marks once, then joined around the next request number) and prints one JSON line at the end.
_WRK_SCRIPT = """
local mark = string.rep("~", 12)
local counter = tonumber(os.getenv("BENCH_FIRST"))
local fresh = counter >= 0
local calls = {}
local headers = {["Content-Type"] = "application/json"}

init = function(args)
  for line in io.lines(os.getenv("BENCH_CALLS")) do
    local path, file = line:match("^(.-)\t(.*)$")
    local f = assert(io.open(file, "rb"))
    local body = f:read("*a")
    f:close()
    local pieces, start = {}, 1
    while true do
      local i, j = body:find(mark, start, true)
      if not i then
        pieces[#pieces + 1] = body:sub(start)
        break
      end
      pieces[#pieces + 1] = body:sub(start, i - 1)
      start = j + 1
    end
    local call = {path = path, pieces = pieces}
    call.fixed = wrk.format("POST", path, headers, table.concat(pieces, string.rep("0", 12)))
    calls[#calls + 1] = call
  end
  if not fresh then counter = 0 end
end

request = function()
  local call = calls[(counter % #calls) + 1]
  counter = counter + 1
  if not fresh then return call.fixed end
  local body = table.concat(call.pieces, string.format("%012d", counter))
  return wrk.format("POST", call.path, headers, body)
end

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


def run_wrk(
    base_url: str, calls: Sequence[Call], connections: int, seconds: float, first: int | None
) -> LoadResult:
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as folder:
        manifest = []
        for index, call in enumerate(calls):
            body_path = Path(folder) / f"body-{index}.json"
            body_path.write_bytes(call.template)
            manifest.append(f"{call.path}\t{body_path}")
        calls_path = Path(folder) / "calls.tsv"
        calls_path.write_text("\n".join(manifest) + "\n")
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
                base_url,
            ],
            env={
                **os.environ,
                "BENCH_CALLS": str(calls_path),
                "BENCH_FIRST": str(-1 if first is None else first),
            },
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

    def __init__(self, address: tuple[str, int]) -> None:
        self.address = address
        self.request = b""
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

    def begin(self, now: float, request: bytes) -> None:
        self.request = request
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


def _requests(authority: str, calls: Sequence[Call], first: int | None) -> Callable[[], bytes]:
    """The next request's bytes, each call in turn, numbered afresh unless `first` is None."""
    counter = itertools.count(0 if first is None else first)
    turn = itertools.cycle(calls)

    def next_request() -> bytes:
        call = next(turn)
        number = next(counter)
        body = numbered(call.template, 0 if first is None else number)
        return (
            f"POST {call.path} HTTP/1.1\r\nHost: {authority}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n"
        ).encode() + body

    return next_request


def run_python(
    base_url: str, calls: Sequence[Call], connections: int, seconds: float, first: int | None
) -> LoadResult:
    """A single-threaded, non-blocking HTTP/1.1 load generator (wrk's way, in Python)."""
    authority = base_url.split("://", 1)[1].rstrip("/")
    host, _, port = authority.partition(":")
    address = (host, int(port or 80))
    next_request = _requests(authority, calls, first)
    selector = selectors.DefaultSelector()
    latencies: list[float] = []
    errors = 0
    started = time.perf_counter()
    stop_at = started + seconds
    pool = [_Connection(address) for _ in range(connections)]
    for connection in pool:
        connection.open(selector)
        connection.begin(time.perf_counter(), next_request())

    def fail(connection: _Connection) -> None:
        nonlocal errors
        errors += 1
        connection.close(selector)
        connection.open(selector)
        connection.begin(time.perf_counter(), next_request())

    while True:
        now = time.perf_counter()
        if now >= stop_at:
            break
        for key, events in selector.select(timeout=min(0.05, stop_at - now)):
            connection: _Connection = key.data
            assert connection.sock is not None
            try:
                if events & selectors.EVENT_WRITE:
                    sending = connection.request
                    connection.sent += connection.sock.send(sending[connection.sent :])
                    if connection.sent == len(sending):
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
            connection.begin(done, next_request())
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


def drive(
    base_url: str,
    calls: Sequence[Call],
    connections: int,
    seconds: float,
    generator: str,
    first: int | None,
) -> LoadResult:
    """Drive `base_url` with `calls` in turn; request numbers from `first` on (content new to
    the server), or every request of a call the same when `first` is None (repeated)."""
    if generator == "wrk":
        return run_wrk(base_url, calls, connections, seconds, first)
    return run_python(base_url, calls, connections, seconds, first)
