"""Hostile and unlucky traffic beside normal calls: slow clients, and a FHIR server that hangs.

    paced(...)          normal calls at a fixed rate, each on its own connection and thread,
                        so that one slow answer never delays the schedule
    slow_headers(...)   connections that send their request headers one byte per second
    hammer(...)         calls kept in flight continuously (each sent again once answered)

All of them stop by themselves after the time given and talk only to 127.0.0.1.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

from loadgen import percentile

ANSWER_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Answer:
    status: int  # 0: no answer (connection refused, reset or timed out)
    seconds: float


@dataclass
class Answers:
    answers: list[Answer] = field(default_factory=list)

    @property
    def slowest(self) -> float:
        return max((a.seconds for a in self.answers), default=0.0)

    def percentile(self, fraction: float) -> float:
        return percentile(sorted(a.seconds for a in self.answers), fraction)

    def statuses(self) -> dict[int, int]:
        counted: dict[int, int] = {}
        for answer in self.answers:
            counted[answer.status] = counted.get(answer.status, 0) + 1
        return counted


def call(port: int, path: str, body: bytes, timeout: float = ANSWER_TIMEOUT_S) -> Answer:
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        status = response.status
    except (OSError, http.client.HTTPException):
        status = 0
    finally:
        connection.close()
    return Answer(status, time.perf_counter() - started)


def paced(
    port: int, request: Callable[[int], tuple[str, bytes]], rate: float, seconds: float
) -> Answers:
    """`rate` calls a second for `seconds`; `request(n)` gives the n-th call's path and body."""
    result = Answers()
    lock = threading.Lock()

    def one(number: int) -> None:
        path, body = request(number)
        answer = call(port, path, body)
        with lock:
            result.answers.append(answer)

    count = max(1, round(rate * seconds))
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=64, thread_name_prefix="paced") as pool:
        for number in range(count):
            delay = started + number / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            pool.submit(one, number)
    return result


@dataclass
class SlowClients:
    opened: int = 0
    dropped_after: list[float] = field(default_factory=list)  # seconds until the server hung up

    @property
    def still_open(self) -> int:
        return self.opened - len(self.dropped_after)


def _head(path: str) -> str:
    return f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"


@contextmanager
def slow_headers(port: int, count: int, path: str, interval: float = 1.0) -> Iterator[SlowClients]:
    """`count` connections sending a request's headers one byte every `interval` seconds
    (never finishing them) while the block runs; records when the server drops each."""
    # Far more bytes than the test will ever send.
    with _trickling(port, count, "", _head(path) + "X-Slow: " + "x" * 10_000, interval) as state:
        yield state


@contextmanager
def slow_bodies(port: int, count: int, path: str, interval: float = 1.0) -> Iterator[SlowClients]:
    """`count` connections sending complete headers, then their body one byte every
    `interval` seconds (never finishing it) while the block runs."""
    head = _head(path) + "Content-Length: 100000\r\n\r\n"
    with _trickling(port, count, head, "{" + " " * 99_999, interval) as state:
        yield state


@contextmanager
def _trickling(
    port: int, count: int, at_once: str, trickled: str, interval: float
) -> Iterator[SlowClients]:
    head = trickled
    state = SlowClients()
    stop = threading.Event()
    sockets: list[socket.socket | None] = []
    started = time.perf_counter()
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(at_once.encode())
        sock.setblocking(False)
        sockets.append(sock)
    state.opened = count

    def hung_up(index: int, sock: socket.socket) -> None:
        state.dropped_after.append(time.perf_counter() - started)
        sock.close()
        sockets[index] = None

    def trickle() -> None:
        sent = 0
        while not stop.is_set():
            for index, sock in enumerate(sockets):
                if sock is None:
                    continue
                try:
                    if sock.recv(1024) == b"":  # the server closed the connection
                        hung_up(index, sock)
                        continue
                except BlockingIOError:
                    pass
                except OSError:
                    hung_up(index, sock)
                    continue
                try:
                    sock.send(head[sent : sent + 1].encode())
                except BlockingIOError:
                    pass
                except OSError:
                    hung_up(index, sock)
            sent += 1
            stop.wait(interval)

    thread = threading.Thread(target=trickle, name="slow-headers", daemon=True)
    thread.start()
    try:
        yield state
    finally:
        stop.set()
        thread.join(timeout=interval + 5)
        for sock in sockets:
            if sock is not None:
                sock.close()


@contextmanager
def hammer(port: int, path: str, body: Callable[[int], bytes], count: int) -> Iterator[Answers]:
    """`count` calls in flight for as long as the block runs, each sent again once answered."""
    result = Answers()
    lock = threading.Lock()
    stop = threading.Event()
    numbers = iter(range(10**9))

    def loop() -> None:
        while not stop.is_set():
            with lock:
                number = next(numbers)
            answer = call(port, path, body(number))
            with lock:
                result.answers.append(answer)

    threads = [threading.Thread(target=loop, name="hammer", daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    try:
        yield result
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=ANSWER_TIMEOUT_S + 5)
