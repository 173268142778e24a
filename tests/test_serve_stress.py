"""The production server under hostile and unlucky traffic: clients that send slowly, a FHIR
server that hangs, a stop while calls are in flight. Real processes, real sockets."""

from __future__ import annotations

import copy
import http.client
import json
import signal
import socket
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from conftest import FIXTURES
from fhir_fakes import Reply, local_fhir_server
from live_server import free_port, serve, wait_healthy

SIGN = "/cds-services/back-pain-order-sign"
REQUEST = json.loads(
    (FIXTURES / "opioid-tramadol-acute-low-back-pain" / "request.json").read_text()
)
ENV = {"CDS_EVALUATION_DATE": "2026-11-22"}


def _post(port: int, document: dict[str, Any], timeout: float = 20) -> tuple[int, float]:
    started = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        body = json.dumps(document).encode()
        connection.request("POST", SIGN, body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        return response.status, time.monotonic() - started
    finally:
        connection.close()


def _fetching(document: dict[str, Any], fhir_url: str) -> dict[str, Any]:
    """The request with its conditions left to the FHIR server."""
    waiting = copy.deepcopy(document)
    del waiting["prefetch"]["conditions"]
    waiting["fhirServer"] = fhir_url
    return waiting


def test_clients_sending_headers_slowly_hold_no_worker(tmp_path: Path) -> None:
    port = free_port()
    process = serve(port, ENV, workers=1, log_file=tmp_path / "server.log")
    slow: list[socket.socket] = []
    try:
        wait_healthy(port, process)
        # Many more slow clients than the worker has threads, each half-way through its headers.
        for _ in range(200):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(f"POST {SIGN} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ".encode())
            slow.append(sock)
        answers = [_post(port, REQUEST) for _ in range(5)]
        assert [status for status, _ in answers] == [200] * 5
        assert max(seconds for _, seconds in answers) < 5  # not waiting behind the slow ones
    finally:
        for sock in slow:
            sock.close()
        process.terminate()
        process.wait(timeout=30)


def test_calls_waiting_on_a_hanging_fhir_server_do_not_hold_up_the_others(
    tmp_path: Path,
) -> None:
    port = free_port()
    env = {**ENV, "CDS_FHIR_DEADLINE_SECONDS": "3", "CDS_FHIR_MAX_CALLS": "2"}
    process = serve(port, env, workers=1, log_file=tmp_path / "server.log")
    try:
        wait_healthy(port, process)
        with local_fhir_server(lambda path: Reply.json({}, delay=30)) as fhir:
            waiting: list[tuple[int, float]] = []
            threads = [
                threading.Thread(
                    target=lambda: waiting.append(_post(port, _fetching(REQUEST, fhir.base_url)))
                )
                for _ in range(4)
            ]
            for thread in threads:
                thread.start()
            time.sleep(0.5)
            normal = [_post(port, REQUEST) for _ in range(5)]
            for thread in threads:
                thread.join()
        assert [status for status, _ in normal] == [200] * 5
        assert max(seconds for _, seconds in normal) < 2  # well within the FHIR deadline
        # Two waited out the deadline; the two beyond CDS_FHIR_MAX_CALLS were refused at once.
        assert sorted(status for status, _ in waiting) == [412] * 4
        durations = sorted(seconds for _, seconds in waiting)
        assert durations[1] < 2 <= durations[2] and durations[3] < 10
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert (tmp_path / "server.log").read_text().count('"event":"fhir_busy"') == 2


def test_a_stop_lets_calls_in_flight_finish_and_writes_the_decision_log(tmp_path: Path) -> None:
    port = free_port()
    store = tmp_path / "decisions.db"
    env = {**ENV, "CDS_FHIR_DEADLINE_SECONDS": "2", "CDS_DATABASE_URL": f"sqlite:///{store}"}
    process = serve(port, env, workers=2, log_file=tmp_path / "server.log")
    wait_healthy(port, process)
    with local_fhir_server(lambda path: Reply.json({}, delay=30)) as fhir:
        in_flight: list[tuple[int, float]] = []
        thread = threading.Thread(
            target=lambda: in_flight.append(_post(port, _fetching(REQUEST, fhir.base_url)))
        )
        thread.start()
        cards = [_post(port, REQUEST) for _ in range(4)]  # two cards each, queued for the log
        time.sleep(0.3)
        process.send_signal(signal.SIGTERM)
        thread.join()
        process.wait(timeout=30)
    assert [status for status, _ in cards] == [200] * 4
    assert in_flight[0][0] == 412  # answered at its deadline, not cut off
    assert process.returncode == 0
    with sqlite3.connect(store) as connection:
        assert connection.execute("SELECT count(*) FROM card_decisions").fetchone() == (8,)
    log = (tmp_path / "server.log").read_text()
    assert "Granian shutdown completed" in log
