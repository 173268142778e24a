"""Passive modalities (TENS, traction, therapeutic ultrasound) are no treatment on their own:
supervised exercise instead, with them at most beside it (ACP 2017; NICE NG59)."""

from __future__ import annotations

from cds_service.rules.assessment import ROUTINE_ADVICE_DATA, Assessment
from cds_service.rules.drafts import drafts, ref, referral
from cds_service.rules.findings import Fact, FactKind, Finding, Orderable, SuggestionKind
from cds_service.rules.unit import Recommendation
from cds_service.terminology.concepts import Concept

TOPIC = "avoid-passive-modalities"


def evaluate(a: Assessment) -> list[Finding]:
    orders = list(drafts(a, lambda o: not o.is_medication and o.has(Concept.PASSIVE_MODALITY)))
    # Beside active or drafted exercise therapy a passive modality is an adjunct, which is
    # where it belongs; while red flags are worked up, or in end-of-life care (TENS for
    # comfort), rehabilitation advice is beside the point.
    if not orders or a.physical_therapy_in_place or a.routine_advice_unfit:
        return []
    return [
        Finding(
            topic=TOPIC,
            facts=(*a.back_pain_facts, Fact.of(FactKind.NO_PHYSICAL_THERAPY)),
            order=ref(order),
            suggestions=(referral(Orderable.PHYSICAL_THERAPY_REFERRAL),),
        )
        for order in orders
    ]


UNIT = Recommendation(
    topic=TOPIC,
    evaluate=evaluate,
    needs=ROUTINE_ADVICE_DATA,
    suggestions=frozenset({SuggestionKind.REFER}),
    placeholders=frozenset({"order"}),
)
