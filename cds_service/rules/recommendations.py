"""The guideline recommendations, one function each: assessment in, findings out.

Every function is pure. Each declares the data it needs; when that data could not be had the
engine does not call it, so a rule never guesses from a partial record.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from cds_service.record.model import DataCategory, OrderEntry
from cds_service.rules.assessment import (
    CHRONIC_PAIN_DAYS,
    REFERRAL_PAIN_DAYS,
    TOPICAL_NSAID_LOOKBACK_DAYS,
    Assessment,
)
from cds_service.rules.findings import (
    Fact,
    FactKind,
    Finding,
    Indicator,
    Orderable,
    OrderRef,
    SuggestionIntent,
    Topic,
)
from cds_service.terminology.concepts import Concept

C = DataCategory


def _ref(order: OrderEntry) -> OrderRef:
    return OrderRef(order.reference, order.label)


def _order_fact(order: OrderEntry) -> Fact:
    return Fact.of(
        FactKind.DRAFT_ORDER, order=order.label, code=str(order.codes[0]) if order.codes else None
    )


def _drafts(
    assessment: Assessment, predicate: Callable[[OrderEntry], bool]
) -> Iterable[OrderEntry]:
    return (o for o in assessment.record.orders_under_review if predicate(o))


def _removal(order: OrderEntry, key: str = "remove") -> SuggestionIntent | None:
    """Suggestions can only delete a draft the EHR can name."""
    return SuggestionIntent(key, delete=_ref(order)) if order.reference else None


def _replacement(
    order: OrderEntry, alternative: Orderable, key: str = "replace"
) -> SuggestionIntent:
    return SuggestionIntent(
        key,
        delete=_ref(order) if order.reference else None,
        create=alternative,
        recommended=True,
    )


def _present(*suggestions: SuggestionIntent | None) -> tuple[SuggestionIntent, ...]:
    return tuple(s for s in suggestions if s is not None)


def opioid_avoidance(a: Assessment) -> list[Finding]:
    if a.opioid_advice_excluded:
        return []
    contraindications = a.nsaid_contraindications
    alternative = Orderable.ACETAMINOPHEN if contraindications else Orderable.TOPICAL_NSAID
    return [
        Finding(
            topic=Topic.OPIOID_AVOIDANCE,
            facts=(*a.back_pain_facts, _order_fact(order), *(c.fact for c in contraindications)),
            order=_ref(order),
            suggestions=_present(_replacement(order, alternative), _removal(order)),
            alternative=alternative,
            contraindications=tuple(c.contraindication for c in contraindications),
        )
        for order in _drafts(a, lambda o: o.is_medication and o.has(Concept.OPIOID))
    ]


def imaging_without_red_flags(a: Assessment) -> list[Finding]:
    if a.red_flags:
        return []
    return [
        Finding(
            topic=Topic.IMAGING_WITHOUT_RED_FLAGS,
            facts=(*a.back_pain_facts, _order_fact(order), Fact.of(FactKind.NO_RED_FLAGS)),
            order=_ref(order),
            suggestions=_present(_removal(order, "cancel")),
        )
        for order in _drafts(a, lambda o: o.has(Concept.SPINE_IMAGING))
    ]


def red_flags_present(a: Assessment) -> list[Finding]:
    flags = a.red_flags
    if not flags or not a.invites_general_advice:
        return []
    critical = a.has_critical_red_flag
    imaging = next(iter(_drafts(a, lambda o: o.has(Concept.SPINE_IMAGING))), None)
    return [
        Finding(
            topic=Topic.RED_FLAGS_PRESENT,
            facts=(
                *a.back_pain_facts,
                *((_order_fact(imaging),) if imaging else ()),
                *(f.fact for f in flags),
            ),
            order=_ref(imaging) if imaging else None,
            indicator=Indicator.CRITICAL if critical else Indicator.WARNING,
            red_flags=tuple(f.flag for f in flags),
        )
    ]


def topical_nsaid_first(a: Assessment) -> list[Finding]:
    if a.topical_nsaid_tried or a.nsaid_contraindications:
        return []
    return [
        Finding(
            topic=Topic.TOPICAL_NSAID_FIRST,
            facts=(
                *a.back_pain_facts,
                _order_fact(order),
                Fact.of(FactKind.NO_TOPICAL_NSAID, days=str(TOPICAL_NSAID_LOOKBACK_DAYS)),
            ),
            order=_ref(order),
            suggestions=(_replacement(order, Orderable.TOPICAL_NSAID),),
            alternative=Orderable.TOPICAL_NSAID,
        )
        for order in _drafts(a, lambda o: o.is_medication and a.is_oral_nsaid(o))
    ]


def nsaid_contraindicated(a: Assessment) -> list[Finding]:
    contraindications = a.nsaid_contraindications
    if not contraindications:
        return []
    return [
        Finding(
            topic=Topic.NSAID_CONTRAINDICATED,
            facts=(*a.back_pain_facts, _order_fact(order), *(c.fact for c in contraindications)),
            order=_ref(order),
            suggestions=(_replacement(order, Orderable.ACETAMINOPHEN),),
            alternative=Orderable.ACETAMINOPHEN,
            contraindications=tuple(c.contraindication for c in contraindications),
        )
        for order in _drafts(a, lambda o: o.is_medication and a.is_nsaid(o))
    ]


def avoid_antidepressant(a: Assessment) -> list[Finding]:
    if a.has_active(
        Concept.DEPRESSION, Concept.ANXIETY, Concept.NEUROPATHIC_PAIN, Concept.RADICULAR_PAIN
    ):
        return []
    return [
        Finding(
            topic=Topic.AVOID_ANTIDEPRESSANT,
            facts=(
                *a.back_pain_facts,
                _order_fact(order),
                Fact.of(FactKind.NO_ANTIDEPRESSANT_INDICATION),
            ),
            order=_ref(order),
            suggestions=_present(_removal(order)),
        )
        for order in _drafts(
            a, lambda o: o.is_medication and o.has_any((Concept.SSRI, Concept.SNRI, Concept.TCA))
        )
    ]


def avoid_glucosamine(a: Assessment) -> list[Finding]:
    return [
        Finding(
            topic=Topic.AVOID_GLUCOSAMINE,
            facts=(*a.back_pain_facts, _order_fact(order)),
            order=_ref(order),
            suggestions=_present(_removal(order)),
        )
        for order in _drafts(
            a, lambda o: o.is_medication and o.has(Concept.GLUCOSAMINE_CHONDROITIN)
        )
    ]


def avoid_spinal_injection(a: Assessment) -> list[Finding]:
    if a.has_active(Concept.RADICULAR_PAIN):
        return []
    return [
        Finding(
            topic=Topic.AVOID_SPINAL_INJECTION,
            facts=(*a.back_pain_facts, _order_fact(order), Fact.of(FactKind.NO_RADICULOPATHY)),
            order=_ref(order),
            suggestions=_present(_removal(order, "cancel")),
        )
        for order in _drafts(a, lambda o: o.has(Concept.SPINAL_INJECTION))
    ]


def _routine_advice_unfit(a: Assessment) -> bool:
    """An emergency red flag, or end-of-life care: rehabilitation advice would only distract."""
    return a.has_critical_red_flag or a.in_end_of_life_care


def exercise_therapy(a: Assessment) -> list[Finding]:
    if not a.invites_general_advice or a.physical_therapy_in_place or _routine_advice_unfit(a):
        return []
    return [
        Finding(
            topic=Topic.EXERCISE_THERAPY,
            facts=(*a.back_pain_facts, Fact.of(FactKind.NO_PHYSICAL_THERAPY)),
            suggestions=(
                SuggestionIntent(
                    "refer", create=Orderable.PHYSICAL_THERAPY_REFERRAL, recommended=True
                ),
            ),
        )
    ]


def chronic_pain_assessment(a: Assessment) -> list[Finding]:
    days = a.pain_duration_days
    if days is None or days < CHRONIC_PAIN_DAYS or not a.invites_general_advice:
        return []
    if _routine_advice_unfit(a):
        return []
    refer = days >= REFERRAL_PAIN_DAYS and not a.pain_referral_in_place
    return [
        Finding(
            topic=Topic.CHRONIC_PAIN_ASSESSMENT,
            facts=(
                *a.back_pain_facts,
                Fact.of(
                    FactKind.PAIN_DURATION,
                    onset=a.pain_onset.isoformat() if a.pain_onset else None,
                    duration_days=str(days),
                ),
            ),
            suggestions=(
                (
                    SuggestionIntent(
                        "refer", create=Orderable.PAIN_MANAGEMENT_REFERRAL, recommended=True
                    ),
                )
                if refer
                else ()
            ),
        )
    ]


@dataclass(frozen=True)
class Recommendation:
    topic: Topic
    evaluate: Callable[[Assessment], list[Finding]]
    needs: frozenset[DataCategory]


# What `_routine_advice_unfit` reads (end-of-life care shows in conditions, service requests
# and procedures) and what shows a referral or therapy already in place.
_ROUTINE_ADVICE_NEEDS = frozenset({C.CONDITIONS, C.SERVICE_REQUESTS, C.PROCEDURES})

RECOMMENDATIONS: tuple[Recommendation, ...] = (
    Recommendation(Topic.RED_FLAGS_PRESENT, red_flags_present, frozenset({C.CONDITIONS})),
    Recommendation(
        Topic.OPIOID_AVOIDANCE,
        opioid_avoidance,
        # Procedures and service requests show hospice care; medications choose the alternative.
        frozenset({C.CONDITIONS, C.MEDICATIONS, C.PROCEDURES, C.SERVICE_REQUESTS}),
    ),
    Recommendation(
        Topic.IMAGING_WITHOUT_RED_FLAGS,
        imaging_without_red_flags,
        frozenset({C.PATIENT, C.CONDITIONS, C.MEDICATIONS, C.OBSERVATIONS, C.PROCEDURES}),
    ),
    Recommendation(Topic.NSAID_CONTRAINDICATED, nsaid_contraindicated, frozenset({C.CONDITIONS})),
    Recommendation(
        Topic.TOPICAL_NSAID_FIRST, topical_nsaid_first, frozenset({C.CONDITIONS, C.MEDICATIONS})
    ),
    Recommendation(Topic.AVOID_ANTIDEPRESSANT, avoid_antidepressant, frozenset({C.CONDITIONS})),
    Recommendation(Topic.AVOID_GLUCOSAMINE, avoid_glucosamine, frozenset({C.CONDITIONS})),
    Recommendation(Topic.AVOID_SPINAL_INJECTION, avoid_spinal_injection, frozenset({C.CONDITIONS})),
    Recommendation(Topic.EXERCISE_THERAPY, exercise_therapy, _ROUTINE_ADVICE_NEEDS),
    Recommendation(Topic.CHRONIC_PAIN_ASSESSMENT, chronic_pain_assessment, _ROUTINE_ADVICE_NEEDS),
)
