"""Security behaviour of the real server (several worker processes)."""

from __future__ import annotations

import http.client
import json
from pathlib import Path
from typing import Any

from conftest import FIXTURES
from jwt_clients import SIGN_PATH, SigningClient, es384_client
from live_server import free_port, running_server, serve

REQUEST = (FIXTURES / "opioid-tramadol-acute-low-back-pain" / "request.json").read_bytes()


def _secure_env(tmp_path: Path, signer: SigningClient, port: int) -> dict[str, str]:
    clients = tmp_path / "trusted-clients.json"
    entry = {"iss": signer.issuer, "jku": signer.jku, "jwks": signer.jwks()}
    clients.write_text(json.dumps([entry]), encoding="utf-8")
    return {
        "CDS_TRUSTED_CLIENTS": str(clients),
        "CDS_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "CDS_EVALUATION_DATE": "2026-11-22",
    }


def _post(port: int, headers: dict[str, str], body: bytes = REQUEST) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("POST", SIGN_PATH, body=body, headers=headers)
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def _signed(token: str) -> dict[str, str]:
    return {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}


def _request_lines(log: str) -> list[dict[str, Any]]:
    entries = (json.loads(line) for line in log.splitlines() if line.startswith("{"))
    return [entry for entry in entries if entry.get("event") == "request"]


def test_a_token_replayed_to_the_other_worker_is_refused(tmp_path: Path) -> None:
    signer = es384_client()
    port = free_port()
    with running_server(port, _secure_env(tmp_path, signer, port), workers=2) as server:
        token = signer.token(server.base_url + SIGN_PATH)
        first = _post(port, _signed(token)).status
        # Each new connection goes to one of the workers (the kernel spreads them): replayed
        # enough times, the token reaches the worker that did not see its first use.
        replays = [_post(port, _signed(token)).status for _ in range(24)]
        fresh = _post(port, _signed(signer.token(server.base_url + SIGN_PATH))).status
    assert (first, set(replays), fresh) == (200, {401}, 200)
    lines = [line for line in _request_lines(server.log) if line.get("path") == SIGN_PATH]
    assert [line["status"] for line in lines] == [200, *replays, 200]
    assert lines[0]["issuer"] == signer.issuer
    assert {line["auth_error"] for line in lines[1:-1]} == {"jti replayed"}
    other_worker = [line for line in lines[1:-1] if line["pid"] != lines[0]["pid"]]
    assert other_worker, "a replay must have reached the other worker"
    assert token not in server.log and "Moreno" not in server.log


def test_chunked_body_over_the_limit_is_413_json_with_cors(tmp_path: Path) -> None:
    signer = es384_client()
    port = free_port()
    env = {**_secure_env(tmp_path, signer, port), "CDS_MAX_BODY_BYTES": "20000"}
    with running_server(port, env) as server:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        # No Content-Length: the body arrives in chunks and only its size gives it away.
        chunks = (b"x" * 4096 for _ in range(10))
        headers = {
            **_signed(signer.token(server.base_url + SIGN_PATH)),
            "Origin": "https://ehr.example.org",
        }
        connection.request("POST", SIGN_PATH, body=chunks, headers=headers, encode_chunked=True)
        response = connection.getresponse()
        body = json.loads(response.read())
        connection.close()
        # A chunked body within the limit is read in full.
        within = _post(port, {**_signed(signer.token(server.base_url + SIGN_PATH))}, REQUEST)
    assert response.status == 413
    assert body["resourceType"] == "OperationOutcome"
    assert response.headers["Access-Control-Allow-Origin"] == "https://ehr.example.org"
    assert within.status == 200


def test_serve_refuses_bad_security_configuration_with_one_line(tmp_path: Path) -> None:
    broken = tmp_path / "clients.json"
    broken.write_text('[{"iss": "https://ehr.example.org"}]', encoding="utf-8")
    cases = {
        "missing public url": (
            {"CDS_TRUSTED_CLIENTS": str(broken)},
            "CDS_TRUSTED_CLIENTS: client 0 needs",
        ),
        "no keys": (
            {"CDS_TRUSTED_CLIENTS": str(broken), "CDS_PUBLIC_URL": "https://cds.example.org"},
            'CDS_TRUSTED_CLIENTS: client 0 needs "jku" (JWK Set URL) or "jwks"',
        ),
        "no file": (
            {
                "CDS_TRUSTED_CLIENTS": str(tmp_path / "absent.json"),
                "CDS_PUBLIC_URL": "https://cds.example.org",
            },
            "CDS_TRUSTED_CLIENTS: cannot read",
        ),
    }
    for env, expected in cases.values():
        process = serve(free_port(), {"CDS_TRUSTED_CLIENTS": "", "CDS_PUBLIC_URL": "", **env})
        _, stderr = process.communicate(timeout=30)
        lines = stderr.strip().splitlines()
        assert process.returncode == 2
        assert len(lines) == 1 and lines[0].startswith("cds-service: configuration error: ")
        assert expected in lines[0]
