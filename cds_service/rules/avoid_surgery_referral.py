"""No spine surgery referral for back pain without red flags or a specific structural
diagnosis that surgery treats (APS 2009, Chou et al.; NICE NG59)."""

from __future__ import annotations

from cds_service.record.model import OrderEntry
from cds_service.rules.assessment import RED_FLAG_DATA, Assessment
from cds_service.rules.drafts import drafts, present, ref, removal
from cds_service.rules.findings import Fact, FactKind, Finding, SuggestionKind
from cds_service.rules.unit import Recommendation
from cds_service.terminology.concepts import BACK_PAIN, Concept

TOPIC = "avoid-surgery-referral"


def _is_spine_surgery(order: OrderEntry) -> bool:
    """A spine operation or spine surgeon referral; a referral to a neurosurgeon or orthopedic
    surgeon names no body part, so it counts only when its reason is back pain."""
    if order.is_medication:
        return False
    generic = order.has(Concept.SURGICAL_REFERRAL) and bool(order.reason_concepts & BACK_PAIN)
    return order.has(Concept.SPINE_SURGERY) or generic


def evaluate(a: Assessment) -> list[Finding]:
    orders = [
        o
        for o in drafts(a, _is_spine_surgery)
        # The order's own reason may name the structural diagnosis the problem list lacks.
        if Concept.SPINE_SURGICAL_DIAGNOSIS not in o.reason_concepts
    ]
    # Red flags (cauda equina, infection, cancer, fracture) and structural diagnoses such as
    # radiculopathy or stenosis with claudication are what surgery is for.
    if not orders or a.red_flags or a.has_active(Concept.SPINE_SURGICAL_DIAGNOSIS):
        return []
    return [
        Finding(
            topic=TOPIC,
            facts=(*a.back_pain_facts, Fact.of(FactKind.NO_SURGICAL_INDICATION)),
            order=ref(order),
            suggestions=present(removal(order, SuggestionKind.CANCEL)),
        )
        for order in orders
    ]


UNIT = Recommendation(
    topic=TOPIC,
    evaluate=evaluate,
    # "No red flag" can only be said with every kind of data a red flag is found in.
    needs=RED_FLAG_DATA,
    suggestions=frozenset({SuggestionKind.CANCEL}),
    placeholders=frozenset({"order"}),
)
