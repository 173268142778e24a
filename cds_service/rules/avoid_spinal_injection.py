"""No spinal injections for back pain without radiculopathy (APS 2009)."""

from __future__ import annotations

from cds_service.rules.assessment import Assessment
from cds_service.rules.drafts import drafts, present, ref, removal
from cds_service.rules.findings import Fact, FactKind, Finding, SuggestionKind
from cds_service.rules.unit import Recommendation
from cds_service.terminology.concepts import Concept
from cds_service.vocabulary import DataCategory as C

TOPIC = "avoid-spinal-injection"


def evaluate(a: Assessment) -> list[Finding]:
    if a.has_active(Concept.RADICULAR_PAIN):
        return []
    return [
        Finding(
            topic=TOPIC,
            facts=(*a.back_pain_facts, Fact.of(FactKind.NO_RADICULOPATHY)),
            order=ref(order),
            suggestions=present(removal(order, SuggestionKind.CANCEL)),
        )
        for order in drafts(a, lambda o: o.has(Concept.SPINAL_INJECTION))
    ]


UNIT = Recommendation(
    topic=TOPIC,
    evaluate=evaluate,
    needs=frozenset({C.CONDITIONS}),
    suggestions=frozenset({SuggestionKind.CANCEL}),
    placeholders=frozenset({"order"}),
)
