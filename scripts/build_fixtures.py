"""Write the clinical scenarios in `fhir_fixtures/` from the definitions below.

Each scenario becomes a folder with:
  scenario.json  what it shows, which service it calls, the evaluation date it assumes
  request.json   the complete CDS Hooks request, prefetch included
  expected.json  the golden cards, by topic, indicator and suggestion actions

The expected cards are written here by hand from the guideline, never taken from the service's
output. Run: python scripts/build_fixtures.py   (re-run after editing a scenario).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1] / "fhir_fixtures"
EVALUATION_DATE = date(2026, 11, 22)

ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
LOINC = "http://loinc.org"
CPT = "http://www.ama-assn.org/go/cpt"
UCUM = "http://unitsofmeasure.org"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"

SERVICE_FOR_HOOK = {
    "order-sign": "back-pain-order-sign",
    "order-select": "back-pain-order-select",
    "patient-view": "back-pain-patient-view",
}

# Suggestion action signatures used in expected.json.
TOPICAL_NSAID = f"create MedicationRequest {RXNORM}|"  # completed with the orderable code below
ACETAMINOPHEN = f"create MedicationRequest {RXNORM}|"


def day(days_ago: int) -> str:
    return (EVALUATION_DATE - timedelta(days=days_ago)).isoformat()


def codeable(system: str, code: str, display: str, text: str | None = None) -> dict[str, Any]:
    concept: dict[str, Any] = {"coding": [{"system": system, "code": code, "display": display}]}
    if text:
        concept["text"] = text
    return concept


@dataclass
class Patient:
    id: str
    birth_date: str
    gender: str
    given: str
    family: str

    def resource(self) -> dict[str, Any]:
        return {
            "resourceType": "Patient",
            "id": self.id,
            "name": [{"use": "official", "family": self.family, "given": [self.given]}],
            "gender": self.gender,
            "birthDate": self.birth_date,
        }


def condition(
    patient: Patient,
    rid: str,
    system: str,
    code: str,
    display: str,
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
        "code": codeable(system, code, display),
        "subject": {"reference": f"Patient/{patient.id}"},
    }
    if clinical:
        resource["clinicalStatus"] = {"coding": [{"system": CONDITION_CLINICAL, "code": clinical}]}
    if onset_days_ago is not None:
        resource["onsetDateTime"] = day(onset_days_ago)
        resource["recordedDate"] = day(onset_days_ago)
    return resource


def medication_request(
    patient: Patient,
    rid: str,
    code: str | None,
    display: str,
    *,
    status: str = "active",
    authored_days_ago: int | None = 0,
    reason: tuple[str, str, str] | None = None,
    text_only: bool = False,
) -> dict[str, Any]:
    medication = (
        {"text": display} if text_only or code is None else codeable(RXNORM, code, display, display)
    )
    resource: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": rid,
        "status": status,
        "intent": "order",
        "medicationCodeableConcept": medication,
        "subject": {"reference": f"Patient/{patient.id}"},
    }
    if authored_days_ago is not None:
        resource["authoredOn"] = day(authored_days_ago)
    if reason:
        resource["reasonCode"] = [codeable(*reason)]
    return resource


def service_request(
    patient: Patient,
    rid: str,
    system: str | None,
    code: str | None,
    display: str,
    *,
    status: str = "draft",
    authored_days_ago: int | None = 0,
    reason: tuple[str, str, str] | None = None,
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "id": rid,
        "status": status,
        "intent": "order",
        "code": codeable(system, code, display, display) if system and code else {"text": display},
        "subject": {"reference": f"Patient/{patient.id}"},
    }
    if authored_days_ago is not None:
        resource["authoredOn"] = day(authored_days_ago)
    if reason:
        resource["reasonCode"] = [codeable(*reason)]
    return resource


def temperature(
    patient: Patient, rid: str, value: float, unit: str, days_ago: int
) -> dict[str, Any]:
    ucum = "Cel" if unit == "C" else "[degF]"
    return {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                    }
                ]
            }
        ],
        "code": codeable(LOINC, "8310-5", "Body temperature"),
        "subject": {"reference": f"Patient/{patient.id}"},
        "effectiveDateTime": day(days_ago) + "T09:30:00Z",
        "valueQuantity": {"value": value, "unit": ucum, "system": UCUM, "code": ucum},
    }


def weight(patient: Patient, rid: str, kg: float, days_ago: int) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "code": codeable(LOINC, "29463-7", "Body weight"),
        "subject": {"reference": f"Patient/{patient.id}"},
        "effectiveDateTime": day(days_ago) + "T09:30:00Z",
        "valueQuantity": {"value": kg, "unit": "kg", "system": UCUM, "code": "kg"},
    }


def procedure(
    patient: Patient, rid: str, system: str, code: str, display: str, days_ago: int
) -> dict[str, Any]:
    return {
        "resourceType": "Procedure",
        "id": rid,
        "status": "completed",
        "code": codeable(system, code, display),
        "subject": {"reference": f"Patient/{patient.id}"},
        "performedDateTime": day(days_ago),
    }


def searchset(resources: list[dict[str, Any]]) -> dict[str, Any] | None:
    if not resources:
        return None
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [
            {"fullUrl": f"urn:uuid:{r['resourceType']}-{r['id']}", "resource": r} for r in resources
        ],
    }


@dataclass
class Expected:
    topic: str
    indicator: str
    suggestions: list[list[str]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"topic": self.topic, "indicator": self.indicator, "suggestions": self.suggestions}


@dataclass
class Scenario:
    name: str
    description: str
    hook: str
    patient: Patient
    conditions: list[dict[str, Any]] = field(default_factory=list)
    medications: list[dict[str, Any]] = field(default_factory=list)
    observations: list[dict[str, Any]] = field(default_factory=list)
    procedures: list[dict[str, Any]] = field(default_factory=list)
    service_requests: list[dict[str, Any]] = field(default_factory=list)
    drafts: list[dict[str, Any]] = field(default_factory=list)
    selections: list[str] | None = None
    expected: list[Expected] = field(default_factory=list)
    encounter_id: str | None = "enc-1"
    tags: list[str] = field(default_factory=list)
    # Edits the finished request, for messy real-world shapes.
    mutate: Callable[[dict[str, Any]], None] | None = None

    def request(self) -> dict[str, Any]:
        context: dict[str, Any] = {
            "userId": "Practitioner/dr-lee",
            "patientId": self.patient.id,
        }
        if self.encounter_id:
            context["encounterId"] = self.encounter_id
        if self.hook != "patient-view":
            context["draftOrders"] = {
                "resourceType": "Bundle",
                "type": "collection",
                "entry": [{"resource": r} for r in self.drafts],
            }
        if self.hook == "order-select":
            context["selections"] = self.selections or [
                f"{r['resourceType']}/{r['id']}" for r in self.drafts
            ]
        request = {
            "hook": self.hook,
            "hookInstance": _stable_uuid(self.name),
            "fhirServer": "https://ehr.example.org/fhir",
            "context": context,
            "prefetch": {
                "patient": self.patient.resource(),
                "conditions": searchset(self.conditions),
                "medications": searchset(self.medications),
                "observations": searchset(self.observations),
                "procedures": searchset(self.procedures),
                "servicerequests": searchset(self.service_requests),
            },
        }
        if self.mutate:
            self.mutate(request)
        return request


def _stable_uuid(name: str) -> str:
    import uuid

    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"back-pain-cds/fixtures/{name}"))


# --- shared clinical building blocks ---------------------------------------------------------

LBP = (ICD10, "M54.50", "Low back pain, unspecified")
THORACIC = (ICD10, "M54.6", "Pain in thoracic spine")
TRAMADOL = ("835603", "tramadol hydrochloride 50 MG Oral Tablet")
OXY_APAP = ("1049621", "oxycodone hydrochloride 5 MG / acetaminophen 325 MG Oral Tablet")
IBUPROFEN = ("197806", "ibuprofen 600 MG Oral Tablet")
NAPROXEN = ("198013", "naproxen 500 MG Oral Tablet")
SERTRALINE = ("312940", "sertraline 50 MG Oral Tablet")
AMITRIPTYLINE = ("856845", "amitriptyline hydrochloride 25 MG Oral Tablet")
DULOXETINE = ("596930", "duloxetine 60 MG Delayed Release Oral Capsule")
WARFARIN = ("855332", "warfarin sodium 5 MG Oral Tablet")
MRI_LUMBAR = (CPT, "72148", "MRI lumbar spine without contrast")
XRAY_THORACIC = (CPT, "72070", "X-ray thoracic spine, 2 views")
EPIDURAL = (CPT, "62323", "Lumbar interlaminar epidural injection with imaging guidance")
FACET = (CPT, "64493", "Lumbar facet joint injection with imaging guidance, single level")
PT_REFERRAL = (SNOMED, "308447003", "Referral to physiotherapist (procedure)")

# Codes of the orders the service suggests (see cds_service/terminology/data/orderables.json).
SUGGESTED_TOPICAL_NSAID: str = ""  # filled from orderables.json at build time
SUGGESTED_ACETAMINOPHEN: str = ""


def _orderable_signature(name: str) -> str:
    data = json.loads(
        (
            Path(__file__).resolve().parents[1] / "cds_service/terminology/data/orderables.json"
        ).read_text()
    )
    spec = data["orderables"][name]
    coding = spec["code"]["coding"][0]
    return f"create {spec['resourceType']} {coding['system']}|{coding['code']}"


def _draft(
    patient: Patient, rid: str, medication: tuple[str, str], **kwargs: Any
) -> dict[str, Any]:
    return medication_request(patient, rid, medication[0], medication[1], status="draft", **kwargs)


def scenarios() -> list[Scenario]:
    topical = _orderable_signature("topical-nsaid")
    acetaminophen = _orderable_signature("acetaminophen")
    pt_referral = _orderable_signature("physical-therapy-referral")
    pain_referral = _orderable_signature("pain-management-referral")

    def exercise() -> Expected:
        return Expected("exercise-therapy", "info", [[pt_referral]])

    ana = Patient("pt-ana", "1986-04-12", "female", "Ana", "Moreno")
    ben = Patient("pt-ben", "1979-09-02", "male", "Ben", "Okafor")
    cara = Patient("pt-cara", "1962-01-20", "female", "Cara", "Lindqvist")
    dev = Patient("pt-dev", "1991-06-30", "male", "Dev", "Raman")
    ema = Patient("pt-ema", "1981-11-05", "female", "Ema", "Kowalski")

    result: list[Scenario] = []

    # opioid-avoidance -------------------------------------------------------------------------
    result.append(
        Scenario(
            name="opioid-tramadol-acute-low-back-pain",
            description="Acute low back pain (10 days); tramadol drafted at signing. Opioid card "
            "replaces it with a topical NSAID; exercise therapy suggested.",
            hook="order-sign",
            patient=ana,
            conditions=[condition(ana, "cond-lbp", *LBP, onset_days_ago=10)],
            drafts=[_draft(ana, "rx-tramadol", TRAMADOL)],
            expected=[
                Expected(
                    "opioid-avoidance",
                    "warning",
                    [
                        ["delete MedicationRequest/rx-tramadol", topical],
                        ["delete MedicationRequest/rx-tramadol"],
                    ],
                ),
                exercise(),
            ],
            tags=["opioid-avoidance", "exercise-therapy"],
        )
    )
    result.append(
        Scenario(
            name="opioid-combination-thoracic-pain-ckd",
            description="Mid-back pain; oxycodone/acetaminophen drafted; CKD stage 4 makes NSAIDs "
            "unsafe, so the opioid card suggests acetaminophen instead.",
            hook="order-sign",
            patient=ben,
            conditions=[
                condition(ben, "cond-thoracic", *THORACIC, onset_days_ago=5),
                condition(
                    ben,
                    "cond-ckd",
                    ICD10,
                    "N18.4",
                    "Chronic kidney disease, stage 4 (severe)",
                    onset_days_ago=900,
                ),
            ],
            drafts=[_draft(ben, "rx-oxy", OXY_APAP)],
            expected=[
                Expected(
                    "opioid-avoidance",
                    "warning",
                    [
                        ["delete MedicationRequest/rx-oxy", acetaminophen],
                        ["delete MedicationRequest/rx-oxy"],
                    ],
                ),
                exercise(),
            ],
            tags=["opioid-avoidance", "nsaid contraindication"],
        )
    )
    result.append(
        Scenario(
            name="opioid-active-cancer-excluded",
            description="Low back pain with active lung cancer: opioid advice does not apply. The "
            "cancer is a red flag instead.",
            hook="order-sign",
            patient=cara,
            conditions=[
                condition(cara, "cond-lbp", *LBP, onset_days_ago=60),
                condition(
                    cara,
                    "cond-lung-ca",
                    ICD10,
                    "C34.90",
                    "Malignant neoplasm of unspecified part of unspecified bronchus or lung",
                    onset_days_ago=200,
                ),
            ],
            drafts=[_draft(cara, "rx-tramadol", TRAMADOL)],
            expected=[
                Expected("red-flags-present", "warning"),
                exercise(),
                Expected("chronic-pain-assessment", "info"),
            ],
            tags=["opioid-avoidance (negative)", "red-flags-present", "exclusion"],
        )
    )
    result.append(
        Scenario(
            name="no-back-pain-opioid",
            description="A patient without back pain gets tramadol: the service stays silent.",
            hook="order-sign",
            patient=dev,
            conditions=[
                condition(
                    dev,
                    "cond-ankle",
                    ICD10,
                    "S93.401A",
                    "Sprain of unspecified ligament of right ankle, initial encounter",
                    onset_days_ago=3,
                )
            ],
            drafts=[_draft(dev, "rx-tramadol", TRAMADOL)],
            expected=[],
            tags=["negative"],
        )
    )

    # imaging ----------------------------------------------------------------------------------
    result.append(
        Scenario(
            name="imaging-mri-without-red-flags",
            description="Three weeks of low back pain, 40 years old, no red flags: lumbar MRI "
            "drafted. Imaging card offers to cancel it.",
            hook="order-sign",
            patient=ana,
            conditions=[condition(ana, "cond-lbp", *LBP, onset_days_ago=21)],
            observations=[temperature(ana, "obs-temp", 36.8, "C", 1)],
            drafts=[service_request(ana, "sr-mri", *MRI_LUMBAR, reason=LBP)],
            expected=[
                Expected(
                    "imaging-without-red-flags", "warning", [["delete ServiceRequest/sr-mri"]]
                ),
                exercise(),
            ],
            tags=["imaging-without-red-flags", "exercise-therapy", "red-flags-present (negative)"],
        )
    )
    result.append(
        Scenario(
            name="imaging-cauda-equina-critical",
            description="Low back pain with cauda equina syndrome: imaging is appropriate; a "
            "critical red-flag card and no routine advice.",
            hook="order-sign",
            patient=ben,
            conditions=[
                condition(ben, "cond-lbp", *LBP, onset_days_ago=4),
                condition(
                    ben, "cond-ces", ICD10, "G83.4", "Cauda equina syndrome", onset_days_ago=1
                ),
            ],
            drafts=[service_request(ben, "sr-mri", *MRI_LUMBAR)],
            expected=[Expected("red-flags-present", "critical")],
            tags=["red-flags-present", "imaging-without-red-flags (negative)"],
        )
    )
    result.append(
        Scenario(
            name="imaging-fever-order-select",
            description="Order-select of a thoracic X-ray for mid-back pain with a 38.6 °C "
            "temperature two days ago: fever is a red flag, so no imaging warning.",
            hook="order-select",
            patient=dev,
            conditions=[condition(dev, "cond-thoracic", *THORACIC, onset_days_ago=12)],
            observations=[temperature(dev, "obs-temp", 38.6, "C", 2)],
            procedures=[
                procedure(
                    dev,
                    "proc-pt",
                    SNOMED,
                    "410160006",
                    "Physical therapy management (procedure)",
                    20,
                )
            ],
            drafts=[service_request(dev, "sr-xray", *XRAY_THORACIC)],
            expected=[Expected("red-flags-present", "warning")],
            tags=["red-flags-present", "order-select", "fever"],
        )
    )
    result.append(
        Scenario(
            name="imaging-age-over-50-new-pain",
            description="64-year-old with low back pain for two weeks: age over 50 with new pain "
            "is a red flag; imaging is appropriate.",
            hook="order-sign",
            patient=cara,
            conditions=[condition(cara, "cond-lbp", *LBP, onset_days_ago=14)],
            service_requests=[
                service_request(cara, "sr-pt", *PT_REFERRAL, status="active", authored_days_ago=7)
            ],
            drafts=[service_request(cara, "sr-mri", *MRI_LUMBAR)],
            expected=[Expected("red-flags-present", "warning")],
            tags=["red-flags-present", "age"],
        )
    )

    # NSAIDs -----------------------------------------------------------------------------------
    result.append(
        Scenario(
            name="topical-nsaid-first-ibuprofen",
            description="Oral ibuprofen drafted for acute low back pain with no topical NSAID "
            "tried: suggest a topical NSAID first.",
            hook="order-sign",
            patient=dev,
            conditions=[condition(dev, "cond-lbp", *LBP, onset_days_ago=6)],
            drafts=[_draft(dev, "rx-ibuprofen", IBUPROFEN)],
            expected=[
                Expected(
                    "topical-nsaid-first",
                    "info",
                    [["delete MedicationRequest/rx-ibuprofen", topical]],
                ),
                exercise(),
            ],
            tags=["topical-nsaid-first", "nsaid-contraindicated (negative)"],
        )
    )
    result.append(
        Scenario(
            name="topical-nsaid-already-tried",
            description="Naproxen drafted after a diclofenac gel course last month: no topical "
            "NSAID card.",
            hook="order-sign",
            patient=ema,
            conditions=[condition(ema, "cond-lbp", *LBP, onset_days_ago=20)],
            medications=[
                medication_request(
                    ema,
                    "rx-diclofenac-gel",
                    None,
                    "diclofenac sodium 1% topical gel",
                    status="completed",
                    authored_days_ago=18,
                    text_only=True,
                )
            ],
            service_requests=[
                service_request(ema, "sr-pt", *PT_REFERRAL, status="active", authored_days_ago=10)
            ],
            drafts=[_draft(ema, "rx-naproxen", NAPROXEN)],
            expected=[],
            tags=["topical-nsaid-first (negative)", "exercise-therapy (negative)"],
        )
    )
    result.append(
        Scenario(
            name="nsaid-contraindicated-warfarin",
            description="Ibuprofen drafted for a patient on warfarin: replace with acetaminophen.",
            hook="order-sign",
            patient=ema,
            conditions=[condition(ema, "cond-lbp", *LBP, onset_days_ago=9)],
            medications=[
                medication_request(
                    ema, "rx-warfarin", *WARFARIN, status="active", authored_days_ago=300
                )
            ],
            drafts=[_draft(ema, "rx-ibuprofen", IBUPROFEN)],
            expected=[
                Expected(
                    "nsaid-contraindicated",
                    "warning",
                    [["delete MedicationRequest/rx-ibuprofen", acetaminophen]],
                ),
                exercise(),
            ],
            tags=["nsaid-contraindicated", "topical-nsaid-first (negative)"],
        )
    )

    # antidepressants, glucosamine, injections --------------------------------------------------
    result.append(
        Scenario(
            name="antidepressant-axial-pain",
            description="Amitriptyline drafted for axial low back pain with no depression, anxiety "
            "or neuropathic diagnosis: advise against it.",
            hook="order-sign",
            patient=ben,
            conditions=[condition(ben, "cond-lbp", *LBP, onset_days_ago=15)],
            service_requests=[
                service_request(ben, "sr-pt", *PT_REFERRAL, status="active", authored_days_ago=5)
            ],
            drafts=[_draft(ben, "rx-amitriptyline", AMITRIPTYLINE)],
            expected=[
                Expected(
                    "avoid-antidepressant",
                    "warning",
                    [["delete MedicationRequest/rx-amitriptyline"]],
                )
            ],
            tags=["avoid-antidepressant"],
        )
    )
    result.append(
        Scenario(
            name="antidepressant-with-depression",
            description="Sertraline drafted for a back-pain patient with major depression: "
            "appropriate, no card.",
            hook="order-sign",
            patient=ana,
            conditions=[
                condition(ana, "cond-lbp", *LBP, onset_days_ago=15),
                condition(
                    ana,
                    "cond-mdd",
                    ICD10,
                    "F32.1",
                    "Major depressive disorder, single episode, moderate",
                    onset_days_ago=40,
                ),
            ],
            service_requests=[
                service_request(ana, "sr-pt", *PT_REFERRAL, status="active", authored_days_ago=5)
            ],
            drafts=[_draft(ana, "rx-sertraline", SERTRALINE)],
            expected=[],
            tags=["avoid-antidepressant (negative)"],
        )
    )
    result.append(
        Scenario(
            name="glucosamine-text-only",
            description="Glucosamine/chondroitin drafted as text only (no code): advise against.",
            hook="order-sign",
            patient=dev,
            conditions=[condition(dev, "cond-lbp", *LBP, onset_days_ago=8)],
            service_requests=[
                service_request(dev, "sr-pt", *PT_REFERRAL, status="active", authored_days_ago=3)
            ],
            drafts=[
                medication_request(
                    dev,
                    "rx-glucosamine",
                    None,
                    "Glucosamine sulfate 1500 mg / chondroitin 1200 mg tablet",
                    status="draft",
                    text_only=True,
                )
            ],
            expected=[
                Expected("avoid-glucosamine", "info", [["delete MedicationRequest/rx-glucosamine"]])
            ],
            tags=["avoid-glucosamine", "text fallback"],
        )
    )
    result.append(
        Scenario(
            name="glucosamine-without-back-pain",
            description="Glucosamine drafted for knee osteoarthritis, no back pain: this service "
            "has nothing to say.",
            hook="order-sign",
            patient=ema,
            conditions=[
                condition(
                    ema,
                    "cond-knee-oa",
                    ICD10,
                    "M17.11",
                    "Unilateral primary osteoarthritis, right knee",
                    onset_days_ago=400,
                )
            ],
            drafts=[
                medication_request(
                    ema,
                    "rx-glucosamine",
                    None,
                    "glucosamine sulfate 1500 mg oral tablet",
                    status="draft",
                    text_only=True,
                )
            ],
            expected=[],
            tags=["avoid-glucosamine (negative)", "negative"],
        )
    )
    result.append(
        Scenario(
            name="spinal-injection-axial-pain",
            description="Lumbar epidural steroid injection drafted for axial low back pain without "
            "radiculopathy: advise against it.",
            hook="order-sign",
            patient=cara,
            conditions=[condition(cara, "cond-lbp", *LBP, onset_days_ago=100)],
            service_requests=[
                service_request(cara, "sr-pt", *PT_REFERRAL, status="active", authored_days_ago=30)
            ],
            drafts=[service_request(cara, "sr-epidural", *EPIDURAL)],
            expected=[
                Expected(
                    "avoid-spinal-injection", "warning", [["delete ServiceRequest/sr-epidural"]]
                ),
                Expected("chronic-pain-assessment", "info", [[pain_referral]]),
            ],
            tags=["avoid-spinal-injection", "chronic-pain-assessment"],
        )
    )
    result.append(
        Scenario(
            name="spinal-injection-with-radiculopathy",
            description="Facet injection drafted for a patient with lumbar radiculopathy: not "
            "axial pain, so no injection card.",
            hook="order-sign",
            patient=ben,
            conditions=[
                condition(ben, "cond-lbp", *LBP, onset_days_ago=20),
                condition(
                    ben,
                    "cond-radic",
                    ICD10,
                    "M54.16",
                    "Radiculopathy, lumbar region",
                    onset_days_ago=20,
                ),
            ],
            service_requests=[
                service_request(ben, "sr-pt", *PT_REFERRAL, status="active", authored_days_ago=10)
            ],
            drafts=[service_request(ben, "sr-facet", *FACET)],
            expected=[],
            tags=["avoid-spinal-injection (negative)"],
        )
    )

    # patient-view: exercise and chronic pain ------------------------------------------------------
    result.append(
        Scenario(
            name="patient-view-chronic-pain-16-weeks",
            description="Chart opened for low back pain of 16 weeks: chronic-pain assessment "
            "with a multidisciplinary referral, and exercise therapy.",
            hook="patient-view",
            patient=ema,
            conditions=[condition(ema, "cond-lbp", *LBP, onset_days_ago=112)],
            expected=[
                Expected("chronic-pain-assessment", "info", [[pain_referral]]),
                exercise(),
            ],
            tags=["patient-view", "chronic-pain-assessment", "exercise-therapy"],
        )
    )
    result.append(
        Scenario(
            name="patient-view-subacute-pain-6-weeks",
            description="Mid-back pain for 6 weeks: psychosocial assessment advised, referral not "
            "yet; physical therapy already under way.",
            hook="patient-view",
            patient=dev,
            conditions=[condition(dev, "cond-thoracic", *THORACIC, onset_days_ago=42)],
            service_requests=[
                service_request(dev, "sr-pt", *PT_REFERRAL, status="active", authored_days_ago=14)
            ],
            expected=[Expected("chronic-pain-assessment", "info")],
            tags=["patient-view", "chronic-pain-assessment", "exercise-therapy (negative)"],
        )
    )
    result.append(
        Scenario(
            name="patient-view-acute-pain-in-therapy",
            description="Acute low back pain (5 days) already referred to physical therapy: "
            "nothing to add.",
            hook="patient-view",
            patient=ana,
            conditions=[condition(ana, "cond-lbp", *LBP, onset_days_ago=5)],
            service_requests=[
                service_request(ana, "sr-pt", *PT_REFERRAL, status="active", authored_days_ago=2)
            ],
            expected=[],
            tags=[
                "patient-view",
                "chronic-pain-assessment (negative)",
                "exercise-therapy (negative)",
            ],
        )
    )

    result.append(
        Scenario(
            name="patient-view-red-flag-osteoporosis",
            description="Chart of a 64-year-old with 7 weeks of low back pain and osteoporosis: "
            "red-flag card (fracture risk), exercise therapy and chronic-pain assessment.",
            hook="patient-view",
            patient=cara,
            conditions=[
                condition(cara, "cond-lbp", *LBP, onset_days_ago=50),
                condition(
                    cara,
                    "cond-osteo",
                    ICD10,
                    "M81.0",
                    "Age-related osteoporosis without current pathological fracture",
                    onset_days_ago=700,
                ),
            ],
            expected=[
                Expected("red-flags-present", "warning"),
                exercise(),
                Expected("chronic-pain-assessment", "info"),
            ],
            tags=["patient-view", "red-flags-present", "osteoporosis"],
        )
    )

    # order-select and messy shapes ----------------------------------------------------------------
    result.append(
        Scenario(
            name="order-select-only-selection-evaluated",
            description="Tramadol and ibuprofen both drafted; only ibuprofen is selected, so only "
            "the NSAID advice fires.",
            hook="order-select",
            patient=ana,
            conditions=[condition(ana, "cond-lbp", *LBP, onset_days_ago=3)],
            drafts=[_draft(ana, "rx-tramadol", TRAMADOL), _draft(ana, "rx-ibuprofen", IBUPROFEN)],
            selections=["MedicationRequest/rx-ibuprofen"],
            expected=[
                Expected(
                    "topical-nsaid-first",
                    "info",
                    [["delete MedicationRequest/rx-ibuprofen", topical]],
                ),
                exercise(),
            ],
            tags=["order-select", "topical-nsaid-first"],
        )
    )

    def sandbox_shape(request: dict[str, Any]) -> None:
        # The CDS Hooks sandbox: no Bundle.type, category as an object, no intent, and the
        # drug in a contained Medication.
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

    result.append(
        Scenario(
            name="messy-sandbox-shape-opioid",
            description="Sandbox-style draft: no Bundle.type, MedicationRequest.category as an "
            "object, no intent, drug in a contained Medication: the opioid is still recognised.",
            hook="order-sign",
            patient=ben,
            conditions=[condition(ben, "cond-lbp", *LBP, onset_days_ago=2, clinical=None)],
            service_requests=[
                service_request(ben, "sr-pt", *PT_REFERRAL, status="active", authored_days_ago=1)
            ],
            drafts=[_draft(ben, "rx-tramadol", TRAMADOL)],
            expected=[
                Expected(
                    "opioid-avoidance",
                    "warning",
                    [
                        ["delete MedicationRequest/rx-tramadol", topical],
                        ["delete MedicationRequest/rx-tramadol"],
                    ],
                )
            ],
            mutate=sandbox_shape,
            tags=["messy input", "opioid-avoidance"],
        )
    )
    return result


def write(scenario: Scenario) -> None:
    folder = ROOT / scenario.name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    meta = {
        "name": scenario.name,
        "description": scenario.description,
        "service": SERVICE_FOR_HOOK[scenario.hook],
        "hook": scenario.hook,
        "evaluationDate": EVALUATION_DATE.isoformat(),
        "tags": scenario.tags,
    }
    (folder / "scenario.json").write_text(json.dumps(meta, indent=2) + "\n")
    (folder / "request.json").write_text(
        json.dumps(scenario.request(), indent=2, ensure_ascii=False) + "\n"
    )
    expected = {"cards": [e.as_json() for e in scenario.expected]}
    (folder / "expected.json").write_text(json.dumps(expected, indent=2) + "\n")


def main() -> None:
    all_scenarios = scenarios()
    names = [s.name for s in all_scenarios]
    assert len(names) == len(set(names)), "scenario names must be unique"
    for scenario in all_scenarios:
        write(scenario)
    print(f"wrote {len(all_scenarios)} scenarios to {ROOT}")


if __name__ == "__main__":
    main()
