"""GET /openapi.json: a valid OpenAPI 3.1 document that live responses keep true."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from typing import Any

import pytest
from conftest import SETTINGS, fixture_dirs, load_fixture
from flask import Flask
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator
from jwt_clients import PUBLIC_URL, es384_client
from openapi_spec_validator import validate as validate_openapi
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from cds_service import __version__
from cds_service.app import create_app
from cds_service.protocol.request import schema_problems
from cds_service.runtime import Runtime

DOC_URI = "urn:back-pain-cds:openapi"
SIGN = "/cds-services/back-pain-order-sign"


@dataclass(frozen=True)
class Call:
    method: str
    url: str
    status: int
    body: Any = None
    raw: bytes | None = None
    small_body_limit: bool = False
    trusted_clients: bool = False  # the app requires client JWTs (CDS_TRUSTED_CLIENTS)


def _request(name: str) -> dict[str, Any]:
    return load_fixture(name)[1]


def _without_conditions() -> dict[str, Any]:
    request = _request("opioid-tramadol-acute-low-back-pain")
    del request["prefetch"]["conditions"]
    del request["fhirServer"]
    return request


def _wrong_hook() -> dict[str, Any]:
    return _request("patient-view-chronic-pain-16-weeks")


FEEDBACK = {
    "feedback": [
        {
            "card": "9368d37b-283f-44a0-93ea-547cebab93ed",
            "outcome": "overridden",
            "overrideReason": {"reason": {"code": "patient-declined", "system": "x"}},
            "outcomeTimestamp": "2026-11-22T09:30:00Z",
        }
    ]
}

CALLS = [
    Call("GET", "/cds-services", 200),
    Call("POST", "/cds-services", 405, body={}),
    Call("POST", SIGN, 200, body=_request("opioid-tramadol-acute-low-back-pain")),
    Call(
        "POST",
        "/cds-services/back-pain-order-select",
        200,
        body=_request("order-select-only-selection-evaluated"),
    ),
    Call(
        "POST",
        "/cds-services/back-pain-patient-view",
        200,
        body=_request("patient-view-chronic-pain-16-weeks"),
    ),
    Call("POST", SIGN, 400, raw=b'{"hook": '),
    Call("POST", SIGN, 400, body=_wrong_hook()),
    Call("POST", "/cds-services/no-such-service", 404, body={}),
    Call("GET", SIGN, 405),
    Call("POST", SIGN, 412, body=_without_conditions()),
    Call("POST", SIGN, 413, raw=b"x" * 2048, small_body_limit=True),
    Call(
        "POST",
        SIGN,
        401,
        body=_request("opioid-tramadol-acute-low-back-pain"),
        trusted_clients=True,
    ),
    Call("GET", "/health", 200),
    Call("POST", "/health", 405, body={}),
    Call("GET", "/openapi.json", 200),
    Call("DELETE", "/openapi.json", 405),
    Call("POST", f"{SIGN}/feedback", 200, body=FEEDBACK),
    Call("POST", f"{SIGN}/feedback", 400, raw=b"[1, 2"),
    Call("POST", "/cds-services/no-such-service/feedback", 404, body=FEEDBACK),
    Call("GET", "/metrics", 200),
    Call("GET", "/metrics", 403, trusted_clients=True),
    Call("GET", "/dashboard", 200),
    Call("GET", "/dashboard?from=last-tuesday", 400),
    Call("GET", "/dashboard/report.json?from=2026-11-01&to=2026-11-30", 200),
    Call("GET", "/preview", 200),
    Call("GET", "/preview", 404, trusted_clients=True),
    Call("GET", "/preview/scenarios/opioid-tramadol-acute-low-back-pain", 200),
    Call("GET", "/preview/scenarios/no-such-scenario", 404),
    Call(
        "POST",
        "/preview/run",
        200,
        body={
            "service": "back-pain-order-sign",
            "request": _request("patient-view-chronic-pain-16-weeks"),
        },
    ),
    Call("POST", "/preview/run", 400, body={"request": {}}),
    Call("GET", "/assets/pages.css", 200),
    Call("GET", "/guidance", 200),
    Call("GET", "/guidance/exercise-therapy", 200),
    Call("GET", "/guidance/opioid-avoidance?part=patient", 200),
    Call("GET", "/guidance/opioid-avoidance?part=doctor", 400),
    Call("GET", "/guidance/no-such-topic", 404),
    Call("GET", "/guidance/exercise-therapy", 200, trusted_clients=True),
    Call("GET", "/assets/no-such-file.js", 404),
]


@pytest.fixture(scope="module")
def document(runtime: Runtime) -> dict[str, Any]:
    app = create_app(SETTINGS, runtime=runtime)
    response = app.test_client().get("/openapi.json")
    assert response.status_code == 200
    return response.get_json()


def _template_regex(path: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$")


def _documented_path(document: dict[str, Any], url: str) -> str | None:
    paths = document["paths"]
    url = url.split("?", 1)[0]
    if url in paths:
        return url
    matches = [p for p in paths if _template_regex(p).match(url)]
    return matches[0] if matches else None


def _flask_paths(app: Flask) -> dict[str, set[str]]:
    routes: dict[str, set[str]] = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        routes.setdefault(path, set()).update(
            m for m in rule.methods if m not in {"HEAD", "OPTIONS"}
        )
    return routes


def _same_shape(a: str, b: str) -> bool:
    return _template_regex(a).pattern == _template_regex(b).pattern


def _resolve(document: dict[str, Any], node: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """A response object and its JSON pointer, following one $ref."""
    ref = node.get("$ref")
    if ref:
        name = ref.rsplit("/", 1)[-1]
        return document["components"]["responses"][name], f"/components/responses/{name}"
    return node, ""


def _pointer(*parts: str) -> str:
    return "/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def test_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    validate_openapi(document)
    assert document["openapi"].startswith("3.1")
    assert document["info"]["version"] == __version__
    assert not re.search(r'"x-cds-hooks-schema"', json.dumps(document))


def test_every_route_of_the_app_is_documented(app: Flask, document: dict[str, Any]) -> None:
    for path, methods in _flask_paths(app).items():
        documented = next((p for p in document["paths"] if _same_shape(p, path)), None)
        assert documented, f"{path} is not in the OpenAPI document"
        for method in methods:
            assert method.lower() in document["paths"][documented], f"{method} {path}"


def test_every_documented_operation_that_exists_is_exercised(
    app: Flask, document: dict[str, Any]
) -> None:
    routes = _flask_paths(app)
    exercised = {
        (_documented_path(document, c.url), c.method) for c in CALLS if 200 <= c.status < 300
    }
    for path, item in document["paths"].items():
        route = next((r for r in routes if _same_shape(r, path)), None)
        for method in item:
            if route and method.upper() in routes[route]:
                assert (path, method.upper()) in exercised, f"no live call covers {method} {path}"


@pytest.mark.parametrize("call", CALLS, ids=lambda c: f"{c.method} {c.url} {c.status}")
def test_live_response_matches_the_document(
    runtime: Runtime, document: dict[str, Any], call: Call
) -> None:
    settings = replace(SETTINGS, max_body_bytes=1024) if call.small_body_limit else SETTINGS
    if call.trusted_clients:
        trusted = (es384_client().trusted(),)
        settings = replace(settings, trusted_clients=trusted, public_url=PUBLIC_URL)
    app = create_app(settings, runtime=runtime)
    path = _documented_path(document, call.url)
    assert path is not None, f"{call.url} matches no documented path"
    route_exists = any(_same_shape(r, path) for r, methods in _flask_paths(app).items() if methods)
    if not route_exists:
        pytest.skip(f"{path} is documented but not served by this build yet")

    client: FlaskClient = app.test_client()
    kwargs: dict[str, Any] = {}
    if call.raw is not None:
        kwargs = {"data": call.raw, "content_type": "application/json"}
    elif call.body is not None:
        kwargs = {"json": call.body}
    response = client.open(call.url, method=call.method, **kwargs)
    assert response.status_code == call.status, response.get_data(as_text=True)

    item = document["paths"][path]
    # A 405 answers a method the path lacks; its shape is the same on every operation.
    operation_method = call.method.lower() if call.method.lower() in item else next(iter(item))
    responses = item[operation_method]["responses"]
    assert str(call.status) in responses, f"{call.status} undocumented for {call.method} {path}"
    declared, pointer = _resolve(document, responses[str(call.status)])
    if not pointer:
        pointer = _pointer("paths", path, operation_method, "responses", str(call.status))

    assert response.headers["X-Request-ID"]
    for header in declared.get("headers", {}):
        assert header in response.headers, f"{header} missing on {call.status}"
    media_type = response.mimetype
    assert media_type in declared["content"], f"{media_type} undocumented"
    schema_pointer = pointer + _pointer("content", media_type, "schema")
    registry = Registry().with_resource(
        DOC_URI, Resource(contents=document, specification=DRAFT202012)
    )
    validator = Draft202012Validator({"$ref": f"{DOC_URI}#{schema_pointer}"}, registry=registry)
    body = response.get_json() if response.is_json else response.get_data(as_text=True)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(body)]
    assert errors == []


def test_the_embedded_schemas_judge_like_the_service(document: dict[str, Any]) -> None:
    """Converted for OpenAPI, the CDS Hooks schemas still accept and reject the same bodies."""
    registry = Registry().with_resource(
        DOC_URI, Resource(contents=document, specification=DRAFT202012)
    )
    validator = Draft202012Validator(
        {"$ref": f"{DOC_URI}#/components/schemas/CdsServiceRequest"}, registry=registry
    )
    for folder in fixture_dirs():
        assert not list(validator.iter_errors(load_fixture(folder.name)[1]))
    broken = _request("order-select-only-selection-evaluated")
    broken["context"]["selections"] = ["not a reference"]
    assert list(validator.iter_errors(broken)) and schema_problems("request", broken)


def test_example_request_in_the_document_gets_cards(
    client: FlaskClient, document: dict[str, Any]
) -> None:
    example = document["components"]["examples"]["OrderSignRequest"]["value"]
    response = client.post(SIGN, json=example)
    assert response.status_code == 200
    assert response.get_json()["cards"]
