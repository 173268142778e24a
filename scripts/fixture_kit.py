"""Building blocks for the fixture scenarios that `build_fixtures.py` reads from
`scripts/scenarios/`: FHIR R4 resources, the CDS Hooks request, the transaction Bundle and the
golden cards of one scenario.

Resources are written against a persona (a reusable kind of patient: age, sex, name) and a
short local id such as `cond-lbp`. A Scenario then gives every resource an id that is unique
across the whole library (`<patient id>-<local id>`, the patient id being `bpcds-<scenario>`),
so that the Bundles of all scenarios can be loaded into one FHIR server without colliding.
Draft orders keep their local ids: they live only in the request, never on a server.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

EVALUATION_DATE = date(2026, 11, 22)
FHIR_SERVER = "https://ehr.example.org/fhir"
PATIENT_ID_PREFIX = "bpcds-"
MAX_FHIR_ID = 64

ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
LOINC = "http://loinc.org"
CPT = "http://www.ama-assn.org/go/cpt"
HCPCS = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
UCUM = "http://unitsofmeasure.org"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
# Every fixture resource carries this tag, so an integrator can find (and delete) them all on a
# shared FHIR server with `_tag=<system>|<code>`.
FIXTURE_TAG = {
    "system": "http://example.org/fhir/back-pain-cds/CodeSystem/fixture",
    "code": "back-pain-cds-fixture",
    "display": "Back-pain CDS fixture library",
}

SERVICE_FOR_HOOK = {
    "order-sign": "back-pain-order-sign",
    "order-select": "back-pain-order-select",
    "patient-view": "back-pain-patient-view",
}

# The code systems a scenario file may name; any other system is written as its URI.
SYSTEMS = {
    "ICD-10-CM": ICD10,
    "SNOMED CT": SNOMED,
    "RxNorm": RXNORM,
    "LOINC": LOINC,
    "CPT": CPT,
    "HCPCS": HCPCS,
}

Code = tuple[str, str, str]  # (system, code, display)


def day(days_ago: int) -> str:
    return (EVALUATION_DATE - timedelta(days=days_ago)).isoformat()


def instant(days_ago: int) -> str:
    return day(days_ago) + "T09:30:00Z"


def codeable(system: str, code: str, display: str, text: str | None = None) -> dict[str, Any]:
    concept: dict[str, Any] = {"coding": [{"system": system, "code": code, "display": display}]}
    if text:
        concept["text"] = text
    return concept


@dataclass(frozen=True)
class Persona:
    """A kind of patient several scenarios reuse; each scenario gets its own Patient."""

    key: str  # the persona's local id: `Patient/<key>` until a scenario renames it
    birth_date: str
    gender: str
    given: str
    family: str

    @property
    def reference(self) -> str:
        return f"Patient/{self.key}"

    def resource(self, patient_id: str) -> dict[str, Any]:
        return {
            "resourceType": "Patient",
            "id": patient_id,
            "name": [{"use": "official", "family": self.family, "given": [self.given]}],
            "gender": self.gender,
            "birthDate": self.birth_date,
        }


def condition(
    patient: Persona,
    rid: str,
    code: Code,
    *,
    onset_days_ago: int | None = None,
    clinical: str | None = "active",
    verification: str = "confirmed",
    category: str = "problem-list-item",
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Condition",
        "id": rid,
        "verificationStatus": {
            "coding": [{"system": CONDITION_VERIFICATION, "code": verification}]
        },
        "category": [{"coding": [{"system": CONDITION_CATEGORY, "code": category}]}],
        # Clients list a patient's conditions by `code.text` (the sandbox's Rx Sign "Treating").
        "code": codeable(*code, text=code[2]),
        "subject": {"reference": patient.reference},
    }
    if clinical:
        resource["clinicalStatus"] = {"coding": [{"system": CONDITION_CLINICAL, "code": clinical}]}
    if onset_days_ago is not None:
        resource["onsetDateTime"] = day(onset_days_ago)
        resource["recordedDate"] = day(onset_days_ago)
    return resource


def order(
    resource_type: str,
    patient: Persona,
    rid: str,
    code: Code | None,
    text: str = "",
    *,
    medication_id: str | None = None,
    status: str,
    authored_days_ago: int | None = 0,
    reason: Code | None = None,
) -> dict[str, Any]:
    """A MedicationRequest or ServiceRequest. What is ordered is a code (its display doubles as
    the text), text only, or, for a drug, a reference to a Medication resource."""
    concept = codeable(*code, text=code[2]) if code else {"text": text}
    what: dict[str, Any] = {"medicationCodeableConcept": concept}
    if resource_type == "ServiceRequest":
        what = {"code": concept}
    elif medication_id:
        what = {"medicationReference": {"reference": f"Medication/{medication_id}"}}
    resource: dict[str, Any] = {
        "resourceType": resource_type,
        "id": rid,
        "status": status,
        "intent": "order",
        **what,
        "subject": {"reference": patient.reference},
    }
    if authored_days_ago is not None:
        resource["authoredOn"] = day(authored_days_ago)
    if reason:
        resource["reasonCode"] = [codeable(*reason)]
    return resource


def medication(rid: str, code: Code) -> dict[str, Any]:
    return {"resourceType": "Medication", "id": rid, "code": codeable(*code, text=code[2])}


# Vital signs a scenario can record: the LOINC code and the unit shown for each UCUM unit.
VITAL_SIGNS: dict[str, tuple[Code, dict[str, str]]] = {
    "temperature": ((LOINC, "8310-5", "Body temperature"), {"Cel": "C", "[degF]": "degF"}),
    "weight": ((LOINC, "29463-7", "Body weight"), {"kg": "kg", "[lb_av]": "lb"}),
}


def vital_sign(
    patient: Persona, rid: str, kind: str, value: float, ucum: str, days_ago: int
) -> dict[str, Any]:
    code, units = VITAL_SIGNS[kind]
    return {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "vital-signs"}]}],
        "code": codeable(*code),
        "subject": {"reference": patient.reference},
        "effectiveDateTime": instant(days_ago),
        "valueQuantity": {"value": value, "unit": units[ucum], "system": UCUM, "code": ucum},
    }


def procedure(patient: Persona, rid: str, code: Code, days_ago: int) -> dict[str, Any]:
    return {
        "resourceType": "Procedure",
        "id": rid,
        "status": "completed",
        "code": codeable(*code),
        "subject": {"reference": patient.reference},
        "performedDateTime": day(days_ago),
    }


@dataclass
class Expected:
    """One golden card: topic, indicator and the actions of each suggestion."""

    topic: str
    indicator: str
    suggestions: list[list[str]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"topic": self.topic, "indicator": self.indicator, "suggestions": self.suggestions}


def _stable_uuid(text: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"back-pain-cds/fixtures/{text}"))


def _rewrite_references(node: Any, mapping: dict[str, str]) -> Any:
    """Every `reference` string that names a renamed resource, renamed."""
    if isinstance(node, dict):
        return {
            key: (
                mapping.get(value, value)
                if key == "reference" and isinstance(value, str)
                else _rewrite_references(value, mapping)
            )
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_rewrite_references(item, mapping) for item in node]
    return node


def _tagged(resource: dict[str, Any]) -> dict[str, Any]:
    tagged = dict(resource)
    tagged["meta"] = {"tag": [dict(FIXTURE_TAG)]}
    return tagged


@dataclass
class Scenario:
    name: str
    description: str
    hook: str
    patient: Persona
    # What the scenario demonstrates, in the library's words (`features` in library.toml).
    shows: list[str]
    conditions: list[dict[str, Any]] = field(default_factory=list)
    medications: list[dict[str, Any]] = field(default_factory=list)
    observations: list[dict[str, Any]] = field(default_factory=list)
    procedures: list[dict[str, Any]] = field(default_factory=list)
    service_requests: list[dict[str, Any]] = field(default_factory=list)
    drafts: list[dict[str, Any]] = field(default_factory=list)
    selections: list[str] | None = None
    expected: list[Expected] = field(default_factory=list)
    encounter_id: str | None = "enc-1"
    # Topics firing, and "<topic> (negative)" for topics this scenario shows staying silent.
    tags: list[str] = field(default_factory=list)
    # Prefetch keys sent as null ("asked, nothing found"), the patient's included.
    null_prefetch: list[str] = field(default_factory=list)
    # Edits the finished request only (never the Bundle), for messy real-world shapes.
    mutate: Callable[[dict[str, Any]], None] | None = None

    @property
    def patient_id(self) -> str:
        return PATIENT_ID_PREFIX + self.name

    def _history(self) -> dict[str, list[dict[str, Any]]]:
        """The scenario's stored resources per prefetch key, with library-unique ids."""
        groups = {
            "conditions": self.conditions,
            "medications": self.medications,
            "observations": self.observations,
            "procedures": self.procedures,
            "servicerequests": self.service_requests,
        }
        renamed = {self.patient.reference: f"Patient/{self.patient_id}"}
        for resources in groups.values():
            for resource in resources:
                new_id = f"{self.patient_id}-{resource['id']}"
                if len(new_id) > MAX_FHIR_ID:
                    raise ValueError(f"{self.name}: id {new_id!r} is longer than {MAX_FHIR_ID}")
                renamed[f"{resource['resourceType']}/{resource['id']}"] = (
                    f"{resource['resourceType']}/{new_id}"
                )
        scoped: dict[str, list[dict[str, Any]]] = {}
        for key, resources in groups.items():
            scoped[key] = []
            for resource in resources:
                copied = _rewrite_references(copy.deepcopy(resource), renamed)
                copied["id"] = f"{self.patient_id}-{resource['id']}"
                scoped[key].append(_tagged(copied))
        return scoped

    def patient_resource(self) -> dict[str, Any]:
        return _tagged(self.patient.resource(self.patient_id))

    def _drafts(self) -> list[dict[str, Any]]:
        renamed = {self.patient.reference: f"Patient/{self.patient_id}"}
        return [_rewrite_references(copy.deepcopy(r), renamed) for r in self.drafts]

    def request(self) -> dict[str, Any]:
        context: dict[str, Any] = {
            "userId": "Practitioner/dr-lee",
            "patientId": self.patient_id,
        }
        if self.encounter_id:
            context["encounterId"] = self.encounter_id
        if self.hook != "patient-view":
            context["draftOrders"] = {
                "resourceType": "Bundle",
                "type": "collection",
                "entry": [{"resource": r} for r in self._drafts()],
            }
        if self.hook == "order-select":
            context["selections"] = self.selections or [
                f"{r['resourceType']}/{r['id']}"
                for r in self.drafts
                if r["resourceType"] != "Medication"
            ]
        prefetch: dict[str, Any] = {"patient": self.patient_resource()}
        for key, resources in self._history().items():
            prefetch[key] = _searchset(resources)
        request = {
            "hook": self.hook,
            "hookInstance": _stable_uuid(self.name),
            "fhirServer": FHIR_SERVER,
            "context": context,
            "prefetch": prefetch,
        }
        for key in self.null_prefetch:
            prefetch[key] = None
        if self.mutate:
            self.mutate(request)
        return request

    def bundle(self) -> dict[str, Any]:
        """The stored resources as an idempotent FHIR transaction (PUT with stable ids)."""
        history = self._history()
        resources = [self.patient_resource()]
        medications = history["medications"]
        resources += [r for r in medications if r["resourceType"] == "Medication"]
        resources += history["conditions"]
        resources += [r for r in medications if r["resourceType"] != "Medication"]
        for key in ("observations", "procedures", "servicerequests"):
            resources += history[key]
        return {
            "resourceType": "Bundle",
            "id": f"{self.patient_id}-load",
            "type": "transaction",
            "entry": [
                {
                    "fullUrl": f"urn:uuid:{_stable_uuid(r['resourceType'] + '/' + r['id'])}",
                    "resource": r,
                    "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
                }
                for r in resources
            ],
        }

    def metadata(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "service": SERVICE_FOR_HOOK[self.hook],
            "hook": self.hook,
            "patientId": self.patient_id,
            "evaluationDate": EVALUATION_DATE.isoformat(),
            "shows": self.shows,
            "tags": self.tags,
        }

    def expected_cards(self) -> dict[str, Any]:
        return {"cards": [e.as_json() for e in self.expected]}


def _searchset(resources: list[dict[str, Any]]) -> dict[str, Any] | None:
    """A prefetch search result as an EHR returns it; `None` ("asked, no data") when empty."""
    if not resources:
        return None
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": sum(1 for r in resources if r["resourceType"] != "Medication"),
        "entry": [
            {
                "fullUrl": f"{FHIR_SERVER}/{r['resourceType']}/{r['id']}",
                "resource": r,
                # Medications come along as _include'd resources of the MedicationRequests.
                "search": {"mode": "include" if r["resourceType"] == "Medication" else "match"},
            }
            for r in resources
        ],
    }


def orderable_signature(root: Path, name: str) -> str:
    """The golden form of a suggested order, from the packaged orderables data."""
    data = json.loads((root / "cds_service/terminology/data/orderables.json").read_text())
    spec = data["orderables"][name]
    coding = spec["code"]["coding"][0]
    return f"create {spec['resourceType']} {coding['system']}|{coding['code']}"
