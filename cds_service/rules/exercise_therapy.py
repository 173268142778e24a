"""Supervised, individualized exercise therapy; stay active (Hayden et al. 2005; ACP 2017)."""

from __future__ import annotations

from cds_service.rules.assessment import ROUTINE_ADVICE_DATA, Assessment
from cds_service.rules.drafts import referral
from cds_service.rules.findings import Fact, FactKind, Finding, Orderable, SuggestionKind
from cds_service.rules.unit import Recommendation

TOPIC = "exercise-therapy"


def evaluate(a: Assessment) -> list[Finding]:
    if not a.invites_general_advice or a.physical_therapy_in_place or a.routine_advice_unfit:
        return []
    return [
        Finding(
            topic=TOPIC,
            facts=(*a.back_pain_facts, Fact.of(FactKind.NO_PHYSICAL_THERAPY)),
            suggestions=(referral(Orderable.PHYSICAL_THERAPY_REFERRAL),),
        )
    ]


UNIT = Recommendation(
    topic=TOPIC,
    evaluate=evaluate,
    needs=ROUTINE_ADVICE_DATA,
    suggestions=frozenset({SuggestionKind.REFER}),
    # The passive-modality and acetaminophen cards offer the same referral with their reason.
    general=True,
)
