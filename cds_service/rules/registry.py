"""Every recommendation the service makes, in the order they are evaluated (a card's place in
the answer also depends on its indicator: critical first)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from cds_service.rules import (
    acetaminophen_monotherapy,
    avoid_antidepressant,
    avoid_glucosamine,
    avoid_passive_modalities,
    avoid_spinal_injection,
    avoid_surgery_referral,
    chronic_pain_assessment,
    exercise_therapy,
    gi_protection,
    imaging_without_red_flags,
    nsaid_contraindicated,
    opioid_avoidance,
    red_flags_present,
    topical_nsaid_first,
)
from cds_service.rules.unit import Recommendation
from cds_service.vocabulary import DataCategory

RECOMMENDATIONS: tuple[Recommendation, ...] = (
    red_flags_present.UNIT,
    opioid_avoidance.UNIT,
    imaging_without_red_flags.UNIT,
    nsaid_contraindicated.UNIT,
    topical_nsaid_first.UNIT,
    gi_protection.UNIT,
    avoid_antidepressant.UNIT,
    avoid_glucosamine.UNIT,
    avoid_spinal_injection.UNIT,
    avoid_surgery_referral.UNIT,
    avoid_passive_modalities.UNIT,
    acetaminophen_monotherapy.UNIT,
    exercise_therapy.UNIT,
    chronic_pain_assessment.UNIT,
)
TOPICS: tuple[str, ...] = tuple(unit.topic for unit in RECOMMENDATIONS)
BY_TOPIC: Mapping[str, Recommendation] = MappingProxyType({u.topic: u for u in RECOMMENDATIONS})

# Without these nothing can be decided safely: every rule reads the conditions (back pain, red
# flags, exclusions), and the patient's age decides whether the guideline applies at all. A
# hook call without them is answered 412; any other data may be missing, and the rules that
# need it stay silent.
DECISION_DATA: tuple[DataCategory, ...] = (DataCategory.PATIENT, DataCategory.CONDITIONS)
