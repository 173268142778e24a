"""Acetaminophen is not a treatment on its own for chronic back pain: exercise therapy at the
core (NICE NG59; Machado et al. 2015; ACP 2017)."""

from __future__ import annotations

from cds_service.record.model import OrderEntry
from cds_service.rules.assessment import ROUTINE_ADVICE_DATA, Assessment
from cds_service.rules.drafts import drafts, ref, referral
from cds_service.rules.findings import Fact, FactKind, Finding, Orderable, SuggestionKind
from cds_service.rules.unit import Recommendation
from cds_service.terminology.concepts import Concept

TOPIC = "acetaminophen-monotherapy"
# Analgesics that make acetaminophen part of a regimen rather than the whole of it: NSAIDs of
# any route, opioids (tramadol included) and the antidepressants used as analgesics.
_OTHER_ANALGESICS = (
    Concept.NSAID,
    Concept.NSAID_TOPICAL,
    Concept.OPIOID,
    Concept.SNRI,
    Concept.TCA,
)


def _acetaminophen_alone(order: OrderEntry) -> bool:
    """Acetaminophen, not in a combination with an opioid, an NSAID or aspirin."""
    return (
        order.is_medication
        and order.has(Concept.ACETAMINOPHEN)
        and not order.has_any((*_OTHER_ANALGESICS, Concept.ASPIRIN))
    )


def evaluate(a: Assessment) -> list[Finding]:
    orders = list(drafts(a, _acetaminophen_alone))
    if not orders:
        return []
    days = a.pain_duration_days
    # Chronic back pain: as long as the multidisciplinary referral waits for (12 weeks).
    if days is None or days < a.thresholds.referral_pain_days:
        return []
    if a.physical_therapy_in_place or a.routine_advice_unfit:
        return []
    if a.active_orders_with(*_OTHER_ANALGESICS):
        return []
    return [
        Finding(
            topic=TOPIC,
            facts=(
                *a.back_pain_facts,
                Fact.of(FactKind.NO_PHYSICAL_THERAPY),
                Fact.of(FactKind.NO_OTHER_ANALGESIC),
            ),
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
