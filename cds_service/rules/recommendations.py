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
    RedFlagFinding,
)
from cds_service.rules.findings import (
    FIRST_TEST,
    Fact,
    FactKind,
    Finding,
    FirstTest,
    Indicator,
    Note,
    Orderable,
    OrderRef,
    RedFlag,
    SuggestionIntent,
    Topic,
)
from cds_service.terminology.concepts import Concept

C = DataCategory


def _ref(order: OrderEntry) -> OrderRef:
    return OrderRef(order.reference, order.label)


def _order_fact(order: OrderEntry) -> Fact:
    """A draft named only among the facts: a card about the draft names it in its action."""
    return Fact.of(FactKind.DRAFT_ORDER, order=order.label)


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


def _present_notes(*notes: tuple[Note, bool]) -> tuple[Note, ...]:
    return tuple(note for note, applies in notes if applies)


def opioid_avoidance(a: Assessment) -> list[Finding]:
    if a.opioid_advice_excluded:
        return []
    contraindications = a.nsaid_contraindications
    alternative = Orderable.ACETAMINOPHEN if contraindications else Orderable.TOPICAL_NSAID
    return [
        Finding(
            topic=Topic.OPIOID_AVOIDANCE,
            facts=(*a.back_pain_facts, *(c.fact for c in contraindications)),
            order=_ref(order),
            suggestions=_present(_replacement(order, alternative), _removal(order)),
            alternative=alternative,
            contraindications=tuple(c.contraindication for c in contraindications),
            notes=_present_notes(
                (Note.EXTENDED_RELEASE, order.has(Concept.OPIOID_EXTENDED_RELEASE)),
                (Note.NSAIDS_CONTRAINDICATED, bool(contraindications)),
            ),
        )
        for order in _drafts(a, lambda o: o.is_medication and o.has(Concept.OPIOID))
    ]


def imaging_without_red_flags(a: Assessment) -> list[Finding]:
    if a.red_flags:
        return []
    return [
        Finding(
            topic=Topic.IMAGING_WITHOUT_RED_FLAGS,
            facts=(*a.back_pain_facts, Fact.of(FactKind.NO_RED_FLAGS)),
            order=_ref(order),
            suggestions=_present(_removal(order, "cancel")),
        )
        for order in _drafts(a, lambda o: o.has(Concept.SPINE_IMAGING))
    ]


def _imaging_notes(imaging: OrderEntry, flags: tuple[RedFlagFinding, ...]) -> tuple[Note, ...]:
    """Whether the drafted study is the first test the red flags call for."""
    first_tests = {FIRST_TEST[f.flag] for f in flags}
    advanced = imaging.has_any((Concept.SPINE_IMAGING_MRI, Concept.SPINE_IMAGING_CT))
    if FirstTest.MRI in first_tests:
        xray_only = imaging.has(Concept.SPINE_IMAGING_XRAY) and not advanced
        return (Note.XRAY_NOT_ENOUGH,) if xray_only else ()
    if FirstTest.MARKERS_THEN_MRI in first_tests:
        return ()  # blood tests first; any study is the clinician's call on suspicion
    # CT is a first test after significant trauma; otherwise plain X-ray comes first.
    ct_for_trauma = imaging.has(Concept.SPINE_IMAGING_CT) and any(
        f.flag is RedFlag.SPINAL_TRAUMA for f in flags
    )
    return (Note.ADVANCED_IMAGING_TOO_SOON,) if advanced and not ct_for_trauma else ()


def red_flags_present(a: Assessment) -> list[Finding]:
    flags = a.red_flags
    if not flags or not a.invites_general_advice:
        return []
    imaging = next(iter(_drafts(a, lambda o: o.has(Concept.SPINE_IMAGING))), None)
    notes = _imaging_notes(imaging, flags) if imaging else ()
    # A drafted study the notes do not discuss is still named, as one of the facts.
    imaging_fact = (_order_fact(imaging),) if imaging and not notes else ()
    return [
        Finding(
            topic=Topic.RED_FLAGS_PRESENT,
            facts=(*a.back_pain_facts, *imaging_fact, *(fact for f in flags for fact in f.facts)),
            order=_ref(imaging) if imaging else None,
            indicator=Indicator.CRITICAL if a.has_critical_red_flag else Indicator.WARNING,
            red_flags=tuple(f.flag for f in flags),
            known_red_flags=frozenset(f.flag for f in flags if f.known),
            notes=notes,
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
            facts=(*a.back_pain_facts, *(c.fact for c in contraindications)),
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
            facts=a.back_pain_facts,
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
            facts=(*a.back_pain_facts, Fact.of(FactKind.NO_RADICULOPATHY)),
            order=_ref(order),
            suggestions=_present(_removal(order, "cancel")),
        )
        for order in _drafts(a, lambda o: o.has(Concept.SPINAL_INJECTION))
    ]


def _routine_advice_unfit(a: Assessment) -> bool:
    """Red flags being worked up, or end-of-life care: rehabilitation advice would be premature
    or beside the point."""
    return bool(a.red_flags) or a.in_end_of_life_care


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
    # Psychosocial assessment and CBT do not fit a patient whose pain may be cancer's.
    if _routine_advice_unfit(a) or a.has_active_cancer:
        return []
    refer = days >= REFERRAL_PAIN_DAYS and not a.pain_referral_in_place
    return [
        Finding(
            topic=Topic.CHRONIC_PAIN_ASSESSMENT,
            facts=a.back_pain_facts,
            suggestions=(
                (
                    SuggestionIntent(
                        "refer", create=Orderable.PAIN_MANAGEMENT_REFERRAL, recommended=True
                    ),
                )
                if refer
                else ()
            ),
            notes=(Note.REFERRAL_DUE,) if refer else (),
        )
    ]


@dataclass(frozen=True)
class Recommendation:
    topic: Topic
    evaluate: Callable[[Assessment], list[Finding]]
    needs: frozenset[DataCategory]


# Every kind of data a red flag can be found in: "no red flag" can only be said with all of it.
_RED_FLAG_NEEDS = frozenset({C.PATIENT, C.CONDITIONS, C.MEDICATIONS, C.OBSERVATIONS, C.PROCEDURES})
# `_routine_advice_unfit` reads the red flags and end-of-life care (conditions, service requests,
# procedures); service requests also show a referral or therapy already in place.
_ROUTINE_ADVICE_NEEDS = _RED_FLAG_NEEDS | {C.SERVICE_REQUESTS}

RECOMMENDATIONS: tuple[Recommendation, ...] = (
    Recommendation(Topic.RED_FLAGS_PRESENT, red_flags_present, frozenset({C.CONDITIONS})),
    Recommendation(
        Topic.OPIOID_AVOIDANCE,
        opioid_avoidance,
        # Procedures and service requests show hospice care; medications choose the alternative.
        frozenset({C.CONDITIONS, C.MEDICATIONS, C.PROCEDURES, C.SERVICE_REQUESTS}),
    ),
    Recommendation(Topic.IMAGING_WITHOUT_RED_FLAGS, imaging_without_red_flags, _RED_FLAG_NEEDS),
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
