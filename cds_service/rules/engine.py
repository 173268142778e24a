"""Run the recommendations that apply to a patient record."""

from __future__ import annotations

from dataclasses import dataclass

from cds_service.record.model import PatientRecord
from cds_service.rules.assessment import Assessment
from cds_service.rules.findings import Finding
from cds_service.rules.registry import RECOMMENDATIONS
from cds_service.rules.unit import Recommendation


@dataclass(frozen=True)
class Evaluation:
    findings: tuple[Finding, ...]
    skipped: tuple[str, ...]  # rules left silent because the data they need was missing
    back_pain: bool
    condition_refs: tuple[str, ...] = ()  # the back-pain Conditions, as reasons for new orders
    pain_duration_days: int | None = None


def evaluate(
    record: PatientRecord, recommendations: tuple[Recommendation, ...] = RECOMMENDATIONS
) -> Evaluation:
    assessment = Assessment(record)
    # The guideline is for adults with back pain; anyone else gets no back-pain advice.
    if assessment.is_minor or not assessment.has_back_pain:
        return Evaluation(findings=(), skipped=(), back_pain=assessment.has_back_pain)
    findings: list[Finding] = []
    skipped: list[str] = []
    for recommendation in recommendations:
        if not record.has_data(*recommendation.needs):
            skipped.append(recommendation.topic)
            continue
        findings.extend(recommendation.evaluate(assessment))
    refs = tuple(
        f"Condition/{c.resource_id}" for c in assessment.back_pain_conditions if c.resource_id
    )
    return Evaluation(
        findings=tuple(findings),
        skipped=tuple(skipped),
        back_pain=True,
        condition_refs=refs,
        pain_duration_days=assessment.pain_duration_days,
    )
