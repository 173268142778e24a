"""HTTP behaviour through Flask's test client: discovery, health, and bad input on purpose."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from flask.testing import FlaskClient

from cds_service.protocol.request import schema_problems
from cds_service.rules.registry import TOPICS

SIGN = "/cds-services/back-pain-order-sign"
SELECT = "/cds-services/back-pain-order-select"
VIEW = "/cds-services/back-pain-patient-view"


def _assert_json_error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome"
    issue = body["issue"][0]
    assert issue["severity"] == "error"
    assert issue["diagnostics"]
    assert "Traceback" not in response.get_data(as_text=True)
    return body


def test_discovery_lists_the_three_services(client: FlaskClient) -> None:
    response = client.get("/cds-services")
    assert response.status_code == 200
    body = response.get_json()
    assert schema_problems("discovery", body) == []
    services = {s["id"]: s for s in body["services"]}
    assert {k: v["hook"] for k, v in services.items()} == {
        "back-pain-order-sign": "order-sign",
        "back-pain-order-select": "order-select",
        "back-pain-patient-view": "patient-view",
    }
    for service in services.values():
        assert service["title"] and service["description"]
        prefetch = service["prefetch"]
        assert set(prefetch) == {
            "patient",
            "conditions",
            "medications",
            "observations",
            "procedures",
            "servicerequests",
        }
        assert prefetch["patient"] == "Patient/{{context.patientId}}"
        assert "http://loinc.org|8310-5" in prefetch["observations"]
        assert "http://loinc.org|29463-7" in prefetch["observations"]


def test_health_reports_loaded_content(client: FlaskClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok"
    assert body["cardTopics"] == len(TOPICS)
    assert body["valueSets"] > 10 and body["codes"] > 1000


def test_request_id_is_echoed_or_generated(client: FlaskClient) -> None:
    assert (
        client.get("/health", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"]
        == "abc-123"
    )
    generated = client.get("/health", headers={"X-Request-ID": "bad id with spaces"})
    assert len(generated.headers["X-Request-ID"]) == 32


def test_malformed_json_is_400(client: FlaskClient) -> None:
    response = client.post(SIGN, data=b"{not json", content_type="application/json")
    body = _assert_json_error(response, 400)
    assert "not valid JSON" in body["issue"][0]["diagnostics"]


def test_lone_surrogate_in_a_string_is_400(client: FlaskClient, fixture_request: Any) -> None:
    # Python's own JSON parser lets "\ud800" through; no text can hold it (log, store, answer).
    request = fixture_request("opioid-tramadol-acute-low-back-pain")
    raw = json.dumps(request).replace(request["hookInstance"], "\\ud800", 1).encode()
    response = client.post(SIGN, data=raw, content_type="application/json")
    body = _assert_json_error(response, 400)
    assert "not valid JSON" in body["issue"][0]["diagnostics"]


@pytest.mark.parametrize("payload", [b"", b"[]", b"42", b'"text"', b"null", b"\xff\xfe"])
def test_body_that_is_not_a_json_object_is_400(client: FlaskClient, payload: bytes) -> None:
    _assert_json_error(client.post(SIGN, data=payload, content_type="application/json"), 400)


def test_missing_hook_is_400_and_names_the_member(
    client: FlaskClient, fixture_request: Any
) -> None:
    request = fixture_request("opioid-tramadol-acute-low-back-pain")
    del request["hook"]
    body = _assert_json_error(client.post(SIGN, json=request), 400)
    assert "hook" in body["issue"][0]["diagnostics"]


@pytest.mark.parametrize("member", ["context", "hookInstance"])
def test_missing_envelope_member_is_400(
    client: FlaskClient, fixture_request: Any, member: str
) -> None:
    request = fixture_request("opioid-tramadol-acute-low-back-pain")
    del request[member]
    body = _assert_json_error(client.post(SIGN, json=request), 400)
    assert member in body["issue"][0]["diagnostics"]


def test_missing_patient_id_is_400(client: FlaskClient, fixture_request: Any) -> None:
    request = fixture_request("opioid-tramadol-acute-low-back-pain")
    del request["context"]["patientId"]
    body = _assert_json_error(client.post(SIGN, json=request), 400)
    assert "patientId" in body["issue"][0]["diagnostics"]
    assert "$.context" in body["issue"][0]["expression"]


def test_missing_draft_orders_on_order_sign_is_400(
    client: FlaskClient, fixture_request: Any
) -> None:
    request = fixture_request("opioid-tramadol-acute-low-back-pain")
    del request["context"]["draftOrders"]
    _assert_json_error(client.post(SIGN, json=request), 400)


def test_wrong_hook_for_the_service_is_400(client: FlaskClient, fixture_request: Any) -> None:
    request = fixture_request("patient-view-chronic-pain-16-weeks")
    body = _assert_json_error(client.post(SIGN, json=request), 400)
    assert "order-sign" in body["issue"][0]["diagnostics"]


def test_selection_not_in_draft_orders_is_400(client: FlaskClient, fixture_request: Any) -> None:
    request = fixture_request("order-select-only-selection-evaluated")
    request["context"]["selections"] = ["MedicationRequest/not-drafted"]
    _assert_json_error(client.post(SELECT, json=request), 400)


def test_wrong_types_are_400_without_echoing_values(
    client: FlaskClient, fixture_request: Any
) -> None:
    request = fixture_request("opioid-tramadol-acute-low-back-pain")
    request["context"]["patientId"] = {"secret": "Ana Moreno 1986-04-12"}
    response = client.post(SIGN, json=request)
    _assert_json_error(response, 400)
    assert "Moreno" not in response.get_data(as_text=True)


def test_prefetch_value_that_is_not_a_resource_is_400(
    client: FlaskClient, fixture_request: Any
) -> None:
    request = fixture_request("opioid-tramadol-acute-low-back-pain")
    request["prefetch"]["conditions"] = "not a resource"
    _assert_json_error(client.post(SIGN, json=request), 400)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "http://[", "http://x]", "//no-scheme"])
def test_non_http_fhir_server_is_400(client: FlaskClient, fixture_request: Any, url: str) -> None:
    request = fixture_request("opioid-tramadol-acute-low-back-pain")
    request["fhirServer"] = url
    _assert_json_error(client.post(SIGN, json=request), 400)


def test_unknown_service_is_404(client: FlaskClient, fixture_request: Any) -> None:
    request = fixture_request("opioid-tramadol-acute-low-back-pain")
    _assert_json_error(client.post("/cds-services/no-such-service", json=request), 404)


def test_unknown_path_is_404_json(client: FlaskClient) -> None:
    _assert_json_error(client.get("/nowhere"), 404)


def test_get_on_a_service_is_405(client: FlaskClient) -> None:
    response = client.get(SIGN)
    _assert_json_error(response, 405)
    assert "POST" in response.headers["Allow"]


def test_oversized_body_is_413(client: FlaskClient, app: Any) -> None:
    limit = app.config["MAX_CONTENT_LENGTH"]
    payload = b'{"hook": "order-sign", "pad": "' + b"x" * limit + b'"}'
    _assert_json_error(client.post(SIGN, data=payload, content_type="application/json"), 413)


def test_missing_prefetch_without_fhir_server_is_412(
    client: FlaskClient, fixture_request: Any
) -> None:
    request = fixture_request("opioid-tramadol-acute-low-back-pain")
    del request["prefetch"]["conditions"]
    del request["fhirServer"]
    body = _assert_json_error(client.post(SIGN, json=request), 412)
    assert "conditions" in body["issue"][0]["diagnostics"]
    assert body["issue"][0]["expression"] == ["prefetch.conditions"]


def test_null_prefetch_means_no_data_not_412(client: FlaskClient, fixture_request: Any) -> None:
    request = fixture_request("opioid-tramadol-acute-low-back-pain")
    del request["fhirServer"]
    for key in ("medications", "observations", "procedures", "servicerequests"):
        request["prefetch"][key] = None
    response = client.post(SIGN, json=request)
    assert response.status_code == 200
    topics = {c["source"]["topic"]["code"] for c in response.get_json()["cards"]}
    assert topics == {"opioid-avoidance", "exercise-therapy"}


def test_operation_outcome_prefetch_counts_as_missing(
    client: FlaskClient, fixture_request: Any
) -> None:
    request = fixture_request("opioid-tramadol-acute-low-back-pain")
    del request["fhirServer"]
    request["prefetch"]["conditions"] = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "timeout"}],
    }
    _assert_json_error(client.post(SIGN, json=request), 412)


def test_malformed_resource_is_skipped_not_fatal(client: FlaskClient, fixture_request: Any) -> None:
    request = fixture_request("opioid-tramadol-acute-low-back-pain")
    bundle = request["prefetch"]["conditions"]
    bundle["entry"].append(
        {
            "resource": {
                "resourceType": "Condition",
                "id": "bad",
                "code": {
                    "coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "G83.4"}]
                },
                "onsetDateTime": "not-a-date",
                "subject": {"reference": "Patient/" + request["context"]["patientId"]},
            }
        }
    )
    bundle["entry"].append({"resource": {"resourceType": "MedicationOrder", "id": "dstu2"}})
    bundle["entry"].append({"resource": "nonsense"})
    response = client.post(SIGN, json=request)
    assert response.status_code == 200
    topics = {c["source"]["topic"]["code"] for c in response.get_json()["cards"]}
    # The malformed cauda equina condition was skipped, so no critical red-flag card.
    assert topics == {"opioid-avoidance", "exercise-therapy"}


def test_odd_members_of_resources_are_skipped_not_fatal(
    client: FlaskClient, fixture_request: Any
) -> None:
    request = fixture_request("opioid-tramadol-acute-low-back-pain")
    patient = {"reference": "Patient/" + request["context"]["patientId"]}
    prefetch = request["prefetch"]
    odd_statuses = [
        {"resourceType": "MedicationRequest", "id": "h1", "status": [], "subject": patient},
        {"resourceType": "ServiceRequest", "id": "h2", "status": {"x": 1}, "subject": patient},
    ]
    odd_resources = {
        "medications": odd_statuses,
        "procedures": [{"resourceType": "Procedure", "id": "p1", "status": ["done"]}],
        "observations": [{"resourceType": "Observation", "id": "o1", "status": {}}],
    }
    for key, resources in odd_resources.items():
        prefetch[key] = {
            "resourceType": "Bundle",
            "type": "searchset",
            "entry": [{"resource": r} for r in resources],
        }
    # A draft whose medication is contained under a type FHIR R4 does not have.
    draft = copy.deepcopy(request["context"]["draftOrders"]["entry"][0]["resource"])
    del draft["medicationCodeableConcept"]
    draft |= {"id": "rx-odd", "medicationReference": {"reference": "#m"}}
    for contained_type in ("MedicationOrder", 5):
        draft["contained"] = [{"resourceType": contained_type, "id": "m"}]
        request["context"]["draftOrders"]["entry"][1:] = [{"resource": draft}]
        response = client.post(SIGN, json=request)
        assert response.status_code == 200, response.get_data(as_text=True)
        topics = {c["source"]["topic"]["code"] for c in response.get_json()["cards"]}
        assert topics == {"opioid-avoidance", "exercise-therapy"}


def test_every_error_response_is_json(client: FlaskClient) -> None:
    for response in (
        client.put("/cds-services"),
        client.delete(SIGN),
        client.post("/cds-services", json={}),
        # No redirect page for doubled slashes: an EHR posting there gets a JSON 404.
        client.post("/cds-services//feedback", json={}),
        client.post(f"{SIGN}//feedback", json={}),
    ):
        assert response.status_code in {404, 405}
        json.loads(response.get_data(as_text=True))


def test_request_log_has_decisions_and_no_patient_data(
    client: FlaskClient, fixture_request: Any, caplog: pytest.LogCaptureFixture
) -> None:
    request = fixture_request("opioid-tramadol-acute-low-back-pain")
    with caplog.at_level("DEBUG", logger="cds_service"):
        response = client.post(SIGN, json=request, headers={"X-Request-ID": "req-42"})
    assert response.status_code == 200
    entries = [r for r in caplog.records if getattr(r, "event", None) == "request"]
    assert len(entries) == 1
    entry = entries[0].__dict__
    assert entry["request_id"] == "req-42"
    assert entry["service_id"] == "back-pain-order-sign"
    assert entry["hook_instance"] == request["hookInstance"]
    assert entry["status"] == 200
    assert sorted(entry["topics"]) == ["exercise-therapy", "opioid-avoidance"]
    everything = " ".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    for secret in ("Moreno", "1986-04-12", request["context"]["patientId"]):
        assert secret not in everything


def test_json_responses_are_compact_utf8_and_keep_key_order(client: FlaskClient) -> None:
    response = client.get("/health")
    text = response.get_data(as_text=True)
    assert text.startswith('{"status":"ok"')  # insertion order, no spaces
    assert response.mimetype == "application/json"
