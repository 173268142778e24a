"""Glucosamine and chondroitin do not help back pain (Wilkens et al. 2010)."""

from __future__ import annotations

from cds_service.rules.assessment import Assessment
from cds_service.rules.drafts import drafts, present, ref, removal
from cds_service.rules.findings import Finding, SuggestionKind
from cds_service.rules.unit import Recommendation
from cds_service.terminology.concepts import Concept
from cds_service.vocabulary import DataCategory as C

TOPIC = "avoid-glucosamine"


def evaluate(a: Assessment) -> list[Finding]:
    return [
        Finding(
            topic=TOPIC,
            facts=a.back_pain_facts,
            order=ref(order),
            suggestions=present(removal(order)),
        )
        for order in drafts(a, lambda o: o.is_medication and o.has(Concept.GLUCOSAMINE_CHONDROITIN))
    ]


UNIT = Recommendation(
    topic=TOPIC,
    evaluate=evaluate,
    needs=frozenset({C.CONDITIONS}),
    suggestions=frozenset({SuggestionKind.REMOVE}),
    placeholders=frozenset({"order"}),
)
