"""No spine imaging without red flags (ACP 2011 high-value care; CMS166)."""

from __future__ import annotations

from cds_service.rules.assessment import RED_FLAG_DATA, Assessment
from cds_service.rules.drafts import drafts, present, ref, removal
from cds_service.rules.findings import Fact, FactKind, Finding, SuggestionKind
from cds_service.rules.unit import Recommendation
from cds_service.terminology.concepts import Concept

TOPIC = "imaging-without-red-flags"


def evaluate(a: Assessment) -> list[Finding]:
    if a.red_flags:
        return []
    return [
        Finding(
            topic=TOPIC,
            facts=(*a.back_pain_facts, Fact.of(FactKind.NO_RED_FLAGS)),
            order=ref(order),
            suggestions=present(removal(order, SuggestionKind.CANCEL)),
        )
        for order in drafts(a, lambda o: o.has(Concept.SPINE_IMAGING))
    ]


UNIT = Recommendation(
    topic=TOPIC,
    evaluate=evaluate,
    needs=RED_FLAG_DATA,
    suggestions=frozenset({SuggestionKind.CANCEL}),
    placeholders=frozenset({"order"}),
)
