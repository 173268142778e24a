"""The services this CDS server offers, as discovery describes them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cds_service.rules.registry import TOPICS
from cds_service.site.config import DEFAULT_SITE, SiteConfig
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
    # What the service needs to work as described (CDS Hooks 2.0 discovery, optional).
    usage_requirements: str | None = None

    def discovery_entry(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "hook": self.hook,
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "prefetch": dict(self.prefetch),
        }
        if self.usage_requirements:
            entry["usageRequirements"] = self.usage_requirements
        return entry


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


def _site_words(site: SiteConfig) -> str:
    """What the site's configuration changes, in one sentence."""
    if site.source is None:
        return (
            "No site configuration: every recommendation shows, with the guideline's "
            "thresholds and standard order codes."
        )
    parts = []
    for label, topics in (("silent", site.silent_topics), ("off", site.off_topics)):
        if topics:
            parts.append(f"{label}: {', '.join(t for t in TOPICS if t in topics)}")
    changed = site.thresholds.changed()
    if changed:
        parts.append("thresholds " + ", ".join(f"{k} = {v:g}" for k, v in changed.items()))
    if site.orders:
        parts.append("local order codes for " + ", ".join(o.value for o in site.orders))
    if site.snoozable_topics:
        parts.append("snooze on " + ", ".join(t for t in TOPICS if t in site.snoozable_topics))
    return (
        "The site's configuration applies (CDS_SITE_CONFIG"
        + (f"; {'; '.join(parts)}" if parts else "")
        + ")."
    )


def usage_requirements(hook: str, site: SiteConfig) -> str:
    orders = (
        " Draft orders coded (RxNorm for medicines; CPT, LOINC or SNOMED CT for imaging, "
        "injections and referrals), or named in text when uncoded; suggestions create "
        "MedicationRequest and ServiceRequest resources and delete drafts by id."
        if hook in ORDER_HOOKS
        else ""
    )
    return (
        "Prefetch of the patient, conditions, medications, observations (body temperature and "
        "weight), procedures and service requests, or fhirServer with fhirAuthorization to "
        "read what is not prefetched; the patient and conditions are required (412 without "
        "them). Back-pain diagnoses coded in ICD-10-CM or SNOMED CT."
        + orders
        + " Feedback (POST {id}/feedback) with card and suggestion uuids. "
        + _site_words(site)
    )


def build_catalog(
    terminology: Terminology, site: SiteConfig = DEFAULT_SITE
) -> tuple[ServiceDefinition, ...]:
    templates = prefetch_templates(terminology)
    return (
        ServiceDefinition(
            id="back-pain-order-sign",
            hook="order-sign",
            title="Back pain: guideline check at order signing",
            description="Reviews every draft order at signing " + _ORDER_CHECKS,
            prefetch=templates,
            usage_requirements=usage_requirements("order-sign", site),
        ),
        ServiceDefinition(
            id="back-pain-order-select",
            hook="order-select",
            title="Back pain: guideline check while selecting orders",
            description="Reviews the orders just selected " + _ORDER_CHECKS,
            prefetch=templates,
            usage_requirements=usage_requirements("order-select", site),
        ),
        ServiceDefinition(
            id="back-pain-patient-view",
            hook="patient-view",
            title="Back pain: red flags, exercise and chronic-pain care",
            description="When the chart of an adult with mid-back or low back pain opens: red "
            "flags with the first test each calls for (ACP/APS), then, when none is present, "
            f"supervised exercise therapy and, from {site.thresholds.persistent_pain_weeks} "
            "weeks of pain, psychosocial assessment with a multidisciplinary referral from "
            f"{site.thresholds.referral_pain_weeks} weeks. It does not review orders: the checks "
            "of drafted medicines, imaging, injections, surgery and physical modalities run at "
            "order-select and order-sign.",
            prefetch=templates,
            usage_requirements=usage_requirements("patient-view", site),
        ),
    )
