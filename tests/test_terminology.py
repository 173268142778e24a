"""Tests of the packaged terminology data (value sets, concepts, orderables) and its index."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

from cds_service.terminology.concepts import Concept
from cds_service.terminology.index import (
    CPT,
    HCPCS,
    ICD10CM,
    ICD10PCS,
    LOINC,
    RXNORM,
    SNOMED,
    Terminology,
    canonical_system,
    load_terminology,
)

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "cds_service" / "terminology" / "data"
VALUESETS = DATA / "valuesets"
SHARED = REPO.parent / "shared" / "terminology"
CANONICAL_SYSTEMS = {ICD10CM, SNOMED, RXNORM, LOINC, CPT, HCPCS, ICD10PCS}


@cache
def terminology() -> Terminology:
    return load_terminology()


def concepts_doc() -> dict:
    return json.loads((DATA / "concepts.json").read_text(encoding="utf-8"))


def value_set_docs() -> dict[str, dict]:
    docs = {}
    for path in sorted(VALUESETS.glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        docs[doc["id"]] = doc
    return docs


def codeable(system: str, code: str, text: str | None = None) -> dict:
    out: dict = {"coding": [{"system": system, "code": code}]}
    if text:
        out["text"] = text
    return out


# --- structure of the data -------------------------------------------------------------------


def test_every_concept_is_defined_and_nothing_else() -> None:
    defined = set(concepts_doc()["concepts"])
    assert defined == {c.value for c in Concept}


def test_index_loads_and_covers_every_concept() -> None:
    t = terminology()
    assert t.code_count > 5000
    assert set(t.concept_value_sets) == set(Concept)
    for concept in Concept:
        assert t.concept_value_sets[concept] or concept in t.text_patterns, concept


def test_value_set_files_are_named_by_id_and_all_used() -> None:
    docs = value_set_docs()
    for path in VALUESETS.glob("*.json"):
        assert json.loads(path.read_text(encoding="utf-8"))["id"] == path.stem
    used = {s for d in concepts_doc()["concepts"].values() for s in d["valueSets"]}
    assert used == set(docs)


@pytest.mark.parametrize("vs_id", sorted(value_set_docs()))
def test_value_set_format(vs_id: str) -> None:
    doc = value_set_docs()[vs_id]
    assert doc["title"] and doc["description"]
    provenance = doc["provenance"]
    for key in ("source", "license", "method"):
        assert provenance.get(key), f"{vs_id}: provenance.{key} missing"
    assert doc["codes"], f"{vs_id} is empty"
    seen = set()
    for coded in doc["codes"]:
        assert set(coded) <= {"system", "code", "display"}
        assert coded["system"] in CANONICAL_SYSTEMS, coded
        assert canonical_system(coded["system"]) == coded["system"]
        assert coded["code"] == coded["code"].strip() and coded["code"]
        if "display" in coded:
            assert isinstance(coded["display"], str) and coded["display"]
        if coded["system"] == ICD10CM and len(coded["code"]) > 3:
            assert "." in coded["code"], f"{vs_id}: undotted ICD-10-CM {coded['code']}"
        key = (coded["system"], coded["code"])
        assert key not in seen, f"{vs_id}: duplicate {key}"
        seen.add(key)


def test_data_size_is_reasonable() -> None:
    size = sum(p.stat().st_size for p in DATA.rglob("*.json"))
    assert size < 3_000_000


# --- codes map to the right concepts -----------------------------------------------------------


@pytest.mark.parametrize(
    ("system", "code", "concept"),
    [
        (ICD10CM, "M54.50", Concept.BACK_PAIN_LOW),
        (ICD10CM, "M5450", Concept.BACK_PAIN_LOW),
        (ICD10CM, "m54.50", Concept.BACK_PAIN_LOW),
        (ICD10CM, "M54.6", Concept.BACK_PAIN_THORACIC),
        (ICD10CM, "M54.16", Concept.RADICULAR_PAIN),
        (ICD10CM, "E11.42", Concept.NEUROPATHIC_PAIN),
        (ICD10CM, "B02.23", Concept.NEUROPATHIC_PAIN),
        (ICD10CM, "F33.1", Concept.DEPRESSION),
        (SNOMED, "35489007", Concept.DEPRESSION),
        (ICD10CM, "F41.1", Concept.ANXIETY),
        (ICD10CM, "G83.4", Concept.RED_FLAG_NEUROLOGIC_DEFICIT),
        (ICD10CM, "R50.9", Concept.RED_FLAG_FEVER),
        (ICD10CM, "Z94.0", Concept.RED_FLAG_IMMUNOSUPPRESSION),
        (ICD10CM, "R63.4", Concept.RED_FLAG_WEIGHT_LOSS),
        (ICD10CM, "M81.0", Concept.RED_FLAG_OSTEOPOROSIS),
        (CPT, "47135", Concept.TRANSPLANT_PROCEDURE),
        (ICD10PCS, "0TY00Z0", Concept.TRANSPLANT_PROCEDURE),
        (ICD10CM, "N18.5", Concept.CKD_SEVERE),
        (SNOMED, "46177005", Concept.CKD_SEVERE),
        (ICD10CM, "K25.4", Concept.GI_BLEED_OR_ULCER),
        (ICD10CM, "Z87.11", Concept.GI_BLEED_OR_ULCER),
        (ICD10CM, "I50.22", Concept.HEART_FAILURE),
        (SNOMED, "84114007", Concept.HEART_FAILURE),
        (RXNORM, "11289", Concept.ANTICOAGULANT),
        (RXNORM, "1364430", Concept.ANTICOAGULANT),
        (RXNORM, "835603", Concept.OPIOID),  # tramadol 50 MG Oral Tablet (CDC set)
        (RXNORM, "10689", Concept.OPIOID),  # tramadol ingredient
        (RXNORM, "5640", Concept.NSAID),  # ibuprofen ingredient
        (RXNORM, "3355", Concept.NSAID),  # diclofenac ingredient
        (RXNORM, "161", Concept.ACETAMINOPHEN),
        (RXNORM, "198440", Concept.ACETAMINOPHEN),
        (RXNORM, "36437", Concept.SSRI),
        (RXNORM, "72625", Concept.SNRI),
        (RXNORM, "704", Concept.TCA),
        (RXNORM, "312615", Concept.SYSTEMIC_CORTICOSTEROID),  # prednisone 20 MG Oral Tablet
        (SNOMED, "6064005", Concept.TOPICAL_FORM),
        (CPT, "72148", Concept.SPINE_IMAGING),
        (LOINC, "24967-2", Concept.SPINE_IMAGING),
        (SNOMED, "394451000119106", Concept.SPINE_IMAGING),
        (CPT, "64483", Concept.SPINAL_INJECTION),
        (SNOMED, "308447003", Concept.PHYSICAL_THERAPY),
        (CPT, "97161", Concept.PHYSICAL_THERAPY),
        (SNOMED, "306265007", Concept.PAIN_MANAGEMENT_REFERRAL),
        (LOINC, "8310-5", Concept.BODY_TEMPERATURE),
        (LOINC, "29463-7", Concept.BODY_WEIGHT),
        (ICD10CM, "D57.1", Concept.SICKLE_CELL_DISEASE),
        (SNOMED, "385763009", Concept.HOSPICE_CARE),
        # Cancer however it is coded: ICD-10-CM and SNOMED CT problem-list entries
        (ICD10CM, "C34.90", Concept.ACTIVE_CANCER),
        (ICD10CM, "C79.51", Concept.ACTIVE_CANCER),  # bone metastases (VSAC malignant bone)
        (SNOMED, "363358000", Concept.ACTIVE_CANCER),  # Malignant tumor of lung
        (SNOMED, "254637007", Concept.ACTIVE_CANCER),  # Non-small cell lung cancer
        (SNOMED, "363358000", Concept.RED_FLAG_CANCER_HISTORY),
        (ICD10CM, "C34.90", Concept.RED_FLAG_CANCER_HISTORY),
        (ICD10CM, "Z85.118", Concept.RED_FLAG_CANCER_HISTORY),
        # Significant trauma of the trunk, not only spinal fracture
        (ICD10CM, "S22.41XA", Concept.RED_FLAG_SPINAL_TRAUMA),  # multiple rib fractures
        (ICD10CM, "S22.31XD", Concept.RED_FLAG_SPINAL_TRAUMA),  # one rib, subsequent encounter
        (ICD10CM, "S32.810A", Concept.RED_FLAG_SPINAL_TRAUMA),  # pelvic ring fracture
        (ICD10CM, "S36.116A", Concept.RED_FLAG_SPINAL_TRAUMA),  # laceration of liver
        (ICD10CM, "S27.0XXA", Concept.RED_FLAG_SPINAL_TRAUMA),  # traumatic pneumothorax
        (ICD10CM, "S33.101A", Concept.RED_FLAG_SPINAL_TRAUMA),  # lumbar dislocation
        (ICD10CM, "T07.XXXA", Concept.RED_FLAG_SPINAL_TRAUMA),  # multiple injuries
        (ICD10CM, "S32.010A", Concept.RED_FLAG_SPINAL_TRAUMA),  # lumbar fracture (spinal set)
        (SNOMED, "91037003", Concept.RED_FLAG_SPINAL_TRAUMA),  # Closed fracture of pelvis
        (SNOMED, "33737001", Concept.RED_FLAG_SPINAL_TRAUMA),  # Fracture of rib
        (SNOMED, "207957008", Concept.RED_FLAG_SPINAL_TRAUMA),  # Closed fracture lumbar vertebra
        (SNOMED, "262519004", Concept.RED_FLAG_SPINAL_TRAUMA),  # Multiple injuries
        # Spine imaging by modality
        (CPT, "72100", Concept.SPINE_IMAGING_XRAY),
        (CPT, "72131", Concept.SPINE_IMAGING_CT),
        (CPT, "72148", Concept.SPINE_IMAGING_MRI),
        (LOINC, "24970-6", Concept.SPINE_IMAGING_XRAY),
        (LOINC, "24963-1", Concept.SPINE_IMAGING_CT),
        (LOINC, "24967-2", Concept.SPINE_IMAGING_MRI),
        (LOINC, "36059-4", Concept.SPINE_IMAGING_MRI),  # MR Sacrum (CMS166 set only)
        (SNOMED, "22791004", Concept.SPINE_IMAGING_XRAY),
        (SNOMED, "711224009", Concept.SPINE_IMAGING_CT),
        (SNOMED, "241592002", Concept.SPINE_IMAGING_CT),  # CT myelogram of lumbar region
        (SNOMED, "394451000119106", Concept.SPINE_IMAGING_MRI),
        # Extended-release opioids
        (RXNORM, "833709", Concept.OPIOID_EXTENDED_RELEASE),  # 24 HR tramadol 100 MG ER tablet
        (RXNORM, "833709", Concept.OPIOID),
        (RXNORM, "864706", Concept.OPIOID_EXTENDED_RELEASE),  # methadone 10 MG tablet
        # Structural spine diagnoses surgery treats
        (ICD10CM, "M48.062", Concept.SPINE_SURGICAL_DIAGNOSIS),  # stenosis with claudication
        (ICD10CM, "M43.16", Concept.SPINE_SURGICAL_DIAGNOSIS),  # spondylolisthesis, lumbar
        (ICD10CM, "G83.4", Concept.SPINE_SURGICAL_DIAGNOSIS),  # cauda equina syndrome
        (ICD10CM, "M54.16", Concept.SPINE_SURGICAL_DIAGNOSIS),  # radiculopathy, lumbar
        (ICD10CM, "M41.26", Concept.SPINE_SURGICAL_DIAGNOSIS),  # idiopathic scoliosis, lumbar
        (SNOMED, "303081002", Concept.SPINE_SURGICAL_DIAGNOSIS),  # neurogenic claudication
        (SNOMED, "128196005", Concept.RADICULAR_PAIN),  # lumbar radiculopathy
        # Spine surgery and surgeon referrals
        (CPT, "22612", Concept.SPINE_SURGERY),  # posterolateral lumbar arthrodesis
        (CPT, "63030", Concept.SPINE_SURGERY),  # lumbar laminotomy / discectomy
        (SNOMED, "50172003", Concept.SPINE_SURGERY),  # lumbar spinal fusion
        (SNOMED, "308482002", Concept.SURGICAL_REFERRAL),  # referral to neurosurgeon
        # Passive modalities, coded as services and as devices
        (CPT, "97012", Concept.PASSIVE_MODALITY),  # mechanical traction
        (CPT, "97035", Concept.PASSIVE_MODALITY),  # therapeutic ultrasound
        (HCPCS, "G0283", Concept.PASSIVE_MODALITY),  # unattended electrical stimulation
        (HCPCS, "E0720", Concept.PASSIVE_MODALITY),  # TENS device, two lead
        # Stomach protection and aspirin
        (RXNORM, "198051", Concept.GASTROPROTECTIVE),  # omeprazole 20 MG DR capsule
        (RXNORM, "314200", Concept.GASTROPROTECTIVE),  # pantoprazole 40 MG DR tablet
        (RXNORM, "317128", Concept.GASTROPROTECTIVE),  # misoprostol 0.2 MG tablet
        (RXNORM, "994008", Concept.GASTROPROTECTIVE),  # esomeprazole / naproxen (Vimovo)
        (RXNORM, "1191", Concept.ASPIRIN),
        (RXNORM, "243670", Concept.ASPIRIN),  # aspirin 81 MG tablet
        (RXNORM, "1811631", Concept.ASPIRIN),  # aspirin 81 MG / omeprazole 40 MG
        (RXNORM, "1811631", Concept.GASTROPROTECTIVE),
    ],
)
def test_code_maps_to_concept(system: str, code: str, concept: Concept) -> None:
    assert concept in terminology().concepts_for_code(system, code)


@pytest.mark.parametrize(
    ("system", "code", "concept"),
    [
        (RXNORM, "1819", Concept.OPIOID),  # buprenorphine ingredient: OUD treatment, not counted
        (RXNORM, "1191", Concept.NSAID),  # aspirin is not an NSAID for this service
        (ICD10CM, "M48.062", Concept.RED_FLAG_NEUROLOGIC_DEFICIT),
        (CPT, "47133", Concept.TRANSPLANT_PROCEDURE),  # donor hepatectomy
        (ICD10CM, "E43", Concept.RED_FLAG_WEIGHT_LOSS),  # malnutrition is not weight loss
        (ICD10CM, "M54.6", Concept.BACK_PAIN_LOW),
        (LOINC, "8310-5", Concept.BODY_WEIGHT),
        (ICD10CM, "D57.3", Concept.SICKLE_CELL_DISEASE),  # trait is not disease
        (ICD10CM, "C7A-C7A", Concept.END_OF_LIFE),  # block heading, not a code
        (ICD10CM, "Z85.118", Concept.ACTIVE_CANCER),  # personal history is not active cancer
        (SNOMED, "302820008", Concept.ACTIVE_CANCER),  # intracranial meningioma (benign)
        (SNOMED, "254956000", Concept.RED_FLAG_CANCER_HISTORY),  # pituitary adenoma (benign)
        (ICD10CM, "S33.5XXA", Concept.RED_FLAG_SPINAL_TRAUMA),  # lumbar sprain
        (ICD10CM, "S30.0XXA", Concept.RED_FLAG_SPINAL_TRAUMA),  # contusion of lower back
        (ICD10CM, "S20.20XA", Concept.RED_FLAG_SPINAL_TRAUMA),  # contusion of thorax
        (ICD10CM, "S22.41XS", Concept.RED_FLAG_SPINAL_TRAUMA),  # sequela of rib fractures
        (ICD10CM, "S72.001A", Concept.RED_FLAG_SPINAL_TRAUMA),  # femoral neck: a limb
        (SNOMED, "262736005", Concept.RED_FLAG_SPINAL_TRAUMA),  # contusion of lumbar nerve root
        (SNOMED, "26442006", Concept.RED_FLAG_SPINAL_TRAUMA),  # closed fracture of femur shaft
        (SNOMED, "281843000", Concept.RED_FLAG_SPINAL_TRAUMA),  # fracture of tibial spine
        (RXNORM, "835603", Concept.OPIOID_EXTENDED_RELEASE),  # tramadol 50 MG (immediate)
        (RXNORM, "1716057", Concept.OPIOID_EXTENDED_RELEASE),  # buccal buprenorphine film
        # Stenosis without claudication is no reason to operate; neither is lumbago alone.
        (ICD10CM, "M48.061", Concept.SPINE_SURGICAL_DIAGNOSIS),
        (ICD10CM, "M54.50", Concept.SPINE_SURGICAL_DIAGNOSIS),
        (ICD10CM, "M96.1", Concept.SPINE_SURGICAL_DIAGNOSIS),  # post-laminectomy syndrome
        (CPT, "97010", Concept.PASSIVE_MODALITY),  # hot or cold packs: heat is recommended
        (CPT, "97110", Concept.PASSIVE_MODALITY),  # therapeutic exercise is active
        (CPT, "62323", Concept.SPINE_SURGERY),  # epidural injection is not surgery
        (RXNORM, "198013", Concept.ASPIRIN),  # naproxen
        (RXNORM, "198013", Concept.GASTROPROTECTIVE),
    ],
)
def test_code_does_not_map_to_concept(system: str, code: str, concept: Concept) -> None:
    assert concept not in terminology().concepts_for_code(system, code)


def test_trunk_trauma_record_is_significant_trauma() -> None:
    t = terminology()
    road_accident = {
        "coding": [{"system": ICD10CM, "code": "S22.41XA"}],
        "text": "Multiple fractures of ribs, right side, initial encounter",
    }
    assert Concept.RED_FLAG_SPINAL_TRAUMA in t.concepts_for_codeable(road_accident)
    pelvic = {"coding": [{"system": SNOMED, "code": "91037003"}], "text": "Pelvic fracture"}
    assert Concept.RED_FLAG_SPINAL_TRAUMA in t.concepts_for_codeable(pelvic)
    sprain = {
        "coding": [{"system": ICD10CM, "code": "S33.5XXA"}],
        "text": "Sprain of ligaments of lumbar spine, initial encounter",
    }
    contusion = {
        "coding": [{"system": ICD10CM, "code": "S30.0XXA"}],
        "text": "Contusion of lower back and pelvis, initial encounter",
    }
    for minor in (sprain, contusion):
        assert Concept.RED_FLAG_SPINAL_TRAUMA not in t.concepts_for_codeable(minor)


def test_trunk_trauma_set_is_initial_or_subsequent_trunk_injury_only() -> None:
    doc = value_set_docs()["red-flag-significant-trunk-trauma"]
    categories = {"S22", "S23", "S25", "S26", "S27", "S28", "S32", "S33", "S35", "S36"}
    categories |= {"S37", "S38", "T07"}
    for coded in doc["codes"]:
        display = coded["display"].lower()
        assert not re.search(r"\b(?:sprain|strain)\b", display), coded
        if coded["system"] == ICD10CM:
            # organ injuries stay, even "superficial laceration of spleen" or a kidney contusion
            assert coded["code"][:3] in categories, coded
            assert not (len(coded["code"]) == 8 and coded["code"].endswith("S")), coded
        else:
            assert not re.search(r"\b(?:superficial|contusion|abrasion)\b", display), coded


def test_every_spine_imaging_code_has_exactly_one_modality() -> None:
    t = terminology()
    modalities = {Concept.SPINE_IMAGING_XRAY, Concept.SPINE_IMAGING_CT, Concept.SPINE_IMAGING_MRI}
    codes = t.concept_codes[Concept.SPINE_IMAGING]
    assert len(codes) > 300
    for coded in codes:
        found = t.concepts_for_code(coded.system, coded.code) & modalities
        assert len(found) == 1, (coded, found)
    for modality in modalities:
        assert t.concept_codes[modality], modality
        for coded in t.concept_codes[modality]:
            assert Concept.SPINE_IMAGING in t.concepts_for_code(coded.system, coded.code), coded


def test_extended_release_opioids_are_opioids() -> None:
    t = terminology()
    codes = t.concept_codes[Concept.OPIOID_EXTENDED_RELEASE]
    assert len(codes) > 150
    for coded in codes:
        assert Concept.OPIOID in t.concepts_for_code(coded.system, coded.code), coded
        assert Concept.OPIOID_EXTENDED_RELEASE in t.concepts_for_text(coded.display), coded


def test_system_aliases_resolve() -> None:
    t = terminology()
    assert Concept.BACK_PAIN_LOW in t.concepts_for_code("urn:oid:2.16.840.1.113883.6.90", "M54.50")
    assert Concept.BACK_PAIN_LOW in t.concepts_for_code("urn:oid:2.16.840.1.113883.6.90", "M5450")
    assert Concept.OPIOID in t.concepts_for_code("urn:oid:2.16.840.1.113883.6.88", "10689")
    assert Concept.BODY_TEMPERATURE in t.concepts_for_code(
        "urn:oid:2.16.840.1.113883.6.1", "8310-5"
    )
    assert Concept.BACK_PAIN_LOW in t.concepts_for_code(
        "urn:oid:2.16.840.1.113883.6.96", "279039007"
    )
    assert Concept.SPINE_IMAGING in t.concepts_for_code("urn:oid:2.16.840.1.113883.6.12", "72148")
    assert Concept.OPIOID in t.concepts_for_code(
        "https://www.nlm.nih.gov/research/umls/rxnorm/", "10689"
    )
    hcpcs = "http://www.nlm.nih.gov/research/umls/hcpcs"
    assert Concept.TRANSPLANT_PROCEDURE in t.concepts_for_code(hcpcs, "S2065")


def test_unknown_or_empty_codes_map_to_nothing() -> None:
    t = terminology()
    assert t.concepts_for_code(ICD10CM, "Z00.00") == frozenset()
    assert t.concepts_for_code(None, "M54.50") == frozenset()
    assert t.concepts_for_code(ICD10CM, "") == frozenset()


# --- text fallback ---------------------------------------------------------------------------


TEXT_CASES = [
    ("tramadol 50 MG Oral Tablet", Concept.OPIOID),
    ("Hospice care referral", Concept.HOSPICE_CARE),
    ("naproxen 10% cream", Concept.TOPICAL_FORM),
    ("Percocet 5-325 tablet", Concept.OPIOID),
    ("hydrocodone bitartrate 5 MG / acetaminophen 325 MG Oral Tablet", Concept.OPIOID),
    ("Butrans 10 mcg/hr transdermal system", Concept.OPIOID),
    ("MRI lumbar spine without contrast", Concept.SPINE_IMAGING),
    ("XR L-spine 2 views", Concept.SPINE_IMAGING),
    ("CT thoracic spine w/o contrast", Concept.SPINE_IMAGING),
    ("Lumbar epidural steroid injection", Concept.SPINAL_INJECTION),
    ("Medial branch block L4-L5", Concept.SPINAL_INJECTION),
    ("Trigger point injection", Concept.SPINAL_INJECTION),
    ("Referral to physical therapy", Concept.PHYSICAL_THERAPY),
    ("PT evaluation and treatment", Concept.PHYSICAL_THERAPY),
    ("Ambulatory referral to Pain Medicine", Concept.PAIN_MANAGEMENT_REFERRAL),
    ("ibuprofen 600 mg tablet", Concept.NSAID),
    ("diclofenac sodium 1% topical gel", Concept.NSAID_TOPICAL),
    ("Tylenol 500 mg", Concept.ACETAMINOPHEN),
    ("sertraline 50 mg", Concept.SSRI),
    ("Cymbalta 30 mg capsule", Concept.SNRI),
    ("amitriptyline 10 mg", Concept.TCA),
    ("glucosamine sulfate 1500 mg", Concept.GLUCOSAMINE_CHONDROITIN),
    ("prednisone 20 mg tablet", Concept.SYSTEMIC_CORTICOSTEROID),
    ("Eliquis 5 mg tablet", Concept.ANTICOAGULANT),
    ("enoxaparin 40 mg/0.4 mL syringe", Concept.ANTICOAGULANT),
    ("MRI lumbar spine", Concept.SPINE_IMAGING_MRI),
    ("MRI lumbar spine", Concept.SPINE_IMAGING),
    ("Magnetic resonance imaging of thoracic spine", Concept.SPINE_IMAGING_MRI),
    ("CT thoracic spine w/o contrast", Concept.SPINE_IMAGING_CT),
    ("CAT scan lumbar spine", Concept.SPINE_IMAGING_CT),
    ("XR L-spine 2 views", Concept.SPINE_IMAGING_XRAY),
    ("Lumbar spine X-ray AP and lateral", Concept.SPINE_IMAGING_XRAY),
    ("Radiologic examination, spine, lumbosacral; 2 or 3 views", Concept.SPINE_IMAGING_XRAY),
    ("Radiologic examination, spine, lumbosacral; 2 or 3 views", Concept.SPINE_IMAGING),
    ("plain film of the sacrum", Concept.SPINE_IMAGING_XRAY),
    ("oxycodone ER 10 mg tablet", Concept.OPIOID_EXTENDED_RELEASE),
    ("OxyContin 20 mg", Concept.OPIOID_EXTENDED_RELEASE),
    ("morphine sulfate SR 15 mg", Concept.OPIOID_EXTENDED_RELEASE),
    ("fentanyl 25 mcg/hr transdermal patch", Concept.OPIOID_EXTENDED_RELEASE),
    ("hydrocodone bitartrate extended-release 20 mg", Concept.OPIOID_EXTENDED_RELEASE),
    ("tramadol long-acting 100 mg", Concept.OPIOID_EXTENDED_RELEASE),
    ("24 HR tramadol hydrochloride 100 MG Oral Tablet", Concept.OPIOID_EXTENDED_RELEASE),
    ("methadone 5 mg tablet", Concept.OPIOID_EXTENDED_RELEASE),
    ("buprenorphine 10 mcg/hr transdermal system", Concept.OPIOID_EXTENDED_RELEASE),
    ("buprenorphine 10 mcg/hr transdermal system", Concept.OPIOID),
    ("TENS unit for home use", Concept.PASSIVE_MODALITY),
    ("Transcutaneous electrical nerve stimulation", Concept.PASSIVE_MODALITY),
    ("PT: interferential current to lumbar spine", Concept.PASSIVE_MODALITY),
    ("Lumbar traction 3x/week", Concept.PASSIVE_MODALITY),
    ("Therapeutic ultrasound, low back", Concept.PASSIVE_MODALITY),
    ("Non-surgical spinal decompression (DRX9000)", Concept.PASSIVE_MODALITY),
    ("Referral to spine surgery", Concept.SPINE_SURGERY),
    ("L4-5 microdiscectomy", Concept.SPINE_SURGERY),
    ("Posterior lumbar interbody fusion L4-L5", Concept.SPINE_SURGERY),
    ("TLIF L5-S1", Concept.SPINE_SURGERY),
    ("Ambulatory referral to Orthopedic Spine Surgery", Concept.SPINE_SURGERY),
    ("Ambulatory referral to Neurosurgery", Concept.SURGICAL_REFERRAL),
    ("omeprazole 20 mg capsule daily", Concept.GASTROPROTECTIVE),
    ("Pepcid 20 mg", Concept.GASTROPROTECTIVE),
    ("ASA 81 mg daily", Concept.ASPIRIN),
    ("Ecotrin low strength 81 mg", Concept.ASPIRIN),
    ("Lumbar spondylolisthesis", Concept.SPINE_SURGICAL_DIAGNOSIS),
    (
        "Spinal stenosis, lumbar region with neurogenic claudication",
        Concept.SPINE_SURGICAL_DIAGNOSIS,
    ),
]


@pytest.mark.parametrize(("text", "concept"), TEXT_CASES)
def test_text_maps_to_concept(text: str, concept: Concept) -> None:
    assert concept in terminology().concepts_for_text(text)


def test_every_text_fallback_is_shown_to_work() -> None:
    """Each concept recognised by words has at least one uncoded text it recognises above."""
    with_patterns = {
        Concept(name)
        for name, definition in concepts_doc()["concepts"].items()
        if definition["textPatterns"]
    }
    assert with_patterns <= {concept for _, concept in TEXT_CASES}


@pytest.mark.parametrize(
    ("text", "concept"),
    [
        ("CT chest", Concept.SPINE_IMAGING),
        ("CT thoracic aorta with contrast", Concept.SPINE_IMAGING),
        ("MRI cervical spine", Concept.SPINE_IMAGING),
        ("DEXA lumbar spine", Concept.SPINE_IMAGING),
        ("Fluoroscopic guided lumbar epidural injection", Concept.SPINE_IMAGING),
        ("PT/INR", Concept.PHYSICAL_THERAPY),
        ("PT (prothrombin time)", Concept.PHYSICAL_THERAPY),
        ("buprenorphine 8 MG / naloxone 2 MG Sublingual Film", Concept.OPIOID),
        ("aspirin 81 mg chewable tablet", Concept.NSAID),
        ("ketorolac 0.5% ophthalmic solution", Concept.NSAID),
        ("ibuprofen 200 mg liquid gel capsule", Concept.NSAID_TOPICAL),
        ("ibuprofen 200 mg liquid gel capsule", Concept.TOPICAL_FORM),
        ("hydrocortisone 1% cream", Concept.SYSTEMIC_CORTICOSTEROID),
        ("fluticasone 50 mcg nasal spray", Concept.SYSTEMIC_CORTICOSTEROID),
        ("prednisolone acetate 1% ophthalmic suspension", Concept.SYSTEMIC_CORTICOSTEROID),
        ("heparin lock flush 100 units/mL", Concept.ANTICOAGULANT),
        ("doxepin 5% cream", Concept.TCA),
        ("pain management agreement", Concept.PAIN_MANAGEMENT_REFERRAL),
        ("MRI lumbar spine", Concept.SPINE_IMAGING_CT),
        ("MRI lumbar spine", Concept.SPINE_IMAGING_XRAY),
        ("CT thoracic spine w/o contrast", Concept.SPINE_IMAGING_MRI),
        ("XR L-spine 2 views", Concept.SPINE_IMAGING_CT),
        ("MRI cervical spine", Concept.SPINE_IMAGING_MRI),
        ("CT chest", Concept.SPINE_IMAGING_CT),
        ("X-ray chest 2 views", Concept.SPINE_IMAGING_XRAY),
        ("Lumbar myelogram", Concept.SPINE_IMAGING_XRAY),
        ("oxycodone 5 mg tablet", Concept.OPIOID_EXTENDED_RELEASE),
        ("oxycodone 5 mg tablet every 12 hr as needed", Concept.OPIOID_EXTENDED_RELEASE),
        ("tramadol 50 mg tablet", Concept.OPIOID_EXTENDED_RELEASE),
        ("ibuprofen ER 800 mg", Concept.OPIOID_EXTENDED_RELEASE),
        ("ibuprofen ER 800 mg", Concept.OPIOID),
        ("lidocaine 5% patch", Concept.OPIOID_EXTENDED_RELEASE),
        ("Belbuca 150 mcg buccal film", Concept.OPIOID_EXTENDED_RELEASE),
        ("Skeletal traction, femur", Concept.PASSIVE_MODALITY),
        ("Spinal cord stimulator implant trial", Concept.PASSIVE_MODALITY),
        ("Ultrasound abdomen complete", Concept.PASSIVE_MODALITY),
        ("Hot pack, lumbar", Concept.PASSIVE_MODALITY),
        ("Anterior cervical discectomy and fusion C5-6", Concept.SPINE_SURGERY),
        ("Spinal decompression therapy, 20 sessions", Concept.SPINE_SURGERY),
        ("Carpal tunnel decompression", Concept.SPINE_SURGERY),
        ("Referral to physical therapy", Concept.SURGICAL_REFERRAL),
        ("Aspirin-free Excedrin", Concept.ASPIRIN),
        (
            "Spinal stenosis, lumbar region without neurogenic claudication",
            Concept.SPINE_SURGICAL_DIAGNOSIS,
        ),
        (
            "Spondylosis without myelopathy or radiculopathy, lumbar region",
            Concept.SPINE_SURGICAL_DIAGNOSIS,
        ),
    ],
)
def test_text_does_not_map_to_concept(text: str, concept: Concept) -> None:
    assert concept not in terminology().concepts_for_text(text)


def test_codeable_concept_uses_every_coding_and_text() -> None:
    t = terminology()
    found = t.concepts_for_codeable(
        {
            "coding": [
                {"system": "urn:local", "code": "123"},
                {"system": ICD10CM, "code": "M54.50"},
                {"system": SNOMED, "code": "35489007", "display": "Depressive disorder"},
            ],
            "text": "low back pain",
        }
    )
    assert {Concept.BACK_PAIN_LOW, Concept.DEPRESSION} <= found
    local_only = t.concepts_for_codeable(codeable("urn:local", "999", "oxycodone 5 mg tablet"))
    assert Concept.OPIOID in local_only


# --- orderables --------------------------------------------------------------------------------


def test_orderables_are_recognised_as_their_concepts() -> None:
    t = terminology()
    topical = t.concepts_for_codeable(t.orderable("topical-nsaid").code)
    assert Concept.NSAID in topical
    assert {Concept.NSAID_TOPICAL, Concept.TOPICAL_FORM} & topical
    assert Concept.ACETAMINOPHEN in t.concepts_for_codeable(t.orderable("acetaminophen").code)
    pt = t.orderable("physical-therapy-referral")
    assert pt.resource_type == "ServiceRequest"
    assert Concept.PHYSICAL_THERAPY in t.concepts_for_codeable(pt.code)
    pain = t.orderable("pain-management-referral")
    assert Concept.PAIN_MANAGEMENT_REFERRAL in t.concepts_for_codeable(pain.code)
    for name in ("topical-nsaid", "acetaminophen"):
        assert t.orderable(name).resource_type == "MedicationRequest"


def test_orderable_codings_are_value_set_members() -> None:
    t = terminology()
    for name in ("acetaminophen", "physical-therapy-referral", "pain-management-referral"):
        coding = t.orderable(name).code["coding"][0]
        assert t.concepts_for_code(coding["system"], coding["code"]), name
        assert coding["display"]


# --- the build is reproducible -----------------------------------------------------------------


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared/terminology not available")
def test_build_script_output_is_current() -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "build_terminology.py"),
            "--shared",
            str(SHARED),
            "--check",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
