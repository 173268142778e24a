"""The `cds-service` command: the production server really starts and answers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from cds_service.cli import build_parser, main

FIXTURE = (
    Path(__file__).resolve().parents[1] / "fhir_fixtures" / "opioid-tramadol-acute-low-back-pain"
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _serve(port: int, env: dict[str, str], workers: int = 1) -> subprocess.Popen[str]:
    return subprocess.Popen(
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
        ],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_healthy(port: int, process: subprocess.Popen[str], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(
                f"server exited: {process.stderr.read() if process.stderr else ''}"
            )
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.1)
    raise AssertionError("server did not become healthy")


def test_serve_starts_gunicorn_and_answers_hooks() -> None:
    port = _free_port()
    process = _serve(port, {"CDS_EVALUATION_DATE": "2026-11-22"}, workers=2)
    try:
        _wait_healthy(port, process)
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
    assert '"event": "request"' in stderr
    assert "Moreno" not in stderr and "1986-04-12" not in stderr


def test_serve_refuses_bad_configuration_with_one_line() -> None:
    process = _serve(_free_port(), {"CDS_MAX_BODY_BYTES": "lots"})
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 2
    assert stderr.strip().splitlines() == [
        "cds-service: configuration error: CDS_MAX_BODY_BYTES must be a whole number, got 'lots'"
    ]


def test_serve_rejects_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--workers", "0"]) == 2
    assert "--workers" in capsys.readouterr().err


def test_help_lists_serve() -> None:
    assert "serve" in build_parser().format_help()
