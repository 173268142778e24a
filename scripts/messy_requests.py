"""Real-world defects a messy scenario puts into its request (`edit_request = "<name>"` in a
scenario file). They edit the finished request only, never the Bundle, which stays valid FHIR R4.

These stay in Python because each one breaks the request's shape in a way the scenario format
cannot say (a key removed and added again, a resource of the wrong FHIR version, a value of the
wrong type); everything a scenario can say as data, it says in its file.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fixture_kit import CONDITION_CLINICAL, ICD10, day

RequestEdit = Callable[[dict[str, Any]], None]


def sandbox_shape(request: dict[str, Any]) -> None:
    # The CDS Hooks sandbox: no Bundle.type, category as an object, no intent, and the drug in a
    # contained Medication.
    bundle = request["context"]["draftOrders"]
    bundle.pop("type", None)
    order = bundle["entry"][0]["resource"]
    order.pop("intent", None)
    order["category"] = {
        "coding": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/medicationrequest-category",
                "code": "outpatient",
            }
        ]
    }
    order["contained"] = [
        {
            "resourceType": "Medication",
            "id": "med-1",
            "code": order.pop("medicationCodeableConcept"),
        }
    ]
    order["medicationReference"] = {"reference": "#med-1"}
    order["dosageInstruction"] = [
        {
            "text": "1 tablet every 6 hours as needed",
            "doseAndRate": {"doseQuantity": {"value": 1, "unit": "tablet"}},
        }
    ]
    del request["prefetch"]["observations"]  # not sent at all ...
    request["prefetch"]["observations"] = None  # ... then: asked, nothing found


def unknown_resource_types(request: dict[str, Any]) -> None:
    # A DSTU2 MedicationOrder (warfarin) and a server warning inside the search result: neither
    # is an R4 MedicationRequest, so the service reads neither.
    request["prefetch"]["medications"] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": 1,
        "entry": [
            {
                "resource": {
                    "resourceType": "MedicationOrder",
                    "id": "dstu2-warfarin",
                    "status": "active",
                    "medicationCodeableConcept": {"text": "warfarin sodium 5 MG Oral Tablet"},
                    "patient": {"reference": "Patient/" + request["context"]["patientId"]},
                }
            },
            {
                "resource": {
                    "resourceType": "OperationOutcome",
                    "issue": [
                        {
                            "severity": "warning",
                            "code": "informational",
                            "diagnostics": "Some results were filtered by consent rules",
                        }
                    ],
                },
                "search": {"mode": "outcome"},
            },
        ],
    }
    request["prefetch"]["conditions"]["entry"].append(
        {"resource": {"resourceType": "Basic", "id": "note-1", "code": {"text": "free note"}}}
    )


def malformed_condition(request: dict[str, Any]) -> None:
    # entry[2]: an older back-pain episode whose onsetDateTime is not a FHIR dateTime. Were it
    # read, the pain would count as chronic; it is skipped instead.
    patient_id = request["context"]["patientId"]
    request["prefetch"]["conditions"]["entry"].append(
        {
            "resource": {
                "resourceType": "Condition",
                "id": f"{patient_id}-cond-lbp-old",
                "clinicalStatus": {"coding": [{"system": CONDITION_CLINICAL, "code": "active"}]},
                "code": {"coding": [{"system": ICD10, "code": "M54.50"}]},
                "subject": {"reference": f"Patient/{patient_id}"},
                "onsetDateTime": "last spring",
                "recordedDate": day(200),
            }
        }
    )


REQUEST_EDITS: dict[str, RequestEdit] = {
    "sandbox-shape": sandbox_shape,
    "unknown-resource-types": unknown_resource_types,
    "malformed-condition": malformed_condition,
}
