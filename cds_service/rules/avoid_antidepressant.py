"""No antidepressants for back pain alone (ACP 2017; Ferreira et al. 2021)."""

from __future__ import annotations

from cds_service.rules.assessment import Assessment
from cds_service.rules.drafts import drafts, present, ref, removal
from cds_service.rules.findings import Fact, FactKind, Finding, SuggestionKind
from cds_service.rules.unit import Recommendation
from cds_service.terminology.concepts import Concept
from cds_service.vocabulary import DataCategory as C

TOPIC = "avoid-antidepressant"
_ANTIDEPRESSANTS = (Concept.SSRI, Concept.SNRI, Concept.TCA)
# Indications that make an antidepressant a reasonable order for this patient.
_INDICATIONS = (
    Concept.DEPRESSION,
    Concept.ANXIETY,
    Concept.NEUROPATHIC_PAIN,
    Concept.RADICULAR_PAIN,
)


def evaluate(a: Assessment) -> list[Finding]:
    if a.has_active(*_INDICATIONS):
        return []
    return [
        Finding(
            topic=TOPIC,
            facts=(*a.back_pain_facts, Fact.of(FactKind.NO_ANTIDEPRESSANT_INDICATION)),
            order=ref(order),
            suggestions=present(removal(order)),
        )
        for order in drafts(a, lambda o: o.is_medication and o.has_any(_ANTIDEPRESSANTS))
    ]


UNIT = Recommendation(
    topic=TOPIC,
    evaluate=evaluate,
    needs=frozenset({C.CONDITIONS}),
    suggestions=frozenset({SuggestionKind.REMOVE}),
    placeholders=frozenset({"order"}),
)
