"""Real traffic shapes from the CDS Hooks community (tests/data/upstream) get proper answers."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from cds_service.protocol.request import schema_problems

UPSTREAM = Path(__file__).parent / "data" / "upstream" / "cds-hooks"
SERVICE_FOR_HOOK = {
    "order-sign": "back-pain-order-sign",
    "order-select": "back-pain-order-select",
    "patient-view": "back-pain-patient-view",
}


def _load(relative: str) -> dict[str, Any]:
    return json.loads((UPSTREAM / relative).read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    "relative",
    [
        "inferno-davinci-crd-test-kit/order_select_hook_request.json",
        "inferno-davinci-crd-test-kit/order_sign_hook_request.json",
        "spec-3.0.0-ballot/request-order-sign-paginated-prefetch.json",
    ],
)
def test_upstream_order_requests_get_200(client: FlaskClient, relative: str) -> None:
    request = _load(relative)
    response = client.post(f"/cds-services/{SERVICE_FOR_HOOK[request['hook']]}", json=request)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert schema_problems("response", body) == []
    assert body == {"cards": []}  # nothing about back pain in these orders


@pytest.mark.parametrize(
    ("relative", "hook"),
    [
        ("library/order-select-context-r4.json", "order-select"),
        ("library/order-select-context-stu3.json", "order-select"),
        ("library/order-select-context-dstu2.json", "order-select"),
        ("library/order-sign-context-r4.json", "order-sign"),
        ("library/order-sign-context-stu3.json", "order-sign"),
        ("library/order-sign-context-dstu2.json", "order-sign"),
    ],
)
def test_hook_library_contexts_in_an_envelope_get_200(
    client: FlaskClient, relative: str, hook: str
) -> None:
    request = {"hook": hook, "hookInstance": str(uuid.uuid4()), **_load(relative)}
    response = client.post(f"/cds-services/{SERVICE_FOR_HOOK[hook]}", json=request)
    assert response.status_code == 200, response.get_json()
    assert schema_problems("response", response.get_json()) == []


def test_spec_patient_view_without_our_prefetch_is_412_json(client: FlaskClient) -> None:
    request = _load("spec-2.0.1/request-patient-view.json")
    request.pop("fhirServer")
    request.pop("fhirAuthorization", None)
    response = client.post("/cds-services/back-pain-patient-view", json=request)
    assert response.status_code == 412
    assert response.get_json()["resourceType"] == "OperationOutcome"


def test_upstream_responses_check_our_response_schema() -> None:
    assert schema_problems("response", _load("spec-2.0.1/response-cards.json")) == []
    # Known upstream defect: the autolaunchable card has no indicator.
    assert schema_problems("response", _load("spec-3.0.0-ballot/response-autolaunchable.json"))
