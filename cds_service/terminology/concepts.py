"""Names of the clinical concepts the guideline rules ask about.

Each concept is defined in `data/concepts.json` as a union of value sets (plus text patterns
for orders that arrive without a recognised code). Rules only ever name a concept; which codes
make it up is data.
"""

from __future__ import annotations

from enum import StrEnum


class Concept(StrEnum):
    # Back-pain context
    BACK_PAIN_THORACIC = "back-pain-thoracic"
    BACK_PAIN_LOW = "back-pain-low"
    RADICULAR_PAIN = "radicular-pain"
    NEUROPATHIC_PAIN = "neuropathic-pain"
    # A specific structural diagnosis spine surgery treats (radiculopathy, stenosis with
    # neurogenic claudication, spondylolisthesis, myelopathy, cauda equina, scoliosis).
    SPINE_SURGICAL_DIAGNOSIS = "spine-surgical-diagnosis"
    DEPRESSION = "depression"
    ANXIETY = "anxiety"

    # Red flags (conditions, findings, procedures)
    RED_FLAG_NEUROLOGIC_DEFICIT = "red-flag-neurologic-deficit"
    RED_FLAG_FEVER = "red-flag-fever"
    RED_FLAG_IV_DRUG_USE = "red-flag-iv-drug-use"
    RED_FLAG_IMMUNOSUPPRESSION = "red-flag-immunosuppression"
    RED_FLAG_SPINAL_INFECTION = "red-flag-spinal-infection"
    RED_FLAG_CANCER_HISTORY = "red-flag-cancer-history"
    RED_FLAG_WEIGHT_LOSS = "red-flag-weight-loss"
    RED_FLAG_SPINAL_TRAUMA = "red-flag-spinal-trauma"
    RED_FLAG_OSTEOPOROSIS = "red-flag-osteoporosis"
    TRANSPLANT_PROCEDURE = "transplant-procedure"

    # Exclusions from opioid advice
    ACTIVE_CANCER = "active-cancer"
    END_OF_LIFE = "end-of-life"
    HOSPICE_CARE = "hospice-care"
    SICKLE_CELL_DISEASE = "sickle-cell-disease"

    # NSAID contraindications
    CKD_SEVERE = "ckd-severe"
    GI_BLEED_OR_ULCER = "gi-bleed-or-ulcer"
    HEART_FAILURE = "heart-failure"
    ANTICOAGULANT = "anticoagulant"

    # Medications
    OPIOID = "opioid"
    OPIOID_EXTENDED_RELEASE = "opioid-extended-release"
    NSAID = "nsaid"
    NSAID_TOPICAL = "nsaid-topical"
    TOPICAL_FORM = "topical-form"
    ACETAMINOPHEN = "acetaminophen"
    SSRI = "ssri"
    SNRI = "snri"
    TCA = "tca"
    GLUCOSAMINE_CHONDROITIN = "glucosamine-chondroitin"
    SYSTEMIC_CORTICOSTEROID = "systemic-corticosteroid"
    ASPIRIN = "aspirin"
    GASTROPROTECTIVE = "gastroprotective"

    # Procedures and referrals
    SPINE_IMAGING = "spine-imaging"
    SPINE_IMAGING_XRAY = "spine-imaging-xray"
    SPINE_IMAGING_CT = "spine-imaging-ct"
    SPINE_IMAGING_MRI = "spine-imaging-mri"
    SPINAL_INJECTION = "spinal-injection"
    PHYSICAL_THERAPY = "physical-therapy"
    PAIN_MANAGEMENT_REFERRAL = "pain-management-referral"
    SPINE_SURGERY = "spine-surgery"
    SURGICAL_REFERRAL = "surgical-referral"  # neurosurgeon / orthopedic surgeon, no body part
    PASSIVE_MODALITY = "passive-modality"

    # Observations
    BODY_TEMPERATURE = "body-temperature"
    BODY_WEIGHT = "body-weight"


BACK_PAIN = frozenset({Concept.BACK_PAIN_THORACIC, Concept.BACK_PAIN_LOW})
