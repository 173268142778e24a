"""Topical NSAID before an oral one (ACP 2017 for NSAIDs; ACP/AAFP 2020 for topical first)."""

from __future__ import annotations

from cds_service.rules.assessment import Assessment
from cds_service.rules.drafts import drafts, ref, replacement
from cds_service.rules.findings import Fact, FactKind, Finding, Orderable, SuggestionKind
from cds_service.rules.unit import Recommendation
from cds_service.vocabulary import DataCategory as C

TOPIC = "topical-nsaid-first"


def evaluate(a: Assessment) -> list[Finding]:
    if a.topical_nsaid_tried or a.nsaid_contraindications:
        return []
    return [
        Finding(
            topic=TOPIC,
            facts=(
                *a.back_pain_facts,
                Fact.of(
                    FactKind.NO_TOPICAL_NSAID, days=str(a.thresholds.topical_nsaid_lookback_days)
                ),
            ),
            order=ref(order),
            suggestions=(replacement(order, Orderable.TOPICAL_NSAID),),
            alternative=Orderable.TOPICAL_NSAID,
        )
        for order in drafts(a, lambda o: o.is_medication and a.is_oral_nsaid(o))
    ]


UNIT = Recommendation(
    topic=TOPIC,
    evaluate=evaluate,
    needs=frozenset({C.CONDITIONS, C.MEDICATIONS}),
    suggestions=frozenset({SuggestionKind.REPLACE}),
    placeholders=frozenset({"order", "alternative", "alternative_short"}),
)
