"""CORS for browser clients (the CDS Hooks sandbox), and JSON errors that browsers can read."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import EVALUATION_DATE
from flask import Flask
from flask.testing import FlaskClient
from jwt_clients import PUBLIC_URL, SANDBOX_ORIGIN, SIGN_PATH, bearer, es384_client

from cds_service.app import create_app
from cds_service.config import Settings
from cds_service.runtime import Runtime

FEEDBACK_PATH = SIGN_PATH + "/feedback"
FIXTURE = "opioid-tramadol-acute-low-back-pain"


def _preflight(client: FlaskClient, path: str, origin: str = SANDBOX_ORIGIN, **extra: str) -> Any:
    headers = {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
        **extra,
    }
    return client.options(path, headers=headers)


@pytest.fixture
def secure_app(runtime: Runtime, tmp_path: Path) -> Flask:
    settings = Settings(
        evaluation_date=EVALUATION_DATE,
        trusted_clients=(es384_client().trusted(),),
        public_url=PUBLIC_URL,
        cors_origins=(SANDBOX_ORIGIN,),
        replay_db=str(tmp_path / "used.sqlite3"),
        max_body_bytes=50_000,
    )
    return create_app(settings, runtime=runtime)


@pytest.mark.parametrize("path", ["/cds-services", SIGN_PATH, FEEDBACK_PATH])
def test_preflight_succeeds_without_a_token(secure_app: Flask, path: str) -> None:
    response = _preflight(secure_app.test_client(), path)
    assert response.status_code == 204
    headers = response.headers
    assert headers["Access-Control-Allow-Origin"] == SANDBOX_ORIGIN
    assert {m.strip() for m in headers["Access-Control-Allow-Methods"].split(",")} >= {
        "GET",
        "POST",
        "OPTIONS",
    }
    allowed = {h.strip().lower() for h in headers["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "content-type"} <= allowed
    assert "Access-Control-Allow-Credentials" not in headers
    assert "Origin" in headers.get("Vary", "")


def test_preflight_from_another_origin_gets_no_permission(secure_app: Flask) -> None:
    response = _preflight(secure_app.test_client(), SIGN_PATH, origin="https://evil.example.org")
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Access-Control-Allow-Methods" not in response.headers


def test_private_network_access_preflight(secure_app: Flask) -> None:
    client = secure_app.test_client()
    asked = _preflight(client, SIGN_PATH, **{"Access-Control-Request-Private-Network": "true"})
    assert asked.headers["Access-Control-Allow-Private-Network"] == "true"
    assert "Access-Control-Allow-Private-Network" not in _preflight(client, SIGN_PATH).headers
    refused = _preflight(
        client,
        SIGN_PATH,
        origin="https://evil.example.org",
        **{"Access-Control-Request-Private-Network": "true"},
    )
    assert "Access-Control-Allow-Private-Network" not in refused.headers


def _assert_cors_json_error(response: Any, status: int) -> None:
    assert response.status_code == status
    assert response.mimetype == "application/json"
    assert response.get_json()["resourceType"] == "OperationOutcome"
    assert response.headers["Access-Control-Allow-Origin"] == SANDBOX_ORIGIN
    assert "X-Request-ID" in response.headers["Access-Control-Expose-Headers"]
    assert "Access-Control-Allow-Credentials" not in response.headers
    assert "Traceback" not in response.get_data(as_text=True)


def test_errors_carry_cors_headers(secure_app: Flask, fixture_request: Any) -> None:
    client = secure_app.test_client()
    origin = {"Origin": SANDBOX_ORIGIN}
    signer = es384_client()
    # 401: no token.
    _assert_cors_json_error(client.post(SIGN_PATH, json={}, headers=origin), 401)
    # 404: unknown service, with a valid token for that URL.
    unknown = "/cds-services/no-such-service"
    token = signer.token(PUBLIC_URL + unknown)
    _assert_cors_json_error(client.post(unknown, json={}, headers={**origin, **bearer(token)}), 404)
    _assert_cors_json_error(client.get("/nowhere", headers=origin), 404)
    # 405: wrong method on discovery.
    _assert_cors_json_error(client.delete("/cds-services", headers=origin), 405)
    # 412: required data neither prefetched nor obtainable.
    request = fixture_request(FIXTURE)
    del request["prefetch"]["conditions"]
    del request["fhirServer"]
    headers = {**origin, **bearer(signer.token())}
    _assert_cors_json_error(client.post(SIGN_PATH, json=request, headers=headers), 412)
    # 413: body too large, declared or chunked.
    big = b'{"pad": "' + b"x" * 60_000 + b'"}'
    headers = {**origin, **bearer(signer.token()), "Content-Type": "application/json"}
    _assert_cors_json_error(client.post(SIGN_PATH, data=big, headers=headers), 413)
    chunked = client.post(
        SIGN_PATH,
        input_stream=io.BytesIO(big),
        headers={**origin, **bearer(signer.token()), "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    _assert_cors_json_error(chunked, 413)


def test_chunked_body_within_the_limit_is_read_in_full(
    secure_app: Flask, fixture_request: Any
) -> None:
    body = json.dumps(fixture_request(FIXTURE)).encode()
    response = secure_app.test_client().post(
        SIGN_PATH,
        input_stream=io.BytesIO(body),
        headers={
            **bearer(es384_client().token()),
            "Content-Type": "application/json",
            "Transfer-Encoding": "chunked",
        },
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == 200
    assert response.get_json()["cards"]


@pytest.mark.parametrize("debug", [False, True], ids=["production", "debug"])
def test_unexpected_failure_is_json_500_with_cors_in_every_mode(
    runtime: Runtime, fixture_request: Any, monkeypatch: pytest.MonkeyPatch, debug: bool
) -> None:
    app = create_app(Settings(evaluation_date=EVALUATION_DATE), runtime=runtime)
    app.debug = debug
    app.testing = debug

    def _explode(*_: Any) -> Any:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(runtime.handler, "handle", _explode)
    response = app.test_client().post(
        SIGN_PATH, json=fixture_request(FIXTURE), headers={"Origin": SANDBOX_ORIGIN}
    )
    assert response.status_code == 500
    assert response.mimetype == "application/json"
    text = response.get_data(as_text=True)
    assert "Traceback" not in text and "secret internal detail" not in text
    # Development mode allows any origin, without credentials.
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in response.headers


def test_development_mode_allows_any_origin(client: FlaskClient) -> None:
    preflight = _preflight(client, FEEDBACK_PATH, origin="http://localhost:3000")
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "*"
    discovery = client.get("/cds-services", headers={"Origin": "http://localhost:3000"})
    assert discovery.headers["Access-Control-Allow-Origin"] == "*"
    # A plain OPTIONS (not a preflight) keeps Flask's normal answer.
    assert client.options(SIGN_PATH).headers["Allow"]
