"""Run the recommendations that apply to a patient record."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from cds_service.record.model import OrderEntry, PatientRecord
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
    # Findings about identical draft orders are answered once (see fold_identical_orders):
    # (topic, the draft the kept finding names) -> the identical drafts it answers for too.
    folded_drafts: Mapping[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)


def product_identity(order: OrderEntry) -> Hashable:
    """What makes two orders the same order: the kind of request and what is ordered (every
    coding of the product, in any order), or its words when it carries no code."""
    if order.codes:
        return order.resource_type, frozenset((c.system_label, c.code) for c in order.codes)
    return order.resource_type, order.label.strip().casefold()


def fold_identical_orders(
    findings: tuple[Finding, ...], orders: tuple[OrderEntry, ...]
) -> tuple[tuple[Finding, ...], dict[tuple[str, str], tuple[str, ...]]]:
    """One finding per topic and ordered product: 500 identical drafts get one card, not 500.

    The first finding of each (topic, product) is kept; the drafts of the others are returned
    by the kept finding's (topic, draft reference), so that its suggestions can act on every
    one of them. Findings about no draft, or a draft that is not under review, stay as they are.
    """
    by_reference = {order.reference: order for order in orders if order.reference}
    by_label = {order.label: order for order in orders if not order.reference}
    kept: list[Finding] = []
    first_of: dict[tuple[str, Hashable], Finding] = {}
    folded: dict[tuple[str, str], list[str]] = {}
    for finding in findings:
        ref = finding.order
        order = None
        if ref is not None:
            order = by_reference.get(ref.reference) if ref.reference else by_label.get(ref.label)
        if order is None:
            kept.append(finding)
            continue
        key = (finding.topic, product_identity(order))
        first = first_of.get(key)
        if first is None:
            first_of[key] = finding
            kept.append(finding)
            continue
        if first.order is not None and first.order.reference and ref and ref.reference:
            folded.setdefault((finding.topic, first.order.reference), []).append(ref.reference)
    return tuple(kept), {key: tuple(refs) for key, refs in folded.items()}


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
    kept, folded = fold_identical_orders(tuple(findings), record.orders_under_review)
    refs = tuple(
        f"Condition/{c.resource_id}" for c in assessment.back_pain_conditions if c.resource_id
    )
    return Evaluation(
        findings=kept,
        skipped=tuple(skipped),
        back_pain=True,
        condition_refs=refs,
        pain_duration_days=assessment.pain_duration_days,
        folded_drafts=MappingProxyType(folded),
    )
