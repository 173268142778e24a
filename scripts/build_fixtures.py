"""Write the clinical scenario library in `fhir_fixtures/` from the definitions below.

Each scenario becomes a folder with:
  scenario.json  what it shows, which service it calls, its patient id, the evaluation date
  request.json   the complete CDS Hooks request, prefetch included
  expected.json  the golden cards, by topic, indicator and suggestion actions
  bundle.json    the scenario's stored FHIR resources as an idempotent transaction Bundle
and `fhir_fixtures/README.md` indexes them.

The expected cards are written here by hand from the guideline (README "Clinical logic"),
never taken from the service's output. Run: python scripts/build_fixtures.py
(`--check` reports whether the committed files are current; `--out DIR` writes elsewhere).
"""

from __future__ import annotations

import argparse
import filecmp
import json
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fixture_kit import (
    CONDITION_CLINICAL,
    CPT,
    EVALUATION_DATE,
    ICD10,
    ICD10_OID,
    RXNORM_OID,
    SNOMED,
    Code,
    Expected,
    Persona,
    Scenario,
    condition,
    day,
    medication,
    medication_request,
    medication_request_by_reference,
    orderable_signature,
    procedure,
    service_request,
    temperature,
    weight,
)

PROJECT = Path(__file__).resolve().parents[1]
ROOT = PROJECT / "fhir_fixtures"

# --- what a scenario can show (the library index groups scenarios by these) --------------------

RF_NEURO = "red flag: neurologic deficit / cauda equina"
RF_FEVER_C = "red flag: fever by temperature (°C)"
RF_FEVER_F = "red flag: fever by temperature (°F)"
RF_FEVER_DX = "red flag: fever by diagnosis"
RF_IV_DRUGS = "red flag: IV drug use"
RF_HIV = "red flag: immunosuppression (HIV)"
RF_TRANSPLANT = "red flag: immunosuppression (transplant procedure)"
RF_STEROIDS = "red flag: long-term systemic corticosteroids"
RF_INFECTION = "red flag: known spinal infection"
RF_CANCER = "red flag: history of cancer"
RF_WEIGHT_CODED = "red flag: unexplained weight loss (coded)"
RF_WEIGHT_MEASURED = "red flag: unexplained weight loss (measured)"
RF_AGE = "red flag: age over 50 with new pain"
RF_FRACTURE = "red flag: recent trauma / spinal fracture"
RF_OSTEOPOROSIS = "red flag: osteoporosis"
RF_TRAUMA = "red flag: significant trauma without spinal fracture"
RF_ACTIVE_CANCER_SNOMED = "red flag: active cancer coded in SNOMED CT only"
RF_SUSPECTED_INFECTION = "red flag: fever with IV drug use (suspected spinal infection)"
RF_KNOWN = "red flag: established diagnosis named as known"
IMAGING_NOT_FIRST_TEST = "drafted imaging is not the red flag's first test"
EXTENDED_RELEASE = "extended-release opioid"
NOT_A_RED_FLAG = "not a red flag"
EX_CANCER = "exclusion: active cancer"
EX_HOSPICE = "exclusion: hospice / end-of-life care"
EX_SICKLE = "exclusion: sickle cell disease"
CI_CKD = "NSAID contraindication: CKD stage 4-5"
CI_GI = "NSAID contraindication: GI bleeding / peptic ulcer"
CI_ANTICOAGULANT = "NSAID contraindication: anticoagulant"
CI_HEART_FAILURE = "NSAID contraindication: heart failure"
ORDER_SELECT = "order-select with selections"
PATIENT_VIEW = "patient-view"
NO_BACK_PAIN = "no back pain: silent"
MINOR = "patient under 18: silent"
BACK_PAIN_BY_REASON = "back pain known only from the order's reason"
TREATMENT_IN_PLACE = "treatment already in place"
MESSY_SANDBOX = "messy: sandbox-style draft"
MESSY_MEDICATION_REFERENCE = "messy: medicationReference to a Medication in the Bundle"
MESSY_OID = "messy: OID code systems"
MESSY_UNDOTTED = "messy: undotted ICD-10-CM code"
MESSY_TEXT_ONLY = "messy: text-only code"
MESSY_UNKNOWN_TYPES = "messy: unknown resource types"
MESSY_MALFORMED = "messy: malformed resource skipped"
MESSY_NULL_PREFETCH = "messy: null prefetch keys"
MESSY_POUNDS = "messy: weight in pounds"

# --- shared clinical building blocks -----------------------------------------------------------

LBP: Code = (ICD10, "M54.50", "Low back pain, unspecified")
THORACIC: Code = (ICD10, "M54.6", "Pain in thoracic spine")
TRAMADOL = ("835603", "tramadol hydrochloride 50 MG Oral Tablet")
OXY_APAP = ("1049221", "acetaminophen 325 MG / oxycodone hydrochloride 5 MG Oral Tablet")
HYDROCODONE_APAP = ("857002", "acetaminophen 325 MG / hydrocodone bitartrate 5 MG Oral Tablet")
IBUPROFEN = ("197806", "ibuprofen 600 MG Oral Tablet")
NAPROXEN = ("198013", "naproxen 500 MG Oral Tablet")
SERTRALINE = ("312940", "sertraline 50 MG Oral Tablet")
AMITRIPTYLINE = ("856845", "amitriptyline hydrochloride 25 MG Oral Tablet")
WARFARIN = ("855332", "warfarin sodium 5 MG Oral Tablet")
APIXABAN = ("1364445", "apixaban 5 MG Oral Tablet")
PREDNISONE = ("198145", "prednisone 10 MG Oral Tablet")
LISINOPRIL = ("314076", "lisinopril 10 MG Oral Tablet")
MRI_LUMBAR: Code = (CPT, "72148", "MRI lumbar spine without contrast")
XRAY_THORACIC: Code = (CPT, "72070", "X-ray thoracic spine, 2 views")
XRAY_LUMBOSACRAL: Code = (CPT, "72100", "X-ray lumbosacral spine, 2 or 3 views")
EPIDURAL: Code = (CPT, "62323", "Lumbar interlaminar epidural injection with imaging guidance")
FACET: Code = (CPT, "64493", "Lumbar facet joint injection with imaging guidance, single level")
PT_REFERRAL: Code = (SNOMED, "308447003", "Referral to physiotherapist (procedure)")
PAIN_REFERRAL: Code = (
    SNOMED,
    "306265007",
    "Referral to pain management specialist (procedure)",
)

ANA = Persona("pt-ana", "1986-04-12", "female", "Ana", "Moreno")  # 40 at evaluation
BEN = Persona("pt-ben", "1979-09-02", "male", "Ben", "Okafor")  # 47
CARA = Persona("pt-cara", "1962-01-20", "female", "Cara", "Lindqvist")  # 64
DEV = Persona("pt-dev", "1991-06-30", "male", "Dev", "Raman")  # 35
EMA = Persona("pt-ema", "1981-11-05", "female", "Ema", "Kowalski")  # 45
FINN = Persona("pt-finn", "2010-03-14", "male", "Finn", "Baptiste")  # 16
GUS = Persona("pt-gus", "1958-07-08", "male", "Gus", "Halvorsen")  # 68
HANA = Persona("pt-hana", "1995-02-17", "female", "Hana", "Sato")  # 31


def _draft(patient: Persona, rid: str, drug: tuple[str, str], **kwargs: Any) -> dict[str, Any]:
    return medication_request(patient, rid, drug[0], drug[1], status="draft", **kwargs)


def _pt_in_place(patient: Persona, days_ago: int) -> dict[str, Any]:
    """An active physical-therapy referral: the exercise-therapy card has nothing to add."""
    return service_request(
        patient, "sr-pt", *PT_REFERRAL, status="active", authored_days_ago=days_ago
    )


def _lbp(patient: Persona, onset_days_ago: int, **kwargs: Any) -> dict[str, Any]:
    return condition(patient, "cond-lbp", *LBP, onset_days_ago=onset_days_ago, **kwargs)


class Golden:
    """The golden card shapes, with the suggested orders' codes from the packaged data."""

    def __init__(self) -> None:
        self.topical = orderable_signature(PROJECT, "topical-nsaid")
        self.acetaminophen = orderable_signature(PROJECT, "acetaminophen")
        self.pt_referral = orderable_signature(PROJECT, "physical-therapy-referral")
        self.pain_referral = orderable_signature(PROJECT, "pain-management-referral")

    def opioid(self, ref: str, *, nsaid_unsafe: bool = False) -> Expected:
        alternative = self.acetaminophen if nsaid_unsafe else self.topical
        return Expected(
            "opioid-avoidance", "warning", [[alternative, f"delete {ref}"], [f"delete {ref}"]]
        )

    def imaging(self, ref: str) -> Expected:
        return Expected("imaging-without-red-flags", "warning", [[f"delete {ref}"]])

    @staticmethod
    def red_flags(indicator: str = "warning") -> Expected:
        return Expected("red-flags-present", indicator)

    def topical_first(self, ref: str) -> Expected:
        return Expected("topical-nsaid-first", "info", [[self.topical, f"delete {ref}"]])

    def nsaid_contraindicated(self, ref: str) -> Expected:
        return Expected("nsaid-contraindicated", "warning", [[self.acetaminophen, f"delete {ref}"]])

    def exercise(self) -> Expected:
        return Expected("exercise-therapy", "info", [[self.pt_referral]])

    def chronic(self, *, refer: bool) -> Expected:
        return Expected("chronic-pain-assessment", "info", [[self.pain_referral]] if refer else [])


def core_scenarios(g: Golden) -> list[Scenario]:
    """One scenario per recommendation firing and staying silent."""
    ana, ben, cara, dev, ema = ANA, BEN, CARA, DEV, EMA
    return [
        Scenario(
            name="opioid-tramadol-acute-low-back-pain",
            description="Acute low back pain (10 days); tramadol drafted at signing. Opioid card "
            "replaces it with a topical NSAID; exercise therapy suggested.",
            hook="order-sign",
            patient=ana,
            shows=["opioid avoidance, topical NSAID alternative"],
            conditions=[_lbp(ana, 10)],
            drafts=[_draft(ana, "rx-tramadol", TRAMADOL)],
            expected=[g.opioid("MedicationRequest/rx-tramadol"), g.exercise()],
            tags=["opioid-avoidance", "exercise-therapy"],
        ),
        Scenario(
            name="opioid-combination-thoracic-pain-ckd",
            description="Mid-back pain; oxycodone/acetaminophen drafted; CKD stage 4 makes NSAIDs "
            "unsafe, so the opioid card suggests acetaminophen instead.",
            hook="order-sign",
            patient=ben,
            shows=["opioid avoidance, acetaminophen alternative", CI_CKD],
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
            expected=[g.opioid("MedicationRequest/rx-oxy", nsaid_unsafe=True), g.exercise()],
            tags=["opioid-avoidance", "nsaid contraindication"],
        ),
        Scenario(
            name="opioid-active-cancer-excluded",
            description="Low back pain with active lung cancer: opioid advice does not apply. The "
            "cancer is a red flag instead.",
            hook="order-sign",
            patient=cara,
            shows=[EX_CANCER, RF_CANCER],
            conditions=[
                _lbp(cara, 60),
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
            expected=[g.red_flags()],
            tags=[
                "opioid-avoidance (negative)",
                "red-flags-present",
                "exercise-therapy (negative)",
                "exclusion",
            ],
        ),
        Scenario(
            name="no-back-pain-opioid",
            description="A patient without back pain gets tramadol: the service stays silent.",
            hook="order-sign",
            patient=dev,
            shows=[NO_BACK_PAIN],
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
        ),
        Scenario(
            name="imaging-mri-without-red-flags",
            description="Three weeks of low back pain, 40 years old, no red flags: lumbar MRI "
            "drafted. Imaging card offers to cancel it.",
            hook="order-sign",
            patient=ana,
            shows=["imaging without red flags"],
            conditions=[_lbp(ana, 21)],
            observations=[temperature(ana, "obs-temp", 36.8, "C", 1)],
            drafts=[service_request(ana, "sr-mri", *MRI_LUMBAR, reason=LBP)],
            expected=[g.imaging("ServiceRequest/sr-mri"), g.exercise()],
            tags=["imaging-without-red-flags", "exercise-therapy", "red-flags-present (negative)"],
        ),
        Scenario(
            name="imaging-cauda-equina-critical",
            description="Low back pain with cauda equina syndrome: imaging is appropriate; a "
            "critical red-flag card and no routine advice.",
            hook="order-sign",
            patient=ben,
            shows=[RF_NEURO, "critical red flag holds back routine advice"],
            conditions=[
                _lbp(ben, 4),
                condition(
                    ben, "cond-ces", ICD10, "G83.4", "Cauda equina syndrome", onset_days_ago=1
                ),
            ],
            drafts=[service_request(ben, "sr-mri", *MRI_LUMBAR)],
            expected=[g.red_flags("critical")],
            tags=["red-flags-present", "imaging-without-red-flags (negative)"],
        ),
        Scenario(
            name="imaging-fever-order-select",
            description="Order-select of a thoracic X-ray for mid-back pain with a 38.6 °C "
            "temperature two days ago: fever is a red flag, so no imaging warning.",
            hook="order-select",
            patient=dev,
            shows=[RF_FEVER_C, ORDER_SELECT],
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
            expected=[g.red_flags()],
            tags=["red-flags-present", "order-select", "fever"],
        ),
        Scenario(
            name="imaging-age-over-50-new-pain",
            description="64-year-old with low back pain for two weeks: age over 50 with new pain "
            "is a red flag, so imaging has a place, but plain X-ray with ESR/CRP comes before MRI.",
            hook="order-sign",
            patient=cara,
            shows=[RF_AGE],
            conditions=[_lbp(cara, 14)],
            service_requests=[_pt_in_place(cara, 7)],
            drafts=[service_request(cara, "sr-mri", *MRI_LUMBAR)],
            expected=[g.red_flags()],
            tags=["red-flags-present", "age"],
        ),
        Scenario(
            name="topical-nsaid-first-ibuprofen",
            description="Oral ibuprofen drafted for acute low back pain with no topical NSAID "
            "tried: suggest a topical NSAID first.",
            hook="order-sign",
            patient=dev,
            shows=["topical NSAID first"],
            conditions=[_lbp(dev, 6)],
            drafts=[_draft(dev, "rx-ibuprofen", IBUPROFEN)],
            expected=[g.topical_first("MedicationRequest/rx-ibuprofen"), g.exercise()],
            tags=["topical-nsaid-first", "nsaid-contraindicated (negative)"],
        ),
        Scenario(
            name="topical-nsaid-already-tried",
            description="Naproxen drafted after a diclofenac gel course last month: no topical "
            "NSAID card.",
            hook="order-sign",
            patient=ema,
            shows=[TREATMENT_IN_PLACE, MESSY_TEXT_ONLY],
            conditions=[_lbp(ema, 20)],
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
            service_requests=[_pt_in_place(ema, 10)],
            drafts=[_draft(ema, "rx-naproxen", NAPROXEN)],
            expected=[],
            tags=["topical-nsaid-first (negative)", "exercise-therapy (negative)"],
        ),
        Scenario(
            name="nsaid-contraindicated-warfarin",
            description="Ibuprofen drafted for a patient on warfarin: replace with acetaminophen.",
            hook="order-sign",
            patient=ema,
            shows=[CI_ANTICOAGULANT],
            conditions=[_lbp(ema, 9)],
            medications=[
                medication_request(
                    ema, "rx-warfarin", *WARFARIN, status="active", authored_days_ago=300
                )
            ],
            drafts=[_draft(ema, "rx-ibuprofen", IBUPROFEN)],
            expected=[g.nsaid_contraindicated("MedicationRequest/rx-ibuprofen"), g.exercise()],
            tags=["nsaid-contraindicated", "topical-nsaid-first (negative)"],
        ),
        Scenario(
            name="antidepressant-axial-pain",
            description="Amitriptyline drafted for axial low back pain with no depression, anxiety "
            "or neuropathic diagnosis: advise against it.",
            hook="order-sign",
            patient=ben,
            shows=["antidepressant for axial pain"],
            conditions=[_lbp(ben, 15)],
            service_requests=[_pt_in_place(ben, 5)],
            drafts=[_draft(ben, "rx-amitriptyline", AMITRIPTYLINE)],
            expected=[
                Expected(
                    "avoid-antidepressant",
                    "warning",
                    [["delete MedicationRequest/rx-amitriptyline"]],
                )
            ],
            tags=["avoid-antidepressant"],
        ),
        Scenario(
            name="antidepressant-with-depression",
            description="Sertraline drafted for a back-pain patient with major depression: "
            "appropriate, no card.",
            hook="order-sign",
            patient=ana,
            shows=["antidepressant with its own indication"],
            conditions=[
                _lbp(ana, 15),
                condition(
                    ana,
                    "cond-mdd",
                    ICD10,
                    "F32.1",
                    "Major depressive disorder, single episode, moderate",
                    onset_days_ago=40,
                ),
            ],
            service_requests=[_pt_in_place(ana, 5)],
            drafts=[_draft(ana, "rx-sertraline", SERTRALINE)],
            expected=[],
            tags=["avoid-antidepressant (negative)"],
        ),
        Scenario(
            name="glucosamine-text-only",
            description="Glucosamine/chondroitin drafted as text only (no code): advise against.",
            hook="order-sign",
            patient=dev,
            shows=[MESSY_TEXT_ONLY],
            conditions=[_lbp(dev, 8)],
            service_requests=[_pt_in_place(dev, 3)],
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
        ),
        Scenario(
            name="glucosamine-without-back-pain",
            description="Glucosamine drafted for knee osteoarthritis, no back pain: this service "
            "has nothing to say.",
            hook="order-sign",
            patient=ema,
            shows=[NO_BACK_PAIN],
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
        ),
        Scenario(
            name="spinal-injection-axial-pain",
            description="Lumbar epidural steroid injection drafted for axial low back pain without "
            "radiculopathy: advise against it.",
            hook="order-sign",
            patient=cara,
            shows=["spinal injection for axial pain"],
            conditions=[_lbp(cara, 100)],
            service_requests=[_pt_in_place(cara, 30)],
            drafts=[service_request(cara, "sr-epidural", *EPIDURAL)],
            expected=[
                Expected(
                    "avoid-spinal-injection", "warning", [["delete ServiceRequest/sr-epidural"]]
                ),
                g.chronic(refer=True),
            ],
            tags=["avoid-spinal-injection", "chronic-pain-assessment"],
        ),
        Scenario(
            name="spinal-injection-with-radiculopathy",
            description="Facet injection drafted for a patient with lumbar radiculopathy: not "
            "axial pain, so no injection card.",
            hook="order-sign",
            patient=ben,
            shows=["spinal injection with radiculopathy"],
            conditions=[
                _lbp(ben, 20),
                condition(
                    ben,
                    "cond-radic",
                    ICD10,
                    "M54.16",
                    "Radiculopathy, lumbar region",
                    onset_days_ago=20,
                ),
            ],
            service_requests=[_pt_in_place(ben, 10)],
            drafts=[service_request(ben, "sr-facet", *FACET)],
            expected=[],
            tags=["avoid-spinal-injection (negative)"],
        ),
        Scenario(
            name="patient-view-chronic-pain-16-weeks",
            description="Chart opened for low back pain of 16 weeks: chronic-pain assessment "
            "with a multidisciplinary referral, and exercise therapy.",
            hook="patient-view",
            patient=ema,
            shows=[PATIENT_VIEW, "chronic pain: multidisciplinary referral"],
            conditions=[_lbp(ema, 112)],
            expected=[g.chronic(refer=True), g.exercise()],
            tags=["patient-view", "chronic-pain-assessment", "exercise-therapy"],
        ),
        Scenario(
            name="patient-view-subacute-pain-6-weeks",
            description="Mid-back pain for 6 weeks: psychosocial assessment advised, referral not "
            "yet; physical therapy already under way.",
            hook="patient-view",
            patient=dev,
            shows=[PATIENT_VIEW, TREATMENT_IN_PLACE],
            conditions=[condition(dev, "cond-thoracic", *THORACIC, onset_days_ago=42)],
            service_requests=[_pt_in_place(dev, 14)],
            expected=[g.chronic(refer=False)],
            tags=["patient-view", "chronic-pain-assessment", "exercise-therapy (negative)"],
        ),
        Scenario(
            name="patient-view-acute-pain-in-therapy",
            description="Acute low back pain (5 days) already referred to physical therapy: "
            "nothing to add.",
            hook="patient-view",
            patient=ana,
            shows=[PATIENT_VIEW, TREATMENT_IN_PLACE],
            conditions=[_lbp(ana, 5)],
            service_requests=[_pt_in_place(ana, 2)],
            expected=[],
            tags=[
                "patient-view",
                "chronic-pain-assessment (negative)",
                "exercise-therapy (negative)",
            ],
        ),
        Scenario(
            name="patient-view-red-flag-osteoporosis",
            description="Chart of a 64-year-old with 7 weeks of low back pain and osteoporosis: "
            "red-flag card (X-ray for compression fracture); routine exercise and chronic-pain "
            "advice wait until the red flag is worked up.",
            hook="patient-view",
            patient=cara,
            shows=[PATIENT_VIEW, RF_OSTEOPOROSIS],
            conditions=[
                _lbp(cara, 50),
                condition(
                    cara,
                    "cond-osteo",
                    ICD10,
                    "M81.0",
                    "Age-related osteoporosis without current pathological fracture",
                    onset_days_ago=700,
                ),
            ],
            expected=[g.red_flags()],
            tags=[
                "patient-view",
                "red-flags-present",
                "exercise-therapy (negative)",
                "osteoporosis",
            ],
        ),
        Scenario(
            name="order-select-only-selection-evaluated",
            description="Tramadol and ibuprofen both drafted; only ibuprofen is selected, so only "
            "the NSAID advice fires.",
            hook="order-select",
            patient=ana,
            shows=[ORDER_SELECT],
            conditions=[_lbp(ana, 3)],
            drafts=[_draft(ana, "rx-tramadol", TRAMADOL), _draft(ana, "rx-ibuprofen", IBUPROFEN)],
            selections=["MedicationRequest/rx-ibuprofen"],
            expected=[g.topical_first("MedicationRequest/rx-ibuprofen"), g.exercise()],
            tags=["order-select", "topical-nsaid-first"],
        ),
    ]


def red_flag_scenarios(g: Golden) -> list[Scenario]:
    """Every kind of red flag, and look-alikes that are not red flags."""
    ana, ben, dev, ema, gus, hana = ANA, BEN, DEV, EMA, GUS, HANA
    return [
        Scenario(
            name="red-flag-fever-fahrenheit",
            description="Lumbar MRI drafted for 10 days of low back pain with 101.5 °F (38.6 °C) "
            "measured yesterday: fever is a red flag, so no imaging warning.",
            hook="order-sign",
            patient=dev,
            shows=[RF_FEVER_F],
            conditions=[_lbp(dev, 10)],
            observations=[temperature(dev, "obs-temp", 101.5, "F", 1)],
            drafts=[service_request(dev, "sr-mri", *MRI_LUMBAR, reason=LBP)],
            expected=[g.red_flags()],
            tags=[
                "red-flags-present",
                "imaging-without-red-flags (negative)",
                "exercise-therapy (negative)",
            ],
        ),
        Scenario(
            name="fever-outside-window-imaging",
            description="A 38.4 °C temperature 12 days ago and a normal one yesterday: outside "
            "the 7-day window, so no red flag and the MRI gets the imaging warning.",
            hook="order-sign",
            patient=hana,
            shows=[NOT_A_RED_FLAG, "fever older than 7 days"],
            conditions=[_lbp(hana, 20)],
            observations=[
                temperature(hana, "obs-temp-old", 38.4, "C", 12),
                temperature(hana, "obs-temp-new", 36.9, "C", 1),
            ],
            service_requests=[_pt_in_place(hana, 10)],
            drafts=[service_request(hana, "sr-mri", *MRI_LUMBAR)],
            expected=[g.imaging("ServiceRequest/sr-mri")],
            tags=["imaging-without-red-flags", "red-flags-present (negative)"],
        ),
        Scenario(
            name="red-flag-fever-diagnosis-opioid",
            description="Tramadol drafted for 6 days of low back pain with a fever diagnosis two "
            "days ago: the opioid card and a red-flag card.",
            hook="order-sign",
            patient=ben,
            shows=[RF_FEVER_DX],
            conditions=[
                _lbp(ben, 6),
                condition(
                    ben, "cond-fever", ICD10, "R50.9", "Fever, unspecified", onset_days_ago=2
                ),
            ],
            drafts=[_draft(ben, "rx-tramadol", TRAMADOL)],
            expected=[g.opioid("MedicationRequest/rx-tramadol"), g.red_flags()],
            tags=["opioid-avoidance", "red-flags-present", "exercise-therapy (negative)"],
        ),
        Scenario(
            name="red-flag-iv-drug-use-xray",
            description="Lumbosacral X-ray drafted for a patient recorded as an intravenous drug "
            "user this year: red flag (spinal infection risk), no imaging warning.",
            hook="order-sign",
            patient=hana,
            shows=[RF_IV_DRUGS],
            conditions=[
                _lbp(hana, 9),
                condition(
                    hana,
                    "cond-ivdu",
                    SNOMED,
                    "228388006",
                    "Intravenous drug user (finding)",
                    onset_days_ago=200,
                ),
            ],
            service_requests=[_pt_in_place(hana, 4)],
            drafts=[service_request(hana, "sr-xray", *XRAY_LUMBOSACRAL)],
            expected=[g.red_flags()],
            tags=["red-flags-present", "imaging-without-red-flags (negative)"],
        ),
        Scenario(
            name="red-flag-hiv-patient-view",
            description="Chart of a patient with HIV disease and 30 days of low back pain: "
            "red-flag card (look for infection); routine exercise and chronic-pain advice wait.",
            hook="patient-view",
            patient=ema,
            shows=[RF_HIV, PATIENT_VIEW],
            conditions=[
                _lbp(ema, 30),
                condition(
                    ema,
                    "cond-hiv",
                    ICD10,
                    "B20",
                    "Human immunodeficiency virus [HIV] disease",
                    onset_days_ago=3000,
                ),
            ],
            expected=[g.red_flags()],
            tags=[
                "patient-view",
                "red-flags-present",
                "exercise-therapy (negative)",
                "chronic-pain-assessment (negative)",
            ],
        ),
        Scenario(
            name="red-flag-kidney-transplant-mri",
            description="Lumbar MRI drafted for a kidney-transplant recipient (a Procedure, no "
            "status diagnosis): immunosuppression red flag, no imaging warning.",
            hook="order-sign",
            patient=ben,
            shows=[RF_TRANSPLANT],
            conditions=[_lbp(ben, 15)],
            procedures=[
                procedure(
                    ben,
                    "proc-kidney-tx",
                    SNOMED,
                    "70536003",
                    "Transplant of kidney (procedure)",
                    1500,
                )
            ],
            service_requests=[_pt_in_place(ben, 8)],
            drafts=[service_request(ben, "sr-mri", *MRI_LUMBAR)],
            expected=[g.red_flags()],
            tags=["red-flags-present", "imaging-without-red-flags (negative)"],
        ),
        Scenario(
            name="red-flag-long-term-steroids-mri",
            description="Lumbar MRI drafted for a patient on prednisone for five months: long-term "
            "systemic corticosteroids are a red flag, no imaging warning.",
            hook="order-sign",
            patient=ana,
            shows=[RF_STEROIDS],
            conditions=[_lbp(ana, 12)],
            medications=[
                medication_request(
                    ana, "rx-prednisone", *PREDNISONE, status="active", authored_days_ago=150
                )
            ],
            service_requests=[_pt_in_place(ana, 6)],
            drafts=[service_request(ana, "sr-mri", *MRI_LUMBAR)],
            expected=[g.red_flags()],
            tags=["red-flags-present", "imaging-without-red-flags (negative)"],
        ),
        Scenario(
            name="steroid-short-course-imaging",
            description="A finished 30-day-old prednisone course is not long-term steroid use: no "
            "red flag, so the MRI gets the imaging warning.",
            hook="order-sign",
            patient=dev,
            shows=[NOT_A_RED_FLAG, "short steroid course"],
            conditions=[_lbp(dev, 14)],
            medications=[
                medication_request(
                    dev, "rx-prednisone", *PREDNISONE, status="completed", authored_days_ago=30
                )
            ],
            service_requests=[_pt_in_place(dev, 6)],
            drafts=[service_request(dev, "sr-mri", *MRI_LUMBAR)],
            expected=[g.imaging("ServiceRequest/sr-mri")],
            tags=["imaging-without-red-flags", "red-flags-present (negative)"],
        ),
        Scenario(
            name="red-flag-spinal-infection-critical",
            description="Chart of a patient with lumbar vertebral osteomyelitis diagnosed 20 days "
            "ago: a critical red-flag card and no routine advice.",
            hook="patient-view",
            patient=gus,
            shows=[RF_INFECTION, PATIENT_VIEW, "critical red flag holds back routine advice"],
            conditions=[
                _lbp(gus, 60),
                condition(
                    gus,
                    "cond-osteomyelitis",
                    ICD10,
                    "M46.26",
                    "Osteomyelitis of vertebra, lumbar region",
                    onset_days_ago=20,
                ),
            ],
            expected=[g.red_flags("critical")],
            tags=[
                "patient-view",
                "red-flags-present",
                "exercise-therapy (negative)",
                "chronic-pain-assessment (negative)",
            ],
        ),
        Scenario(
            name="red-flag-cancer-history-opioid-mri",
            description="Tramadol and a lumbar MRI drafted for a patient with a personal history "
            "of breast cancer: history is a red flag (no imaging warning) but not active cancer "
            "(the opioid card still applies).",
            hook="order-sign",
            patient=ema,
            shows=[RF_CANCER],
            conditions=[
                _lbp(ema, 8),
                condition(
                    ema,
                    "cond-hx-breast-ca",
                    ICD10,
                    "Z85.3",
                    "Personal history of malignant neoplasm of breast",
                    onset_days_ago=2000,
                ),
            ],
            drafts=[
                _draft(ema, "rx-tramadol", TRAMADOL),
                service_request(ema, "sr-mri", *MRI_LUMBAR),
            ],
            expected=[g.opioid("MedicationRequest/rx-tramadol"), g.red_flags()],
            tags=[
                "opioid-avoidance",
                "red-flags-present",
                "exercise-therapy (negative)",
                "imaging-without-red-flags (negative)",
            ],
        ),
        Scenario(
            name="red-flag-weight-loss-coded",
            description="Chart of a patient with 5 weeks of low back pain and abnormal weight loss "
            "recorded 40 days ago: red-flag card (X-ray and ESR/CRP first); routine advice waits.",
            hook="patient-view",
            patient=ema,
            shows=[RF_WEIGHT_CODED, PATIENT_VIEW],
            conditions=[
                _lbp(ema, 35),
                condition(
                    ema,
                    "cond-weight-loss",
                    ICD10,
                    "R63.4",
                    "Abnormal weight loss",
                    onset_days_ago=40,
                ),
            ],
            expected=[g.red_flags()],
            tags=["patient-view", "red-flags-present", "exercise-therapy (negative)"],
        ),
        Scenario(
            name="red-flag-weight-loss-measured",
            description="Lumbar MRI drafted; body weight fell from 84.0 kg six months ago to "
            "78.5 kg this week (6.5 %): measured weight loss is a red flag.",
            hook="order-sign",
            patient=ben,
            shows=[RF_WEIGHT_MEASURED],
            conditions=[_lbp(ben, 18)],
            observations=[
                weight(ben, "obs-weight-before", 84.0, 180),
                weight(ben, "obs-weight-now", 78.5, 3),
            ],
            service_requests=[_pt_in_place(ben, 9)],
            drafts=[service_request(ben, "sr-mri", *MRI_LUMBAR)],
            expected=[g.red_flags()],
            tags=["red-flags-present", "imaging-without-red-flags (negative)"],
        ),
        Scenario(
            name="weight-loss-under-5-percent-imaging",
            description="Weights recorded in pounds, 136.7 lb five months ago and 133.4 lb now "
            "(2.4 %): not a red flag, so the MRI gets the imaging warning.",
            hook="order-sign",
            patient=hana,
            shows=[NOT_A_RED_FLAG, "weight loss under 5 %", MESSY_POUNDS],
            conditions=[_lbp(hana, 16)],
            observations=[
                weight(hana, "obs-weight-before", 136.7, 150, unit="[lb_av]"),
                weight(hana, "obs-weight-now", 133.4, 2, unit="[lb_av]"),
            ],
            service_requests=[_pt_in_place(hana, 7)],
            drafts=[service_request(hana, "sr-mri", *MRI_LUMBAR)],
            expected=[g.imaging("ServiceRequest/sr-mri")],
            tags=["imaging-without-red-flags", "red-flags-present (negative)"],
        ),
        Scenario(
            name="red-flag-spinal-fracture-xray",
            description="Lumbosacral X-ray drafted three weeks after a wedge compression fracture "
            "of L1: recent spinal fracture is a red flag, no imaging warning.",
            hook="order-sign",
            patient=dev,
            shows=[RF_FRACTURE],
            conditions=[
                _lbp(dev, 20),
                condition(
                    dev,
                    "cond-l1-fracture",
                    ICD10,
                    "S32.010A",
                    "Wedge compression fracture of first lumbar vertebra, initial encounter for "
                    "closed fracture",
                    onset_days_ago=20,
                ),
            ],
            service_requests=[_pt_in_place(dev, 5)],
            drafts=[service_request(dev, "sr-xray", *XRAY_LUMBOSACRAL)],
            expected=[g.red_flags()],
            tags=["red-flags-present", "imaging-without-red-flags (negative)"],
        ),
    ]


def exclusion_and_contraindication_scenarios(g: Golden) -> list[Scenario]:
    ben, cara, dev, hana = BEN, CARA, DEV, HANA
    return [
        Scenario(
            name="opioid-hospice-excluded",
            description="Oxycodone/acetaminophen drafted for a patient admitted to hospice 20 "
            "days ago: opioid advice does not apply, nor does rehabilitation advice.",
            hook="order-sign",
            patient=ben,
            shows=[EX_HOSPICE],
            conditions=[_lbp(ben, 10)],
            procedures=[
                procedure(
                    ben, "proc-hospice", SNOMED, "305336008", "Admission to hospice (procedure)", 20
                )
            ],
            drafts=[_draft(ben, "rx-oxy", OXY_APAP)],
            expected=[],
            tags=["opioid-avoidance (negative)", "exclusion", "exercise-therapy (negative)"],
        ),
        Scenario(
            name="opioid-sickle-cell-excluded",
            description="Oxycodone/acetaminophen drafted for a patient with sickle cell disease: "
            "opioid advice does not apply; physical therapy already under way.",
            hook="order-sign",
            patient=hana,
            shows=[EX_SICKLE],
            conditions=[
                _lbp(hana, 7),
                condition(
                    hana,
                    "cond-sickle",
                    ICD10,
                    "D57.1",
                    "Sickle-cell disease without crisis",
                    onset_days_ago=10000,
                ),
            ],
            service_requests=[_pt_in_place(hana, 3)],
            drafts=[_draft(hana, "rx-oxy", OXY_APAP)],
            expected=[],
            tags=["opioid-avoidance (negative)", "exclusion"],
        ),
        Scenario(
            name="nsaid-contraindicated-ckd-stage-5",
            description="Naproxen drafted for 8 weeks of low back pain in CKD stage 5: replace "
            "with acetaminophen (no topical-first card); psychosocial assessment due.",
            hook="order-sign",
            patient=cara,
            shows=[CI_CKD],
            conditions=[
                _lbp(cara, 60),
                condition(
                    cara,
                    "cond-ckd",
                    ICD10,
                    "N18.5",
                    "Chronic kidney disease, stage 5",
                    onset_days_ago=400,
                ),
            ],
            service_requests=[_pt_in_place(cara, 20)],
            drafts=[_draft(cara, "rx-naproxen", NAPROXEN)],
            expected=[
                g.nsaid_contraindicated("MedicationRequest/rx-naproxen"),
                g.chronic(refer=False),
            ],
            tags=["nsaid-contraindicated", "topical-nsaid-first (negative)"],
        ),
        Scenario(
            name="nsaid-contraindicated-gi-bleed",
            description="Ibuprofen drafted for a patient with a bleeding gastric ulcer: replace "
            "with acetaminophen.",
            hook="order-sign",
            patient=dev,
            shows=[CI_GI],
            conditions=[
                _lbp(dev, 5),
                condition(
                    dev,
                    "cond-ulcer",
                    ICD10,
                    "K25.4",
                    "Chronic or unspecified gastric ulcer with hemorrhage",
                    onset_days_ago=300,
                ),
            ],
            drafts=[_draft(dev, "rx-ibuprofen", IBUPROFEN)],
            expected=[g.nsaid_contraindicated("MedicationRequest/rx-ibuprofen"), g.exercise()],
            tags=["nsaid-contraindicated", "topical-nsaid-first (negative)"],
        ),
        Scenario(
            name="nsaid-contraindicated-heart-failure",
            description="Naproxen drafted for a patient with chronic systolic heart failure: "
            "replace with acetaminophen.",
            hook="order-sign",
            patient=ben,
            shows=[CI_HEART_FAILURE],
            conditions=[
                _lbp(ben, 9),
                condition(
                    ben,
                    "cond-hf",
                    ICD10,
                    "I50.22",
                    "Chronic systolic (congestive) heart failure",
                    onset_days_ago=800,
                ),
            ],
            service_requests=[_pt_in_place(ben, 4)],
            drafts=[_draft(ben, "rx-naproxen", NAPROXEN)],
            expected=[g.nsaid_contraindicated("MedicationRequest/rx-naproxen")],
            tags=["nsaid-contraindicated", "topical-nsaid-first (negative)"],
        ),
    ]


def context_scenarios(g: Golden) -> list[Scenario]:
    """Who the advice is for, and what the hook reviews."""
    ana, ben, dev, finn, hana = ANA, BEN, DEV, FINN, HANA
    return [
        Scenario(
            name="minor-opioid-no-advice",
            description="Tramadol drafted for a 16-year-old with low back pain: the guideline is "
            "for adults, so the service stays silent.",
            hook="order-sign",
            patient=finn,
            shows=[MINOR],
            conditions=[_lbp(finn, 5)],
            drafts=[_draft(finn, "rx-tramadol", TRAMADOL)],
            expected=[],
            tags=["opioid-avoidance (negative)", "negative"],
        ),
        Scenario(
            name="patient-view-refuted-back-pain",
            description="Chart whose only back-pain diagnosis was refuted: no back pain, no cards.",
            hook="patient-view",
            patient=hana,
            shows=[PATIENT_VIEW, NO_BACK_PAIN],
            conditions=[_lbp(hana, 40, verification="refuted")],
            expected=[],
            tags=["patient-view", "negative", "exercise-therapy (negative)"],
        ),
        Scenario(
            name="back-pain-from-order-reason-only",
            description="Naproxen drafted with low back pain as its reason and no back-pain "
            "Condition on file (conditions prefetch null): topical NSAID first, exercise therapy.",
            hook="order-sign",
            patient=dev,
            shows=[BACK_PAIN_BY_REASON, MESSY_NULL_PREFETCH],
            drafts=[_draft(dev, "rx-naproxen", NAPROXEN, reason=LBP)],
            expected=[g.topical_first("MedicationRequest/rx-naproxen"), g.exercise()],
            tags=["topical-nsaid-first", "exercise-therapy"],
        ),
        Scenario(
            name="patient-view-pain-referral-in-place",
            description="Low back pain for 17 weeks with an active pain-management referral and "
            "physical therapy: chronic-pain card without a second referral.",
            hook="patient-view",
            patient=ben,
            shows=[PATIENT_VIEW, TREATMENT_IN_PLACE],
            conditions=[_lbp(ben, 120)],
            service_requests=[
                _pt_in_place(ben, 60),
                service_request(
                    ben, "sr-pain-ref", *PAIN_REFERRAL, status="active", authored_days_ago=30
                ),
            ],
            expected=[g.chronic(refer=False)],
            tags=["patient-view", "chronic-pain-assessment", "exercise-therapy (negative)"],
        ),
        Scenario(
            name="order-select-unrelated-selection",
            description="Tramadol and lisinopril drafted; only lisinopril is selected, and it has "
            "nothing to do with back pain: no cards (tramadol waits for its own selection).",
            hook="order-select",
            patient=ana,
            shows=[ORDER_SELECT],
            conditions=[_lbp(ana, 4)],
            drafts=[
                _draft(ana, "rx-tramadol", TRAMADOL),
                _draft(ana, "rx-lisinopril", LISINOPRIL),
            ],
            selections=["MedicationRequest/rx-lisinopril"],
            expected=[],
            tags=["order-select", "opioid-avoidance (negative)"],
        ),
    ]


def _sandbox_shape(request: dict[str, Any]) -> None:
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


def _drafted_medication_in_bundle(request: dict[str, Any]) -> None:
    # The drafted drug is a Medication resource next to the order in draftOrders.
    request["context"]["draftOrders"]["entry"].append(
        {"resource": medication("med-hydrocodone", *HYDROCODONE_APAP)}
    )


def _unknown_resource_types(request: dict[str, Any]) -> None:
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


def _malformed_condition(request: dict[str, Any]) -> None:
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


def _null_prefetch(request: dict[str, Any]) -> None:
    # Every key the client asked for but found nothing under, the patient included.
    for key in ("patient", "medications", "observations", "procedures", "servicerequests"):
        request["prefetch"][key] = None


def messy_scenarios(g: Golden) -> list[Scenario]:
    ana, ben, dev, ema, hana = ANA, BEN, DEV, EMA, HANA
    return [
        Scenario(
            name="messy-sandbox-shape-opioid",
            description="Sandbox-style draft: no Bundle.type, MedicationRequest.category as an "
            "object, no intent, drug in a contained Medication: the opioid is still recognised.",
            hook="order-sign",
            patient=ben,
            shows=[MESSY_SANDBOX],
            conditions=[_lbp(ben, 2, clinical=None)],
            service_requests=[_pt_in_place(ben, 1)],
            drafts=[_draft(ben, "rx-tramadol", TRAMADOL)],
            expected=[g.opioid("MedicationRequest/rx-tramadol")],
            mutate=_sandbox_shape,
            tags=["messy input", "opioid-avoidance"],
        ),
        Scenario(
            name="messy-medication-reference-bundle",
            description="Hydrocodone drafted as a medicationReference to a Medication in "
            "draftOrders; apixaban on file as a medicationReference to an _include'd Medication: "
            "opioid card with acetaminophen (anticoagulant) as the alternative.",
            hook="order-sign",
            patient=ema,
            shows=[MESSY_MEDICATION_REFERENCE, CI_ANTICOAGULANT],
            conditions=[_lbp(ema, 7)],
            medications=[
                medication("med-apixaban", *APIXABAN),
                medication_request_by_reference(
                    ema, "rx-apixaban", "med-apixaban", authored_days_ago=200
                ),
            ],
            drafts=[
                {
                    "resourceType": "MedicationRequest",
                    "id": "rx-hydrocodone",
                    "status": "draft",
                    "intent": "order",
                    "medicationReference": {"reference": "Medication/med-hydrocodone"},
                    "subject": {"reference": ema.reference},
                    "authoredOn": EVALUATION_DATE.isoformat(),
                }
            ],
            expected=[
                g.opioid("MedicationRequest/rx-hydrocodone", nsaid_unsafe=True),
                g.exercise(),
            ],
            mutate=_drafted_medication_in_bundle,
            tags=["messy input", "opioid-avoidance", "exercise-therapy"],
        ),
        Scenario(
            name="messy-oid-systems-undotted-icd10",
            description="Back pain coded with the ICD-10-CM OID and an undotted code (M5450), "
            "tramadol with the RxNorm OID: both recognised, opioid card.",
            hook="order-sign",
            patient=ben,
            shows=[MESSY_OID, MESSY_UNDOTTED],
            conditions=[
                condition(
                    ben,
                    "cond-lbp",
                    ICD10_OID,
                    "M5450",
                    "Low back pain, unspecified",
                    onset_days_ago=3,
                )
            ],
            service_requests=[_pt_in_place(ben, 2)],
            drafts=[
                medication_request(ben, "rx-tramadol", *TRAMADOL, status="draft", system=RXNORM_OID)
            ],
            expected=[g.opioid("MedicationRequest/rx-tramadol")],
            tags=["messy input", "opioid-avoidance"],
        ),
        Scenario(
            name="messy-text-only-imaging",
            description="An MRI drafted with no code at all, only the text 'MRI L-spine w/o "
            "contrast': recognised as spine imaging, imaging warning.",
            hook="order-sign",
            patient=ema,
            shows=[MESSY_TEXT_ONLY],
            conditions=[_lbp(ema, 25)],
            service_requests=[_pt_in_place(ema, 12)],
            drafts=[service_request(ema, "sr-mri-text", None, None, "MRI L-spine w/o contrast")],
            expected=[g.imaging("ServiceRequest/sr-mri-text")],
            tags=["messy input", "imaging-without-red-flags", "text fallback"],
        ),
        Scenario(
            name="messy-unknown-resource-types",
            description="Prefetch holds a DSTU2 MedicationOrder (warfarin), a search-outcome "
            "OperationOutcome and a Basic resource: all ignored, so ibuprofen gets the "
            "topical-first card (no anticoagulant is known).",
            hook="order-sign",
            patient=dev,
            shows=[MESSY_UNKNOWN_TYPES],
            conditions=[_lbp(dev, 11)],
            drafts=[_draft(dev, "rx-ibuprofen", IBUPROFEN)],
            expected=[g.topical_first("MedicationRequest/rx-ibuprofen"), g.exercise()],
            mutate=_unknown_resource_types,
            tags=["messy input", "topical-nsaid-first"],
        ),
        Scenario(
            name="messy-malformed-resource-skipped",
            description="conditions entry[2] is an older back-pain Condition with onsetDateTime "
            "'last spring' (not a FHIR dateTime): skipped, so the pain counts as acute; naproxen "
            "gets the topical-first card and no chronic-pain card.",
            hook="order-sign",
            patient=ana,
            shows=[MESSY_MALFORMED],
            conditions=[
                _lbp(ana, 6),
                condition(
                    ana,
                    "cond-htn",
                    ICD10,
                    "I10",
                    "Essential (primary) hypertension",
                    onset_days_ago=1200,
                ),
            ],
            drafts=[_draft(ana, "rx-naproxen", NAPROXEN)],
            expected=[g.topical_first("MedicationRequest/rx-naproxen"), g.exercise()],
            mutate=_malformed_condition,
            tags=["messy input", "topical-nsaid-first", "chronic-pain-assessment (negative)"],
        ),
        Scenario(
            name="messy-null-prefetch-keys",
            description="Patient-view where every prefetch key but conditions is null (asked, "
            "nothing found), the Patient included: seven weeks of back pain still get exercise "
            "therapy and a psychosocial assessment.",
            hook="patient-view",
            patient=hana,
            shows=[MESSY_NULL_PREFETCH, PATIENT_VIEW],
            conditions=[_lbp(hana, 50)],
            expected=[g.exercise(), g.chronic(refer=False)],
            mutate=_null_prefetch,
            tags=["patient-view", "exercise-therapy", "chronic-pain-assessment"],
        ),
    ]


def card_fit_scenarios(g: Golden) -> list[Scenario]:
    """Cards that must fit the patient: red flags named by what they are, advice held back
    while they are worked up, exclusions however the record codes them."""
    ana, ben, cara, dev, ema, gus = ANA, BEN, CARA, DEV, EMA, GUS
    return [
        Scenario(
            name="red-flag-trauma-rib-fractures-xray",
            description="Lumbar X-ray drafted for 12 days of low back pain three weeks after a "
            "road accident that broke several ribs (no spinal fracture coded): a red-flag card "
            "for significant trauma, no imaging warning, no routine advice.",
            hook="order-sign",
            patient=ben,
            shows=[RF_TRAUMA],
            conditions=[
                _lbp(ben, 12),
                condition(
                    ben,
                    "cond-rib-fractures",
                    ICD10,
                    "S22.41XA",
                    "Multiple fractures of ribs, right side, initial encounter for closed fracture",
                    onset_days_ago=21,
                    category="encounter-diagnosis",
                ),
            ],
            drafts=[service_request(ben, "sr-xray", *XRAY_LUMBOSACRAL)],
            expected=[g.red_flags()],
            tags=[
                "red-flags-present",
                "imaging-without-red-flags (negative)",
                "exercise-therapy (negative)",
            ],
        ),
        Scenario(
            name="opioid-snomed-lung-cancer-excluded",
            description="Tramadol drafted for 9 days of low back pain in a patient whose active "
            "lung cancer is on the problem list in SNOMED CT only: no opioid card (cancer pain "
            "follows other guidance), a red-flag card for active cancer, no routine advice.",
            hook="order-sign",
            patient=ema,
            shows=[EX_CANCER, RF_ACTIVE_CANCER_SNOMED],
            conditions=[
                _lbp(ema, 9),
                condition(
                    ema,
                    "cond-lung-cancer",
                    SNOMED,
                    "363358000",
                    "Malignant tumor of lung (disorder)",
                    onset_days_ago=120,
                ),
            ],
            drafts=[_draft(ema, "rx-tramadol", TRAMADOL)],
            expected=[g.red_flags()],
            tags=[
                "opioid-avoidance (negative)",
                "red-flags-present",
                "exercise-therapy (negative)",
            ],
        ),
        Scenario(
            name="red-flag-age-with-pt-referral",
            description="Physical-therapy referral drafted for a 64-year-old with 10 days of new "
            "low back pain: the red-flag card asks for X-ray and ESR/CRP first; no exercise "
            "card while the red flag is worked up.",
            hook="order-sign",
            patient=cara,
            shows=[RF_AGE],
            conditions=[_lbp(cara, 10)],
            drafts=[service_request(cara, "sr-pt-new", *PT_REFERRAL)],
            expected=[g.red_flags()],
            tags=["red-flags-present", "exercise-therapy (negative)"],
        ),
        Scenario(
            name="patient-view-known-spinal-infection",
            description="Chart of a patient with lumbar vertebral osteomyelitis diagnosed 4 "
            "months ago and low back pain: the red-flag card names the infection as known "
            "(review its treatment), not as an emergency to rule out.",
            hook="patient-view",
            patient=gus,
            shows=[RF_INFECTION, RF_KNOWN, PATIENT_VIEW],
            conditions=[
                _lbp(gus, 150),
                condition(
                    gus,
                    "cond-osteomyelitis",
                    ICD10,
                    "M46.26",
                    "Osteomyelitis of vertebra, lumbar region",
                    onset_days_ago=120,
                ),
            ],
            expected=[g.red_flags("warning")],
            tags=[
                "patient-view",
                "red-flags-present",
                "exercise-therapy (negative)",
                "chronic-pain-assessment (negative)",
            ],
        ),
        Scenario(
            name="red-flag-fever-iv-drug-use-critical",
            description="Lumbar MRI drafted for 5 days of low back pain with a temperature of "
            "38.9 °C yesterday in an intravenous drug user: suspected spinal infection, a "
            "critical card asking for same-day evaluation.",
            hook="order-sign",
            patient=dev,
            shows=[RF_SUSPECTED_INFECTION, RF_FEVER_C, RF_IV_DRUGS],
            conditions=[
                _lbp(dev, 5),
                condition(
                    dev,
                    "cond-ivdu",
                    SNOMED,
                    "228388006",
                    "Intravenous drug user (finding)",
                    onset_days_ago=300,
                ),
            ],
            observations=[temperature(dev, "obs-temp", 38.9, "C", 1)],
            drafts=[service_request(dev, "sr-mri", *MRI_LUMBAR)],
            expected=[g.red_flags("critical")],
            tags=[
                "red-flags-present",
                "imaging-without-red-flags (negative)",
                "exercise-therapy (negative)",
            ],
        ),
        Scenario(
            name="opioid-extended-release-tramadol",
            description="Extended-release tramadol drafted for 20 days of low back pain: the "
            "opioid card also says an extended-release opioid is never a way to start.",
            hook="order-sign",
            patient=ana,
            shows=["opioid avoidance, topical NSAID alternative", EXTENDED_RELEASE],
            conditions=[_lbp(ana, 20)],
            drafts=[
                _draft(
                    ana,
                    "rx-tramadol-er",
                    ("833709", "24 HR tramadol hydrochloride 100 MG Extended Release Oral Tablet"),
                )
            ],
            expected=[g.opioid("MedicationRequest/rx-tramadol-er"), g.exercise()],
            tags=["opioid-avoidance", "exercise-therapy"],
        ),
    ]


def scenarios() -> list[Scenario]:
    golden = Golden()
    groups: list[Callable[[Golden], list[Scenario]]] = [
        core_scenarios,
        red_flag_scenarios,
        exclusion_and_contraindication_scenarios,
        context_scenarios,
        messy_scenarios,
        card_fit_scenarios,
    ]
    return [scenario for group in groups for scenario in group(golden)]


# --- writing -----------------------------------------------------------------------------------


def _dump(path: Path, document: Any) -> None:
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_scenario(root: Path, scenario: Scenario) -> None:
    folder = root / scenario.name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    _dump(folder / "scenario.json", scenario.metadata())
    _dump(folder / "request.json", scenario.request())
    _dump(folder / "expected.json", scenario.expected_cards())
    _dump(folder / "bundle.json", scenario.bundle())


def _cards_cell(scenario: Scenario) -> str:
    if not scenario.expected:
        return "none"
    return ", ".join(f"`{e.topic}` ({e.indicator})" for e in scenario.expected)


def index_markdown(all_scenarios: list[Scenario]) -> str:
    lines = [
        "# FHIR fixture library",
        "",
        "<!-- Generated by scripts/build_fixtures.py; edit the scenarios there, not this file. -->",
        "",
        f"{len(all_scenarios)} clinical scenarios for the back-pain CDS service, each a folder "
        "with:",
        "",
        "| file | what it is |",
        "|---|---|",
        "| `scenario.json` | name, description, service and hook, `patientId`, the "
        "`evaluationDate` the scenario assumes as today, `shows` (what it demonstrates) and "
        "`tags` (topics firing; `<topic> (negative)` for topics shown staying silent) |",
        "| `request.json` | the complete CDS Hooks request, prefetch included |",
        "| `expected.json` | the golden cards (standard client profile): topic, indicator and "
        "each suggestion's actions in the order the client meets them (`create <Type> "
        "<system>\\|<code>` before `delete <Type/id>`); never uuids or wording |",
        "| `bundle.json` | the scenario's stored FHIR R4 resources (Patient, Conditions, "
        "MedicationRequests and Medications, Observations, Procedures, ServiceRequests; not the "
        "draft orders) as a transaction Bundle of `PUT`s with stable ids |",
        "",
        "Every patient and resource id is unique across the library (`bpcds-<scenario>` and "
        "`bpcds-<scenario>-<local id>`), so all Bundles load into one FHIR server: "
        "`cds-service fixtures load --fhir-url URL`. Every resource carries the tag "
        "`http://example.org/fhir/back-pain-cds/CodeSystem/fixture|back-pain-cds-fixture`. "
        f"Dates assume today is {EVALUATION_DATE.isoformat()}; `cds-service replay` and "
        "`cds-service fixtures load` shift them to today's date unless told not to (see the "
        "project README). `messy` requests keep real-world defects on purpose; their "
        "`bundle.json` is always valid FHIR R4.",
        "",
        "Regenerate after editing a scenario: `python scripts/build_fixtures.py` "
        "(the expected cards are hand-written there from the guideline, never copied from the "
        "service's output).",
        "",
        "## Scenarios",
        "",
        "| scenario | hook | what it shows | expected cards |",
        "|---|---|---|---|",
    ]
    for s in all_scenarios:
        lines.append(f"| [`{s.name}`]({s.name}/) | {s.hook} | {s.description} | {_cards_cell(s)} |")
    features: dict[str, list[str]] = {}
    for s in all_scenarios:
        for feature in s.shows:
            features.setdefault(feature, []).append(s.name)
    lines += ["", "## Where to find what", "", "| shows | scenarios |", "|---|---|"]
    for feature in sorted(features):
        names = ", ".join(f"[`{n}`]({n}/)" for n in features[feature])
        lines.append(f"| {feature} | {names} |")
    return "\n".join(lines) + "\n"


def write_library(root: Path) -> list[Scenario]:
    all_scenarios = scenarios()
    names = [s.name for s in all_scenarios]
    if len(names) != len(set(names)):
        raise SystemExit("scenario names must be unique")
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.iterdir():
        if stale.is_dir() and stale.name not in names:
            shutil.rmtree(stale)
    for scenario in all_scenarios:
        write_scenario(root, scenario)
    (root / "README.md").write_text(index_markdown(all_scenarios), encoding="utf-8")
    return all_scenarios


def _differences(expected: Path, actual: Path) -> list[str]:
    comparison = filecmp.dircmp(expected, actual)
    found: list[str] = []

    def walk(c: filecmp.dircmp[str], prefix: str) -> None:
        found.extend(f"{prefix}{n}: only in the fresh build" for n in c.left_only)
        found.extend(f"{prefix}{n}: not produced by the script" for n in c.right_only)
        found.extend(f"{prefix}{n}: differs" for n in c.diff_files)
        for name, sub in c.subdirs.items():
            walk(sub, f"{prefix}{name}/")

    walk(comparison, "")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=ROOT, help="folder to write (default: %(default)s)"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write to a temporary folder and report whether --out is current",
    )
    args = parser.parse_args(argv)
    if args.check:
        with tempfile.TemporaryDirectory() as scratch:
            write_library(Path(scratch))
            stale = _differences(Path(scratch), args.out)
        for line in stale:
            print(line)
        print("fixtures are current" if not stale else f"{len(stale)} fixture files are stale")
        return 1 if stale else 0
    written = write_library(args.out)
    print(f"wrote {len(written)} scenarios to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
