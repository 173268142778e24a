"""`cds-service fixtures load` against a FHIR server simulated with `responses`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
from conftest import FIXTURES, fixture_dirs

from cds_service.cli import main
from cds_service.tooling.library import discover
from cds_service.tooling.loader import FhirLoader, LoadError

FHIR = "http://fhir.test/fhir"
TRAMADOL = FIXTURES / "opioid-tramadol-acute-low-back-pain"
CHRONIC = FIXTURES / "patient-view-chronic-pain-16-weeks"


def _transaction_response(status: str) -> Any:
    def answer(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        bundle = json.loads(request.body or "{}")
        entries = [
            {"response": {"status": status, "location": e["request"]["url"] + "/_history/1"}}
            for e in bundle["entry"]
        ]
        body = {"resourceType": "Bundle", "type": "transaction-response", "entry": entries}
        return 200, {"Content-Type": "application/fhir+json"}, json.dumps(body)

    return answer


@responses.activate
def test_loads_every_scenario_as_one_transaction(capsys: pytest.CaptureFixture[str]) -> None:
    responses.add_callback(responses.POST, FHIR, callback=_transaction_response("201 Created"))
    code = main(["fixtures", "load", "--fhir-url", FHIR + "/", str(FIXTURES), "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0, out
    count = len(fixture_dirs())
    assert len(responses.calls) == count
    assert out.count("LOADED ") == count
    resources = sum(
        len(json.loads((f / "bundle.json").read_text())["entry"]) for f in fixture_dirs()
    )
    assert f"{count} loaded, 0 failed ({resources} resources" in out
    first = responses.calls[0].request
    assert first.headers["Content-Type"] == "application/fhir+json"
    assert json.loads(first.body or "{}")["type"] == "transaction"


@responses.activate
def test_dates_move_to_today_unless_told_not_to() -> None:
    responses.add_callback(responses.POST, FHIR, callback=_transaction_response("200 OK"))
    assert (
        main(["fixtures", "load", "--fhir-url", FHIR, str(TRAMADOL), "--today", "2027-01-01"]) == 0
    )
    assert main(["fixtures", "load", "--fhir-url", FHIR, str(TRAMADOL), "--no-date-shift"]) == 0
    shifted, unchanged = (json.loads(c.request.body or "{}") for c in responses.calls)
    original = json.loads((TRAMADOL / "bundle.json").read_text())
    assert unchanged == original
    assert shifted["entry"][0]["resource"]["birthDate"] == "1986-05-22"  # +40 days
    # Ids and PUT urls never move, so loading stays idempotent.
    assert [e["request"] for e in shifted["entry"]] == [e["request"] for e in original["entry"]]


@responses.activate
def test_reloading_reports_updates(capsys: pytest.CaptureFixture[str]) -> None:
    responses.add_callback(responses.POST, FHIR, callback=_transaction_response("200 OK"))
    assert main(["fixtures", "load", "--fhir-url", FHIR, str(TRAMADOL)]) == 0
    assert "2 (0 new)" in capsys.readouterr().out


@responses.activate
def test_server_errors_fail_that_scenario_only(capsys: pytest.CaptureFixture[str]) -> None:
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "processing", "diagnostics": "HAPI-0450 bad"}],
    }
    responses.post(FHIR, json=outcome, status=400)
    responses.post(FHIR, body="<html>Bad gateway</html>", status=502)
    responses.add_callback(responses.POST, FHIR, callback=_transaction_response("409 Conflict"))
    names = ["glucosamine-text-only", "no-back-pain-opioid", "opioid-active-cancer-excluded"]
    code = main(["fixtures", "load", "--fhir-url", FHIR, *(str(FIXTURES / n) for n in names)])
    out = capsys.readouterr().out
    assert code == 1
    assert "glucosamine-text-only: HTTP 400: HAPI-0450 bad" in out
    assert "no-back-pain-opioid: HTTP 502: <html>Bad gateway</html>" in out
    assert "opioid-active-cancer-excluded: entry 0 of the transaction answered 409 Conflict" in out
    assert "0 loaded, 3 failed" in out and "Traceback" not in out


@responses.activate
def test_unreachable_server_stops_the_run(capsys: pytest.CaptureFixture[str]) -> None:
    responses.post(FHIR, body=requests.ConnectionError("refused"))
    code = main(["fixtures", "load", "--fhir-url", FHIR, str(TRAMADOL), str(CHRONIC)])
    out = capsys.readouterr().out
    assert code == 1
    assert len(responses.calls) == 1
    assert f"cannot connect to {FHIR}" in out and "not loaded: cannot connect" in out


@responses.activate
def test_wait_polls_metadata_until_ready(capsys: pytest.CaptureFixture[str]) -> None:
    responses.get(f"{FHIR}/metadata", status=503)
    responses.get(f"{FHIR}/metadata", json={"resourceType": "CapabilityStatement"})
    loader = FhirLoader(FHIR, today=None)
    naps: list[float] = []
    loader.wait_until_ready(60, sleep=naps.append)
    assert naps == [2.0]

    responses.add_callback(responses.POST, FHIR, callback=_transaction_response("201 Created"))
    assert main(["fixtures", "load", "--fhir-url", FHIR, str(TRAMADOL), "--wait", "5"]) == 0


@responses.activate
def test_wait_gives_up_with_the_reason() -> None:
    responses.get(f"{FHIR}/metadata", status=503, body="starting")
    with pytest.raises(LoadError, match="not ready after 0 s: HTTP 503: starting"):
        FhirLoader(FHIR, today=None).wait_until_ready(0, sleep=lambda _: None)


@responses.activate
def test_headers_are_sent() -> None:
    responses.add_callback(responses.POST, FHIR, callback=_transaction_response("201 Created"))
    args = [
        "fixtures",
        "load",
        "--fhir-url",
        FHIR,
        str(TRAMADOL),
        "--header",
        "Authorization: Bearer t",
    ]
    assert main(args) == 0
    assert responses.calls[0].request.headers["Authorization"] == "Bearer t"


def test_usage_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["fixtures", "load", "--fhir-url", FHIR]) == 2
    assert main(["fixtures", "load", "--fhir-url", "localhost:8080", str(TRAMADOL)]) == 2
    err = capsys.readouterr().err
    assert "no fhir_fixtures/ folder here" in err and "not an http(s) URL" in err


def test_list_names_patients_and_expected_cards(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fixtures", "list", str(FIXTURES)]) == 0
    out = capsys.readouterr().out
    patient = discover([TRAMADOL])[0].patient_id
    line = next(line for line in out.splitlines() if line.startswith(TRAMADOL.name))
    assert patient in line and "opioid-avoidance, exercise-therapy" in line
