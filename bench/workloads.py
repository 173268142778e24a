"""The hook calls the benchmark sends: realistic back-pain patients, built from today's date.

The single-patient workloads are generated, not read from a fixture, so sizes are exact and the
dates stay meaningful ("onset 12 days ago") on whatever day the benchmark runs; the realistic
mix is the fixture library, moved to today and padded to a realistic record size. Each workload
names the card topics its answer must carry: a fast answer without the right cards is a failure.

Every request is new to the service, as real patients are: each id, reference and hookInstance
carries `MARK`, which the load generators replace by a request number (`numbered`). The same
number on every call gives the repeated request, a figure caches help, shown beside the other.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from cds_service.tooling.dates import shift_dates

FIXTURES = Path(__file__).resolve().parents[1] / "fhir_fixtures"

# In every id, reference and hookInstance; replaced by a 12-digit request number.
MARK = "~" * 12
_MARK_BYTES = MARK.encode()

ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
LOINC = "http://loinc.org"
CPT = "http://www.ama-assn.org/go/cpt"
UCUM = "http://unitsofmeasure.org"
_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
_CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
_OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"

PATIENT_ID = "bench-patient"
ORDER_SIGN = "back-pain-order-sign"

# Ordinary chronic problems of a middle-aged primary-care patient; none bears on the guideline.
_PROBLEMS = (
    ("I10", "Essential (primary) hypertension"),
    ("E11.9", "Type 2 diabetes mellitus without complications"),
    ("E78.5", "Hyperlipidemia, unspecified"),
    ("E66.9", "Obesity, unspecified"),
    ("K21.9", "Gastro-esophageal reflux disease without esophagitis"),
    ("J45.909", "Unspecified asthma, uncomplicated"),
    ("J30.9", "Allergic rhinitis, unspecified"),
    ("M17.11", "Unilateral primary osteoarthritis, right knee"),
    ("G47.00", "Insomnia, unspecified"),
    ("E55.9", "Vitamin D deficiency, unspecified"),
    ("Z87.891", "Personal history of nicotine dependence"),
    ("H52.4", "Presbyopia"),
    ("L40.0", "Psoriasis vulgaris"),
    ("N40.0", "Benign prostatic hyperplasia without lower urinary tract symptoms"),
)
_MEDICATIONS = (
    ("314076", "lisinopril 10 MG Oral Tablet"),
    ("860975", "metformin hydrochloride 500 MG 24HR Extended Release Oral Tablet"),
    ("617312", "atorvastatin 40 MG Oral Tablet"),
    ("198053", "omeprazole 20 MG Delayed Release Oral Capsule"),
    ("745679", "albuterol 0.09 MG/ACTUAT Metered Dose Inhaler"),
    ("1049630", "fluticasone propionate 0.05 MG/ACTUAT Nasal Spray"),
    ("197361", "amlodipine 5 MG Oral Tablet"),
    ("311036", "insulin lispro 100 UNT/ML Injectable Solution"),
    ("310798", "hydrochlorothiazide 25 MG Oral Tablet"),
    ("636671", "cetirizine hydrochloride 10 MG Oral Tablet"),
    ("866924", "metoprolol succinate 25 MG Extended Release Oral Tablet"),
    ("1807632", "ergocalciferol 1.25 MG Oral Capsule"),
)
_PROCEDURES = (
    ("73761001", "Colonoscopy"),
    ("80146002", "Appendectomy"),
    ("71651007", "Mammography"),
    ("252416005", "Histopathology test"),
    ("410006001", "Digital examination of rectum"),
    ("46973005", "Blood pressure taking"),
)
_SERVICES = (
    ("4548-4", LOINC, "Hemoglobin A1c/Hemoglobin.total in Blood"),
    ("2093-3", LOINC, "Cholesterol [Mass/volume] in Serum or Plasma"),
    ("24323-8", LOINC, "Comprehensive metabolic panel - Serum or Plasma"),
    ("58410-2", LOINC, "CBC panel - Blood by Automated count"),
    ("410620009", SNOMED, "Well child visit"),
)


@dataclass(frozen=True)
class Workload:
    name: str
    service: str
    request: dict[str, Any]  # with MARK in its ids, references and hookInstance
    expected_topics: frozenset[str]  # the answer must carry exactly these card topics

    @property
    def prefetch_resources(self) -> int:
        return sum(len(_resources(value)) for value in self.request["prefetch"].values())

    @property
    def path(self) -> str:
        return f"/cds-services/{self.service}"

    @property
    def template(self) -> bytes:
        """The request's JSON with MARK in place: `numbered` makes it a request."""
        return json.dumps(self.request).encode()

    def body(self, number: int) -> bytes:
        return numbered(self.template, number)


def numbered(template: bytes, number: int) -> bytes:
    """A request of `template` whose ids, references and hookInstance carry `number`."""
    return template.replace(_MARK_BYTES, b"%012d" % number)


def marked(request: dict[str, Any], hook_instance_prefix: str) -> dict[str, Any]:
    """`request` with MARK added to every resource id, every reference to one, the context's
    ids and the hookInstance (a UUID once numbered)."""
    ids: set[str] = set()

    def collect(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("resourceType"), str) and isinstance(node.get("id"), str):
                ids.add(node["id"])
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    collect(request)
    context = request["context"]
    ids.update(str(context[key]) for key in ("patientId", "encounterId") if key in context)

    def renamed(text: str, key: str) -> str:
        if key in {"id", "patientId", "encounterId"}:
            return f"{text}-{MARK}" if text in ids else text
        if text.startswith("#"):  # a contained resource
            return f"#{text[1:]}-{MARK}" if text[1:] in ids else text
        head, slash, tail = text.rpartition("/")
        if slash and tail and _RESOURCE_TYPE.fullmatch(head.rpartition("/")[2]):
            return f"{text}-{MARK}"  # every reference, also to resources not in the request
        return text

    def rewrite(node: Any, key: str = "") -> Any:
        if isinstance(node, dict):
            return {k: rewrite(v, k) for k, v in node.items()}
        if isinstance(node, list):
            return [rewrite(v, key) for v in node]
        if isinstance(node, str) and key in _ID_KEYS:
            return renamed(node, key)
        return node

    result: dict[str, Any] = rewrite(request)
    result["hookInstance"] = f"{hook_instance_prefix}-{MARK}"
    return result


_ID_KEYS = frozenset({"id", "reference", "patientId", "encounterId", "userId", "selections"})
_RESOURCE_TYPE = re.compile(r"[A-Z][A-Za-z]+")


def _resources(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, dict):
        return []
    if value.get("resourceType") == "Bundle":
        return [entry["resource"] for entry in value.get("entry", [])]
    return [value]


def utc_today() -> date:
    return datetime.now(UTC).date()


def _coding(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


def _status(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def _searchset(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [
            {"fullUrl": f"urn:uuid:{r['resourceType']}-{r['id']}", "resource": r} for r in resources
        ],
    }


def _patient(today: date) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": PATIENT_ID,
        "identifier": [{"system": "urn:oid:1.2.36.146.595.217.0.1", "value": "BENCH-0001"}],
        "name": [{"use": "official", "family": "Benchmark", "given": ["Casey"]}],
        "gender": "female",
        "birthDate": date(today.year - 44, 3, 9).isoformat(),
        "address": [{"city": "Springfield", "state": "IL", "postalCode": "62701"}],
    }


def _condition(
    resource_id: str, system: str, code: str, display: str, onset: date, *, active: bool = True
) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": resource_id,
        "clinicalStatus": _status(_CLINICAL, "active" if active else "resolved"),
        "verificationStatus": _status(_VERIFICATION, "confirmed"),
        "category": [_status(_CONDITION_CATEGORY, "problem-list-item")],
        "code": _coding(system, code, display),
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "onsetDateTime": onset.isoformat(),
        "recordedDate": onset.isoformat(),
    }


def _medication(
    resource_id: str, code: str, display: str, authored: date, status: str = "active"
) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": resource_id,
        "status": status,
        "intent": "order",
        "medicationCodeableConcept": _coding(RXNORM, code, display),
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "authoredOn": authored.isoformat(),
        "requester": {"reference": "Practitioner/bench-pcp"},
        "dosageInstruction": [
            {
                "text": "Take 1 tablet by mouth once daily",
                "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
                "route": _coding(SNOMED, "26643006", "Oral route"),
            }
        ],
    }


def _vital(
    resource_id: str, code: str, display: str, value: float, unit: str, when: date
) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": resource_id,
        "status": "final",
        "category": [_status(_OBSERVATION_CATEGORY, "vital-signs")],
        "code": _coding(LOINC, code, display),
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "effectiveDateTime": f"{when.isoformat()}T09:30:00Z",
        "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
    }


def _procedure(resource_id: str, code: str, display: str, when: date) -> dict[str, Any]:
    return {
        "resourceType": "Procedure",
        "id": resource_id,
        "status": "completed",
        "code": _coding(SNOMED, code, display),
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "performedDateTime": when.isoformat(),
    }


def _service_request(
    resource_id: str, code: str, system: str, display: str, when: date
) -> dict[str, Any]:
    return {
        "resourceType": "ServiceRequest",
        "id": resource_id,
        "status": "completed",
        "intent": "order",
        "code": _coding(system, code, display),
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "authoredOn": when.isoformat(),
    }


def _draft_orders(today: date) -> dict[str, Any]:
    low_back_pain = _coding(ICD10CM, "M54.50", "Low back pain, unspecified")
    tramadol = {
        "resourceType": "MedicationRequest",
        "id": "draft-tramadol",
        "status": "draft",
        "intent": "order",
        "medicationCodeableConcept": _coding(
            RXNORM, "836395", "tramadol hydrochloride 50 MG Oral Tablet"
        ),
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "encounter": {"reference": "Encounter/bench-encounter"},
        "authoredOn": today.isoformat(),
        "requester": {"reference": "Practitioner/bench-clinician"},
        "reasonCode": [low_back_pain],
        "dosageInstruction": [
            {
                "text": "50 mg by mouth every 6 hours as needed for pain",
                "asNeededBoolean": True,
                "route": _coding(SNOMED, "26643006", "Oral route"),
            }
        ],
    }
    mri = {
        "resourceType": "ServiceRequest",
        "id": "draft-mri",
        "status": "draft",
        "intent": "order",
        "code": _coding(CPT, "72148", "MRI lumbar spine without contrast"),
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "encounter": {"reference": "Encounter/bench-encounter"},
        "authoredOn": today.isoformat(),
        "requester": {"reference": "Practitioner/bench-clinician"},
        "reasonCode": [low_back_pain],
    }
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": tramadol}, {"resource": mri}],
    }


def _order_sign(today: date, prefetch: dict[str, Any]) -> dict[str, Any]:
    return {
        "hook": "order-sign",
        "hookInstance": "5f1b6c3e-bench-4c1e-9a57-000000000001",
        "fhirServer": "https://ehr.example.org/fhir",
        "context": {
            "userId": "Practitioner/bench-clinician",
            "patientId": PATIENT_ID,
            "encounterId": "bench-encounter",
            "draftOrders": _draft_orders(today),
        },
        "prefetch": prefetch,
    }


# A new episode of low back pain (12 days), no red flags, no prior physical therapy: the
# tramadol draft gets the opioid card, the MRI draft the imaging card, and the patient the
# exercise-therapy card.
REALISTIC_TOPICS = frozenset({"opioid-avoidance", "imaging-without-red-flags", "exercise-therapy"})


def realistic(today: date | None = None) -> Workload:
    """A back-pain visit at order-sign: 40 prefetched resources, tramadol and lumbar MRI drafted."""
    today = today or utc_today()
    onset = today - timedelta(days=12)
    conditions = [
        _condition("cond-lbp", ICD10CM, "M54.50", "Low back pain, unspecified", onset),
        *(
            _condition(f"cond-{n}", ICD10CM, code, display, today - timedelta(days=200 + 97 * n))
            for n, (code, display) in enumerate(_PROBLEMS[:11])
        ),
    ]
    medications = [
        _medication(f"rx-{n}", code, display, today - timedelta(days=30 + 41 * n))
        for n, (code, display) in enumerate(_MEDICATIONS[:10])
    ]
    observations = [
        _vital(
            f"obs-temp-{n}",
            "8310-5",
            "Body temperature",
            36.6 + 0.1 * (n % 3),
            "Cel",
            today - timedelta(days=3 + 60 * n),
        )
        for n in range(4)
    ] + [
        _vital(
            f"obs-weight-{n}",
            "29463-7",
            "Body weight",
            81.0 - 0.3 * n,
            "kg",
            today - timedelta(days=3 + 60 * n),
        )
        for n in range(4)
    ]
    procedures = [
        _procedure(f"proc-{n}", code, display, today - timedelta(days=400 + 180 * n))
        for n, (code, display) in enumerate(_PROCEDURES[:5])
    ]
    services = [
        _service_request(f"sr-{n}", code, system, display, today - timedelta(days=20 + 90 * n))
        for n, (code, system, display) in enumerate(_SERVICES[:4])
    ]
    prefetch = {
        "patient": _patient(today),
        "conditions": _searchset(conditions),
        "medications": _searchset(medications),
        "observations": _searchset(observations),
        "procedures": _searchset(procedures),
        "servicerequests": _searchset(services),
    }
    return Workload(
        "realistic order-sign",
        ORDER_SIGN,
        marked(_order_sign(today, prefetch), "5f1b6c3e-be0c-4c1e-9a57"),
        REALISTIC_TOPICS,
    )


def _cycle_days(today: date, start: int, step: int) -> Iterator[date]:
    for n in itertools.count():
        yield today - timedelta(days=start + (step * n) % 3650)


def large_record(size: int = 2000, today: date | None = None) -> Workload:
    """A patient with `size` resources: conditions, observations and medications, a third each.

    Ten years of chart: the back-pain diagnosis and the vitals that matter sit among hundreds
    of problems, prescriptions and readings the guideline does not ask about. Every fiftieth
    condition is an old resolved back-pain episode and every tenth observation a body
    temperature or weight, so the coded work grows with the record too.
    """
    today = today or utc_today()
    onset = today - timedelta(days=12)
    days = _cycle_days(today, 30, 7)
    per_kind = size // 3
    conditions = [_condition("cond-lbp", ICD10CM, "M54.50", "Low back pain, unspecified", onset)]
    for n in range(1, size - 2 * per_kind):
        when = next(days)
        if n % 50 == 0:
            conditions.append(
                _condition(
                    f"cond-{n}", ICD10CM, "M54.59", "Other low back pain", when, active=False
                )
            )
        else:
            code, display = _PROBLEMS[n % len(_PROBLEMS)]
            conditions.append(
                _condition(f"cond-{n}", ICD10CM, code, display, when, active=n % 3 == 0)
            )
    observations = []
    for n in range(per_kind):
        when = next(days)
        if n % 20 == 0:
            observations.append(_vital(f"obs-{n}", "8310-5", "Body temperature", 36.7, "Cel", when))
        elif n % 20 == 10:
            observations.append(_vital(f"obs-{n}", "29463-7", "Body weight", 80.5, "kg", when))
        else:
            observations.append(
                _vital(f"obs-{n}", "8867-4", "Heart rate", 60.0 + n % 30, "/min", when)
            )
    medications = []
    for n in range(per_kind):
        code, display = _MEDICATIONS[n % len(_MEDICATIONS)]
        status = "active" if n < 12 else "completed"
        medications.append(_medication(f"rx-{n}", code, display, next(days), status=status))
    prefetch = {
        "patient": _patient(today),
        "conditions": _searchset(conditions),
        "medications": _searchset(medications),
        "observations": _searchset(observations),
        "procedures": _searchset([]),
        "servicerequests": _searchset([]),
    }
    return Workload(
        f"large record ({size} conditions, observations and medications)",
        ORDER_SIGN,
        marked(_order_sign(today, prefetch), "6a2c7d4f-be0c-4c1e-9a57"),
        REALISTIC_TOPICS,
    )


def fallback(base: Workload) -> tuple[Workload, dict[str, Any]]:
    """The realistic call with only the patient prefetched: five searches go to the FHIR server.

    Returns the workload (its request still needs the stub server's `fhirServer` URL) and what
    the FHIR server answers, by prefetch key.
    """
    request = dict(base.request)
    request["hookInstance"] = f"7b3d8e5a-be0c-4c1e-9a57-{MARK}"
    request["prefetch"] = {"patient": base.request["prefetch"]["patient"]}
    request["fhirAuthorization"] = {
        "access_token": "bench-token",
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "patient/*.read",
        "subject": "bench-ehr",
    }
    answers = {key: value for key, value in base.request["prefetch"].items() if key != "patient"}
    return Workload(
        "FHIR fallback (5 queries)", base.service, request, base.expected_topics
    ), answers


# --- the realistic mix: the fixture library, moved to today and padded -----------------------

_PADDING_KINDS = ("conditions", "medications", "observations", "procedures", "servicerequests")
# Readings no rule looks at: heart and respiratory rates, and normal temperatures.
_READINGS = (
    ("8867-4", "Heart rate", 72.0, "/min"),
    ("9279-1", "Respiratory rate", 14.0, "/min"),
    ("8310-5", "Body temperature", 36.7, "Cel"),
)


def _padding(kind: str, number: int, patient_id: str, today: date) -> dict[str, Any]:
    """A resource of a patient's chart that bears on no guideline rule."""
    rid = f"pad-{kind[:4]}-{number}"
    when = today - timedelta(days=40 + 37 * number)
    if kind == "conditions":
        code, display = _PROBLEMS[number % len(_PROBLEMS)]
        resource = _condition(rid, ICD10CM, code, display, when, active=number % 2 == 0)
    elif kind == "medications":
        code, display = _MEDICATIONS[number % len(_MEDICATIONS)]
        resource = _medication(rid, code, display, when)
    elif kind == "observations":
        code, display, value, unit = _READINGS[number % len(_READINGS)]
        resource = _vital(rid, code, display, value, unit, when)
    elif kind == "procedures":
        code, display = _PROCEDURES[number % len(_PROCEDURES)]
        resource = _procedure(rid, code, display, when)
    else:
        code, system, display = _SERVICES[number % len(_SERVICES)]
        resource = _service_request(rid, code, system, display, when)
    resource["subject"] = {"reference": f"Patient/{patient_id}"}
    return resource


def _padded(request: dict[str, Any], size: int, today: date) -> dict[str, Any]:
    """`request` with unrelated chart entries added to its prefetched searches (and to the
    ones prefetched empty) until it carries about `size` resources."""
    prefetch = request["prefetch"]
    kinds = [k for k in _PADDING_KINDS if k in prefetch and _pads(prefetch[k])]
    have = sum(len(_resources(value)) for value in prefetch.values())
    for number in range(max(0, size - have)):
        if not kinds:
            break
        kind = kinds[number % len(kinds)]
        if prefetch[kind] is None:
            prefetch[kind] = _searchset([])
        resource = _padding(kind, number, request["context"]["patientId"], today)
        prefetch[kind].setdefault("entry", []).append({"resource": resource})
    return request


def _pads(value: Any) -> bool:
    return value is None or (isinstance(value, dict) and value.get("resourceType") == "Bundle")


def fixture_mix(today: date | None = None, size: int = 40) -> list[Workload]:
    """Every scenario of the fixture library as a request of about `size` resources, its dates
    moved to today, answered from prefetch alone (no `fhirServer`, as the golden files are)."""
    today = today or utc_today()
    mix = []
    for number, folder in enumerate(sorted(p for p in FIXTURES.iterdir() if p.is_dir())):
        scenario = json.loads((folder / "scenario.json").read_text(encoding="utf-8"))
        request = json.loads((folder / "request.json").read_text(encoding="utf-8"))
        expected = json.loads((folder / "expected.json").read_text(encoding="utf-8"))
        days = (today - date.fromisoformat(scenario["evaluationDate"])).days
        request = shift_dates(request, days) if days else request
        request.pop("fhirServer", None)
        request.pop("fhirAuthorization", None)
        request = _padded(request, size, today)
        mix.append(
            Workload(
                scenario["name"],
                scenario["service"],
                marked(request, f"{number:08x}-be0c-4c1e-9a57"),
                frozenset(card["topic"] for card in expected["cards"]),
            )
        )
    return mix
