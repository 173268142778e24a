"""Persistent pain: psychosocial assessment from 4 weeks, multidisciplinary referral from 12
(Chou et al. 2007; ACP 2017; Kamper et al. 2015); a site may move both (Thresholds)."""

from __future__ import annotations

from cds_service.rules.assessment import ROUTINE_ADVICE_DATA, Assessment
from cds_service.rules.drafts import referral
from cds_service.rules.findings import Finding, Orderable, SuggestionKind
from cds_service.rules.unit import Recommendation

TOPIC = "chronic-pain-assessment"
REFERRAL_DUE = "referral-due"  # pain long enough for a multidisciplinary referral


def evaluate(a: Assessment) -> list[Finding]:
    days = a.pain_duration_days
    if days is None or days < a.thresholds.persistent_pain_days or not a.invites_general_advice:
        return []
    # Psychosocial assessment and CBT do not fit a patient whose pain may be cancer's.
    if a.routine_advice_unfit or a.has_active_cancer:
        return []
    refer = days >= a.thresholds.referral_pain_days and not a.pain_referral_in_place
    return [
        Finding(
            topic=TOPIC,
            facts=a.back_pain_facts,
            suggestions=(referral(Orderable.PAIN_MANAGEMENT_REFERRAL),) if refer else (),
            notes=(REFERRAL_DUE,) if refer else (),
        )
    ]


UNIT = Recommendation(
    topic=TOPIC,
    evaluate=evaluate,
    needs=ROUTINE_ADVICE_DATA,
    suggestions=frozenset({SuggestionKind.REFER}),
    notes=frozenset({REFERRAL_DUE}),
)
