"""The services this CDS server offers, as discovery describes them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cds_service.terminology.concepts import Concept
from cds_service.terminology.index import LOINC, Terminology
from cds_service.vocabulary import DataCategory

CDS_HOOKS_VERSION = "2.0.1"
ORDER_HOOKS = frozenset({"order-sign", "order-select"})


@dataclass(frozen=True)
class ServiceDefinition:
    id: str
    hook: str
    title: str
    description: str
    prefetch: Mapping[str, str]

    def discovery_entry(self) -> dict[str, Any]:
        return {
            "hook": self.hook,
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "prefetch": dict(self.prefetch),
        }


def prefetch_templates(terminology: Terminology) -> dict[str, str]:
    """One prefetch key per kind of data the rules read (keys are DataCategory values).

    Only root-level context tokens are used, as CDS Hooks 2.0 requires; observation codes come
    from the body-temperature and body-weight value sets.
    """
    observation_codes = sorted(
        f"{LOINC}|{code}"
        for concept in (Concept.BODY_TEMPERATURE, Concept.BODY_WEIGHT)
        for code in terminology.codes_of(concept, LOINC)
    )
    patient = "{{context.patientId}}"
    return {
        DataCategory.PATIENT.value: f"Patient/{patient}",
        DataCategory.CONDITIONS.value: f"Condition?patient={patient}",
        DataCategory.MEDICATIONS.value: f"MedicationRequest?patient={patient}",
        DataCategory.OBSERVATIONS.value: (
            f"Observation?patient={patient}&code={','.join(observation_codes)}&_sort=-date"
        ),
        DataCategory.PROCEDURES.value: f"Procedure?patient={patient}",
        DataCategory.SERVICE_REQUESTS.value: f"ServiceRequest?patient={patient}",
    }


_ORDER_CHECKS = (
    "for adults with mid-back (thoracic) or low back musculoskeletal pain, following the ACP, "
    "ACP/AAFP, APS and NICE guidelines and the CDC 2022 opioid guideline: avoid opioids "
    "(tramadol included), no spine imaging without red flags, topical NSAID first, stomach "
    "protection with an oral NSAID when risk factors are present, acetaminophen when NSAIDs "
    "are unsafe but not alone for chronic pain, no antidepressants, glucosamine or spinal "
    "injections for axial pain, no spine surgery without red flags or a structural diagnosis, "
    "passive modalities (TENS, traction, ultrasound) only beside exercise, red flags named "
    "with their first test, and supervised exercise therapy and chronic-pain care when the "
    "order concerns back pain."
)


def build_catalog(terminology: Terminology) -> tuple[ServiceDefinition, ...]:
    templates = prefetch_templates(terminology)
    return (
        ServiceDefinition(
            id="back-pain-order-sign",
            hook="order-sign",
            title="Back pain: guideline check at order signing",
            description="Reviews every draft order at signing " + _ORDER_CHECKS,
            prefetch=templates,
        ),
        ServiceDefinition(
            id="back-pain-order-select",
            hook="order-select",
            title="Back pain: guideline check while selecting orders",
            description="Reviews the orders just selected " + _ORDER_CHECKS,
            prefetch=templates,
        ),
        ServiceDefinition(
            id="back-pain-patient-view",
            hook="patient-view",
            title="Back pain: red flags, exercise and chronic-pain care",
            description="When the chart of an adult with mid-back or low back pain opens: red "
            "flags with the first test each calls for (ACP/APS), then, when none is present, "
            "supervised exercise therapy and, from 4 weeks of pain, psychosocial assessment with "
            "a multidisciplinary referral from 12 weeks. It does not review orders: the checks of "
            "drafted medicines, imaging, injections, surgery and physical modalities run at "
            "order-select and order-sign.",
            prefetch=templates,
        ),
    )
