"""A CDS Hooks request made from a FHIR Bundle of one patient's record (and draft orders).

For trying the service without an EHR: paste a Bundle (a transaction, a collection, a search
result) and get the request an EHR would send for a service. The Patient gives the context's
patientId; every other resource goes into the prefetch key whose query names its type (as the
discovery templates do), except orders with status `draft`, which are the orders under review
of an order hook. Every prefetch key is filled, so nothing is read from a FHIR server.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from cds_service.protocol.catalog import ORDER_HOOKS, ServiceDefinition

# The orders CDS Hooks order-select and order-sign carry in draftOrders (FHIR R4 request types).
ORDER_TYPES = frozenset(
    {
        "MedicationRequest",
        "ServiceRequest",
        "NutritionOrder",
        "VisionPrescription",
        "DeviceRequest",
        "SupplyRequest",
        "CommunicationRequest",
    }
)
PREVIEW_USER = "Practitioner/preview-user"


class BundleError(ValueError):
    """A Bundle no request can be made from; the message is for the user."""


def _resources(bundle: Any) -> list[dict[str, Any]]:
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise BundleError("Paste a FHIR Bundle (resourceType 'Bundle').")
    entries = bundle.get("entry")
    if not isinstance(entries, list):
        raise BundleError("The Bundle has no 'entry' list.")
    resources = []
    for index, entry in enumerate(entries):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            raise BundleError(f"Bundle entry {index} holds no FHIR resource.")
        resources.append(resource)
    return resources


def _type_of_query(template: str) -> str:
    """`Condition?patient=...` -> Condition; `Patient/{{context.patientId}}` -> Patient."""
    return template.split("?", 1)[0].split("/", 1)[0]


def _searchset(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [{"resource": resource} for resource in resources],
    }


def request_from_bundle(
    bundle: Any, service: ServiceDefinition, *, hook_instance: str | None = None
) -> dict[str, Any]:
    resources = _resources(bundle)
    patients = [r for r in resources if r["resourceType"] == "Patient"]
    if len(patients) != 1 or not isinstance(patients[0].get("id"), str) or not patients[0]["id"]:
        raise BundleError("The Bundle needs exactly one Patient, with an id.")
    patient = patients[0]
    order_hook = service.hook in ORDER_HOOKS
    drafts = [
        r
        for r in resources
        if order_hook and r["resourceType"] in ORDER_TYPES and r.get("status") == "draft"
    ]
    if order_hook and not drafts:
        raise BundleError(
            f"The {service.hook} hook reviews draft orders: add an order with status 'draft' "
            "(a MedicationRequest or ServiceRequest, say)."
        )
    for number, draft in enumerate(drafts, start=1):
        if not isinstance(draft.get("id"), str) or not draft["id"]:
            draft["id"] = f"draft-{number}"

    key_of_type: Mapping[str, str] = {
        _type_of_query(template): key for key, template in service.prefetch.items()
    }
    record: dict[str, list[dict[str, Any]]] = {key: [] for key in service.prefetch}
    for resource in resources:
        key = key_of_type.get(resource["resourceType"])
        if resource is patient or key is None or any(resource is d for d in drafts):
            continue
        record[key].append(resource)
    prefetch: dict[str, Any] = {}
    for key, template in service.prefetch.items():
        prefetch[key] = (
            patient if _type_of_query(template) == "Patient" else _searchset(record[key])
        )

    context: dict[str, Any] = {"userId": PREVIEW_USER, "patientId": patient["id"]}
    if order_hook:
        context["draftOrders"] = {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": draft} for draft in drafts],
        }
        if service.hook == "order-select":
            context["selections"] = [f"{d['resourceType']}/{d['id']}" for d in drafts]
    return {
        "hook": service.hook,
        "hookInstance": hook_instance or str(uuid.uuid4()),
        "context": context,
        "prefetch": prefetch,
    }
