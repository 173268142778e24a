"""Run the recommendations that apply to a patient record."""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass, replace
from functools import cache

from cds_service.record.model import OrderEntry, PatientRecord
from cds_service.rules.assessment import BACK_PAIN_ORDER_CONCEPTS, Assessment, order_words
from cds_service.rules.findings import Finding, Orderable
from cds_service.rules.registry import RECOMMENDATIONS
from cds_service.rules.thresholds import DEFAULT_THRESHOLDS, Thresholds
from cds_service.rules.unit import Recommendation
from cds_service.terminology.concepts import BACK_PAIN


@dataclass(frozen=True)
class Evaluation:
    findings: tuple[Finding, ...]
    skipped: tuple[str, ...]  # rules left silent because the data they need was missing
    back_pain: bool
    condition_refs: tuple[str, ...] = ()  # the back-pain Conditions, as reasons for new orders
    pain_duration_days: int | None = None
    # The findings before each order was offered once: what `offer_each_order_once` starts
    # from when more topics are held back after evaluation (a snooze found later).
    candidates: tuple[Finding, ...] = ()


def product_identity(order: OrderEntry) -> Hashable:
    """What makes two orders the same order: the kind of request and what is ordered (every
    coding of the product, in any order), or its words when it carries no code."""
    if order.codes:
        return order.resource_type, frozenset((c.system_label, c.code) for c in order.codes)
    return order.resource_type, order.label.strip().casefold()


def fold_identical_orders(
    findings: tuple[Finding, ...], orders: tuple[OrderEntry, ...]
) -> tuple[Finding, ...]:
    """One finding per topic and ordered product: 500 identical drafts get one card, not 500.

    The first finding of each (topic, product) is kept, and answers for the drafts of the
    others (`same_orders`): its card's suggestions act on every one of them. Findings about no
    draft, or a draft that is not under review, stay as they are.
    """
    by_reference = {order.reference: order for order in orders if order.reference}
    by_label = {order_words(order): order for order in orders if not order.reference}
    kept: list[Finding] = []
    first_of: dict[tuple[str, Hashable], int] = {}
    for finding in findings:
        ref = finding.order
        order = None
        if ref is not None:
            order = by_reference.get(ref.reference) if ref.reference else by_label.get(ref.label)
        if order is None or ref is None:
            kept.append(finding)
            continue
        key = (finding.topic, product_identity(order))
        if key not in first_of:
            first_of[key] = len(kept)
            kept.append(finding)
            continue
        first = kept[first_of[key]]
        kept[first_of[key]] = replace(first, same_orders=(*first.same_orders, ref))
    return tuple(kept)


def _created(finding: Finding) -> set[Orderable]:
    return {s.create for s in finding.suggestions if s.create is not None}


@cache
def _general_topics(recommendations: tuple[Recommendation, ...]) -> frozenset[str]:
    return frozenset(unit.topic for unit in recommendations if unit.general)


def one_suggestion_per_order(
    findings: tuple[Finding, ...], recommendations: tuple[Recommendation, ...]
) -> tuple[Finding, ...]:
    """Each order is offered once per answer, so that accepting every card cannot create it
    twice: a general unit's finding gives way when the other findings already offer all it
    would, and a later finding loses a suggestion that only creates what an earlier one does
    (a second NSAID draft's stomach protection)."""
    created = [s.create for f in findings for s in f.suggestions if s.create is not None]
    if len(created) == len(set(created)):
        return findings  # the usual answer: no order offered twice
    general = _general_topics(recommendations)
    offered_elsewhere: set[Orderable] = set()
    for finding in findings:
        if finding.topic not in general:
            offered_elsewhere |= _created(finding)
    kept = [
        f
        for f in findings
        if f.topic not in general or not _created(f) or not _created(f) <= offered_elsewhere
    ]
    offered: set[Orderable] = set()
    result: list[Finding] = []
    for finding in kept:
        suggestions = tuple(
            s
            for s in finding.suggestions
            if s.delete is not None or s.create is None or s.create not in offered
        )
        offered |= _created(finding)
        result.append(
            finding
            if suggestions == finding.suggestions
            else replace(finding, suggestions=suggestions)
        )
    return tuple(result)


def offer_each_order_once(
    candidates: tuple[Finding, ...],
    recommendations: tuple[Recommendation, ...],
    held_back: frozenset[str] = frozenset(),
) -> tuple[Finding, ...]:
    """`one_suggestion_per_order` for an answer whose `held_back` topics are logged but not
    shown (a site's silent or snoozed topics). The shown findings offer each order once among
    themselves, as if the held-back topics had not fired, so that holding a card back never
    takes an order away from a card that shows; the held-back findings are kept as they would
    have shown had every topic been on."""
    if not held_back or not any(f.topic in held_back for f in candidates):
        return one_suggestion_per_order(candidates, recommendations)
    shown = tuple(f for f in candidates if f.topic not in held_back)
    would_have_shown = one_suggestion_per_order(candidates, recommendations)
    return one_suggestion_per_order(shown, recommendations) + tuple(
        f for f in would_have_shown if f.topic in held_back
    )


def evaluate(
    record: PatientRecord,
    recommendations: tuple[Recommendation, ...] = RECOMMENDATIONS,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    held_back: frozenset[str] = frozenset(),
) -> Evaluation:
    """The findings of `recommendations` (a site leaves out the topics it switched off) under
    the site's `thresholds`; `held_back`: topics whose cards will be logged, not shown."""
    assessment = Assessment(record, thresholds)
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
    folded = fold_identical_orders(tuple(findings), record.orders_under_review)
    kept = offer_each_order_once(folded, recommendations, held_back)
    refs = tuple(
        f"Condition/{c.resource_id}" for c in assessment.back_pain_conditions if c.resource_id
    )
    return Evaluation(
        findings=kept,
        skipped=tuple(skipped),
        back_pain=True,
        condition_refs=refs,
        pain_duration_days=assessment.pain_duration_days,
        candidates=folded,
    )


def concerns_back_pain(drafts: Iterable[OrderEntry]) -> bool:
    """Triage of an order hook on its draft orders alone, before any patient data is read:
    whether an order under review is back-pain related (a back-pain reason, or a kind of order
    the guideline speaks to). When none is, no order-hook card can fire. The same test as
    `Assessment.is_back_pain_related` (a test holds them equal), without building a record.
    """
    return any(
        draft.is_selected
        and (bool(draft.reason_concepts & BACK_PAIN) or draft.has_any(BACK_PAIN_ORDER_CONCEPTS))
        for draft in drafts
    )
