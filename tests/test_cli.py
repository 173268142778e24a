"""The `cds-service` command: the production server really starts and answers."""

from __future__ import annotations

import json
import socket
import urllib.request
from pathlib import Path

import pytest
from conftest import FIXTURES
from live_server import free_port, serve, wait_healthy

from cds_service.cli import build_parser, main

FIXTURE = (
    Path(__file__).resolve().parents[1] / "fhir_fixtures" / "opioid-tramadol-acute-low-back-pain"
)


def test_serve_starts_the_production_server_and_answers_hooks() -> None:
    port = free_port()
    process = serve(port, {"CDS_EVALUATION_DATE": "2026-11-22"}, workers=2)
    try:
        wait_healthy(port, process)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/cds-services/back-pain-order-sign",
            data=(FIXTURE / "request.json").read_bytes(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            body = json.load(response)
        topics = sorted(card["source"]["topic"]["code"] for card in body["cards"])
        assert topics == ["exercise-therapy", "opioid-avoidance"]
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=20)
    # Structured request log, and no patient data in it.
    assert '"event":"request"' in stderr
    assert "Moreno" not in stderr and "1986-04-12" not in stderr


def test_serve_refuses_bad_configuration_with_one_line() -> None:
    process = serve(free_port(), {"CDS_MAX_BODY_BYTES": "lots"})
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 2
    assert stderr.strip().splitlines() == [
        "cds-service: configuration error: CDS_MAX_BODY_BYTES must be a whole number, got 'lots'"
    ]


@pytest.mark.parametrize(
    "command",
    [
        ["report"],
        ["purge", "--older-than", "30"],
        ["fixtures", "review", str(FIXTURES)],
        ["replay", str(FIXTURES)],
    ],
    ids=lambda command: command[0] + (f" {command[1]}" if command[0] == "fixtures" else ""),
)
def test_every_command_refuses_bad_configuration_with_one_line(
    command: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CDS_MAX_CARDS", "abc")
    assert main(command) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("cds-service")
    assert line.endswith(": CDS_MAX_CARDS must be a whole number, got 'abc'")


def test_serve_rejects_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--workers", "0"]) == 2
    assert "--workers" in capsys.readouterr().err
    assert main(["serve", "--threads", "0"]) == 2
    assert "--threads" in capsys.readouterr().err


def test_serve_on_a_port_in_use_stops_with_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = serve(port, {})
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 2
    assert stderr.strip().splitlines() == [
        f"cds-service: cannot listen on 127.0.0.1:{port}: address already in use"
    ]


def test_serve_keeps_threads_free_of_calls_waiting_on_fhir_servers(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CDS_FHIR_MAX_CALLS", "40")
    assert main(["serve", "--port", str(free_port())]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "cds-service: configuration error: CDS_FHIR_MAX_CALLS (40) must be smaller than "
        "--threads (32)"
    ]


def test_help_listsserve() -> None:
    assert "serve" in build_parser().format_help()
