"""GET /preview and its API: the service's own handler, run in process, for a tester's page.

(The page itself is driven in a real browser in test_browser.py.)
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from conftest import SETTINGS, load_fixture
from flask import Flask
from flask.testing import FlaskClient
from jwt_clients import PUBLIC_URL, bearer, es384_client
from metrics_text import parse, total
from sqlalchemy import func, select

from cds_service.app import create_app
from cds_service.card_builder.profiles import PROFILE_NAMES
from cds_service.golden import card_signature
from cds_service.http.pages.markdown import render_markdown
from cds_service.protocol.catalog import build_catalog
from cds_service.runtime import Runtime
from cds_service.store.schema import card_decisions
from cds_service.tooling.bundle_request import BundleError, request_from_bundle
from cds_service.tooling.library import library_root

SIGN = "back-pain-order-sign"
TRAMADOL = "opioid-tramadol-acute-low-back-pain"
ADMIN_TOKEN = "operator-" + "p" * 32
HOSTILE = '<img src=x onerror="alert(1)"><script>alert(2)</script>'


# --- safe Markdown --------------------------------------------------------------------------


def test_markdown_subset_is_rendered() -> None:
    html = str(
        render_markdown(
            "Use **diclofenac** *gel*.\n\n**Evidence**\n\n- one\n- two `x<y`\n\n"
            "1. [Paper](https://doi.org/10.1/abc?a=1&b=2) finding\n2. second\n  continued"
        )
    )
    assert html == (
        "<p>Use <strong>diclofenac</strong> <em>gel</em>.</p>"
        "<p><strong>Evidence</strong></p>"
        "<ul><li>one</li><li>two <code>x&lt;y</code></li></ul>"
        '<ol><li><a href="https://doi.org/10.1/abc?a=1&amp;b=2" rel="noopener noreferrer" '
        'target="_blank">Paper</a> finding</li><li>second\ncontinued</li></ol>'
    )


@pytest.mark.parametrize(
    "hostile",
    [
        HOSTILE,
        "**<b onmouseover=alert(1)>x</b>**",
        "[click](javascript:alert(1))",
        '[click](https://x.org/"onmouseover="alert(1))',
        "[<svg onload=alert(1)>](https://x.org)",
        "`</code><script>alert(1)</script>`",
        "<a href='javascript:alert(1)'>x</a>",
        "# <iframe src=//evil.example></iframe>",
    ],
)
def test_markdown_lets_no_html_from_the_text_through(hostile: str) -> None:
    html = str(render_markdown(hostile))
    for tag, attributes in re.findall(r"<\s*([a-zA-Z0-9]+)([^>]*)>", html):
        assert tag in ("p", "strong", "em", "code", "a", "ul", "ol", "li"), html
        if tag == "a":
            assert re.fullmatch(
                r' href="https?://[^"\s]+" rel="noopener noreferrer" target="_blank"', attributes
            ), html
        else:
            assert attributes == "", html
    assert "<" not in re.sub(r"</?(p|strong|em|code|a|ul|ol|li)\b[^>]*>", "", html)


# --- a request from a FHIR Bundle -----------------------------------------------------------


def _bundle_of(request: dict[str, Any]) -> dict[str, Any]:
    """A transaction Bundle holding a fixture request's patient record and draft orders."""
    resources = [request["prefetch"]["patient"]]
    for key, value in request["prefetch"].items():
        if key != "patient" and value:
            resources += [entry["resource"] for entry in value.get("entry", [])]
    resources += [entry["resource"] for entry in request["context"]["draftOrders"]["entry"]]
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": copy.deepcopy(resource)} for resource in resources],
    }


def test_a_bundle_becomes_the_request_an_ehr_would_send(runtime: Runtime) -> None:
    request = load_fixture(TRAMADOL)[1]
    service = runtime.handler.service(SIGN)
    made = request_from_bundle(_bundle_of(request), service, hook_instance="h-1")
    assert made["hook"] == "order-sign" and made["hookInstance"] == "h-1"
    assert made["context"]["patientId"] == request["context"]["patientId"]
    assert made["context"]["draftOrders"]["entry"] == request["context"]["draftOrders"]["entry"]
    assert set(made["prefetch"]) == set(service.prefetch)
    assert made["prefetch"]["patient"] == request["prefetch"]["patient"]
    conditions = [e["resource"]["id"] for e in made["prefetch"]["conditions"]["entry"]]
    assert conditions == [e["resource"]["id"] for e in request["prefetch"]["conditions"]["entry"]]
    assert "fhirServer" not in made  # everything is prefetched: nothing is fetched

    select_service = runtime.handler.service("back-pain-order-select")
    selected = request_from_bundle(_bundle_of(request), select_service)
    assert selected["context"]["selections"] == ["MedicationRequest/rx-tramadol"]


@pytest.mark.parametrize(
    ("bundle", "message"),
    [
        ({"resourceType": "Patient"}, "Paste a FHIR Bundle"),
        ({"resourceType": "Bundle"}, "no 'entry' list"),
        ({"resourceType": "Bundle", "entry": [{"fullUrl": "x"}]}, "entry 0 holds no FHIR"),
        ({"resourceType": "Bundle", "entry": []}, "exactly one Patient"),
        (
            {
                "resourceType": "Bundle",
                "entry": [{"resource": {"resourceType": "Patient", "id": "p"}}],
            },
            "add an order with status 'draft'",
        ),
    ],
)
def test_a_bundle_no_request_can_be_made_from_is_refused(
    bundle: dict[str, Any], message: str
) -> None:
    (service, *_rest) = build_catalog(Runtime.load(SETTINGS).terminology)
    with pytest.raises(BundleError, match=message):
        request_from_bundle(bundle, service)


# --- the API --------------------------------------------------------------------------------


def _run(client: FlaskClient, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/preview/run", json=body)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def test_the_preview_answers_as_the_service_does_and_logs_nothing(
    app: Flask, client: FlaskClient
) -> None:
    request = load_fixture(TRAMADOL)[1]
    served = client.post(f"/cds-services/{SIGN}", json=request).get_json()["cards"]
    assert app.extensions["cds_decision_log"].flush(10)
    store = app.extensions["cds_store"]
    with store.reading() as connection:
        logged = connection.scalar(select(func.count()).select_from(card_decisions))
    metrics_before = parse(client.get("/metrics").get_data(as_text=True))

    previewed = _run(client, {"service": SIGN, "request": request})
    assert previewed["status"] == 200
    assert previewed["request"] == request
    cards = previewed["response"]["cards"]
    assert [card_signature(c) for c in cards] == [card_signature(c) for c in served]
    assert len(previewed["details"]) == len(cards)
    assert "<strong>" in previewed["details"][0]  # the detail rendered from Markdown

    from_bundle = _run(client, {"service": SIGN, "bundle": _bundle_of(request)})
    assert [card_signature(c) for c in from_bundle["response"]["cards"]] == [
        card_signature(c) for c in served
    ]
    assert from_bundle["request"]["context"]["patientId"] == request["context"]["patientId"]

    assert app.extensions["cds_decision_log"].flush(10)
    with store.reading() as connection:
        assert connection.scalar(select(func.count()).select_from(card_decisions)) == logged
    metrics_after = parse(client.get("/metrics").get_data(as_text=True))
    for name in ("cds_hook_request_duration_seconds_count", "cds_cards_returned_total"):
        assert total(metrics_after, name) == total(metrics_before, name)


def test_the_service_refusing_a_request_is_shown_not_raised(client: FlaskClient) -> None:
    request = load_fixture(TRAMADOL)[1]
    del request["prefetch"]["conditions"]
    del request["fhirServer"]
    answer = _run(client, {"service": SIGN, "request": request})
    assert answer["status"] == 412
    assert answer["response"]["resourceType"] == "OperationOutcome"
    patient_view = load_fixture("patient-view-chronic-pain-16-weeks")[1]
    wrong_hook = _run(client, {"service": SIGN, "request": patient_view})
    assert wrong_hook["status"] == 400


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"not json", 400),
        (b"[]", 400),
        (b'{"request": {}}', 400),
        (b'{"service": "no-such-service", "request": {}}', 404),
        (b'{"service": "back-pain-order-sign"}', 400),
        (b'{"service": "back-pain-order-sign", "bundle": {"resourceType": "Bundle"}}', 400),
    ],
)
def test_bad_preview_input_is_a_clear_json_error(
    client: FlaskClient, body: bytes, status: int
) -> None:
    response = client.post("/preview/run", data=body, content_type="application/json")
    assert response.status_code == status
    assert response.get_json()["resourceType"] == "OperationOutcome"


def test_scenarios_are_moved_to_the_services_today(runtime: Runtime, app_settings: Any) -> None:
    later = Runtime.load(SETTINGS, today=lambda: date(2026, 12, 2))  # ten days after
    client = create_app(app_settings, runtime=later).test_client()
    scenario = client.get(f"/preview/scenarios/{TRAMADOL}").get_json()
    assert scenario["service"] == SIGN and scenario["description"]
    original = load_fixture(TRAMADOL)[1]
    drafts = scenario["request"]["context"]["draftOrders"]["entry"]
    assert original["context"]["draftOrders"]["entry"][0]["resource"]["authoredOn"] == "2026-11-22"
    assert drafts[0]["resource"]["authoredOn"] == "2026-12-02"
    answer = _run(client, {"service": SIGN, "request": scenario["request"]})
    assert {c["source"]["topic"]["code"] for c in answer["response"]["cards"]} == {
        c["topic"] for c in load_fixture(TRAMADOL)[2]["cards"]
    }
    assert client.get("/preview/scenarios/..%2Fetc").status_code == 404


def test_the_page_lists_the_services_and_scenarios(client: FlaskClient) -> None:
    page = client.get("/preview")
    assert page.status_code == 200 and page.mimetype == "text/html"
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    html = page.get_data(as_text=True)
    data = json.loads(html.split('id="preview-data">', 1)[1].split("</script>", 1)[0])
    assert {s["id"] for s in data["services"]} >= {SIGN, "back-pain-patient-view"}
    assert TRAMADOL in {s["name"] for s in data["scenarios"]}
    assert data["urls"] == {"run": "/preview/run", "scenarios": "/preview/scenarios/"}
    for address in re.findall(r'(?:src|href|action)="([^"]*)"', html):
        assert address.startswith("/") and not address.startswith("//"), address


def test_a_folder_of_scenarios_can_replace_the_library(
    runtime: Runtime, app_settings: Any, tmp_path: Path
) -> None:
    source = Path(library_root() or "")
    (tmp_path / "mine").mkdir()
    for name in ("scenario.json", "request.json"):
        (tmp_path / "mine" / name).write_text((source / TRAMADOL / name).read_text())
    settings = dataclasses.replace(app_settings, preview_fixtures=str(tmp_path))
    client = create_app(settings, runtime=runtime).test_client()
    html = client.get("/preview").get_data(as_text=True)
    assert 'value="mine"' in html and f'value="{TRAMADOL}"' not in html
    empty = dataclasses.replace(app_settings, preview_fixtures=str(tmp_path / "mine" / "none"))
    (tmp_path / "mine" / "none").mkdir()
    page = create_app(empty, runtime=runtime).test_client().get("/preview")
    assert page.status_code == 200 and "paste a request" in page.get_data(as_text=True)


def test_the_library_is_found_where_the_package_is_installed() -> None:
    root = library_root()
    assert root is not None and (root / TRAMADOL / "request.json").is_file()


def test_with_trusted_clients_the_preview_is_off_unless_turned_on(
    runtime: Runtime, app_settings: Any
) -> None:
    trusted = dataclasses.replace(
        app_settings, trusted_clients=(es384_client().trusted(),), public_url=PUBLIC_URL
    )
    off = create_app(trusted, runtime=runtime).test_client()
    for method, path in (("GET", "/preview"), ("POST", "/preview/run")):
        answer = off.open(path, method=method, json={})
        assert answer.status_code == 404 and "CDS_PREVIEW" in answer.get_data(as_text=True)

    on = dataclasses.replace(trusted, preview=True, admin_token=ADMIN_TOKEN)
    client = create_app(on, runtime=runtime).test_client()
    assert client.get("/preview").status_code == 401
    ehr = es384_client().token(audience=f"{PUBLIC_URL}/preview")
    assert client.get("/preview", headers=bearer(ehr)).status_code == 401
    assert client.get("/preview", headers=bearer(ADMIN_TOKEN)).status_code == 200
    body = {"service": SIGN, "request": load_fixture(TRAMADOL)[1]}
    assert client.post("/preview/run", json=body, headers=bearer(ADMIN_TOKEN)).status_code == 200

    development_off = dataclasses.replace(app_settings, preview=False)
    assert (
        create_app(development_off, runtime=runtime).test_client().get("/preview").status_code
        == 404
    )


def test_the_tester_chooses_the_client_profile_that_shapes_suggestions(
    client: FlaskClient,
) -> None:
    request = load_fixture(TRAMADOL)[1]
    single = _run(client, {"service": SIGN, "request": request, "profile": "single-action"})
    suggestions = [s for c in single["response"]["cards"] for s in c.get("suggestions", [])]
    assert suggestions and all(len(s["actions"]) == 1 for s in suggestions)
    standard = _run(client, {"service": SIGN, "request": request, "profile": "standard"})
    assert any(
        len(s["actions"]) > 1 for c in standard["response"]["cards"] for s in c["suggestions"]
    )
    refused = client.post(
        "/preview/run", json={"service": SIGN, "request": request, "profile": "epic"}
    )
    assert refused.status_code == 400
    html = client.get("/preview").get_data(as_text=True)
    assert all(f'<option value="{name}"' in html for name in PROFILE_NAMES)
    documented = client.get("/openapi.json").get_json()["paths"]["/preview/run"]["post"]
    schema = documented["requestBody"]["content"]["application/json"]["schema"]
    assert tuple(schema["properties"]["profile"]["enum"]) == PROFILE_NAMES
