#!/usr/bin/env python3
# ruff: noqa: E501 - long lines are code tables, displays and provenance prose (data, not logic)
"""Regenerate the packaged terminology data of the back-pain CDS service.

Developers run this by hand; the service never does. It reads the read-only source material in
``shared/terminology`` (FHIR ValueSet JSON with expansions, plus ``index.json``), applies the
filters and hand-curated tables below, and writes:

* ``cds_service/terminology/data/valuesets/<id>.json`` - one compact file per value set
* ``cds_service/terminology/data/concepts.json``       - concept -> value sets + text patterns
* ``cds_service/terminology/data/orderables.json``     - coded parts of suggested orders
* ``cds_service/terminology/README.md``                - tables generated from the same data

Output is deterministic: the same shared files give byte-identical output.

Usage::

    python scripts/build_terminology.py [--shared ../shared/terminology] [--check]

``--check`` rebuilds in memory and exits non-zero if a packaged file would change.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from cds_service.terminology.concepts import Concept  # noqa: E402
from cds_service.terminology.index import (  # noqa: E402
    CPT,
    ICD10CM,
    LOINC,
    RXNORM,
    SNOMED,
    Coded,
    Terminology,
    build_terminology,
    canonical_system,
    normalise_code,
)

DATA_VERSION = "2026-11-22"
UCUM = "http://unitsofmeasure.org"
DATA_DIR = REPO / "cds_service" / "terminology" / "data"
README = REPO / "cds_service" / "terminology" / "README.md"

SYSTEM_NAMES = {
    ICD10CM: "ICD-10-CM",
    SNOMED: "SNOMED CT",
    RXNORM: "RxNorm",
    LOINC: "LOINC",
    CPT: "CPT",
    "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets": "HCPCS",
    "http://www.cms.gov/Medicare/Coding/ICD10": "ICD-10-PCS",
}

LICENCE_COMPILED = (
    "Compiled list of code facts. ICD-10-CM and RxNorm are public domain; SNOMED CT codes need a "
    "SNOMED CT (UMLS affiliate) licence for production use; LOINC under the Regenstrief licence."
)

ICD_VERIFIED = "ICD-10-CM April 2026 release, checked with PyPI simple-icd-10-cm 1.5.0"

# ---------------------------------------------------------------------------------------------
# Hand-curated code tables. Each row: (code, display, verification note).
# ---------------------------------------------------------------------------------------------

# SNOMED CT codes that appear (with displays) in the shared VSAC/CDC files and denote a
# neuropathic pain condition.
NEUROPATHIC_SNOMED = (
    ("7916009", "Alcoholic polyneuropathy", "shared/cdc-conditions-documenting-substance-misuse"),
    (
        "230598008",
        "Neuropathy caused by human immunodeficiency virus (disorder)",
        "shared/cms166-hiv",
    ),
    (
        "713278001",
        "Neuralgia co-occurrent with human immunodeficiency virus infection (disorder)",
        "shared/cms166-hiv",
    ),
    (
        "713489006",
        "Polyneuropathy co-occurrent with human immunodeficiency virus infection (disorder)",
        "shared/cms166-hiv",
    ),
    (
        "421597001",
        "Polyneuropathy with acquired immunodeficiency syndrome (disorder)",
        "shared/vsac-hiv",
    ),
)

DEPRESSION_SNOMED = (
    (
        "35489007",
        "Depressive disorder (disorder)",
        "several independent public code files agree (code corpus: FHIR test data, SNOMED lookup "
        "tables, problem-list seeds)",
    ),
)

ANXIETY_SNOMED = (
    (
        "197480006",
        "Anxiety disorder (disorder)",
        "several independent public code files agree (code corpus: mayodtit/RHSMocker conditions seed, "
        "SNOMED lookup tables)",
    ),
)

CKD_SEVERE_SNOMED = (
    (
        "431857002",
        "Chronic kidney disease stage 4 (disorder)",
        "hl7germany/forschungsnetz-covid19 ChronicKidneyDiseases.fsh; CKD terminology tables in the "
        "code corpus",
    ),
    (
        "433146000",
        "Chronic kidney disease stage 5 (disorder)",
        "hl7germany/forschungsnetz-covid19 ChronicKidneyDiseases.fsh; CKD terminology tables in the "
        "code corpus",
    ),
    (
        "714152005",
        "Chronic kidney disease stage 5 on dialysis (disorder)",
        "hl7germany/forschungsnetz-covid19 ChronicKidneyDiseases.fsh",
    ),
    (
        "46177005",
        "End-stage renal disease (disorder)",
        "several independent public code files agree (code corpus: eligibility rules, CKD subsets, "
        "SNOMED tables)",
    ),
)

GI_BLEED_SNOMED = (
    (
        "13200003",
        "Peptic ulcer (disorder)",
        "code corpus: CH CRL FHIR profile, SNOMED tables with fully specified name",
    ),
    (
        "74474003",
        "Gastrointestinal hemorrhage (disorder)",
        "code corpus: several CQL/FHIR files label it GI hemorrhage; one table gives the FSN",
    ),
)

HEART_FAILURE_SNOMED = (
    (
        "84114007",
        "Heart failure (disorder)",
        "code corpus: terminology-server example answer (display 'Heart failure (disorder)') and "
        "several condition tables",
    ),
    (
        "42343007",
        "Congestive heart failure (disorder)",
        "code corpus: SNOMED display table and CHF code lists",
    ),
)

# RxNorm ingredient RxCUIs (TTY IN, except dabigatran etexilate which is the PIN most products use).
ANTICOAGULANT_RXNORM = (
    ("11289", "warfarin", "PharmGKB/CPIC 'RxNorm:11289' in several public repos"),
    ("1364430", "apixaban", "several public code files, one with TTY IN and brand Eliquis"),
    ("1114195", "rivaroxaban", "several public code files, one with TTY IN and brand Xarelto"),
    (
        "1037042",
        "dabigatran etexilate",
        "two public code files (one labels it 'dabigatran etexilate'); IN 1546356 not verifiable",
    ),
    ("5224", "heparin", "several public code files, one with TTY IN"),
    ("67108", "enoxaparin", "two public code files (FHIR test data and a drug table)"),
)

# SNOMED CT route of administration codes that mean "applied to the skin".
TOPICAL_ROUTE_SNOMED = (
    ("6064005", "Topical route", "ONCOFAIR FHIR IG SNOMED code system; metriport route mapping"),
    ("45890007", "Transdermal route", "ONCOFAIR FHIR IG SNOMED code system"),
)

# SNOMED CT imaging procedures of the thoracic / lumbar / sacral spine (no cervical-only and no
# whole-spine codes), as listed in the Belgian eHealth 'Diagnostic Imaging Procedure' value set.
SPINE_IMAGING_SNOMED_SOURCE = (
    "be-vs-diagnostic-imaging-procedure 1.0.0 (Belgian eHealth eReferral IG, SNOMED CT "
    "international concepts), read in the code search corpus"
)
SPINE_IMAGING_SNOMED = (
    ("90523008", "Computed tomography of lumbar vertebral column with contrast (procedure)"),
    ("572091000119106", "Computed tomography of lumbar spine without contrast (procedure)"),
    ("723646000", "Computed tomography of lumbar and sacral spine with contrast (procedure)"),
    ("711224009", "Computed tomography of lumbar and sacral spine (procedure)"),
    ("430452007", "Computed tomography of sacral spine with contrast (procedure)"),
    ("241581003", "Computed tomography of sacral spine (procedure)"),
    ("113105001", "Computed tomography of thoracic spine with contrast (procedure)"),
    ("572081000119108", "Computed tomography of thoracic spine without contrast (procedure)"),
    ("702488002", "Computed tomography of thoracic and lumbar spine with contrast (procedure)"),
    ("702487007", "Computed tomography of thoracic and lumbar spine (procedure)"),
    ("241592002", "Computed tomography myelogram of lumbar region (procedure)"),
    ("241591009", "Computed tomography myelogram of thoracic region (procedure)"),
    ("41333006", "Magnetic resonance imaging of lumbar spine with contrast (procedure)"),
    ("394451000119106", "Magnetic resonance imaging of lumbar spine without contrast (procedure)"),
    ("433141005", "Magnetic resonance imaging of lumbar and sacral spine (procedure)"),
    (
        "433140006",
        "Magnetic resonance imaging of lumbar and sacral spine with contrast (procedure)",
    ),
    ("726546000", "Magnetic resonance imaging of lumbar spine and sacroiliac joint (procedure)"),
    (
        "709653005",
        "Magnetic resonance imaging of lumbar spine and sacroiliac joint with contrast (procedure)",
    ),
    ("388321000119101", "Magnetic resonance imaging of sacrum without contrast (procedure)"),
    ("709527009", "Magnetic resonance imaging of sacral spine with contrast (procedure)"),
    ("91333005", "Magnetic resonance imaging of thoracic spine with contrast (procedure)"),
    (
        "396171000119100",
        "Magnetic resonance imaging of thoracic spine without contrast (procedure)",
    ),
    (
        "411571000119106",
        "Magnetic resonance imaging of thoracic spine and lumbar spine without contrast (procedure)",
    ),
    (
        "448641007",
        "Magnetic resonance imaging of thoracic and lumbar spine with contrast (procedure)",
    ),
    ("840361000", "Plain X-ray of lumbar vertebral column region (procedure)"),
    ("22791004", "Plain X-ray of lumbar and sacral spine (procedure)"),
    ("1290655009", "Plain X-ray of sacral vertebral column region (procedure)"),
    ("1290654008", "Plain X-ray of thoracic vertebral column region (procedure)"),
    ("444634007", "Plain X-ray of thoracic and lumbar spine (procedure)"),
)

PAIN_REFERRAL_SNOMED = (
    (
        "306265007",
        "Referral to pain management specialist (procedure)",
        "VSAC 'Referral' value set 2.16.840.1.113883.3.464.1003.101.12.1046 (eCQM Update "
        "2021-05-06) as packaged in canvas_sdk value_set files in the code corpus",
    ),
)

# Product-level codes added to derived product sets because the shared expansions list them
# without a display.
ACETAMINOPHEN_EXTRA_RXNORM = (
    (
        "198440",
        "acetaminophen 500 MG Oral Tablet",
        "in shared vsac-nonopioid-pain-medications without display; display confirmed by a FHIR "
        "MedicationRequest example and a terminology test in the code corpus",
    ),
    (
        "313782",
        "acetaminophen 325 MG Oral Tablet",
        "the suggested acetaminophen order; in shared vsac-nonopioid-pain-medications without "
        "display; RxCUI and strength confirmed by the openFDA NDC directory (e.g. NDC 69618-010 "
        "and 57237-346, acetaminophen 325 mg tablets, rxcui 313782)",
    ),
)
# The suggested topical NSAID order, a clinical drug (SCD) rather than the ingredient.
TOPICAL_NSAID_EXTRA_RXNORM = (
    (
        "855633",
        "diclofenac sodium 0.01 MG/MG Topical Gel",
        "the suggested topical NSAID order; in shared vsac-nonopioid-pain-medications without "
        "display; confirmed by the HL7 PDDI CDS IG value set valueset-topicaldiclofenac "
        "(855633 Diclofenac Sodium 0.01 MG/MG Topical Gel) and the openFDA NDC directory "
        "(NDC 63187-753, diclofenac sodium 10 mg/g gel, rxcui 855633)",
    ),
)

# Codes the orderables use; each must be a member of the concept it stands for.
ORDERABLE_CATEGORY_REFERRAL = {
    "coding": [{"system": SNOMED, "code": "3457005", "display": "Patient referral"}],
    "text": "Referral",
}
NEUROPATHIC_ICD10CM = (
    ("G60", "Hereditary and idiopathic neuropathy"),
    ("G60.0", "Hereditary motor and sensory neuropathy"),
    ("G60.1", "Refsum's disease"),
    ("G60.2", "Neuropathy in association with hereditary ataxia"),
    ("G60.3", "Idiopathic progressive neuropathy"),
    ("G60.8", "Other hereditary and idiopathic neuropathies"),
    ("G60.9", "Hereditary and idiopathic neuropathy, unspecified"),
    ("G61", "Inflammatory polyneuropathy"),
    ("G61.0", "Guillain-Barre syndrome"),
    ("G61.1", "Serum neuropathy"),
    ("G61.8", "Other inflammatory polyneuropathies"),
    ("G61.81", "Chronic inflammatory demyelinating polyneuritis"),
    ("G61.82", "Multifocal motor neuropathy"),
    ("G61.89", "Other inflammatory polyneuropathies"),
    ("G61.9", "Inflammatory polyneuropathy, unspecified"),
    ("G62", "Other and unspecified polyneuropathies"),
    ("G62.0", "Drug-induced polyneuropathy"),
    ("G62.1", "Alcoholic polyneuropathy"),
    ("G62.2", "Polyneuropathy due to other toxic agents"),
    ("G62.8", "Other specified polyneuropathies"),
    ("G62.81", "Critical illness polyneuropathy"),
    ("G62.82", "Radiation-induced polyneuropathy"),
    ("G62.89", "Other specified polyneuropathies"),
    ("G62.9", "Polyneuropathy, unspecified"),
    ("G63", "Polyneuropathy in diseases classified elsewhere"),
    ("G56", "Mononeuropathies of upper limb"),
    ("G56.0", "Carpal tunnel syndrome"),
    ("G56.00", "Carpal tunnel syndrome, unspecified upper limb"),
    ("G56.01", "Carpal tunnel syndrome, right upper limb"),
    ("G56.02", "Carpal tunnel syndrome, left upper limb"),
    ("G56.03", "Carpal tunnel syndrome, bilateral upper limbs"),
    ("G56.1", "Other lesions of median nerve"),
    ("G56.10", "Other lesions of median nerve, unspecified upper limb"),
    ("G56.11", "Other lesions of median nerve, right upper limb"),
    ("G56.12", "Other lesions of median nerve, left upper limb"),
    ("G56.13", "Other lesions of median nerve, bilateral upper limbs"),
    ("G56.2", "Lesion of ulnar nerve"),
    ("G56.20", "Lesion of ulnar nerve, unspecified upper limb"),
    ("G56.21", "Lesion of ulnar nerve, right upper limb"),
    ("G56.22", "Lesion of ulnar nerve, left upper limb"),
    ("G56.23", "Lesion of ulnar nerve, bilateral upper limbs"),
    ("G56.3", "Lesion of radial nerve"),
    ("G56.30", "Lesion of radial nerve, unspecified upper limb"),
    ("G56.31", "Lesion of radial nerve, right upper limb"),
    ("G56.32", "Lesion of radial nerve, left upper limb"),
    ("G56.33", "Lesion of radial nerve, bilateral upper limbs"),
    ("G56.4", "Causalgia of upper limb"),
    ("G56.40", "Causalgia of unspecified upper limb"),
    ("G56.41", "Causalgia of right upper limb"),
    ("G56.42", "Causalgia of left upper limb"),
    ("G56.43", "Causalgia of bilateral upper limbs"),
    ("G56.8", "Other specified mononeuropathies of upper limb"),
    ("G56.80", "Other specified mononeuropathies of unspecified upper limb"),
    ("G56.81", "Other specified mononeuropathies of right upper limb"),
    ("G56.82", "Other specified mononeuropathies of left upper limb"),
    ("G56.83", "Other specified mononeuropathies of bilateral upper limbs"),
    ("G56.9", "Unspecified mononeuropathy of upper limb"),
    ("G56.90", "Unspecified mononeuropathy of unspecified upper limb"),
    ("G56.91", "Unspecified mononeuropathy of right upper limb"),
    ("G56.92", "Unspecified mononeuropathy of left upper limb"),
    ("G56.93", "Unspecified mononeuropathy of bilateral upper limbs"),
    ("G57", "Mononeuropathies of lower limb"),
    ("G57.0", "Lesion of sciatic nerve"),
    ("G57.00", "Lesion of sciatic nerve, unspecified lower limb"),
    ("G57.01", "Lesion of sciatic nerve, right lower limb"),
    ("G57.02", "Lesion of sciatic nerve, left lower limb"),
    ("G57.03", "Lesion of sciatic nerve, bilateral lower limbs"),
    ("G57.1", "Meralgia paresthetica"),
    ("G57.10", "Meralgia paresthetica, unspecified lower limb"),
    ("G57.11", "Meralgia paresthetica, right lower limb"),
    ("G57.12", "Meralgia paresthetica, left lower limb"),
    ("G57.13", "Meralgia paresthetica, bilateral lower limbs"),
    ("G57.2", "Lesion of femoral nerve"),
    ("G57.20", "Lesion of femoral nerve, unspecified lower limb"),
    ("G57.21", "Lesion of femoral nerve, right lower limb"),
    ("G57.22", "Lesion of femoral nerve, left lower limb"),
    ("G57.23", "Lesion of femoral nerve, bilateral lower limbs"),
    ("G57.3", "Lesion of lateral popliteal nerve"),
    ("G57.30", "Lesion of lateral popliteal nerve, unspecified lower limb"),
    ("G57.31", "Lesion of lateral popliteal nerve, right lower limb"),
    ("G57.32", "Lesion of lateral popliteal nerve, left lower limb"),
    ("G57.33", "Lesion of lateral popliteal nerve, bilateral lower limbs"),
    ("G57.4", "Lesion of medial popliteal nerve"),
    ("G57.40", "Lesion of medial popliteal nerve, unspecified lower limb"),
    ("G57.41", "Lesion of medial popliteal nerve, right lower limb"),
    ("G57.42", "Lesion of medial popliteal nerve, left lower limb"),
    ("G57.43", "Lesion of medial popliteal nerve, bilateral lower limbs"),
    ("G57.5", "Tarsal tunnel syndrome"),
    ("G57.50", "Tarsal tunnel syndrome, unspecified lower limb"),
    ("G57.51", "Tarsal tunnel syndrome, right lower limb"),
    ("G57.52", "Tarsal tunnel syndrome, left lower limb"),
    ("G57.53", "Tarsal tunnel syndrome, bilateral lower limbs"),
    ("G57.6", "Lesion of plantar nerve"),
    ("G57.60", "Lesion of plantar nerve, unspecified lower limb"),
    ("G57.61", "Lesion of plantar nerve, right lower limb"),
    ("G57.62", "Lesion of plantar nerve, left lower limb"),
    ("G57.63", "Lesion of plantar nerve, bilateral lower limbs"),
    ("G57.7", "Causalgia of lower limb"),
    ("G57.70", "Causalgia of unspecified lower limb"),
    ("G57.71", "Causalgia of right lower limb"),
    ("G57.72", "Causalgia of left lower limb"),
    ("G57.73", "Causalgia of bilateral lower limbs"),
    ("G57.8", "Other specified mononeuropathies of lower limb"),
    ("G57.80", "Other specified mononeuropathies of unspecified lower limb"),
    ("G57.81", "Other specified mononeuropathies of right lower limb"),
    ("G57.82", "Other specified mononeuropathies of left lower limb"),
    ("G57.83", "Other specified mononeuropathies of bilateral lower limbs"),
    ("G57.9", "Unspecified mononeuropathy of lower limb"),
    ("G57.90", "Unspecified mononeuropathy of unspecified lower limb"),
    ("G57.91", "Unspecified mononeuropathy of right lower limb"),
    ("G57.92", "Unspecified mononeuropathy of left lower limb"),
    ("G57.93", "Unspecified mononeuropathy of bilateral lower limbs"),
    ("G58", "Other mononeuropathies"),
    ("G58.0", "Intercostal neuropathy"),
    ("G58.7", "Mononeuritis multiplex"),
    ("G58.8", "Other specified mononeuropathies"),
    ("G58.9", "Mononeuropathy, unspecified"),
    ("B02.2", "Zoster with other nervous system involvement"),
    ("B02.21", "Postherpetic geniculate ganglionitis"),
    ("B02.22", "Postherpetic trigeminal neuralgia"),
    ("B02.23", "Postherpetic polyneuropathy"),
    ("B02.24", "Postherpetic myelitis"),
    ("B02.29", "Other postherpetic nervous system involvement"),
    ("M79.2", "Neuralgia and neuritis, unspecified"),
    ("G50.0", "Trigeminal neuralgia"),
    ("G54.1", "Lumbosacral plexus disorders"),
    ("G54.4", "Lumbosacral root disorders, not elsewhere classified"),
    ("G89.0", "Central pain syndrome"),
    ("G90.5", "Complex regional pain syndrome I (CRPS I)"),
    ("G90.50", "Complex regional pain syndrome I, unspecified"),
    ("G90.51", "Complex regional pain syndrome I of upper limb"),
    ("G90.511", "Complex regional pain syndrome I of right upper limb"),
    ("G90.512", "Complex regional pain syndrome I of left upper limb"),
    ("G90.513", "Complex regional pain syndrome I of upper limb, bilateral"),
    ("G90.519", "Complex regional pain syndrome I of unspecified upper limb"),
    ("G90.52", "Complex regional pain syndrome I of lower limb"),
    ("G90.521", "Complex regional pain syndrome I of right lower limb"),
    ("G90.522", "Complex regional pain syndrome I of left lower limb"),
    ("G90.523", "Complex regional pain syndrome I of lower limb, bilateral"),
    ("G90.529", "Complex regional pain syndrome I of unspecified lower limb"),
    ("G90.59", "Complex regional pain syndrome I of other specified site"),
    ("E08.4", "Diabetes mellitus due to underlying condition with neurological complications"),
    (
        "E08.40",
        "Diabetes mellitus due to underlying condition with diabetic neuropathy, unspecified",
    ),
    ("E08.41", "Diabetes mellitus due to underlying condition with diabetic mononeuropathy"),
    ("E08.42", "Diabetes mellitus due to underlying condition with diabetic polyneuropathy"),
    ("E08.44", "Diabetes mellitus due to underlying condition with diabetic amyotrophy"),
    (
        "E08.49",
        "Diabetes mellitus due to underlying condition with other diabetic neurological complication",
    ),
    ("E09.4", "Drug or chemical induced diabetes mellitus with neurological complications"),
    (
        "E09.40",
        "Drug or chemical induced diabetes mellitus with neurological complications with diabetic neuropathy, unspecified",
    ),
    (
        "E09.41",
        "Drug or chemical induced diabetes mellitus with neurological complications with diabetic mononeuropathy",
    ),
    (
        "E09.42",
        "Drug or chemical induced diabetes mellitus with neurological complications with diabetic polyneuropathy",
    ),
    (
        "E09.44",
        "Drug or chemical induced diabetes mellitus with neurological complications with diabetic amyotrophy",
    ),
    (
        "E09.49",
        "Drug or chemical induced diabetes mellitus with neurological complications with other diabetic neurological complication",
    ),
    ("E10.4", "Type 1 diabetes mellitus with neurological complications"),
    ("E10.40", "Type 1 diabetes mellitus with diabetic neuropathy, unspecified"),
    ("E10.41", "Type 1 diabetes mellitus with diabetic mononeuropathy"),
    ("E10.42", "Type 1 diabetes mellitus with diabetic polyneuropathy"),
    ("E10.44", "Type 1 diabetes mellitus with diabetic amyotrophy"),
    ("E10.49", "Type 1 diabetes mellitus with other diabetic neurological complication"),
    ("E11.4", "Type 2 diabetes mellitus with neurological complications"),
    ("E11.40", "Type 2 diabetes mellitus with diabetic neuropathy, unspecified"),
    ("E11.41", "Type 2 diabetes mellitus with diabetic mononeuropathy"),
    ("E11.42", "Type 2 diabetes mellitus with diabetic polyneuropathy"),
    ("E11.44", "Type 2 diabetes mellitus with diabetic amyotrophy"),
    ("E11.49", "Type 2 diabetes mellitus with other diabetic neurological complication"),
    ("E13.4", "Other specified diabetes mellitus with neurological complications"),
    ("E13.40", "Other specified diabetes mellitus with diabetic neuropathy, unspecified"),
    ("E13.41", "Other specified diabetes mellitus with diabetic mononeuropathy"),
    ("E13.42", "Other specified diabetes mellitus with diabetic polyneuropathy"),
    ("E13.44", "Other specified diabetes mellitus with diabetic amyotrophy"),
    ("E13.49", "Other specified diabetes mellitus with other diabetic neurological complication"),
)

DEPRESSION_ICD10CM = (
    ("F32", "Depressive episode"),
    ("F32.0", "Major depressive disorder, single episode, mild"),
    ("F32.1", "Major depressive disorder, single episode, moderate"),
    ("F32.2", "Major depressive disorder, single episode, severe without psychotic features"),
    ("F32.3", "Major depressive disorder, single episode, severe with psychotic features"),
    ("F32.4", "Major depressive disorder, single episode, in partial remission"),
    ("F32.5", "Major depressive disorder, single episode, in full remission"),
    ("F32.8", "Other depressive episodes"),
    ("F32.81", "Premenstrual dysphoric disorder"),
    ("F32.89", "Other specified depressive episodes"),
    ("F32.9", "Major depressive disorder, single episode, unspecified"),
    ("F32.A", "Depression, unspecified"),
    ("F33", "Major depressive disorder, recurrent"),
    ("F33.0", "Major depressive disorder, recurrent, mild"),
    ("F33.1", "Major depressive disorder, recurrent, moderate"),
    ("F33.2", "Major depressive disorder, recurrent severe without psychotic features"),
    ("F33.3", "Major depressive disorder, recurrent, severe with psychotic symptoms"),
    ("F33.4", "Major depressive disorder, recurrent, in remission"),
    ("F33.40", "Major depressive disorder, recurrent, in remission, unspecified"),
    ("F33.41", "Major depressive disorder, recurrent, in partial remission"),
    ("F33.42", "Major depressive disorder, recurrent, in full remission"),
    ("F33.8", "Other recurrent depressive disorders"),
    ("F33.9", "Major depressive disorder, recurrent, unspecified"),
    ("F34.1", "Dysthymic disorder"),
)

ANXIETY_ICD10CM = (
    ("F41", "Other anxiety disorders"),
    ("F41.0", "Panic disorder [episodic paroxysmal anxiety]"),
    ("F41.1", "Generalized anxiety disorder"),
    ("F41.3", "Other mixed anxiety disorders"),
    ("F41.8", "Other specified anxiety disorders"),
    ("F41.9", "Anxiety disorder, unspecified"),
    ("F40.0", "Agoraphobia"),
    ("F40.00", "Agoraphobia, unspecified"),
    ("F40.01", "Agoraphobia with panic disorder"),
    ("F40.02", "Agoraphobia without panic disorder"),
    ("F40.1", "Social phobias"),
    ("F40.10", "Social phobia, unspecified"),
    ("F40.11", "Social phobia, generalized"),
)

CKD_SEVERE_ICD10CM = (
    ("N18.4", "Chronic kidney disease, stage 4 (severe)"),
    ("N18.5", "Chronic kidney disease, stage 5"),
    ("N18.6", "End stage renal disease"),
    ("Z99.2", "Dependence on renal dialysis"),
    (
        "I12.0",
        "Hypertensive chronic kidney disease with stage 5 chronic kidney disease or end stage renal disease",
    ),
    (
        "I13.11",
        "Hypertensive heart and chronic kidney disease without heart failure, with stage 5 chronic kidney disease, or end stage renal disease",
    ),
    (
        "I13.2",
        "Hypertensive heart and chronic kidney disease with heart failure and with stage 5 chronic kidney disease, or end stage renal disease",
    ),
    ("Z49", "Encounter for care involving renal dialysis"),
    ("Z49.0", "Preparatory care for renal dialysis"),
    ("Z49.01", "Encounter for fitting and adjustment of extracorporeal dialysis catheter"),
    ("Z49.02", "Encounter for fitting and adjustment of peritoneal dialysis catheter"),
    ("Z49.3", "Encounter for adequacy testing for dialysis"),
    ("Z49.31", "Encounter for adequacy testing for hemodialysis"),
    ("Z49.32", "Encounter for adequacy testing for peritoneal dialysis"),
)

GI_BLEED_ULCER_ICD10CM = (
    ("K25", "Gastric ulcer"),
    ("K25.0", "Acute gastric ulcer with hemorrhage"),
    ("K25.1", "Acute gastric ulcer with perforation"),
    ("K25.2", "Acute gastric ulcer with both hemorrhage and perforation"),
    ("K25.3", "Acute gastric ulcer without hemorrhage or perforation"),
    ("K25.4", "Chronic or unspecified gastric ulcer with hemorrhage"),
    ("K25.5", "Chronic or unspecified gastric ulcer with perforation"),
    ("K25.6", "Chronic or unspecified gastric ulcer with both hemorrhage and perforation"),
    ("K25.7", "Chronic gastric ulcer without hemorrhage or perforation"),
    ("K25.9", "Gastric ulcer, unspecified as acute or chronic, without hemorrhage or perforation"),
    ("K26", "Duodenal ulcer"),
    ("K26.0", "Acute duodenal ulcer with hemorrhage"),
    ("K26.1", "Acute duodenal ulcer with perforation"),
    ("K26.2", "Acute duodenal ulcer with both hemorrhage and perforation"),
    ("K26.3", "Acute duodenal ulcer without hemorrhage or perforation"),
    ("K26.4", "Chronic or unspecified duodenal ulcer with hemorrhage"),
    ("K26.5", "Chronic or unspecified duodenal ulcer with perforation"),
    ("K26.6", "Chronic or unspecified duodenal ulcer with both hemorrhage and perforation"),
    ("K26.7", "Chronic duodenal ulcer without hemorrhage or perforation"),
    ("K26.9", "Duodenal ulcer, unspecified as acute or chronic, without hemorrhage or perforation"),
    ("K27", "Peptic ulcer, site unspecified"),
    ("K27.0", "Acute peptic ulcer, site unspecified, with hemorrhage"),
    ("K27.1", "Acute peptic ulcer, site unspecified, with perforation"),
    ("K27.2", "Acute peptic ulcer, site unspecified, with both hemorrhage and perforation"),
    ("K27.3", "Acute peptic ulcer, site unspecified, without hemorrhage or perforation"),
    ("K27.4", "Chronic or unspecified peptic ulcer, site unspecified, with hemorrhage"),
    ("K27.5", "Chronic or unspecified peptic ulcer, site unspecified, with perforation"),
    (
        "K27.6",
        "Chronic or unspecified peptic ulcer, site unspecified, with both hemorrhage and perforation",
    ),
    ("K27.7", "Chronic peptic ulcer, site unspecified, without hemorrhage or perforation"),
    (
        "K27.9",
        "Peptic ulcer, site unspecified, unspecified as acute or chronic, without hemorrhage or perforation",
    ),
    ("K28", "Gastrojejunal ulcer"),
    ("K28.0", "Acute gastrojejunal ulcer with hemorrhage"),
    ("K28.1", "Acute gastrojejunal ulcer with perforation"),
    ("K28.2", "Acute gastrojejunal ulcer with both hemorrhage and perforation"),
    ("K28.3", "Acute gastrojejunal ulcer without hemorrhage or perforation"),
    ("K28.4", "Chronic or unspecified gastrojejunal ulcer with hemorrhage"),
    ("K28.5", "Chronic or unspecified gastrojejunal ulcer with perforation"),
    ("K28.6", "Chronic or unspecified gastrojejunal ulcer with both hemorrhage and perforation"),
    ("K28.7", "Chronic gastrojejunal ulcer without hemorrhage or perforation"),
    (
        "K28.9",
        "Gastrojejunal ulcer, unspecified as acute or chronic, without hemorrhage or perforation",
    ),
    ("K92.0", "Hematemesis"),
    ("K92.1", "Melena"),
    ("K92.2", "Gastrointestinal hemorrhage, unspecified"),
    ("K22.11", "Ulcer of esophagus with bleeding"),
    ("K29.01", "Acute gastritis with bleeding"),
    ("K29.21", "Alcoholic gastritis with bleeding"),
    ("K29.31", "Chronic superficial gastritis with bleeding"),
    ("K29.41", "Chronic atrophic gastritis with bleeding"),
    ("K29.51", "Unspecified chronic gastritis with bleeding"),
    ("K29.61", "Other gastritis with bleeding"),
    ("K29.71", "Gastritis, unspecified, with bleeding"),
    ("K29.81", "Duodenitis with bleeding"),
    ("K29.91", "Gastroduodenitis, unspecified, with bleeding"),
    ("K31.811", "Angiodysplasia of stomach and duodenum with bleeding"),
    ("K31.82", "Dieulafoy lesion (hemorrhagic) of stomach and duodenum"),
    ("Z87.11", "Personal history of peptic ulcer disease"),
)

HEART_FAILURE_ICD10CM = (
    ("I50", "Heart failure"),
    ("I50.1", "Left ventricular failure, unspecified"),
    ("I50.2", "Systolic (congestive) heart failure"),
    ("I50.20", "Unspecified systolic (congestive) heart failure"),
    ("I50.21", "Acute systolic (congestive) heart failure"),
    ("I50.22", "Chronic systolic (congestive) heart failure"),
    ("I50.23", "Acute on chronic systolic (congestive) heart failure"),
    ("I50.3", "Diastolic (congestive) heart failure"),
    ("I50.30", "Unspecified diastolic (congestive) heart failure"),
    ("I50.31", "Acute diastolic (congestive) heart failure"),
    ("I50.32", "Chronic diastolic (congestive) heart failure"),
    ("I50.33", "Acute on chronic diastolic (congestive) heart failure"),
    ("I50.4", "Combined systolic (congestive) and diastolic (congestive) heart failure"),
    (
        "I50.40",
        "Unspecified combined systolic (congestive) and diastolic (congestive) heart failure",
    ),
    ("I50.41", "Acute combined systolic (congestive) and diastolic (congestive) heart failure"),
    ("I50.42", "Chronic combined systolic (congestive) and diastolic (congestive) heart failure"),
    (
        "I50.43",
        "Acute on chronic combined systolic (congestive) and diastolic (congestive) heart failure",
    ),
    ("I50.8", "Other heart failure"),
    ("I50.81", "Right heart failure"),
    ("I50.810", "Right heart failure, unspecified"),
    ("I50.811", "Acute right heart failure"),
    ("I50.812", "Chronic right heart failure"),
    ("I50.813", "Acute on chronic right heart failure"),
    ("I50.814", "Right heart failure due to left heart failure"),
    ("I50.82", "Biventricular heart failure"),
    ("I50.83", "High output heart failure"),
    ("I50.84", "End stage heart failure"),
    ("I50.89", "Other heart failure"),
    ("I50.9", "Heart failure, unspecified"),
    ("I11.0", "Hypertensive heart disease with heart failure"),
    (
        "I13.0",
        "Hypertensive heart and chronic kidney disease with heart failure and stage 1 through stage 4 chronic kidney disease, or unspecified chronic kidney disease",
    ),
    (
        "I13.2",
        "Hypertensive heart and chronic kidney disease with heart failure and with stage 5 chronic kidney disease, or end stage renal disease",
    ),
    ("I09.81", "Rheumatic heart failure"),
    ("I97.13", "Postprocedural heart failure"),
    ("I97.130", "Postprocedural heart failure following cardiac surgery"),
    ("I97.131", "Postprocedural heart failure following other surgery"),
)


# ---------------------------------------------------------------------------------------------
# Reading the shared material
# ---------------------------------------------------------------------------------------------


@dataclass
class Shared:
    """The shared terminology folder: ValueSet documents and the provenance index."""

    root: Path
    docs: dict[str, dict[str, Any]] = field(default_factory=dict)
    index: dict[str, dict[str, Any]] = field(default_factory=dict)
    displays: dict[tuple[str, str], str] = field(default_factory=dict)

    @classmethod
    def load(cls, root: Path) -> Shared:
        shared = cls(root)
        for entry in json.loads((root / "index.json").read_text(encoding="utf-8")):
            shared.index[entry["file"].removesuffix(".json")] = entry
        for path in sorted(root.glob("*.json")):
            doc = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(doc, dict) or doc.get("resourceType") != "ValueSet":
                continue
            shared.docs[path.stem] = doc
            for item in doc.get("expansion", {}).get("contains", []):
                key = _key(item["system"], item["code"])
                if item.get("display") and key not in shared.displays:
                    shared.displays[key] = item["display"]
        return shared

    def contains(self, name: str) -> list[dict[str, Any]]:
        return list(self.docs[name]["expansion"]["contains"])


def _key(system: str, code: str) -> tuple[str, str]:
    canonical = canonical_system(system)
    return canonical, normalise_code(canonical, code)


# ---------------------------------------------------------------------------------------------
# Value set construction
# ---------------------------------------------------------------------------------------------


@dataclass
class ValueSet:
    id: str
    title: str
    description: str
    provenance: dict[str, str]
    codes: list[dict[str, str]]

    def document(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "provenance": self.provenance,
            "codes": self.codes,
        }


def _clean_codes(
    items: Iterable[dict[str, Any]], shared: Shared, fill: bool = True
) -> tuple[list[dict[str, str]], int]:
    """Canonical systems, trimmed codes, de-duplicated, sorted; blank displays filled if known."""
    seen: dict[tuple[str, str], dict[str, str]] = {}
    filled = 0
    for item in items:
        system = canonical_system(item["system"])
        code = item["code"].strip()
        key = (system, normalise_code(system, code))
        if key in seen:
            continue
        display = (item.get("display") or "").strip()
        if not display and fill and key in shared.displays:
            display = shared.displays[key]
            filled += 1
        entry = {"system": system, "code": code}
        if display:
            entry["display"] = display
        seen[key] = entry
    codes = sorted(seen.values(), key=lambda c: (c["system"], c["code"]))
    return codes, filled


def _provenance_of(shared: Shared, name: str) -> dict[str, str]:
    doc = shared.docs[name]
    entry = shared.index.get(name, {})
    upstream = entry.get("source", "")
    if upstream.startswith("compiled"):
        upstream = f", itself {upstream}"
    elif upstream:
        upstream = f", itself from {upstream}"
    prov = {"source": f"shared/terminology/{name}.json{upstream}"}
    url = doc.get("url", "")
    if url and "example.org" not in url:
        prov["upstreamUrl"] = url
    version = doc.get("version")
    stamp = doc.get("expansion", {}).get("timestamp")
    parts = []
    if version:
        parts.append(f"version {version}")
    if stamp and "example.org" not in url:
        parts.append(f"expansion {stamp}")
    if parts:
        prov["upstreamVersion"] = ", ".join(parts)
    prov["license"] = entry.get("license", LICENCE_COMPILED)
    return prov


def copied(
    shared: Shared,
    name: str,
    title: str,
    description: str,
    *,
    vs_id: str | None = None,
    keep: Callable[[dict[str, Any]], bool] | None = None,
    filter_note: str = "",
    extra: Iterable[tuple[str, str, str, str]] = (),
) -> ValueSet:
    """A value set copied from one shared file, optionally filtered; `extra` rows
    (system, code, display, verification note) are added by hand and must pass `keep` too."""
    items = shared.contains(name)
    kept = [item for item in items if keep is None or keep(item)]
    extra = list(extra)
    added = [{"system": s, "code": c, "display": d} for s, c, d, _ in extra]
    rejected = [item["code"] for item in added if keep is not None and not keep(item)]
    if rejected:
        raise SystemExit(f"{vs_id or name}: hand-added codes fail the filter: {rejected}")
    codes, filled = _clean_codes(kept + added, shared)
    prov = _provenance_of(shared, name)
    dropped = len(items) - len(kept)
    if keep is None:
        method = "verbatim copy of the shared expansion (codes and displays)"
    else:
        method = f"filtered subset: {filter_note} ({dropped} of {len(items)} codes dropped)"
    if name in _COMPILED_IN_SHARED:
        method += "; the shared file is itself compiled from verified facts (per-code notes there)"
    if filled:
        method += f"; {filled} blank displays filled from the same code in other shared files"
    if extra:
        method += "; added by hand: " + "; ".join(
            f"{SYSTEM_NAMES[s]} {c} {d} ({note})" for s, c, d, note in extra
        )
    prov["method"] = method
    return ValueSet(vs_id or name, title, description, prov, codes)


def compiled(
    shared: Shared,
    vs_id: str,
    title: str,
    description: str,
    rows: Iterable[tuple[str, str, str]],
    source: str,
    method: str,
) -> ValueSet:
    """A value set compiled in this script from a hand-curated table of (system, code, display)."""
    items = [{"system": s, "code": c, "display": d} for s, c, d in rows]
    codes, _ = _clean_codes(items, shared, fill=False)
    prov = {"source": source, "license": LICENCE_COMPILED, "method": method}
    return ValueSet(vs_id, title, description, prov, codes)


def derived(
    shared: Shared,
    vs_id: str,
    title: str,
    description: str,
    names: Iterable[str],
    keep: Callable[[str], bool],
    rule: str,
    extra: Iterable[tuple[str, str, str]] = (),
) -> ValueSet:
    """Products picked from shared RxNorm expansions by the words of their displays."""
    names = list(names)
    items = []
    for name in names:
        for item in shared.contains(name):
            display = item.get("display") or shared.displays.get(
                _key(item["system"], item["code"]), ""
            )
            if display and keep(display):
                items.append({**item, "display": display})
    extra = list(extra)
    items += [{"system": RXNORM, "code": c, "display": d} for c, d, _ in extra]
    codes, _ = _clean_codes(items, shared, fill=False)
    sources = ", ".join(f"shared/terminology/{n}.json" for n in names)
    licences = sorted({shared.index[n]["license"] for n in names if n in shared.index})
    method = f"filtered subset by display words: {rule}; products without a display cannot be classified and are left out"
    if extra:
        method += "; added by hand: " + "; ".join(f"{c} ({note})" for c, _, note in extra)
    prov = {"source": sources, "license": " | ".join(licences), "method": method}
    return ValueSet(vs_id, title, description, prov, codes)


_COMPILED_IN_SHARED = {
    name
    for name in (
        "thoracic-back-pain-diagnoses",
        "low-back-pain-diagnoses",
        "radicular-back-pain-diagnoses",
        "red-flag-cauda-equina-and-neurologic-deficit",
        "red-flag-fever-findings",
        "red-flag-iv-drug-use",
        "red-flag-immunosuppression",
        "red-flag-spinal-infection",
        "red-flag-history-of-cancer",
        "red-flag-unexplained-weight-loss",
        "red-flag-spinal-fracture-and-cord-injury",
        "red-flag-osteoporosis-and-fragility-fracture",
        "spine-imaging-thoracic-lumbar-cpt",
        "spine-imaging-thoracic-lumbar-loinc",
        "spinal-injection-procedures",
        "physical-therapy-and-exercise-referral",
        "nsaid-ingredients",
        "acetaminophen-ingredient",
        "antidepressant-ssri-ingredients",
        "antidepressant-snri-ingredients",
        "antidepressant-tca-ingredients",
        "opioid-analgesic-ingredients",
    )
}


# ---------------------------------------------------------------------------------------------
# Word lists used both to classify product displays and to build text patterns
# ---------------------------------------------------------------------------------------------

OPIOID_WORDS = (
    "tramadol",
    "tapentadol",
    "oxycodone",
    "hydrocodone",
    "benzhydrocodone",
    "codeine",
    "dihydrocodeine",
    "morphine",
    "hydromorphone",
    "oxymorphone",
    "fentanyl",
    "sufentanil",
    "methadone",
    "meperidine",
    "levorphanol",
    "pentazocine",
    "butorphanol",
    "nalbuphine",
    "buprenorphine",
    "opium",
    "propoxyphene",
)
NSAID_WORDS = (
    "ibuprofen",
    "naproxen",
    "diclofenac",
    "meloxicam",
    "celecoxib",
    "ketorolac",
    "etodolac",
    "nabumetone",
    "indomethacin",
    "piroxicam",
    "sulindac",
    "oxaprozin",
    "ketoprofen",
    "flurbiprofen",
    "diflunisal",
    "salsalate",
    "fenoprofen",
    "mefenamic",
    "meclofenamate",
    "tolmetin",
)
NSAID_BRANDS = (
    "advil",
    "motrin",
    "aleve",
    "naprosyn",
    "anaprox",
    "voltaren",
    "cataflam",
    "zipsor",
    "zorvolex",
    "flector",
    "pennsaid",
    "arthrotec",
    "mobic",
    "vivlodex",
    "celebrex",
    "toradol",
    "sprix",
    "lodine",
    "relafen",
    "indocin",
    "tivorbex",
    "feldene",
    "clinoril",
    "daypro",
    "ansaid",
    "nalfon",
    "ponstel",
)
TOPICAL_DOSE_FORMS = (
    "topical gel",
    "topical solution",
    "topical cream",
    "transdermal",
    "medicated patch",
    "topical spray",
    "topical foam",
    "topical lotion",
    "topical ointment",
)
SSRI_WORDS = ("citalopram", "escitalopram", "fluoxetine", "paroxetine", "sertraline", "fluvoxamine")
SNRI_WORDS = ("duloxetine", "venlafaxine", "desvenlafaxine", "levomilnacipran", "milnacipran")
TCA_WORDS = (
    "amitriptyline",
    "nortriptyline",
    "imipramine",
    "desipramine",
    "doxepin",
    "clomipramine",
    "trimipramine",
    "protriptyline",
    "amoxapine",
)


def _words(words: Iterable[str]) -> str:
    return "|".join(sorted(words, key=lambda w: (-len(w), w)))


def _has_word(text: str, words: Iterable[str]) -> bool:
    return re.search(rf"\b(?:{_words(words)})\b", text, re.IGNORECASE) is not None


def _has_phrase(text: str, phrases: Iterable[str]) -> bool:
    lowered = text.lower()
    return any(p in lowered for p in phrases)


def is_nsaid_product(display: str) -> bool:
    return _has_word(display, NSAID_WORDS) and not _has_word(display, OPIOID_WORDS)


def is_topical_nsaid_product(display: str) -> bool:
    return is_nsaid_product(display) and _has_phrase(display, TOPICAL_DOSE_FORMS)


def is_acetaminophen_product(display: str) -> bool:
    return _has_word(display, ("acetaminophen",)) and not _has_word(display, OPIOID_WORDS)


def _antidepressant_class(words: Iterable[str]) -> Callable[[str], bool]:
    """Products containing one of the class's ingredients (whole words, so that "escitalopram"
    is not read as "citalopram"); topical doxepin (a cream for itch) is not an antidepressant."""
    words = tuple(words)

    def keep(display: str) -> bool:
        return _has_word(display, words) and not _has_phrase(display, ("topical",))

    return keep


# ---------------------------------------------------------------------------------------------
# Text patterns (Python regex, matched case-insensitively against CodeableConcept.text and
# coding displays). Kept deliberately narrow: a text match is a fallback for orders that arrive
# with local codes only.
# ---------------------------------------------------------------------------------------------

_NOT_EYE_EAR = r"^(?!.*\b(?:ophthalmic|eye\s+drops?|otic|ear\s+drops?)\b)"
_NOT_LOCAL_STEROID = (
    r"^(?!.*\b(?:topical|cream|ointment|lotion|gel|foam|shampoo|ophthalmic|otic|eye|ear|nasal|"
    r"inhal\w*|nebuli[sz]\w*|rectal|enema|suppositor\w*|dental|paste|intra-?articular|"
    r"spray|drops?)\b)"
)
_NO_LIQUID_GEL = r"(?<!liqui-)(?<!liqui )(?<!liquid )(?<!liquid-)"
_TOPICAL_WORDS = (
    rf"\btopical(?:ly)?\b|{_NO_LIQUID_GEL}\bgels?\b|\bcreams?\b|\bointments?\b|\blotions?\b|"
    r"\btransdermal\b|\bpatch(?:es)?\b|\bfoam\b"
)
_NSAID_TEXT = _words((*NSAID_WORDS, *NSAID_BRANDS))
_IMAGING_EXCLUSIONS = (
    r"^(?!.*\b(?:absorptiometry|densitometry|dexa|dxa|bone\s+density|inject\w*|epidural|facet|"
    r"block|ablation|puncture|guided|guidance|biopsy|kyphoplasty|vertebroplasty)\b)"
)
# Imaging modality words, used both for order text and to split coded studies by display.
_MRI_WORDS = r"(?:mri|mr|magnetic\s+resonance)"
_CT_WORDS = r"(?:ct|cat\s+scan|computed\s+tomograph\w*)"
_XRAY_WORDS = r"(?:x-?rays?|xr|radiograph\w*|radiologic\s+exam\w*|plain\s+films?)"
_MODALITY = rf"(?:{_MRI_WORDS}|{_CT_WORDS}|{_XRAY_WORDS}|myelogra\w*|imaging)"
_REGION = (
    r"(?:lumbar|lumbosacral|thoracolumbar|sacrum|sacral|coccyx|l-?spine|ls-?spine|tl-?spine|"
    r"t-?spine|thoracic\s+(?:spine|vertebra\w*|column)|(?<!cervical\s)(?<!c-)spine|"
    r"(?<!cervical\s)spinal)"
)


def _spine_imaging(modality: str) -> list[str]:
    """A modality word and a thoracic/lumbar region word, in either order."""
    return [
        rf"{_IMAGING_EXCLUSIONS}.*\b{modality}\b.*\b{_REGION}\b",
        rf"{_IMAGING_EXCLUSIONS}.*\b{_REGION}\b.*\b{modality}\b",
    ]


# Analgesic opioids by ingredient and common US brand. Plain "buprenorphine" is left out on
# purpose (most buprenorphine orders treat opioid use disorder); the analgesic buprenorphine
# brands Belbuca and Butrans are included, and transdermal buprenorphine below.
_OPIOID_TEXT = (
    r"(?:tramadol|ultram|conzip|qdolo|ultracet|seglentis|tapentadol|nucynta|oxycodone|"
    r"oxycontin|roxicodone|roxybond|oxaydo|xtampza|percocet|endocet|primlev|hydrocodone|"
    r"benzhydrocodone|apadaz|norco|vicodin|lortab|lorcet|hysingla|zohydro|vicoprofen|codeine|"
    r"dihydrocodeine|morphine|ms\s*contin|kadian|arymo|morphabond|embeda|hydromorphone|dilaudid|"
    r"exalgo|oxymorphone|opana|fentanyl|duragesic|ionsys|actiq|fentora|subsys|methadone|"
    r"dolophine|methadose|diskets|meperidine|demerol|levorphanol|pentazocine|butorphanol|"
    r"nalbuphine|opium|belbuca|butrans)"
)
# Extended-release / long-acting release words. "12 HR" / "24 HR" only where RxNorm puts them,
# at the start of the name, so that "every 12 hr" in a free-text order is not read as ER.
_ER_MARKERS = (
    r"(?:extended[\s-]release|controlled[\s-]release|sustained[\s-]release|long[\s-]acting|"
    r"er|xr|sr|cr|transdermal|patch(?:es)?)"
)
_ER_LEADING_HOURS = r"^\W*(?:12|24|72|168)\s*-?\s*(?:hr|hour)s?\b"
# Transdermal buprenorphine treats pain only (opioid use disorder is treated with sublingual,
# buccal or injected forms), so it counts although plain "buprenorphine" does not.
_TRANSDERMAL_BUPRENORPHINE = (
    r"\bbuprenorphine\b.*\b(?:transdermal|patch(?:es)?)\b|"
    r"\b(?:transdermal|patch(?:es)?)\b.*\bbuprenorphine\b"
)
# Products that are ER/LA whatever the text says; methadone counts as long-acting, as in the CDC
# set. Belbuca (buccal buprenorphine) is not in the CDC set and is not listed.
_ER_OPIOID_BRANDS = (
    r"(?:oxycontin|xtampza|ms\s*contin|kadian|arymo|morphabond|embeda|hysingla|zohydro|exalgo|"
    r"conzip|butrans|duragesic|ionsys|methadone|dolophine|methadose|diskets)"
)

TEXT_PATTERNS: dict[Concept, list[str]] = {
    Concept.OPIOID: [rf"\b{_OPIOID_TEXT}\b", _TRANSDERMAL_BUPRENORPHINE],
    Concept.OPIOID_EXTENDED_RELEASE: [
        rf"\b{_OPIOID_TEXT}\b.*\b{_ER_MARKERS}\b",
        rf"\b{_ER_MARKERS}\b.*\b{_OPIOID_TEXT}\b",
        rf"{_ER_LEADING_HOURS}.*\b{_OPIOID_TEXT}\b",
        rf"\b{_ER_OPIOID_BRANDS}\b",
        _TRANSDERMAL_BUPRENORPHINE,
    ],
    Concept.NSAID: [
        # Ingredient or brand; eye and ear preparations (ketorolac / diclofenac eye drops) are
        # not systemic NSAID exposure and are excluded.
        rf"{_NOT_EYE_EAR}.*\b(?:{_NSAID_TEXT}|nsaids?)\b",
    ],
    Concept.NSAID_TOPICAL: [
        rf"{_NOT_EYE_EAR}.*\b(?:{_NSAID_TEXT})\b.*(?:{_TOPICAL_WORDS})",
        rf"{_NOT_EYE_EAR}.*(?:{_TOPICAL_WORDS}).*\b(?:{_NSAID_TEXT})\b",
        r"\b(?:flector|pennsaid)\b",
    ],
    Concept.TOPICAL_FORM: [_TOPICAL_WORDS],
    Concept.ACETAMINOPHEN: [r"\b(?:acetaminophen|paracetamol|tylenol|apap)\b"],
    Concept.SSRI: [
        r"\b(?:citalopram|celexa|escitalopram|lexapro|fluoxetine|prozac|sarafem|paroxetine|paxil|"
        r"pexeva|brisdelle|sertraline|zoloft|fluvoxamine|luvox)\b",
    ],
    Concept.SNRI: [
        r"\b(?:duloxetine|cymbalta|drizalma|venlafaxine|effexor|desvenlafaxine|pristiq|khedezla|"
        r"levomilnacipran|fetzima|milnacipran|savella)\b",
    ],
    Concept.TCA: [
        r"^(?!.*\b(?:topical|cream)\b).*\b(?:amitriptyline|elavil|nortriptyline|pamelor|aventyl|"
        r"imipramine|tofranil|desipramine|norpramin|doxepin|sinequan|silenor|clomipramine|"
        r"anafranil|trimipramine|surmontil|protriptyline|vivactil|amoxapine)\b",
    ],
    Concept.GLUCOSAMINE_CHONDROITIN: [r"\b(?:glucosamine|chondroitin)\b"],
    Concept.SYSTEMIC_CORTICOSTEROID: [
        # Ingredients that are (almost) always systemic; any local dose-form word vetoes.
        rf"{_NOT_LOCAL_STEROID}.*\b(?:prednisone|rayos|prednisolone|orapred|millipred|"
        r"methylprednisolone|medrol|dexamethasone|decadron|hemady|deflazacort|emflaza|cortisone)\b",
        # Ingredients that are mostly topical/inhaled: only with an oral dose form.
        rf"{_NOT_LOCAL_STEROID}.*\b(?:hydrocortisone|cortef|betamethasone|triamcinolone)\b"
        r".*\b(?:oral|tablets?|tabs?|capsules?)\b",
    ],
    Concept.ANTICOAGULANT: [
        r"\b(?:warfarin|coumadin|jantoven|apixaban|eliquis|rivaroxaban|xarelto|dabigatran|pradaxa|"
        r"edoxaban|savaysa|betrixaban|bevyxxa|enoxaparin|lovenox|dalteparin|fragmin|tinzaparin|"
        r"fondaparinux|arixtra)\b",
        # Heparin, but not the catheter flushes / lock solutions.
        r"^(?!.*\b(?:flush|lock)\b).*\bheparin\b",
    ],
    Concept.SPINE_IMAGING: _spine_imaging(_MODALITY),
    Concept.SPINE_IMAGING_XRAY: _spine_imaging(_XRAY_WORDS),
    Concept.SPINE_IMAGING_CT: _spine_imaging(_CT_WORDS),
    Concept.SPINE_IMAGING_MRI: _spine_imaging(_MRI_WORDS),
    Concept.SPINAL_INJECTION: [
        r"\bepidural\s+(?:steroid\s+)?(?:injections?|block)\b",
        r"\b(?:lumbar|thoracic|caudal|interlaminar|transforaminal)\s+epidural\b",
        r"\btransforaminal\b",
        r"\bfacet\s+(?:joint\s+)?(?:injections?|blocks?|nerve|rhizotomy|ablation|denervation)\b",
        r"\bmedial\s+branch\s+(?:blocks?|nerve|injections?|radiofrequency|ablation)\b",
        r"\btrigger\s+point\s+inject\w*\b",
        r"\bradiofrequency\s+(?:ablation|neurotomy|denervation|rhizotomy)\b",
        r"\b(?:sacroiliac|si)\s+joint\s+(?:injections?|blocks?)\b",
        r"\brhizotomy\b",
    ],
    Concept.PHYSICAL_THERAPY: [
        r"\bphysical\s+therap(?:y|ist|ies)\b",
        r"\bphysiotherap(?:y|ist|ies)\b",
        # "PT" only next to a referral word; never "PT/INR" or "PT (prothrombin time)".
        r"\bPT\s+(?:referral|eval\w*|consult\w*|visit|treatment|plan)\b",
        r"\b(?:refer(?:ral)?|ambulatory\s+referral)\s+to\s+PT\b",
        r"\bPT\s*(?:and|&|/)\s*OT\b",
        r"\bexercise\s+therapy\b",
        r"\btherapeutic\s+exercises?\b",
    ],
    Concept.PAIN_MANAGEMENT_REFERRAL: [
        r"\b(?:refer\w*|consult\w*)\b.*\bpain\s+(?:management|medicine|clinic|centre|center|"
        r"service|specialist|program(?:me)?)\b",
        r"\bpain\s+(?:clinic|medicine\s+consult\w*)\b",
        r"\b(?:multidisciplinary|interdisciplinary)\s+pain\b",
        r"\bfunctional\s+restoration\s+program(?:me)?\b",
    ],
    Concept.HOSPICE_CARE: [r"\bhospice\b"],
}

# ---------------------------------------------------------------------------------------------
# Filters applied to copied sets (each documented in the value set's provenance.method)
# ---------------------------------------------------------------------------------------------

# vsac-neurologic-impairment: codes that are not a neurologic deficit in the red-flag sense.
NEURO_IMPAIRMENT_DROP = {
    "M48.062": "lumbar stenosis with neurogenic claudication is a common chronic degenerative "
    "diagnosis, not an acute deficit",
    "R26.2": "difficulty in walking is unspecific (arthritis, frailty)",
    "R29.2": "an abnormal reflex alone is unspecific",
}

# Transplant procedure sets: procedures on the organ donor, autotransplants and hand-surgery
# tissue transfers do not leave the patient on transplant immunosuppression.
TRANSPLANT_DROP_WORDS = re.compile(
    r"^donor\b|\bharvesting of donor\b|\bdonor (?:pneumonectomy|cardiectomy|enterectomy|"
    r"hepatectomy|pancreatectomy|lobectomy)|\bautotransplant|\bautologous\b|\breimplantation of "
    r"lung\b|\bhand\b|\bfinger\b|\bthumb\b|\bdigit\b|\bmetacarpal\b|\bjejunum with microvascular\b|"
    r"\btotal replacement heart system\b",
    re.IGNORECASE,
)
TRANSPLANT_KEEP_CODES = {
    # "Removal of a total replacement heart system ... for heart transplantation" marks a heart
    # transplant; "Transplantation of Right/Left Hand, Allogeneic" needs immunosuppression.
    "33929",
    "0XYJ0Z0",
    "0XYJ0Z1",
    "0XYK0Z0",
    "0XYK0Z1",
}


def _transplant_keep(item: dict[str, Any]) -> bool:
    if item["code"] in TRANSPLANT_KEEP_CODES:
        return True
    display = item.get("display") or ""
    if item["code"] in {"313030004", "175901007"}:  # recipient procedures despite the word donor
        return True
    return not TRANSPLANT_DROP_WORDS.search(display)


# Chapter / block range rows such as "C00-C14" in cdc-malignant-cancer-conditions are not codes.
def _not_range(item: dict[str, Any]) -> bool:
    return re.fullmatch(r"[A-Z]\d[0-9A-Z]-[A-Z]\d[0-9A-Z]", item["code"]) is None


# Opioid ingredient fallback: buprenorphine (mostly opioid use disorder treatment at ingredient
# level) and levomethadyl (opioid use disorder only, withdrawn) do not count as analgesic opioids.
OPIOID_INGREDIENT_DROP = {"1819": "buprenorphine", "237005": "levomethadyl"}

# NSAID ingredients: aspirin is left out (mostly ordered at 81 mg for cardiovascular prevention;
# counting it would fire NSAID-contraindication advice on cardioprotective aspirin).
NSAID_INGREDIENT_DROP = {"1191": "aspirin"}

# cdc-sickle-cell-diseases lists the carrier state, which is not a disease and no reason to set
# the opioid guideline aside, and lacks D57.1 (added by sickle-cell-disease-supplement).
SICKLE_TRAIT_DROP = {"D57.3": "sickle-cell trait is a carrier state, not sickle cell disease"}
SICKLE_CELL_SUPPLEMENT_ICD10CM = (("D57.1", "Sickle-cell disease without crisis"),)

# vsac-glucocorticoids-oral-only: an oral paste applied to mouth ulcers is not systemic.
STEROID_DROP = {"1085728": "triamcinolone oral paste acts locally in the mouth"}

# cms166-all-cancer (VSAC "All Cancer", 2017) also lists benign tumours and hereditary syndromes
# (pituitary adenoma, meningioma, multiple endocrine neoplasia). A benign tumour is neither a
# reason to set the opioid guideline aside nor a source of spinal metastases, so those rows are
# dropped unless the display also names a malignancy. In-situ and uncertain-behaviour neoplasms
# stay, as they do in the CDC malignant-cancer list.
CANCER_NOT_MALIGNANT_WORDS = (
    "adenoma",
    "meningioma",
    "nevus",
    "keratoacanthoma",
    "cystadenoma",
    "leiomyomatosis",
    "multiple endocrine",
    "polyglandular",
    "zollinger-ellison",
    "partial monosomy",
    "inherited predisposition",
    "hypereosinophilic",
    "melanosis",
    "melanocytic proliferation",
    "mastocytoma",
    "low grade prostatic intraepithelial",
    "anaplasia of cervix",
    "affecting pregnancy",
)
MALIGNANT_WORDS = (
    "malignant",
    "malignum",
    "carcinoma",
    "carcinoid",
    "sarcoma",
    "lymphoma",
    "leukemia",
    "melanoma",
    "metastatic",
)


def _malignant(item: dict[str, Any]) -> bool:
    display = item.get("display") or ""
    return not _has_word(display, CANCER_NOT_MALIGNANT_WORDS) or _has_word(display, MALIGNANT_WORDS)


# red-flag-significant-trunk-trauma: the trunk part of cms166-trauma (which lists every injury).
# ICD-10-CM by category; S23/S33 also hold sprains, which are not significant trauma.
TRUNK_TRAUMA_ICD10CM_CATEGORIES = (
    "S22",  # fracture of ribs, sternum, thoracic spine
    "S23",  # dislocation of thoracic spine and ribs, traumatic disc rupture
    "S25",  # blood vessels of thorax
    "S26",  # heart
    "S27",  # other intrathoracic organs
    "S28",  # crush of thorax
    "S32",  # fracture of lumbar spine and pelvis
    "S33",  # dislocation of lumbar spine and pelvis, traumatic disc rupture
    "S35",  # blood vessels of abdomen, lower back and pelvis
    "S36",  # intra-abdominal organs
    "S37",  # urinary and pelvic organs
    "S38",  # crush of abdomen, lower back and pelvis
    "T07",  # unspecified multiple injuries
)
TRUNK_TRAUMA_ICD10CM_EXCLUDE = ("sprain", "strain")
# SNOMED CT by display: an injury word together with a trunk site, or a phrase that is trunk
# trauma on its own; superficial and soft-tissue injuries never count.
TRUNK_TRAUMA_SNOMED_INJURIES = (
    "fracture",
    "fractures",
    "dislocation",
    "subluxation",
    "rupture",
    "injury",
    "injuries",
    "lesion",
    "avulsion",
    "laceration",
    "crush",
    "crushing",
    "crushed",
    "concussion",
    "hemopericardium",
)
TRUNK_TRAUMA_SNOMED_SITES = (
    "rib",
    "ribs",
    "sternum",
    "thoracic",
    "lumbar",
    "vertebra",
    "vertebrae",
    "spinal",
    "cauda equina",
    "sacrum",
    "sacral",
    "coccyx",
    "pelvis",
    "pelvic",
    "acetabulum",
    "acetabular",
    "ilium",
    "iliac",
    "ischium",
    "ischial",
    "pubis",
    "pubic",
    "innominate",
    "thorax",
    "chest",
    "trunk",
    "abdomen",
    "abdominal",
    "heart",
    "lung",
    "liver",
    "spleen",
    "kidney",
    "bladder",
)
TRUNK_TRAUMA_SNOMED_ALONE = (
    "multiple injuries",
    "polytrauma",
    "hemothorax",
    "pneumothorax",
    "pneumohemothorax",
    "duverney's fracture",
)
TRUNK_TRAUMA_SNOMED_EXCLUDE = (
    "superficial",
    "contusion",
    "abrasion",
    "sprain",
    "strain",
    "cervical",
    "brain",
    "intracranial",
    "skull",
)
# Trunk trauma codes the 2017 list lacks or lists without a display, verified by hand.
_ECDS_FRACTURES = (
    "NHS Emergency Care Data Set fracture diagnoses as listed with displays in the BHF Data "
    "Science Centre CCU002 outcome codelist and, codes only, in other ECDS fracture lists of the "
    "code corpus; in shared cms166-trauma without display"
)
TRUNK_TRAUMA_EXTRA = (
    (
        SNOMED,
        "33737001",
        "Fracture of rib (disorder)",
        "several independent public code files agree (SNOMED annotation guide, diagnosis tables, "
        "a SNOMED CT to ICD-10 map to S22.3); in shared cms166-trauma without display",
    ),
    (SNOMED, "60667009", "Closed fracture of rib (disorder)", _ECDS_FRACTURES),
    (SNOMED, "66112004", "Closed fracture of sternum (disorder)", _ECDS_FRACTURES),
    (SNOMED, "207938004", "Closed fracture thoracic vertebra (disorder)", _ECDS_FRACTURES),
    (SNOMED, "207957008", "Closed fracture lumbar vertebra (disorder)", _ECDS_FRACTURES),
    (SNOMED, "207974008", "Closed fracture sacrum (disorder)", _ECDS_FRACTURES),
    (
        SNOMED,
        "262519004",
        "Multiple injuries (disorder)",
        "road-safety FHIR IG profiles and examples in the code corpus; not in cms166-trauma",
    ),
    (ICD10CM, "T07", "Unspecified multiple injuries", f"not in cms166-trauma; {ICD_VERIFIED}"),
    (ICD10CM, "T07.XXXA", "Unspecified multiple injuries, initial encounter", ICD_VERIFIED),
    (ICD10CM, "T07.XXXD", "Unspecified multiple injuries, subsequent encounter", ICD_VERIFIED),
    (
        ICD10CM,
        "S28.0XXA",
        "Crushed chest, initial encounter",
        f"not in cms166-trauma; {ICD_VERIFIED}",
    ),
    (ICD10CM, "S28.0XXD", "Crushed chest, subsequent encounter", ICD_VERIFIED),
)


def _is_trunk_trauma(item: dict[str, Any]) -> bool:
    system, code = canonical_system(item["system"]), item["code"]
    display = item.get("display") or ""
    if system == ICD10CM:
        sequela = len(code.replace(".", "")) == 7 and code.endswith("S")
        return (
            code[:3] in TRUNK_TRAUMA_ICD10CM_CATEGORIES
            and not sequela
            and not _has_word(display, TRUNK_TRAUMA_ICD10CM_EXCLUDE)
        )
    if system != SNOMED or not display or _has_word(display, TRUNK_TRAUMA_SNOMED_EXCLUDE):
        return False
    return _has_phrase(display, TRUNK_TRAUMA_SNOMED_ALONE) or (
        _has_word(display, TRUNK_TRAUMA_SNOMED_INJURIES)
        and _has_word(display, TRUNK_TRAUMA_SNOMED_SITES)
    )


def build_value_sets(shared: Shared) -> list[ValueSet]:
    icd = ICD10CM
    sets: list[ValueSet] = [
        # --- back pain context -----------------------------------------------------------------
        copied(
            shared,
            "thoracic-back-pain-diagnoses",
            "Thoracic (mid-back) musculoskeletal pain diagnoses",
            "Diagnoses that place a patient in the mid-back pain population the service advises on: "
            "thoracic spine pain, thoracic sprain and back-wall strain, plus the unspecific dorsalgia "
            "and backache codes.",
        ),
        copied(
            shared,
            "low-back-pain-diagnoses",
            "Low back musculoskeletal pain diagnoses",
            "Current ICD-10-CM low back pain, lumbar and sacroiliac sprain and lower-back strain codes "
            "(including the 2021 split of M54.5) with SNOMED CT low back pain findings; the main trigger "
            "for low back pain advice.",
        ),
        copied(
            shared,
            "cms166-uncomplicated-low-back-pain",
            "Uncomplicated low back pain (CMS166v7)",
            "The retired CMS imaging-for-low-back-pain measure's denominator diagnoses. Kept so that "
            "older records and codes retired since 2017 are still recognised as low back pain.",
        ),
        copied(
            shared,
            "radicular-back-pain-diagnoses",
            "Radicular back pain diagnoses",
            "Radiculopathy, sciatica and disc or spondylosis disorders with radiculopathy in the thoracic "
            "and lumbar spine. Marks pain with a nerve-root component, which changes what treatment "
            "advice applies.",
        ),
        compiled(
            shared,
            "neuropathic-pain-diagnoses",
            "Neuropathic pain diagnoses (beyond radicular pain)",
            "Neuropathies and neuralgias outside the spine: poly- and mononeuropathies, diabetic "
            "neuropathy, post-herpetic and trigeminal neuralgia, complex regional pain syndrome. When "
            "present, an antidepressant or gabapentinoid order may have an indication other than "
            "mechanical back pain.",
            [(icd, c, d) for c, d in NEUROPATHIC_ICD10CM]
            + [(SNOMED, c, d) for c, d, _ in NEUROPATHIC_SNOMED],
            f"ICD-10-CM families G60-G63, G56-G58, B02.2-, M79.2, G50.0, G54.1, G54.4, G89.0, G90.5- "
            f"and E08.4-/E09.4-/E10.4-/E11.4-/E13.4- ({ICD_VERIFIED}); SNOMED CT codes taken from "
            f"shared files where they carry a display: "
            + "; ".join(f"{c} ({note})" for c, _, note in NEUROPATHIC_SNOMED),
            "compiled from verified facts: every ICD-10-CM code and display checked against the "
            "April 2026 code files; diabetic autonomic neuropathy (E**.43) left out as it is not a "
            "pain condition",
        ),
        compiled(
            shared,
            "depression-diagnoses",
            "Depression diagnoses",
            "Depressive disorders (single episode, recurrent, persistent). An antidepressant ordered "
            "for a patient with one of these has its own indication.",
            [(icd, c, d) for c, d in DEPRESSION_ICD10CM]
            + [(SNOMED, c, d) for c, d, _ in DEPRESSION_SNOMED],
            f"ICD-10-CM F32 and F33 families and F34.1 ({ICD_VERIFIED}); SNOMED CT 35489007 "
            f"({DEPRESSION_SNOMED[0][2]})",
            "compiled from verified facts",
        ),
        compiled(
            shared,
            "anxiety-diagnoses",
            "Anxiety disorder diagnoses",
            "Generalised anxiety, panic and mixed anxiety disorders, agoraphobia and social phobia: "
            "conditions for which SSRIs and SNRIs are prescribed in their own right.",
            [(icd, c, d) for c, d in ANXIETY_ICD10CM]
            + [(SNOMED, c, d) for c, d, _ in ANXIETY_SNOMED],
            f"ICD-10-CM F41 family, F40.0- and F40.1- ({ICD_VERIFIED}); SNOMED CT 197480006 "
            f"({ANXIETY_SNOMED[0][2]})",
            "compiled from verified facts; specific phobias (F40.2-) and other phobic disorders left "
            "out (not usually treated with antidepressants)",
        ),
        # --- red flags ----------------------------------------------------------------------------
        copied(
            shared,
            "red-flag-cauda-equina-and-neurologic-deficit",
            "Red flag: cauda equina syndrome and neurologic deficit",
            "Cauda equina syndrome, cord compression, myelopathy, foot drop and sphincter dysfunction: "
            "findings that make urgent evaluation and imaging appropriate.",
        ),
        copied(
            shared,
            "cms166-neurologic-impairment",
            "Neurologic impairment (CMS166v7)",
            "The retired imaging measure's exclusion list for neurologic impairment (cauda equina "
            "syndrome codes).",
        ),
        copied(
            shared,
            "vsac-neurologic-impairment",
            "Neurologic impairment (current VSAC expansion)",
            "The current expansion of the measure's neurologic impairment list: cauda equina syndrome "
            "and compression, lumbosacral nerve-root injury and lesions, tumours of the cauda equina.",
            keep=lambda item: item["code"] not in NEURO_IMPAIRMENT_DROP,
            filter_note="dropped "
            + "; ".join(f"{c} ({why})" for c, why in NEURO_IMPAIRMENT_DROP.items()),
        ),
        copied(
            shared,
            "red-flag-fever-findings",
            "Red flag: fever",
            "Fever diagnoses and findings; together with back pain they raise the question of spinal "
            "infection.",
        ),
        copied(
            shared,
            "red-flag-iv-drug-use",
            "Red flag: intravenous drug use (findings)",
            "Findings that record injection drug use, a risk factor for spinal infection.",
        ),
        copied(
            shared,
            "cms166-iv-drug-abuse",
            "IV drug abuse (CMS166v7)",
            "The retired imaging measure's list of drug abuse and dependence diagnoses used as a proxy for "
            "intravenous drug use.",
        ),
        copied(
            shared,
            "red-flag-immunosuppression",
            "Red flag: immunosuppression",
            "HIV, immunodeficiency, long-term steroid or immunosuppressant use and transplant status: a "
            "weakened immune system raises the risk of spinal infection.",
        ),
        copied(
            shared,
            "vsac-hiv",
            "HIV (current VSAC expansion)",
            "HIV infection and HIV-related disorders.",
        ),
        copied(shared, "cms166-hiv", "HIV (CMS166v7)", "The retired imaging measure's HIV list."),
        copied(
            shared,
            "vsac-immunocompromised-conditions",
            "Immunocompromised conditions (VSAC)",
            "Conditions that compromise immunity: immunodeficiencies, haematological cancers, asplenia "
            "and similar.",
        ),
        copied(
            shared,
            "vsac-major-transplant",
            "Major organ transplant procedures (VSAC, recipient side)",
            "Organ transplant procedures after which a patient is usually kept on immunosuppression.",
            keep=_transplant_keep,
            filter_note="dropped donor-side procurement, autotransplant / autologous and "
            "hand, finger and tissue-transfer reconstructions, and artificial-heart implantation; "
            "kept allogeneic hand transplants and 33929 (removal of artificial heart for transplant)",
        ),
        copied(
            shared,
            "vsac-kidney-transplant",
            "Kidney transplant procedures (VSAC, recipient side)",
            "Kidney (and kidney-pancreas) transplant procedures.",
            keep=_transplant_keep,
            filter_note="dropped autotransplantation of kidney",
        ),
        copied(
            shared,
            "cms166-kidney-transplant",
            "Kidney transplant procedures (CMS166v7, recipient side)",
            "The retired imaging measure's kidney transplant list.",
            keep=_transplant_keep,
            filter_note="dropped autotransplantation of kidney",
        ),
        copied(
            shared,
            "cms166-major-organ-transplant-other-than-kidney",
            "Major organ transplant other than kidney (CMS166v7, recipient side)",
            "The retired imaging measure's list of heart, lung, liver, intestine and pancreas transplant "
            "procedures.",
            keep=_transplant_keep,
            filter_note="dropped donor-side procurement (donor pneumonectomy, cardiectomy, enterectomy, "
            "hepatectomy, pancreatectomy, lobectomy, multivisceral harvesting) and autologous pancreas "
            "transplantation",
        ),
        copied(
            shared,
            "red-flag-spinal-infection",
            "Red flag: spinal infection",
            "Vertebral osteomyelitis, discitis, spinal and epidural abscess and spinal tuberculosis.",
        ),
        copied(
            shared,
            "cms166-spinal-infection",
            "Spinal infection (CMS166v7)",
            "The retired imaging measure's spinal infection list.",
        ),
        copied(
            shared,
            "red-flag-history-of-cancer",
            "Red flag: history of cancer",
            "Personal history of malignant neoplasm codes: a past cancer makes back pain possibly "
            "metastatic.",
        ),
        copied(
            shared,
            "cdc-malignant-cancer-conditions",
            "Malignant cancer conditions (CDC opioid CDS)",
            "Malignant neoplasm diagnoses. The CDC opioid guideline does not apply to cancer pain, and "
            "for back pain a cancer is a red flag.",
            keep=_not_range,
            filter_note="dropped the chapter/block range rows such as 'C00-C14' (headings, not codes)",
        ),
        copied(
            shared,
            "cms166-all-cancer",
            "All cancer (CMS166v7, malignant entries)",
            "The retired imaging measure's cancer list: malignant neoplasms in ICD-10-CM and SNOMED "
            "CT, the SNOMED CT side being how problem lists usually record a cancer.",
            keep=_malignant,
            filter_note="dropped SNOMED CT rows whose display names a benign tumour or a hereditary "
            "syndrome (" + ", ".join(CANCER_NOT_MALIGNANT_WORDS) + ") and no malignancy; in-situ "
            "and uncertain-behaviour neoplasms kept, as in the CDC malignant-cancer list",
        ),
        copied(
            shared,
            "vsac-malignant-bone-disease",
            "Malignant bone disease (VSAC)",
            "Primary bone cancers, myeloma and secondary (metastatic) bone and marrow neoplasms.",
        ),
        copied(
            shared,
            "red-flag-unexplained-weight-loss",
            "Red flag: unexplained weight loss",
            "Abnormal or unintended weight loss and cachexia, a sign that may point to malignancy or "
            "infection.",
        ),
        copied(
            shared,
            "vsac-abnormal-weight-loss-and-malnutrition",
            "Abnormal weight loss (VSAC, weight-loss codes only)",
            "The weight-loss codes of the VSAC abnormal weight loss and malnutrition list.",
            vs_id="vsac-abnormal-weight-loss",
            keep=lambda item: item["code"] in {"R63.4", "R64"},
            filter_note="kept only R63.4 abnormal weight loss and R64 cachexia; malnutrition, "
            "kwashiorkor, pregnancy malnutrition and low-BMI codes are not weight loss",
        ),
        copied(
            shared,
            "red-flag-spinal-fracture-and-cord-injury",
            "Red flag: spinal fracture and cord injury",
            "Fractures, dislocations and cord or nerve-root injuries of the thoracic and lumbosacral "
            "spine: the coded evidence of significant spinal trauma.",
        ),
        copied(
            shared,
            "cms166-trauma",
            "Red flag: significant trunk trauma (from CMS166 Trauma)",
            "Fractures of the ribs, sternum, spine and pelvis, dislocations of the spine and pelvis, "
            "injuries of the organs of the chest, abdomen and pelvis, crush injuries of "
            "the trunk and multiple injuries: trauma forceful enough to injure the spine as well. "
            "Limb, head and superficial injuries and sprains of the full CMS166 list are left out.",
            vs_id="red-flag-significant-trunk-trauma",
            keep=_is_trunk_trauma,
            filter_note="ICD-10-CM categories "
            + ", ".join(TRUNK_TRAUMA_ICD10CM_CATEGORIES)
            + " without sprains and strains and without sequela codes (7th character S); SNOMED CT "
            "rows whose display names an injury ("
            + ", ".join(TRUNK_TRAUMA_SNOMED_INJURIES)
            + ") of a trunk site ("
            + ", ".join(TRUNK_TRAUMA_SNOMED_SITES)
            + ") or says "
            + ", ".join(TRUNK_TRAUMA_SNOMED_ALONE)
            + ", and none of "
            + ", ".join(TRUNK_TRAUMA_SNOMED_EXCLUDE)
            + "; SNOMED CT rows without a display in the shared copy cannot be classified and are "
            "left out",
            extra=TRUNK_TRAUMA_EXTRA,
        ),
        copied(
            shared,
            "red-flag-osteoporosis-and-fragility-fracture",
            "Red flag: osteoporosis and fragility fracture",
            "Osteoporosis with and without pathological fracture: the population at risk of vertebral "
            "compression fracture.",
        ),
        copied(
            shared,
            "vsac-osteoporosis",
            "Osteoporosis (VSAC)",
            "Osteoporosis diagnoses (ICD-10-CM).",
        ),
        copied(
            shared,
            "vsac-osteoporosis-with-current-fracture",
            "Osteoporosis with current fracture (VSAC)",
            "Osteoporosis with a current fragility fracture.",
        ),
        copied(
            shared,
            "vsac-osteoporosis-without-current-fracture",
            "Osteoporosis without current fracture (VSAC)",
            "Osteoporosis without a current fracture.",
        ),
        # --- exclusions from opioid advice ----------------------------------------------------------
        copied(
            shared,
            "cdc-conditions-likely-terminal-for-opioid-prescribing",
            "Conditions likely terminal for opioid prescribing (CDC opioid CDS)",
            "Advanced illnesses for which the CDC opioid recommendations are not meant (end-of-life "
            "care).",
            keep=_not_range,
            filter_note="dropped the block range rows 'C7A-C7A' and 'C7B-C7B' (headings, not codes)",
        ),
        copied(
            shared,
            "cdc-limited-life-expectancy-conditions",
            "Limited life expectancy (CDC opioid CDS)",
            "Findings that record a terminal illness or poor prognosis.",
        ),
        copied(
            shared,
            "cdc-hospice-finding",
            "Hospice findings (CDC opioid CDS)",
            "Findings that the patient is cared for by a hospice.",
        ),
        copied(
            shared,
            "cdc-hospice-procedure",
            "Hospice procedures (CDC opioid CDS)",
            "Referral or admission to hospice.",
        ),
        copied(
            shared,
            "cdc-therapies-indicating-end-of-life-care",
            "Therapies indicating end-of-life care (CDC opioid CDS)",
            "Hospice, terminal and palliative care regimes.",
        ),
        copied(
            shared,
            "cms166-hospice-care-ambulatory",
            "Hospice care, ambulatory (CMS166v7)",
            "Hospice care interventions used as a measure-level exclusion.",
        ),
        copied(
            shared,
            "cdc-hospice-disposition",
            "Hospice disposition (CDC opioid CDS)",
            "Discharge dispositions to hospice care.",
        ),
        copied(
            shared,
            "cdc-sickle-cell-diseases",
            "Sickle cell disease (CDC opioid CDS)",
            "Sickle cell disorders, whose pain crises the CDC guideline excludes.",
            keep=lambda item: item["code"] not in SICKLE_TRAIT_DROP,
            filter_note="dropped "
            + "; ".join(f"{c} ({why})" for c, why in SICKLE_TRAIT_DROP.items()),
        ),
        compiled(
            shared,
            "sickle-cell-disease-supplement",
            "Sickle cell disease without crisis (supplement)",
            "The sickle cell disease code that the CDC list lacks: sickle cell disease recorded "
            "outside a crisis is the most common way the disease appears on a problem list.",
            [(icd, c, d) for c, d in SICKLE_CELL_SUPPLEMENT_ICD10CM],
            f"ICD-10-CM D57.1 ({ICD_VERIFIED})",
            "compiled from verified facts: fills a gap in cdc-sickle-cell-diseases",
        ),
        # --- NSAID contraindications ----------------------------------------------------------------
        compiled(
            shared,
            "ckd-severe-diagnoses",
            "Severe chronic kidney disease and dialysis",
            "Chronic kidney disease stage 4-5, end-stage renal disease and dialysis dependence, in which "
            "NSAIDs should be avoided.",
            [(icd, c, d) for c, d in CKD_SEVERE_ICD10CM]
            + [(SNOMED, c, d) for c, d, _ in CKD_SEVERE_SNOMED],
            f"ICD-10-CM N18.4, N18.5, N18.6, Z99.2, I12.0, I13.11, I13.2 and the Z49 family "
            f"({ICD_VERIFIED}); SNOMED CT: "
            + "; ".join(f"{c} ({note})" for c, _, note in CKD_SEVERE_SNOMED),
            "compiled from verified facts; Z49 (encounters for dialysis care) included because it "
            "only occurs for patients on or about to start dialysis",
        ),
        compiled(
            shared,
            "gi-bleed-or-ulcer-diagnoses",
            "Peptic ulcer and upper gastrointestinal bleeding",
            "Gastric, duodenal, peptic and gastrojejunal ulcers (with or without bleeding), a history of "
            "peptic ulcer, bleeding gastritis or duodenitis, and gastrointestinal haemorrhage: reasons to "
            "avoid NSAIDs.",
            [(icd, c, d) for c, d in GI_BLEED_ULCER_ICD10CM]
            + [(SNOMED, c, d) for c, d, _ in GI_BLEED_SNOMED],
            f"ICD-10-CM K25-K28 families, K92.0-K92.2, Z87.11 and the upper-GI 'with bleeding' codes "
            f"K22.11, K29.x1, K31.811, K31.82 ({ICD_VERIFIED}); SNOMED CT: "
            + "; ".join(f"{c} ({note})" for c, _, note in GI_BLEED_SNOMED),
            "compiled from verified facts; lower-GI bleeding from diverticula, angiodysplasia of the "
            "colon or the anorectum is left out (not an NSAID-ulcer risk marker)",
        ),
        compiled(
            shared,
            "heart-failure-diagnoses",
            "Heart failure",
            "Heart failure of any type, including hypertensive and rheumatic heart failure: NSAIDs can "
            "worsen fluid retention.",
            [(icd, c, d) for c, d in HEART_FAILURE_ICD10CM]
            + [(SNOMED, c, d) for c, d, _ in HEART_FAILURE_SNOMED],
            f"ICD-10-CM I50 family, I11.0, I13.0, I13.2, I09.81, I97.13- ({ICD_VERIFIED}); SNOMED CT: "
            + "; ".join(f"{c} ({note})" for c, _, note in HEART_FAILURE_SNOMED),
            "compiled from verified facts",
        ),
        compiled(
            shared,
            "anticoagulant-ingredients",
            "Anticoagulant ingredients (RxNorm)",
            "Ingredient-level RxNorm codes of oral and injectable anticoagulants. NSAIDs add bleeding "
            "risk on top of anticoagulation.",
            [(RXNORM, c, d) for c, d, _ in ANTICOAGULANT_RXNORM],
            "; ".join(f"{c} {d}: {note}" for c, d, note in ANTICOAGULANT_RXNORM),
            "compiled from verified facts (each RxCUI seen with the same ingredient name in at least "
            "two independent public files); edoxaban, dalteparin, fondaparinux and dabigatran IN "
            "could not be verified and are matched by text only",
        ),
        # --- medications ----------------------------------------------------------------------------
        copied(
            shared,
            "cdc-opioid-analgesics-with-ambulatory-misuse-potential",
            "Opioid analgesics with ambulatory misuse potential (CDC opioid CDS)",
            "Opioid products (clinical and branded drugs and packs) that the CDC opioid recommendations "
            "apply to, including tramadol, tapentadol, codeine combinations and buprenorphine products "
            "as the CDC set defines them.",
        ),
        copied(
            shared,
            "cdc-extended-release-opioid-with-ambulatory-misuse-potential",
            "Extended-release opioids with ambulatory misuse potential (CDC opioid CDS)",
            "Extended-release and long-acting opioid products: ER tablets and capsules, transdermal "
            "systems and all methadone products. Starting one for acute or subacute pain carries a "
            "higher overdose risk than an immediate-release opioid.",
        ),
        copied(
            shared,
            "opioid-analgesic-ingredients",
            "Opioid analgesic ingredients (RxNorm, fallback)",
            "Ingredient-level codes for orders that carry only an ingredient: the analgesic opioids.",
            keep=lambda item: item["code"] not in OPIOID_INGREDIENT_DROP,
            filter_note="dropped "
            + ", ".join(f"{c} {n}" for c, n in OPIOID_INGREDIENT_DROP.items())
            + " (an ingredient-only buprenorphine or levomethadyl order is far more often treatment "
            "of opioid use disorder than analgesia)",
        ),
        copied(
            shared,
            "nsaid-ingredients",
            "NSAID ingredients (RxNorm)",
            "Ingredient-level codes of the common non-aspirin NSAIDs.",
            keep=lambda item: item["code"] not in NSAID_INGREDIENT_DROP,
            filter_note="dropped 1191 aspirin (low-dose aspirin is ordered for cardiovascular "
            "prevention and must not trigger NSAID advice)",
        ),
        derived(
            shared,
            "nsaid-products",
            "NSAID products (RxNorm, classified by display)",
            "Clinical and branded NSAID products found in the shared non-opioid analgesic list, "
            "oral, injectable and topical. Aspirin and opioid combinations are not included.",
            ["vsac-nonopioid-pain-medications"],
            is_nsaid_product,
            "display names an NSAID ingredient (" + ", ".join(NSAID_WORDS) + ") and no opioid "
            "ingredient",
            extra=TOPICAL_NSAID_EXTRA_RXNORM,
        ),
        derived(
            shared,
            "acetaminophen-products",
            "Acetaminophen products (RxNorm, classified by display)",
            "Products that contain acetaminophen without an opioid: single-ingredient tablets and "
            "liquids and non-opioid combinations (cold remedies, butalbital combinations).",
            ["vsac-nonopioid-pain-medications"],
            is_acetaminophen_product,
            "display contains 'acetaminophen' and no opioid ingredient",
            extra=ACETAMINOPHEN_EXTRA_RXNORM,
        ),
        copied(
            shared,
            "acetaminophen-ingredient",
            "Acetaminophen ingredient (RxNorm)",
            "The acetaminophen ingredient code.",
        ),
        copied(
            shared,
            "antidepressant-ssri-ingredients",
            "SSRI ingredients (RxNorm)",
            "Ingredient-level codes of the selective serotonin reuptake inhibitors.",
        ),
        copied(
            shared,
            "antidepressant-snri-ingredients",
            "SNRI ingredients (RxNorm)",
            "Ingredient-level codes of duloxetine and venlafaxine.",
        ),
        copied(
            shared,
            "antidepressant-tca-ingredients",
            "Tricyclic antidepressant ingredients (RxNorm)",
            "Ingredient-level codes of the tricyclic antidepressants.",
        ),
    ]
    ad_sources = [
        "vsac-antidepressant-medication",
        "vsac-antidepressants",
        "vsac-adjuvant-pain-medications",
    ]
    for vs_id, title, label, words in (
        ("ssri-products", "SSRI products (RxNorm, classified by display)", "an SSRI", SSRI_WORDS),
        ("snri-products", "SNRI products (RxNorm, classified by display)", "an SNRI", SNRI_WORDS),
        (
            "tca-products",
            "Tricyclic antidepressant products (RxNorm, classified by display)",
            "a tricyclic",
            TCA_WORDS,
        ),
    ):
        sets.append(
            derived(
                shared,
                vs_id,
                title,
                f"Clinical and branded products that contain {label} antidepressant, taken from the shared "
                "antidepressant and adjuvant analgesic lists.",
                ad_sources,
                _antidepressant_class(words),
                "display names one of " + ", ".join(words) + " as a whole word and is not topical",
            )
        )
    sets += [
        copied(
            shared,
            "vsac-glucocorticoids-oral-only",
            "Oral glucocorticoids (VSAC)",
            "Oral glucocorticoid products; long courses weaken bone and immunity.",
            keep=lambda item: item["code"] not in STEROID_DROP,
            filter_note="dropped " + "; ".join(f"{c} ({why})" for c, why in STEROID_DROP.items()),
        ),
        copied(
            shared,
            "cms166-corticosteroids",
            "Corticosteroids (CMS166v7)",
            "The retired imaging measure's systemic corticosteroid products.",
        ),
        compiled(
            shared,
            "topical-routes",
            "Topical and transdermal routes (SNOMED CT)",
            "Route-of-administration codes meaning the drug is applied to the skin; combined with an "
            "NSAID ingredient they identify a topical NSAID order.",
            [(SNOMED, c, d) for c, d, _ in TOPICAL_ROUTE_SNOMED],
            "; ".join(f"{c} {d}: {note}" for c, d, note in TOPICAL_ROUTE_SNOMED),
            "compiled from verified facts",
        ),
        # --- procedures and referrals ---------------------------------------------------------------
        copied(
            shared,
            "spine-imaging-thoracic-lumbar-cpt",
            "Thoracic and lumbar spine imaging (CPT)",
            "CPT codes for X-ray, CT and MRI of the thoracic and lumbosacral spine.",
        ),
        copied(
            shared,
            "spine-imaging-thoracic-lumbar-loinc",
            "Thoracic and lumbar spine imaging (LOINC)",
            "LOINC imaging study codes for the thoracic and lumbar spine, as used on orders and reports.",
        ),
        copied(
            shared,
            "cms166-xray-of-lower-spine",
            "X-ray of lower spine (CMS166v7)",
            "LOINC codes of lumbar and lumbosacral X-ray studies counted by the retired imaging measure.",
        ),
        copied(
            shared,
            "cms166-mri-of-lower-spine",
            "MRI of lower spine (CMS166v7)",
            "LOINC codes of lumbar MRI studies counted by the retired imaging measure.",
        ),
        copied(
            shared,
            "cms166-ct-scan-of-lower-spine",
            "CT of lower spine (CMS166v7)",
            "LOINC codes of lumbar CT studies counted by the retired imaging measure.",
        ),
        compiled(
            shared,
            "spine-imaging-snomed",
            "Thoracic and lumbar spine imaging (SNOMED CT)",
            "SNOMED CT procedures for CT, MRI and plain X-ray of the thoracic, lumbar and sacral "
            "spine, for orders coded in SNOMED CT.",
            [(SNOMED, c, d) for c, d in SPINE_IMAGING_SNOMED],
            SPINE_IMAGING_SNOMED_SOURCE,
            "compiled from verified facts (codes and displays as published there); cervical-only, "
            "whole-spine, ultrasound and bone-density procedures left out",
        ),
        copied(
            shared,
            "spinal-injection-procedures",
            "Spinal injection procedures",
            "Epidural, facet and medial branch, sacroiliac joint and trigger point injections and "
            "radiofrequency ablation of facet joint nerves.",
        ),
        copied(
            shared,
            "physical-therapy-and-exercise-referral",
            "Physical therapy and exercise referral",
            "Referrals to physiotherapy and exercise therapy and the common physical therapy treatment "
            "codes.",
        ),
        copied(
            shared,
            "vsac-physical-therapy-evaluation",
            "Physical therapy evaluation (VSAC)",
            "Physical therapy evaluation and management codes.",
        ),
        compiled(
            shared,
            "pain-management-referral-procedures",
            "Referral to pain management",
            "Referral of a patient to a pain management specialist.",
            [(SNOMED, c, d) for c, d, _ in PAIN_REFERRAL_SNOMED],
            "; ".join(f"{c}: {note}" for c, _, note in PAIN_REFERRAL_SNOMED),
            "compiled from verified facts; no verifiable code for 'referral to pain clinic' or "
            "'multidisciplinary pain service' was found (text patterns cover them)",
        ),
        # --- observations ---------------------------------------------------------------------------
        copied(
            shared,
            "vsac-body-temperature",
            "Body temperature (VSAC)",
            "LOINC codes of body temperature observations, to look for measured fever.",
        ),
        copied(
            shared,
            "vsac-body-weight",
            "Body weight (VSAC)",
            "LOINC codes of body weight observations, to look for weight loss over time.",
        ),
    ]
    return sets


# The combined spine imaging sets split by modality; the CMS166 LOINC sets are split already.
SPINE_IMAGING_COMBINED = (
    "spine-imaging-thoracic-lumbar-cpt",
    "spine-imaging-thoracic-lumbar-loinc",
    "spine-imaging-snomed",
)
SPINE_IMAGING_MODALITIES = (
    ("spine-imaging-xray", "X-ray", "plain radiography", _XRAY_WORDS),
    ("spine-imaging-ct", "CT", "computed tomography (CT myelography included)", _CT_WORDS),
    ("spine-imaging-mri", "MRI", "magnetic resonance imaging", _MRI_WORDS),
)


def spine_imaging_by_modality(sets: list[ValueSet]) -> list[ValueSet]:
    """One subset of the combined spine imaging sets per modality, picked by display words;
    every code must land in exactly one."""
    by_id = {vs.id: vs for vs in sets}
    sources = [by_id[vs_id] for vs_id in SPINE_IMAGING_COMBINED]
    picked: dict[str, list[dict[str, str]]] = {vs_id: [] for vs_id, *_ in SPINE_IMAGING_MODALITIES}
    for source in sources:
        for coded in source.codes:
            found = [
                vs_id
                for vs_id, _, _, words in SPINE_IMAGING_MODALITIES
                if re.search(rf"\b{words}\b", coded.get("display", ""), re.IGNORECASE)
            ]
            if len(found) != 1:
                raise SystemExit(f"{source.id} {coded['code']}: modality {found or 'unknown'}")
            picked[found[0]].append(coded)
    licences = " | ".join(dict.fromkeys(vs.provenance["license"] for vs in sources))
    out = []
    for vs_id, label, meaning, words in SPINE_IMAGING_MODALITIES:
        prov = {
            "source": "this package's value sets "
            + ", ".join(SPINE_IMAGING_COMBINED)
            + " (their provenance applies to each code)",
            "license": licences,
            "method": f"subset by display words: the display matches the regular expression "
            f"{words} (case-insensitive, whole words); each code of the sources lands in exactly "
            "one modality",
        }
        codes = sorted(picked[vs_id], key=lambda c: (c["system"], c["code"]))
        out.append(
            ValueSet(
                vs_id,
                f"Thoracic and lumbar spine imaging: {label} (CPT, LOINC, SNOMED CT)",
                f"Orders and studies of the thoracic or lumbar spine by {meaning}: the {label} "
                "part of the combined spine imaging sets, so that rules can compare a drafted "
                "study with the test a guideline recommends first.",
                prov,
                codes,
            )
        )
    return out


def check_spine_imaging_modalities(terminology: Terminology) -> None:
    """Every code of `spine-imaging` means exactly one modality (the CMS166 sets included)."""
    modalities = {Concept.SPINE_IMAGING_XRAY, Concept.SPINE_IMAGING_CT, Concept.SPINE_IMAGING_MRI}
    for coded in terminology.concept_codes[Concept.SPINE_IMAGING]:
        found = terminology.concepts_for_code(coded.system, coded.code) & modalities
        if len(found) != 1:
            raise SystemExit(f"spine imaging {coded.code}: modalities {sorted(found)}")
    for modality in modalities:
        for coded in terminology.concept_codes[modality]:
            if Concept.SPINE_IMAGING not in terminology.concepts_for_code(coded.system, coded.code):
                raise SystemExit(f"{modality} {coded.code} is not spine imaging")


# ---------------------------------------------------------------------------------------------
# Concepts
# ---------------------------------------------------------------------------------------------

CONCEPTS: dict[Concept, tuple[str, list[str]]] = {
    Concept.BACK_PAIN_THORACIC: (
        "Mid-back (thoracic) musculoskeletal pain.",
        ["thoracic-back-pain-diagnoses"],
    ),
    Concept.BACK_PAIN_LOW: (
        "Low back musculoskeletal pain.",
        ["low-back-pain-diagnoses", "cms166-uncomplicated-low-back-pain"],
    ),
    Concept.RADICULAR_PAIN: (
        "Back pain with a nerve-root (radicular) component.",
        ["radicular-back-pain-diagnoses"],
    ),
    Concept.NEUROPATHIC_PAIN: (
        "Neuropathic pain conditions other than radiculopathy.",
        ["neuropathic-pain-diagnoses"],
    ),
    Concept.DEPRESSION: ("Depressive disorder.", ["depression-diagnoses"]),
    Concept.ANXIETY: ("Anxiety disorder.", ["anxiety-diagnoses"]),
    Concept.RED_FLAG_NEUROLOGIC_DEFICIT: (
        "Cauda equina syndrome or another significant neurologic deficit.",
        [
            "red-flag-cauda-equina-and-neurologic-deficit",
            "cms166-neurologic-impairment",
            "vsac-neurologic-impairment",
        ],
    ),
    Concept.RED_FLAG_FEVER: (
        "Fever recorded as a diagnosis or finding.",
        ["red-flag-fever-findings"],
    ),
    Concept.RED_FLAG_IV_DRUG_USE: (
        "Intravenous or injection drug use.",
        ["red-flag-iv-drug-use", "cms166-iv-drug-abuse"],
    ),
    Concept.RED_FLAG_IMMUNOSUPPRESSION: (
        "Immunosuppression: HIV, immunodeficiency, immunosuppressive therapy or transplant status.",
        [
            "red-flag-immunosuppression",
            "vsac-hiv",
            "cms166-hiv",
            "vsac-immunocompromised-conditions",
        ],
    ),
    Concept.RED_FLAG_SPINAL_INFECTION: (
        "Known or suspected spinal infection.",
        ["red-flag-spinal-infection", "cms166-spinal-infection"],
    ),
    Concept.RED_FLAG_CANCER_HISTORY: (
        "Current or past cancer.",
        [
            "red-flag-history-of-cancer",
            "cdc-malignant-cancer-conditions",
            "cms166-all-cancer",
            "vsac-malignant-bone-disease",
        ],
    ),
    Concept.RED_FLAG_WEIGHT_LOSS: (
        "Unexplained weight loss or cachexia.",
        ["red-flag-unexplained-weight-loss", "vsac-abnormal-weight-loss"],
    ),
    Concept.RED_FLAG_SPINAL_TRAUMA: (
        "Significant trauma: spinal fracture or cord injury, or a fracture, dislocation, internal "
        "injury or crush of the trunk, or multiple injuries.",
        ["red-flag-spinal-fracture-and-cord-injury", "red-flag-significant-trunk-trauma"],
    ),
    Concept.RED_FLAG_OSTEOPOROSIS: (
        "Osteoporosis or fragility fracture.",
        [
            "red-flag-osteoporosis-and-fragility-fracture",
            "vsac-osteoporosis",
            "vsac-osteoporosis-with-current-fracture",
            "vsac-osteoporosis-without-current-fracture",
        ],
    ),
    Concept.TRANSPLANT_PROCEDURE: (
        "A solid-organ transplant procedure in the patient's history (recipient side).",
        [
            "vsac-major-transplant",
            "vsac-kidney-transplant",
            "cms166-kidney-transplant",
            "cms166-major-organ-transplant-other-than-kidney",
        ],
    ),
    Concept.ACTIVE_CANCER: (
        "Malignant neoplasm diagnosis in ICD-10-CM or SNOMED CT, not a personal-history code (CDC "
        "opioid guideline exclusion). Whether it is still active is the Condition's clinical "
        "status, which the rules read.",
        ["cdc-malignant-cancer-conditions", "cms166-all-cancer", "vsac-malignant-bone-disease"],
    ),
    Concept.END_OF_LIFE: (
        "Terminal illness or limited life expectancy.",
        [
            "cdc-conditions-likely-terminal-for-opioid-prescribing",
            "cdc-limited-life-expectancy-conditions",
            "cdc-hospice-finding",
        ],
    ),
    Concept.HOSPICE_CARE: (
        "Hospice or palliative care.",
        [
            "cdc-hospice-procedure",
            "cdc-therapies-indicating-end-of-life-care",
            "cms166-hospice-care-ambulatory",
            "cdc-hospice-disposition",
        ],
    ),
    Concept.SICKLE_CELL_DISEASE: (
        "Sickle cell disease.",
        ["cdc-sickle-cell-diseases", "sickle-cell-disease-supplement"],
    ),
    Concept.CKD_SEVERE: (
        "Chronic kidney disease stage 4-5, end-stage renal disease or dialysis.",
        ["ckd-severe-diagnoses"],
    ),
    Concept.GI_BLEED_OR_ULCER: (
        "Peptic ulcer disease or gastrointestinal bleeding.",
        ["gi-bleed-or-ulcer-diagnoses"],
    ),
    Concept.HEART_FAILURE: ("Heart failure.", ["heart-failure-diagnoses"]),
    Concept.ANTICOAGULANT: ("An anticoagulant medication.", ["anticoagulant-ingredients"]),
    Concept.OPIOID: (
        "An opioid analgesic (CDC product list, or an analgesic opioid ingredient).",
        ["cdc-opioid-analgesics-with-ambulatory-misuse-potential", "opioid-analgesic-ingredients"],
    ),
    Concept.OPIOID_EXTENDED_RELEASE: (
        "An extended-release or long-acting opioid (ER/LA tablets and capsules, transdermal "
        "systems, methadone).",
        ["cdc-extended-release-opioid-with-ambulatory-misuse-potential"],
    ),
    Concept.NSAID: ("A non-aspirin NSAID, any route.", ["nsaid-ingredients", "nsaid-products"]),
    Concept.NSAID_TOPICAL: ("A topical NSAID (gel, solution, patch).", []),
    Concept.TOPICAL_FORM: ("A topical or transdermal route or dose form.", ["topical-routes"]),
    Concept.ACETAMINOPHEN: (
        "Acetaminophen (paracetamol), alone or in a non-opioid combination.",
        ["acetaminophen-ingredient", "acetaminophen-products"],
    ),
    Concept.SSRI: (
        "A selective serotonin reuptake inhibitor.",
        ["antidepressant-ssri-ingredients", "ssri-products"],
    ),
    Concept.SNRI: (
        "A serotonin-norepinephrine reuptake inhibitor.",
        ["antidepressant-snri-ingredients", "snri-products"],
    ),
    Concept.TCA: (
        "A tricyclic antidepressant.",
        ["antidepressant-tca-ingredients", "tca-products"],
    ),
    Concept.GLUCOSAMINE_CHONDROITIN: (
        "Glucosamine or chondroitin supplement (recognised by text only).",
        [],
    ),
    Concept.SYSTEMIC_CORTICOSTEROID: (
        "A systemic (oral) corticosteroid.",
        ["vsac-glucocorticoids-oral-only", "cms166-corticosteroids"],
    ),
    Concept.SPINE_IMAGING: (
        "X-ray, CT or MRI of the thoracic or lumbar spine.",
        [
            "spine-imaging-thoracic-lumbar-cpt",
            "spine-imaging-thoracic-lumbar-loinc",
            "cms166-xray-of-lower-spine",
            "cms166-mri-of-lower-spine",
            "cms166-ct-scan-of-lower-spine",
            "spine-imaging-snomed",
        ],
    ),
    Concept.SPINE_IMAGING_XRAY: (
        "Plain radiography (X-ray) of the thoracic or lumbar spine.",
        ["spine-imaging-xray", "cms166-xray-of-lower-spine"],
    ),
    Concept.SPINE_IMAGING_CT: (
        "CT of the thoracic or lumbar spine, including CT myelography.",
        ["spine-imaging-ct", "cms166-ct-scan-of-lower-spine"],
    ),
    Concept.SPINE_IMAGING_MRI: (
        "MRI of the thoracic or lumbar spine.",
        ["spine-imaging-mri", "cms166-mri-of-lower-spine"],
    ),
    Concept.SPINAL_INJECTION: (
        "An epidural, facet, sacroiliac or trigger point injection or facet nerve ablation.",
        ["spinal-injection-procedures"],
    ),
    Concept.PHYSICAL_THERAPY: (
        "Physical therapy or exercise therapy (referral, evaluation or treatment).",
        ["physical-therapy-and-exercise-referral", "vsac-physical-therapy-evaluation"],
    ),
    Concept.PAIN_MANAGEMENT_REFERRAL: (
        "Referral to pain management or a multidisciplinary pain programme.",
        ["pain-management-referral-procedures"],
    ),
    Concept.BODY_TEMPERATURE: ("A body temperature observation.", ["vsac-body-temperature"]),
    Concept.BODY_WEIGHT: ("A body weight observation.", ["vsac-body-weight"]),
}


def build_concepts() -> dict[str, Any]:
    concepts = {}
    for concept in Concept:
        description, sets = CONCEPTS[concept]
        concepts[concept.value] = {
            "description": description,
            "valueSets": sets,
            "textPatterns": TEXT_PATTERNS.get(concept, []),
        }
    return {"version": DATA_VERSION, "concepts": concepts}


# ---------------------------------------------------------------------------------------------
# Orderables
# ---------------------------------------------------------------------------------------------


ROUTE_TOPICAL = {
    "coding": [{"system": SNOMED, "code": "6064005", "display": "Topical route"}],
    "text": "topical",
}
ROUTE_ORAL = {
    "coding": [{"system": SNOMED, "code": "26643006", "display": "Oral route"}],
    "text": "by mouth",
}


def _mg(value: int) -> dict[str, Any]:
    return {"value": value, "unit": "mg", "system": UCUM, "code": "mg"}


def build_orderables() -> dict[str, Any]:
    # `dosage`: the coded part of the FHIR Dosage of a suggested medicine, as the guideline
    # gives it; the dosage text and patient instruction are card content (cards/_common.toml).
    return {
        "orderables": {
            "topical-nsaid": {
                "resourceType": "MedicationRequest",
                "code": {
                    "coding": [
                        {
                            "system": RXNORM,
                            "code": "855633",
                            "display": "diclofenac sodium 0.01 MG/MG Topical Gel",
                        }
                    ],
                    "text": "diclofenac sodium 1% topical gel",
                },
                # Applied to the painful area 3-4 times a day.
                "dosage": {
                    "timing": {
                        "repeat": {
                            "frequency": 3,
                            "frequencyMax": 4,
                            "period": 1,
                            "periodUnit": "d",
                        }
                    },
                    "route": ROUTE_TOPICAL,
                },
            },
            "acetaminophen": {
                "resourceType": "MedicationRequest",
                "code": {
                    "coding": [
                        {
                            "system": RXNORM,
                            "code": "313782",
                            "display": "acetaminophen 325 MG Oral Tablet",
                        }
                    ],
                    "text": "acetaminophen 325 MG Oral Tablet",
                },
                # 650-975 mg (2-3 tablets) every 6 hours as needed; at most 4 g a day.
                "dosage": {
                    "timing": {"repeat": {"frequency": 1, "period": 6, "periodUnit": "h"}},
                    "asNeededBoolean": True,
                    "route": ROUTE_ORAL,
                    "doseAndRate": [{"doseRange": {"low": _mg(650), "high": _mg(975)}}],
                    "maxDosePerPeriod": {
                        "numerator": _mg(4000),
                        "denominator": {"value": 1, "unit": "d", "system": UCUM, "code": "d"},
                    },
                },
            },
            "physical-therapy-referral": {
                "resourceType": "ServiceRequest",
                "code": {
                    "coding": [
                        {
                            "system": SNOMED,
                            "code": "308447003",
                            "display": "Referral to physiotherapist (procedure)",
                        }
                    ],
                    "text": "Referral to physical therapy",
                },
                "category": ORDERABLE_CATEGORY_REFERRAL,
            },
            "pain-management-referral": {
                "resourceType": "ServiceRequest",
                "code": {
                    "coding": [
                        {
                            "system": SNOMED,
                            "code": "306265007",
                            "display": "Referral to pain management specialist (procedure)",
                        }
                    ],
                    "text": "Referral to pain management",
                },
                "category": ORDERABLE_CATEGORY_REFERRAL,
            },
        }
    }


# Which concepts each orderable must be recognised as (checked at build time and in the tests).
ORDERABLE_CONCEPTS: dict[str, tuple[set[Concept], set[Concept]]] = {
    # name: (all of these, at least one of these)
    "topical-nsaid": ({Concept.NSAID}, {Concept.NSAID_TOPICAL, Concept.TOPICAL_FORM}),
    "acetaminophen": ({Concept.ACETAMINOPHEN}, set()),
    "physical-therapy-referral": ({Concept.PHYSICAL_THERAPY}, set()),
    "pain-management-referral": ({Concept.PAIN_MANAGEMENT_REFERRAL}, set()),
}


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------


def dump_value_set(vs: ValueSet) -> str:
    """Compact JSON: metadata indented, one code object per line."""
    head = {k: v for k, v in vs.document().items() if k != "codes"}
    text = json.dumps(head, indent=2, ensure_ascii=False)
    lines = ",\n".join(
        "    " + json.dumps(c, ensure_ascii=False, separators=(", ", ": ")) for c in vs.codes
    )
    body = f'  "codes": [\n{lines}\n  ]' if vs.codes else '  "codes": []'
    return text[:-2] + ",\n" + body + "\n}\n"


def dump_json(doc: Any) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def _systems(vs: ValueSet) -> str:
    names = sorted({SYSTEM_NAMES.get(c["system"], c["system"]) for c in vs.codes})
    return ", ".join(names)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_readme(
    sets: list[ValueSet], concepts: dict[str, Any], orderables: dict[str, Any]
) -> str:
    out = [
        README_INTRO.strip(),
        "",
        "## Value sets",
        "",
        "| id | purpose in this service | codes | systems | provenance (source; method) | licence |",
        "|---|---|---:|---|---|---|",
    ]
    for vs in sets:
        prov = vs.provenance
        source = prov["source"]
        if prov.get("upstreamVersion"):
            source += f" ({prov['upstreamVersion']})"
        out.append(
            f"| `{vs.id}` | {_cell(vs.description)} | {len(vs.codes)} | {_systems(vs)} | "
            f"{_cell(source)}; *{_cell(prov['method'])}* | {_cell(prov['license'])} |"
        )
    total = sum(len(vs.codes) for vs in sets)
    out += [
        "",
        f"{len(sets)} value sets, {total} code rows in all.",
        "",
        "## Concepts",
        "",
        "| concept | meaning | value sets | text fallback |",
        "|---|---|---|---|",
    ]
    for name, definition in concepts["concepts"].items():
        sets_cell = ", ".join(f"`{s}`" for s in definition["valueSets"]) or "(none - text only)"
        text_cell = "yes" if definition["textPatterns"] else "no"
        out.append(f"| `{name}` | {_cell(definition['description'])} | {sets_cell} | {text_cell} |")
    out += ["", "## Orderables", "", "| name | resource | code | text |", "|---|---|---|---|"]
    for name, spec in orderables["orderables"].items():
        coding = spec["code"]["coding"][0]
        system = SYSTEM_NAMES.get(coding["system"], coding["system"])
        out.append(
            f"| `{name}` | {spec['resourceType']} | {system} {coding['code']} {coding['display']} | "
            f"{spec['code']['text']} |"
        )
    out += ["", README_GAPS.strip(), ""]
    return "\n".join(out)


README_INTRO = """
# Terminology data

Everything the rules know about codes lives in `data/`, generated by `scripts/build_terminology.py`
from the project's shared source material (`shared/terminology`, FHIR ValueSet expansions with
provenance tables) plus small hand-curated tables inside that script. The service reads only the
packaged files; it never looks at `shared/` and never runs the build script.

* `data/valuesets/<id>.json` - one value set per file: `id`, `title`, `description`, `provenance`
  (`source`, `upstreamUrl`, `upstreamVersion`, `license`, `method`) and `codes`
  (`system`, `code`, `display`), systems in canonical form, ICD-10-CM codes dotted.
* `data/concepts.json` - each `Concept` of `concepts.py` as a union of value sets plus
  `textPatterns` (Python regular expressions, case-insensitive, matched against
  `CodeableConcept.text` and coding displays when an order arrives without a known code).
* `data/orderables.json` - the coded parts of the orders the service suggests.

`index.py` loads these once per worker and answers "which concepts does this code / text mean?".
Code systems arrive under several spellings (OIDs, http/https) and ICD-10-CM codes with or without
the dot; both sides are normalised the same way.

To rebuild: `python scripts/build_terminology.py --shared ../shared/terminology`
(`--check` only reports whether the packaged files are current). To verify the compiled ICD-10-CM
tables again: install `simple-icd-10-cm==1.5.0` in a throwaway environment and run with
`--verify-icd`.
"""

README_GAPS = """
## Gaps and decisions

**Left out or narrowed on purpose**

* `cms166-trauma` (every injury code, about 4 MB) is not shipped. "Significant trauma"
  (`red-flag-spinal-trauma`) is `red-flag-spinal-fracture-and-cord-injury` (thoracic and
  lumbosacral spine fractures, cord and nerve-root injuries) plus
  `red-flag-significant-trunk-trauma`, derived from `cms166-trauma`: ICD-10-CM S22, S23 and S33
  (dislocations and traumatic disc or symphysis ruptures, not sprains), S25-S28, S32, S35-S38
  and T07, initial and subsequent encounters only (a sequela code records the late effect of an
  old injury); organ contusions (spleen, kidney, lung, heart) count as internal injuries.
  SNOMED CT by display words: fractures of ribs, sternum, vertebrae, sacrum, pelvis and
  acetabulum, spinal, cauda equina and lumbosacral nerve-root injuries, traumatic haemothorax,
  multiple injuries; superficial injuries, contusions, abrasions, sprains and strains never
  count. Limb, head and neck injuries are not trunk trauma.
* Cancer: `active-cancer` and `red-flag-cancer-history` share the malignant sets
  (`cdc-malignant-cancer-conditions`, `cms166-all-cancer`, `vsac-malignant-bone-disease`), so a
  cancer recorded only in SNOMED CT (363358000 Malignant tumor of lung, 254637007 Non-small cell
  lung cancer) counts for both; only the red flag adds the personal-history (Z85) codes. Whether
  a cancer is still active is the Condition's clinical status, read by the rules. From
  `cms166-all-cancer` the SNOMED CT rows for benign tumours and hereditary syndromes (pituitary
  and adrenal adenomas, meningioma, multiple endocrine neoplasia, Zollinger-Ellison...) are
  dropped; in-situ and uncertain-behaviour neoplasms (melanoma in situ, D37-D49, MGUS,
  myelodysplasia) stay, as in the CDC list.
* Spine imaging by modality: `spine-imaging-xray`, `spine-imaging-ct` and `spine-imaging-mri`
  split the combined CPT, LOINC and SNOMED CT sets by display words; the CMS166 LOINC sets are
  used as the measure splits them, so its two "XR tomography" codes (36069-3 lumbar spine,
  37653-3 sacrum; conventional tomography) count as CT. The build fails if a spine imaging code
  lands in no modality or in two. Text needs the modality's own word (MRI, MR, magnetic
  resonance; CT, CAT scan, computed tomography; X-ray, XR, radiograph, radiologic examination,
  plain film) with the spine region words; "myelogram" or "imaging" alone is spine imaging of
  no stated modality.
* Extended-release opioids: the CDC set as published (183 products, all in the CDC opioid set).
  It counts every methadone product as long-acting and leaves out buccal buprenorphine
  (Belbuca) and buccal fentanyl. Text: an opioid word of the `opioid` pattern together with
  extended / controlled / sustained release, long-acting, ER, XR, SR, CR, transdermal or patch,
  or a leading "12 HR" / "24 HR" as RxNorm names begin ("every 12 hr" in a sig is not ER), or
  an ER/LA brand (OxyContin, Xtampza, MS Contin, Kadian, Arymo, MorphaBond, Embeda, Hysingla,
  Zohydro, Exalgo, ConZip, Butrans, Duragesic, Ionsys), methadone, or transdermal
  buprenorphine (which also counts as `opioid`: it treats pain only, unlike the sublingual and
  buccal forms). "ibuprofen ER" is neither `opioid` nor this.
* `vsac-neurologic-impairment`: M48.062 (lumbar stenosis with neurogenic claudication), R26.2
  (difficulty walking) and R29.2 (abnormal reflex) are dropped - common, unspecific diagnoses
  that would otherwise mark many older patients as having a red-flag deficit. Cauda equina
  tumours and nerve-root injuries stay (a compressive lesion is a real red flag).
* Transplant procedure sets: donor-side procurement, autotransplants, hand and digit tissue
  transfers and artificial-heart implantation are dropped; they do not leave the patient
  immunosuppressed. Allogeneic hand transplants and backbench preparation of a donor organ
  (done for a recipient) are kept.
* `cdc-malignant-cancer-conditions` and `cdc-conditions-likely-terminal-for-opioid-prescribing`:
  the chapter/block rows such as `C00-C14` or `C7A-C7A` are headings, not codes, and are dropped.
* Sickle cell disease: the CDC list lacks D57.1 (sickle-cell disease without crisis, the usual
  problem-list code) and includes D57.3 (sickle-cell trait, a carrier state). D57.1 is added by
  `sickle-cell-disease-supplement`; D57.3 is dropped.
* `vsac-abnormal-weight-loss`: only R63.4 and R64 of the VSAC weight loss and malnutrition list;
  malnutrition, kwashiorkor, pregnancy malnutrition and low BMI are not weight loss.
* `vsac-glucocorticoids-oral-only`: triamcinolone oral paste (1085728) is dropped - it acts in
  the mouth, not systemically.
* Opioids: the CDC product set is kept as published, including buprenorphine products (Suboxone,
  Zubsolv, Belbuca, Butrans) and methadone. The ingredient fallback drops buprenorphine (1819)
  and levomethadyl (237005): an order that names only the ingredient is far more often opioid
  use disorder treatment, which the service must not discourage. Text patterns likewise do not
  match plain "buprenorphine" but do match the analgesic brands Belbuca and Butrans and
  transdermal buprenorphine; methadone stays (prescribed for pain as well, and highest-risk).
* NSAIDs: aspirin is not an NSAID for this service (the ingredient 1191 and aspirin products are
  left out) because most aspirin orders are 81 mg cardioprotection. Opioid/NSAID combinations
  (hydrocodone-ibuprofen) are opioids by code; by text they match both, which is correct for
  contraindication checks. Eye and ear NSAID preparations do not match the NSAID text pattern.
* Anxiety: F41 family plus agoraphobia (F40.0-) and social phobia (F40.1-); specific phobias,
  OCD (F42) and PTSD (F43.1) are not included although SSRIs treat the latter two.
* Neuropathic pain: fibromyalgia (M79.7) is not neuropathic and is not included, although
  duloxetine and milnacipran are used for it; diabetic autonomic neuropathy (E**.43) is left
  out.
* GI bleeding: upper-GI ulcer and bleeding codes, K92.0-K92.2 and Z87.11 (history of peptic
  ulcer); lower-GI bleeding from diverticula, colonic angiodysplasia or the anorectum is not
  included.
* CKD: Z49 (encounters for dialysis care) is included because it only occurs for patients on or
  starting dialysis.
* Systemic corticosteroid text: prednisone, prednisolone, methylprednisolone, dexamethasone,
  deflazacort and cortisone count unless a local dose form word (topical, cream, inhaler, eye,
  ear, nasal, rectal, intra-articular, spray, drops...) appears; hydrocortisone, betamethasone
  and triamcinolone count only with an oral dose form word.
* Spine imaging text needs a modality word (MRI, MR, CT, computed tomography, X-ray, XR,
  radiograph, plain film, myelogram, imaging) and a thoracic/lumbar region word (lumbar,
  lumbosacral, thoracolumbar, thoracic spine, sacrum, L-spine, T-spine, spine not preceded by
  "cervical"); bone densitometry and image-guided injections, punctures and biopsies are
  excluded. "CT chest" or "CT thoracic aorta" do not match.
* Physical therapy text never matches "PT" alone (prothrombin time): "PT" counts only next to
  referral/evaluation words or in "PT/OT".
* Topical form text: topical, gel (not "liquid gel" capsules), cream, ointment, lotion,
  transdermal, patch, foam. "Apply to" in a dosage instruction is not looked at (the index
  reads only code text and displays).
* Orderable categories: `category` of the referral orderables is one CodeableConcept (SNOMED CT
  3457005 Patient referral); the card builder wraps it in a list for `ServiceRequest.category`.

**Could not be verified (left out; text patterns used instead)**

* RxNorm ingredients for edoxaban (1599538 seen once, in a file with other wrong codes),
  dalteparin (67109), fondaparinux (321208) and dabigatran IN (1546356): text only. Dabigatran
  is coded by its precise ingredient 1037042 dabigatran etexilate.
* No RxCUI for glucosamine or chondroitin: `glucosamine-chondroitin` is recognised by text only.
* Topical NSAID products: none had a display in the shared expansions, so `nsaid-topical`
  holds only the one product verified by hand, the suggested order's clinical drug (RxNorm
  855633 diclofenac sodium 0.01 MG/MG Topical Gel, i.e. the 1% gel; see `nsaid-topical-products`
  for the sources); other topical NSAIDs are recognised by text (NSAID word plus topical word,
  or Flector / Pennsaid), and rules also accept `nsaid` together with `topical-form`.
* NSAID, SSRI, SNRI and TCA product sets are classified by display words; 858 of the 1358
  non-opioid analgesic products and 368 of the 495 adjuvant products have no display in the
  shared copy and therefore cannot be classified. Most NSAID products (meloxicam, diclofenac,
  celecoxib, naproxen tablets) are among them: the ingredient codes and text patterns carry the
  load until a fuller RxNorm expansion is available.
* No verifiable SNOMED CT code for "referral to pain clinic" or "multidisciplinary pain
  service"; only 306265007 Referral to pain management specialist.
* Trunk trauma: the 2017 `cms166-trauma` list has no S25 or S35 (injuries of blood vessels of
  the trunk), no S28 and no T07. T07 (unspecified multiple injuries) and S28.0 (crushed chest)
  are added from the ICD-10-CM release; vessel injuries are not. 2,780 of the list's 3,223
  SNOMED CT codes have no display offline and cannot be classified. Seven were verified by hand
  and added (33737001 Fracture of rib; closed fractures of rib, sternum, thoracic and lumbar
  vertebra and sacrum from the NHS emergency care fracture list; 262519004 Multiple injuries,
  which the list lacks); other SNOMED CT rib, sternum and vertebral fracture concepts (open
  fractures, multiple rib fractures, flail chest) are not recognised.
* `cms166-all-cancer`: 116 SNOMED CT rows have no display offline and cannot be checked for
  benign tumours; they stay.
* SNOMED CT spine imaging codes come from one published value set (Belgian eHealth imaging
  procedures, international-edition concepts plus a few US-extension ids); generic "MRI of
  spine" and whole-spine studies are not included.
* Ingredient RxCUIs for ketorolac, etodolac, sulindac, oxaprozin, diflunisal, ketoprofen,
  fenoprofen, tolmetin, mefenamic acid, meclofenamate, salsalate, desvenlafaxine,
  levomilnacipran, milnacipran and amoxapine are not in the shared material and were not
  verified: these drugs are matched by product code (where the shared sets list them) and text.

**Currency**

* CMS166v7 lists are the 2017 eCQM expansions of a retired measure; VSAC and CDC expansions date
  from 2021-2025; RxNorm products go stale monthly. Re-run the build when the shared material is
  refreshed.
"""


def verify_icd() -> None:
    """Re-check every compiled ICD-10-CM row against simple-icd-10-cm (optional dependency)."""
    import simple_icd_10_cm as icd  # type: ignore[import-not-found]

    tables = (
        NEUROPATHIC_ICD10CM,
        DEPRESSION_ICD10CM,
        ANXIETY_ICD10CM,
        CKD_SEVERE_ICD10CM,
        GI_BLEED_ULCER_ICD10CM,
        HEART_FAILURE_ICD10CM,
        SICKLE_CELL_SUPPLEMENT_ICD10CM,
        tuple((c, d) for system, c, d, _ in TRUNK_TRAUMA_EXTRA if system == ICD10CM),
    )
    for table in tables:
        for code, display in table:
            if not icd.is_valid_item(code) or icd.get_description(code) != display:
                raise SystemExit(f"ICD-10-CM row does not verify: {code} {display!r}")
    print("ICD-10-CM tables verified", file=sys.stderr)


def check_orderables(terminology: Terminology, orderables: dict[str, Any]) -> None:
    for name, (required, any_of) in ORDERABLE_CONCEPTS.items():
        found = terminology.concepts_for_codeable(orderables["orderables"][name]["code"])
        if not required <= found or (any_of and not any_of & found):
            raise SystemExit(
                f"orderable {name!r} is recognised as {sorted(found)}, not {sorted(required | any_of)}"
            )


def build(shared_root: Path) -> dict[Path, str]:
    shared = Shared.load(shared_root)
    sets = build_value_sets(shared)
    sets += spine_imaging_by_modality(sets)
    nsaid_topical = derived(
        shared,
        "nsaid-topical-products",
        "Topical NSAID products (RxNorm, classified by display)",
        "NSAID products in a topical dose form.",
        ["vsac-nonopioid-pain-medications"],
        is_topical_nsaid_product,
        "NSAID product whose display has a topical dose form ("
        + ", ".join(TOPICAL_DOSE_FORMS)
        + ")",
        extra=TOPICAL_NSAID_EXTRA_RXNORM,
    )
    concepts = build_concepts()
    if nsaid_topical.codes:
        sets.append(nsaid_topical)
        concepts["concepts"][Concept.NSAID_TOPICAL.value]["valueSets"] = [nsaid_topical.id]
    empty = [vs.id for vs in sets if not vs.codes]
    if empty:
        raise SystemExit(f"empty value sets: {empty}")
    ids = [vs.id for vs in sets]
    if len(ids) != len(set(ids)):
        raise SystemExit("duplicate value set ids")
    used = {s for d in concepts["concepts"].values() for s in d["valueSets"]}
    if used - set(ids) or set(ids) - used:
        raise SystemExit(
            f"value sets unused {sorted(set(ids) - used)} / missing {sorted(used - set(ids))}"
        )
    for definition in concepts["concepts"].values():
        for pattern in definition["textPatterns"]:
            re.compile(pattern, re.IGNORECASE)
    orderables = build_orderables()
    value_sets = {
        vs.id: [Coded(c["system"], c["code"], c.get("display", "")) for c in vs.codes]
        for vs in sets
    }
    terminology = build_terminology(concepts, value_sets, orderables)
    check_orderables(terminology, orderables)
    check_spine_imaging_modalities(terminology)
    sets.sort(key=lambda vs: vs.id)
    files = {DATA_DIR / "valuesets" / f"{vs.id}.json": dump_value_set(vs) for vs in sets}
    files[DATA_DIR / "concepts.json"] = dump_json(concepts)
    files[DATA_DIR / "orderables.json"] = dump_json(orderables)
    files[README] = render_readme(sets, concepts, orderables)
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--shared",
        type=Path,
        default=REPO.parent / "shared" / "terminology",
        help="folder with the shared ValueSet files (default: ../shared/terminology)",
    )
    parser.add_argument("--check", action="store_true", help="report stale files, write nothing")
    parser.add_argument(
        "--verify-icd",
        action="store_true",
        help="re-check compiled ICD-10-CM rows with simple-icd-10-cm (must be installed)",
    )
    args = parser.parse_args(argv)
    if args.verify_icd:
        verify_icd()
    files = build(args.shared)
    stale_dir = DATA_DIR / "valuesets"
    extra = (
        sorted(p for p in stale_dir.glob("*.json") if p not in files) if stale_dir.exists() else []
    )
    if args.check:
        changed = [
            p
            for p, text in files.items()
            if not p.exists() or p.read_text(encoding="utf-8") != text
        ]
        for path in changed + extra:
            print(f"stale: {path.relative_to(REPO)}")
        return 1 if changed or extra else 0
    stale_dir.mkdir(parents=True, exist_ok=True)
    for path in extra:
        path.unlink()
    for path, text in files.items():
        path.write_text(text, encoding="utf-8")
    size = sum(len(t.encode()) for p, t in files.items() if p != README)
    print(f"wrote {len(files)} files ({size / 1e6:.2f} MB of data)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
