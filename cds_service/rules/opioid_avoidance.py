"""Avoid opioids, tramadol included, for back pain: a non-opioid instead (CDC 2022, ACP 2017)."""

from __future__ import annotations

from cds_service.rules.assessment import Assessment
from cds_service.rules.drafts import applicable, drafts, present, ref, removal, replacement
from cds_service.rules.findings import Finding, Orderable, SuggestionKind
from cds_service.rules.unit import Recommendation
from cds_service.terminology.concepts import Concept
from cds_service.vocabulary import DataCategory as C

TOPIC = "opioid-avoidance"
EXTENDED_RELEASE = "extended-release"  # the opioid drafted is extended-release / long-acting
NSAIDS_CONTRAINDICATED = "nsaids-contraindicated"  # why the alternative is acetaminophen


def evaluate(a: Assessment) -> list[Finding]:
    if a.opioid_advice_excluded:
        return []
    contraindications = a.nsaid_contraindications
    alternative = Orderable.ACETAMINOPHEN if contraindications else Orderable.TOPICAL_NSAID
    return [
        Finding(
            topic=TOPIC,
            facts=(*a.back_pain_facts, *(c.fact for c in contraindications)),
            order=ref(order),
            suggestions=present(replacement(order, alternative), removal(order)),
            alternative=alternative,
            contraindications=tuple(c.contraindication for c in contraindications),
            notes=applicable(
                (EXTENDED_RELEASE, order.has(Concept.OPIOID_EXTENDED_RELEASE)),
                (NSAIDS_CONTRAINDICATED, bool(contraindications)),
            ),
        )
        for order in drafts(a, lambda o: o.is_medication and o.has(Concept.OPIOID))
    ]


UNIT = Recommendation(
    topic=TOPIC,
    evaluate=evaluate,
    # Procedures and service requests show hospice care; medications choose the alternative.
    needs=frozenset({C.CONDITIONS, C.MEDICATIONS, C.PROCEDURES, C.SERVICE_REQUESTS}),
    suggestions=frozenset({SuggestionKind.REPLACE, SuggestionKind.REMOVE}),
    placeholders=frozenset({"order", "alternative", "alternative_short", "contraindications"}),
    notes=frozenset({EXTENDED_RELEASE, NSAIDS_CONTRAINDICATED}),
)
