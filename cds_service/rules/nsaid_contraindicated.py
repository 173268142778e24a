"""NSAIDs unsafe here (CKD 4-5, GI bleed or ulcer, heart failure, anticoagulant): acetaminophen."""

from __future__ import annotations

from cds_service.rules.assessment import Assessment
from cds_service.rules.drafts import drafts, ref, replacement
from cds_service.rules.findings import Finding, Orderable, SuggestionKind
from cds_service.rules.unit import Recommendation
from cds_service.vocabulary import DataCategory as C

TOPIC = "nsaid-contraindicated"


def evaluate(a: Assessment) -> list[Finding]:
    contraindications = a.nsaid_contraindications
    if not contraindications:
        return []
    return [
        Finding(
            topic=TOPIC,
            facts=(*a.back_pain_facts, *(c.fact for c in contraindications)),
            order=ref(order),
            suggestions=(replacement(order, Orderable.ACETAMINOPHEN),),
            alternative=Orderable.ACETAMINOPHEN,
            contraindications=tuple(c.contraindication for c in contraindications),
        )
        for order in drafts(a, lambda o: o.is_medication and a.is_nsaid(o))
    ]


UNIT = Recommendation(
    topic=TOPIC,
    evaluate=evaluate,
    needs=frozenset({C.CONDITIONS}),
    suggestions=frozenset({SuggestionKind.REPLACE}),
    placeholders=frozenset(
        {"order", "alternative", "alternative_short", "contraindications", "contraindication_risks"}
    ),
)
