"""Hook calls whose data comes (partly) from the EHR's FHIR server instead of prefetch.

The FHIR server is played by `responses` at the exact URLs the discovery templates name, and by
a real local HTTP server where time and sockets matter (stalls, refused connections, the
production server).
"""

from __future__ import annotations

import copy
import json
import logging
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from typing import Any
from urllib.error import HTTPError
from urllib.parse import unquote

import pytest
import requests
import responses
from conftest import SETTINGS, fixture_dirs, load_fixture
from fhir_fakes import (
    Reply,
    filled_template,
    local_fhir_server,
    searchset,
    server_documents,
    timed,
)
from flask import Flask
from flask.testing import FlaskClient
from live_server import free_port, wait_healthy
from live_server import serve as start_service

from cds_service.app import create_app
from cds_service.golden import compare_cards
from cds_service.logs import JsonFormatter
from cds_service.protocol.request import schema_problems
from cds_service.runtime import Runtime

TOKEN = "eyJhbGciOi.secret-token.sig"
AUTHORIZATION = {
    "access_token": TOKEN,
    "token_type": "Bearer",
    "expires_in": 300,
    "scope": "patient/*.read",
    "subject": "back-pain-cds",
}
KEYS = ("patient", "conditions", "medications", "observations", "procedures", "servicerequests")
TRAMADOL = "opioid-tramadol-acute-low-back-pain"  # golden: opioid-avoidance, exercise-therapy
# A fixture whose cards depend on each kind of data (checked in the test itself).
FIXTURE_FOR_KEY = {
    "patient": "imaging-age-over-50-new-pain",
    "conditions": "imaging-cauda-equina-critical",
    "medications": "nsaid-contraindicated-warfarin",
    "observations": "imaging-fever-order-select",
    "procedures": "red-flag-kidney-transplant-mri",
    "servicerequests": "patient-view-acute-pain-in-therapy",
}
SHORT_DEADLINE = 0.5
# Generous bound for "answered, did not hang": far below the 10 s a stalled server would cost.
NO_HANG_SECONDS = 5.0


@pytest.fixture(scope="module")
def templates(runtime: Runtime) -> dict[str, str]:
    """The prefetch templates as discovery publishes them."""
    app = create_app(SETTINGS, runtime=runtime)
    services = app.test_client().get("/cds-services").get_json()["services"]
    return services[0]["prefetch"]


@pytest.fixture(scope="module")
def quick_app() -> Iterator[Flask]:
    settings = replace(
        SETTINGS, fhir_deadline_seconds=SHORT_DEADLINE, fhir_timeout_seconds=SHORT_DEADLINE
    )
    application = create_app(settings, runtime=Runtime.load(settings))
    application.config["TESTING"] = True
    yield application


@pytest.fixture
def quick_client(quick_app: Flask) -> FlaskClient:
    return quick_app.test_client()


def _url(request: dict[str, Any], templates: dict[str, str], key: str) -> str:
    return f"{request['fhirServer']}/{filled_template(templates[key], request['context'])}"


def _lay_out(
    mock: responses.RequestsMock,
    request: dict[str, Any],
    templates: dict[str, str],
    keys: tuple[str, ...] = KEYS,
) -> dict[str, str]:
    """Lay the fixture's data out at the templated URLs; the URL per key."""
    documents = server_documents(request)
    urls = {key: _url(request, templates, key) for key in keys}
    for key, url in urls.items():
        mock.get(url, json=documents[key])
    return urls


def _called(mock: responses.RequestsMock) -> list[str]:
    return sorted(unquote(call.request.url) for call in mock.calls)


def _post(client: FlaskClient, service: str, request: dict[str, Any]) -> Any:
    return client.post(f"/cds-services/{service}", json=request)


def _topics(response: Any) -> set[str]:
    assert response.status_code == 200, response.get_json()
    return {card["source"]["topic"]["code"] for card in response.get_json()["cards"]}


def _assert_412(response: Any, keys: list[str]) -> str:
    assert response.status_code == 412
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome"
    issue = body["issue"][0]
    assert issue["expression"] == [f"prefetch.{key}" for key in keys]
    assert TOKEN not in response.get_data(as_text=True)
    return issue["diagnostics"]


# --- the same cards whether the data was prefetched or fetched ---------------------------------


@pytest.mark.parametrize("name", [p.name for p in fixture_dirs()])
def test_fixture_gives_its_golden_cards_when_its_data_is_fetched(
    client: FlaskClient, templates: dict[str, str], name: str
) -> None:
    scenario, request, expected = load_fixture(name)
    stripped = copy.deepcopy(request)
    del stripped["prefetch"]
    stripped["fhirAuthorization"] = AUTHORIZATION
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        urls = _lay_out(mock, request, templates)
        response = _post(client, scenario["service"], stripped)
        calls = list(mock.calls)
    assert response.status_code == 200, response.get_json()
    assert schema_problems("response", response.get_json()) == []
    assert compare_cards(expected["cards"], response.get_json()["cards"]) == []
    if calls or expected["cards"]:
        assert sorted(unquote(call.request.url) for call in calls) == sorted(
            unquote(url) for url in urls.values()
        )
    # else: no order under review concerns back pain, so the answer came without reading any
    # patient data (without the patient and conditions it would have been 412, not 200).
    assert all(call.request.headers["Authorization"] == f"Bearer {TOKEN}" for call in calls)


@pytest.mark.parametrize("key", KEYS)
def test_each_missing_prefetch_key_is_fetched_alone(
    client: FlaskClient, templates: dict[str, str], key: str
) -> None:
    name = FIXTURE_FOR_KEY[key]
    scenario, request, expected = load_fixture(name)
    # The data matters: without it the fixture's cards would differ.
    without = copy.deepcopy(request)
    without["prefetch"][key] = None
    blind = _post(client, scenario["service"], without)
    assert blind.status_code != 200 or compare_cards(expected["cards"], blind.get_json()["cards"])

    partial = copy.deepcopy(request)
    del partial["prefetch"][key]
    with responses.RequestsMock() as mock:
        urls = _lay_out(mock, request, templates, keys=(key,))
        response = _post(client, scenario["service"], partial)
        assert _called(mock) == [unquote(urls[key])]
        assert "Authorization" not in mock.calls[0].request.headers  # no fhirAuthorization sent
    assert compare_cards(expected["cards"], response.get_json()["cards"]) == []


def test_partial_prefetch_fetches_only_the_rest(
    client: FlaskClient, templates: dict[str, str]
) -> None:
    scenario, request, expected = load_fixture("imaging-fever-order-select")
    partial = copy.deepcopy(request)
    fetched = ("conditions", "observations", "procedures")
    for key in fetched:
        del partial["prefetch"][key]
    with responses.RequestsMock() as mock:  # any other URL would be a ConnectionError
        urls = _lay_out(mock, request, templates, keys=fetched)
        response = _post(client, scenario["service"], partial)
        assert _called(mock) == sorted(unquote(url) for url in urls.values())
    assert compare_cards(expected["cards"], response.get_json()["cards"]) == []


def test_null_prefetch_is_not_fetched(client: FlaskClient) -> None:
    scenario, request, expected = load_fixture(TRAMADOL)
    assert request["prefetch"]["medications"] is None and request["fhirServer"]
    with responses.RequestsMock() as mock:
        response = _post(client, scenario["service"], request)
        assert len(mock.calls) == 0
    assert compare_cards(expected["cards"], response.get_json()["cards"]) == []


@pytest.mark.parametrize(
    "failed",
    [
        {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "timeout"}]},
        searchset([{"resourceType": "OperationOutcome", "issue": [{"severity": "error"}]}]),
    ],
)
def test_failed_prefetch_is_fetched(
    client: FlaskClient, templates: dict[str, str], failed: dict[str, Any]
) -> None:
    scenario, request, expected = load_fixture("imaging-cauda-equina-critical")
    sent = copy.deepcopy(request)
    sent["prefetch"]["conditions"] = failed
    with responses.RequestsMock() as mock:
        urls = _lay_out(mock, request, templates, keys=("conditions",))
        response = _post(client, scenario["service"], sent)
        assert _called(mock) == [unquote(urls["conditions"])]
    assert compare_cards(expected["cards"], response.get_json()["cards"]) == []


@pytest.mark.parametrize("name", ["imaging-cauda-equina-critical", "opioid-active-cancer-excluded"])
def test_prefetch_with_a_next_link_is_paged_with_the_token(client: FlaskClient, name: str) -> None:
    # The second condition (cauda equina; active cancer) decides the cards; it is on page 2.
    scenario, request, expected = load_fixture(name)
    first, second = (entry["resource"] for entry in request["prefetch"]["conditions"]["entry"])
    page_two = f"{request['fhirServer']}/Condition?_getpages=q1&_offset=1"
    sent = copy.deepcopy(request)
    sent["prefetch"]["conditions"] = searchset([first], next_url=page_two)
    sent["fhirAuthorization"] = AUTHORIZATION
    with responses.RequestsMock() as mock:
        mock.get(page_two, json=searchset([second]))
        response = _post(client, scenario["service"], sent)
        assert mock.calls[0].request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert compare_cards(expected["cards"], response.get_json()["cards"]) == []


def test_fetched_search_is_paged(client: FlaskClient, templates: dict[str, str]) -> None:
    scenario, request, expected = load_fixture("opioid-active-cancer-excluded")
    first, second = (entry["resource"] for entry in request["prefetch"]["conditions"]["entry"])
    partial = copy.deepcopy(request)
    del partial["prefetch"]["conditions"]
    page_two = f"{request['fhirServer']}?_getpages=q2&_getpagesoffset=1"
    with responses.RequestsMock() as mock:
        mock.get(_url(request, templates, "conditions"), json=searchset([first], page_two))
        mock.get(page_two, json=searchset([second]))
        response = _post(client, scenario["service"], partial)
        assert len(mock.calls) == 2
    assert compare_cards(expected["cards"], response.get_json()["cards"]) == []


# --- a failing FHIR server ---------------------------------------------------------------------


def _tramadol_without(*keys: str) -> tuple[str, dict[str, Any]]:
    scenario, request, _ = load_fixture(TRAMADOL)
    sent = copy.deepcopy(request)
    sent["fhirAuthorization"] = AUTHORIZATION
    for key in keys:
        del sent["prefetch"][key]
    return scenario["service"], sent


@pytest.mark.parametrize("status", [401, 403, 404, 500])
def test_server_error_for_conditions_is_412_naming_them(
    client: FlaskClient, templates: dict[str, str], status: int
) -> None:
    service, sent = _tramadol_without("conditions")
    with responses.RequestsMock() as mock:
        mock.get(
            _url(sent, templates, "conditions"),
            status=status,
            json={"resourceType": "OperationOutcome", "issue": [{"severity": "error"}]},
        )
        response = _post(client, service, sent)
    diagnostics = _assert_412(response, ["conditions"])
    assert f"answered HTTP {status}" in diagnostics


@pytest.mark.parametrize("status", [401, 403, 404, 500])
def test_server_error_for_other_data_leaves_its_rules_silent(
    client: FlaskClient, templates: dict[str, str], status: int
) -> None:
    # Observations can show a fever: without them no one can say there is no red flag, so the
    # exercise-therapy card stays silent; the opioid card (which does not need them) still comes.
    service, sent = _tramadol_without("observations")
    with responses.RequestsMock() as mock:
        mock.get(_url(sent, templates, "observations"), status=status)
        assert _topics(_post(client, service, sent)) == {"opioid-avoidance"}


@pytest.mark.parametrize(
    "body", [b"{not json", b'{"resourceType": "OperationOutcome"}', b"<html>busy</html>"]
)
def test_unusable_answer_for_conditions_is_412(
    client: FlaskClient, templates: dict[str, str], body: bytes
) -> None:
    service, sent = _tramadol_without("conditions")
    with responses.RequestsMock() as mock:
        mock.get(_url(sent, templates, "conditions"), body=body)
        _assert_412(_post(client, service, sent), ["conditions"])


def test_every_missing_kind_of_data_is_named(
    client: FlaskClient, templates: dict[str, str]
) -> None:
    service, sent = _tramadol_without("patient", "conditions", "medications")
    with responses.RequestsMock() as mock:
        for key in ("patient", "conditions", "medications"):
            mock.get(_url(sent, templates, key), status=503)
        diagnostics = _assert_412(
            _post(client, service, sent), ["patient", "conditions", "medications"]
        )
    assert diagnostics.count("answered HTTP 503") == 3


def test_timeout_is_412(client: FlaskClient, templates: dict[str, str]) -> None:
    service, sent = _tramadol_without("conditions")
    with responses.RequestsMock() as mock:
        mock.get(_url(sent, templates, "conditions"), body=requests.ReadTimeout("slow"))
        assert "did not answer" in _assert_412(_post(client, service, sent), ["conditions"])


def test_refused_connection_is_412(client: FlaskClient) -> None:
    service, sent = _tramadol_without("conditions")
    with local_fhir_server(lambda path: Reply()) as server:
        sent["fhirServer"] = server.base_url
    assert "could not be reached" in _assert_412(_post(client, service, sent), ["conditions"])


@pytest.mark.parametrize("reply", [Reply.json({}, delay=10), Reply.json({}, status=500)])
def test_stalled_or_failing_server_costs_at_most_the_deadline(
    quick_client: FlaskClient, reply: Reply
) -> None:
    service, sent = _tramadol_without(*KEYS)
    with local_fhir_server(lambda path: reply) as server:
        sent["fhirServer"] = server.base_url
        response, seconds = timed(lambda: _post(quick_client, service, sent))
        assert len(server.seen) == len(KEYS)  # all six asked at once
    _assert_412(response, list(KEYS))
    assert seconds < NO_HANG_SECONDS


def test_fhir_work_is_logged_without_token_or_patient_data(
    client: FlaskClient, templates: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    service, sent = _tramadol_without("conditions", "observations", "patient")
    _, request, _ = load_fixture(TRAMADOL)
    caplog.set_level(logging.DEBUG)
    with responses.RequestsMock() as mock:
        _lay_out(mock, request, templates, keys=("conditions", "patient"))
        mock.get(_url(sent, templates, "observations"), status=500)
        assert _topics(_post(client, service, sent)) == {"opioid-avoidance"}
    formatter = JsonFormatter()
    lines = [json.loads(formatter.format(record)) for record in caplog.records]
    queries = {line["query"]: line for line in lines if line.get("event") == "fhir_query"}
    assert set(queries) == {"conditions", "observations", "patient"}
    assert queries["conditions"]["status"] == 200 and queries["conditions"]["pages"] == 1
    assert queries["observations"]["status"] == 500
    assert all(isinstance(line["duration_ms"], float) for line in queries.values())
    skipped = next(line for line in lines if line.get("event") == "data_missing")
    assert "exercise-therapy" in skipped["skipped"] and skipped["missing"] == ["observations"]
    text = "\n".join(json.dumps(line) for line in lines)
    patient_id = request["context"]["patientId"]
    for secret in (TOKEN, patient_id, "Moreno", "1986-04-12", "ehr.example.org"):
        assert secret not in text


# --- through the production server (preloaded app, forked workers) ----------------------------


def _routes(request: dict[str, Any], templates: dict[str, str]) -> dict[str, Reply]:
    documents = server_documents(request)
    return {
        "/fhir/" + unquote(filled_template(templates[key], request["context"])): Reply.json(
            documents[key]
        )
        for key in KEYS
    }


def _call(port: int, service: str, request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    call = urllib.request.Request(
        f"http://127.0.0.1:{port}/cds-services/{service}",
        data=json.dumps(request).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(call, timeout=30) as response:
            return response.status, json.load(response)
    except HTTPError as error:
        return error.code, json.load(error)


def test_server_workers_fetch_and_survive_a_stalled_server(templates: dict[str, str]) -> None:
    scenario, request, expected = load_fixture(TRAMADOL)
    routes = _routes(request, templates)
    stall = {"on": False}

    def respond(path: str) -> Reply:
        if stall["on"]:
            return Reply.json({}, delay=10)
        return routes.get(unquote(path), Reply.json({}, status=404))

    port = free_port()
    env = {"CDS_EVALUATION_DATE": "2026-11-22", "CDS_FHIR_DEADLINE_SECONDS": "1"}
    process = start_service(port, env, workers=2)
    try:
        with local_fhir_server(respond) as fhir:
            wait_healthy(port, process)
            stripped = copy.deepcopy(request)
            del stripped["prefetch"]
            stripped["fhirServer"] = fhir.base_url
            stripped["fhirAuthorization"] = AUTHORIZATION
            for _ in range(3):  # whichever worker answers made its pool after the fork
                status, body = _call(port, scenario["service"], stripped)
                assert status == 200, body
                assert compare_cards(expected["cards"], body["cards"]) == []
            assert {seen.headers["Authorization"] for seen in fhir.seen} == {f"Bearer {TOKEN}"}
            stall["on"] = True
            (status, body), seconds = timed(lambda: _call(port, scenario["service"], stripped))
        assert status == 412 and body["resourceType"] == "OperationOutcome"
        assert seconds < NO_HANG_SECONDS
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=20)
    assert '"event":"fhir_query"' in stderr
    assert TOKEN not in stderr and request["context"]["patientId"] not in stderr
