"""Facts about the patient that several recommendations share: back pain, red flags,
exclusions and NSAID contraindications. Pure functions over the record.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cached_property

from cds_service.record.model import (
    CodeFact,
    ConditionEntry,
    OrderEntry,
    PatientRecord,
)
from cds_service.rules.findings import (
    CRITICAL_RED_FLAGS,
    Contraindication,
    Fact,
    FactKind,
    RedFlag,
)
from cds_service.rules.thresholds import DEFAULT_THRESHOLDS, Thresholds
from cds_service.terminology.concepts import BACK_PAIN, Concept
from cds_service.vocabulary import DataCategory

# Time windows of the guideline logic (see docs/clinical-content.md, "Clinical logic in brief").
# The numbers a site may tune (pain durations, the malignancy age, fever, look-backs, weight
# loss) are `Thresholds`, read through the assessment.
FEVER_WINDOW_DAYS = 7
RECENT_NEURO_OR_INFECTION_DAYS = 365
STEROID_LONG_TERM_DAYS = 90
STEROID_LOOKBACK_DAYS = 365
WEIGHT_LOSS_MIN_SPAN_DAYS = 30
PHYSICAL_THERAPY_LOOKBACK_DAYS = 90
HOSPICE_LOOKBACK_DAYS = 365
# A diagnosis recorded longer ago than this is known and being managed, not a new emergency.
NEW_DIAGNOSIS_DAYS = 28
ADULT_AGE = 18

# Every kind of data a red flag can be found in: "no red flag" can only be said with all of it.
RED_FLAG_DATA = frozenset(
    {
        DataCategory.PATIENT,
        DataCategory.CONDITIONS,
        DataCategory.MEDICATIONS,
        DataCategory.OBSERVATIONS,
        DataCategory.PROCEDURES,
    }
)
# What `Assessment.routine_advice_unfit` reads: the red flags and end-of-life care (conditions,
# service requests, procedures); service requests also show a referral or therapy in place.
ROUTINE_ADVICE_DATA = RED_FLAG_DATA | {DataCategory.SERVICE_REQUESTS}

# Orders that make a draft "back-pain related" even without a back-pain reason code.
BACK_PAIN_ORDER_CONCEPTS = frozenset(
    {
        Concept.OPIOID,
        Concept.NSAID,
        Concept.NSAID_TOPICAL,
        Concept.ACETAMINOPHEN,
        Concept.SSRI,
        Concept.SNRI,
        Concept.TCA,
        Concept.GLUCOSAMINE_CHONDROITIN,
        Concept.SPINE_IMAGING,
        Concept.SPINAL_INJECTION,
        Concept.PHYSICAL_THERAPY,
        Concept.PAIN_MANAGEMENT_REFERRAL,
        Concept.SPINE_SURGERY,
        Concept.PASSIVE_MODALITY,
    }
)


def _iso(value: date | None) -> str | None:
    return value.isoformat() if value else None


# SNOMED CT's semantic tag ("(disorder)", "(finding)") says nothing to a clinician on a card.
_SEMANTIC_TAG = re.compile(
    r"\s*\((?:disorder|finding|procedure|situation|morphologic abnormality)\)$"
)


def code_words(code: CodeFact | None, fallback: str) -> str:
    """A code as a clinician reads it: its display, then the code itself."""
    if code is None:
        return fallback
    display = _SEMANTIC_TAG.sub("", code.display)
    if display:
        return f"{display} ({code.code})" if code.code else display
    return f"{code.system_label} {code.code}".strip() or fallback


def order_words(order: OrderEntry) -> str:
    """An order as a card names it: the EHR's label, without a SNOMED CT semantic tag."""
    label = order.label
    if not label.endswith(")"):
        return label  # most labels carry no tag: no need to run the pattern
    return _SEMANTIC_TAG.sub("", label) or label


def _code_of(condition: ConditionEntry) -> str:
    return code_words(condition.first_code(), condition.label)


@dataclass(frozen=True)
class RedFlagFinding:
    flag: RedFlag
    facts: tuple[Fact, ...]
    # An established diagnosis (recorded weeks ago), named as known rather than suspected.
    known: bool = False

    @property
    def is_critical(self) -> bool:
        return self.flag in CRITICAL_RED_FLAGS and not self.known


def _red_flag(flag: RedFlag, kind: FactKind, **values: str | None) -> RedFlagFinding:
    return RedFlagFinding(flag, (Fact.of(kind, flag=flag.value, **values),))


# Fever with one of these is a suspected spinal infection: an emergency.
_INFECTION_RISKS = (RedFlag.IV_DRUG_USE, RedFlag.IMMUNOSUPPRESSION)
_FLAG_ORDER = {flag: rank for rank, flag in enumerate(RedFlag)}


@dataclass(frozen=True)
class ContraindicationFinding:
    contraindication: Contraindication
    fact: Fact


class Assessment:
    """Derived facts, each computed at most once per request, under the site's thresholds."""

    def __init__(self, record: PatientRecord, thresholds: Thresholds = DEFAULT_THRESHOLDS) -> None:
        self.record = record
        self.thresholds = thresholds

    # --- back pain -------------------------------------------------------------------------

    @cached_property
    def back_pain_conditions(self) -> tuple[ConditionEntry, ...]:
        return tuple(c for c in self.record.conditions if c.is_active and c.concepts & BACK_PAIN)

    @cached_property
    def back_pain_orders(self) -> tuple[OrderEntry, ...]:
        """Drafts whose reason is back pain."""
        return tuple(o for o in self.record.drafts if o.reason_concepts & BACK_PAIN)

    @property
    def has_back_pain(self) -> bool:
        return bool(self.back_pain_conditions or self.back_pain_orders)

    @cached_property
    def pain_onset(self) -> date | None:
        starts = [c.start for c in self.back_pain_conditions if c.start]
        return min(starts) if starts else None

    @cached_property
    def pain_duration_days(self) -> int | None:
        return self.record.days_since(self.pain_onset)

    @cached_property
    def back_pain_facts(self) -> tuple[Fact, ...]:
        facts = [
            Fact.of(
                FactKind.BACK_PAIN,
                code=_code_of(c),
                onset=_iso(c.start),
                duration_days=str(self.record.days_since(c.start)) if c.start else None,
            )
            for c in self.back_pain_conditions
        ]
        if not facts:
            facts = [
                Fact.of(
                    FactKind.BACK_PAIN_REASON,
                    code=code_words(o.reason_codes[0] if o.reason_codes else None, "back pain"),
                    order=o.label,
                )
                for o in self.back_pain_orders
            ]
        return tuple(facts)

    @property
    def is_minor(self) -> bool:
        age = self.record.age
        return age is not None and age < ADULT_AGE

    def is_back_pain_related(self, order: OrderEntry) -> bool:
        return bool(order.reason_concepts & BACK_PAIN) or order.has_any(BACK_PAIN_ORDER_CONCEPTS)

    @cached_property
    def related_orders_under_review(self) -> tuple[OrderEntry, ...]:
        return tuple(o for o in self.record.orders_under_review if self.is_back_pain_related(o))

    @property
    def invites_general_advice(self) -> bool:
        """Patient-view, or a back-pain order under review: the moment for broader advice."""
        return self.record.hook == "patient-view" or bool(self.related_orders_under_review)

    # --- red flags ---------------------------------------------------------------------------

    def _within(self, when: date | None, days: int) -> bool:
        since = self.record.days_since(when)
        return since is not None and since <= days

    def _condition_flags(
        self,
        flag: RedFlag,
        concept: Concept,
        window_days: int | None,
        active_only: bool,
        *,
        can_be_known: bool = False,
    ) -> list[RedFlagFinding]:
        for condition in self.record.conditions_with(concept):
            if active_only and not condition.is_active:
                continue
            if window_days is not None and condition.start is not None:
                if not self._within(condition.start, window_days):
                    continue
            elif window_days is not None and not condition.is_active:
                continue  # undated and no longer active: too weak to call a recent red flag
            found = _red_flag(
                flag,
                FactKind.RED_FLAG_CONDITION,
                code=_code_of(condition),
                date=_iso(condition.start),
            )
            if can_be_known and not self._within(condition.start, NEW_DIAGNOSIS_DAYS):
                found = RedFlagFinding(flag, found.facts, known=condition.start is not None)
            return [found]
        return []

    def _cancer(self) -> list[RedFlagFinding]:
        """Active cancer (an active malignant diagnosis), else a history of cancer."""
        active = self.record.active_conditions_with(Concept.ACTIVE_CANCER)
        if active:
            condition = active[0]
            return [
                _red_flag(
                    RedFlag.ACTIVE_CANCER,
                    FactKind.RED_FLAG_CONDITION,
                    code=_code_of(condition),
                    date=_iso(condition.start),
                )
            ]
        return self._condition_flags(
            RedFlag.CANCER_HISTORY, Concept.RED_FLAG_CANCER_HISTORY, None, False
        )

    def _fever_observations(self) -> list[RedFlagFinding]:
        febrile = [
            o
            for o in self.record.observations
            if Concept.BODY_TEMPERATURE in o.concepts
            and o.value is not None
            and o.value >= self.thresholds.fever_celsius
            and self._within(o.effective, FEVER_WINDOW_DAYS)
        ]
        if not febrile:
            return []
        hottest = max(febrile, key=lambda o: o.value or 0.0)
        return [
            _red_flag(
                RedFlag.FEVER,
                FactKind.RED_FLAG_TEMPERATURE,
                value=f"{hottest.value:.1f}",
                date=_iso(hottest.effective),
            )
        ]

    def _transplant_procedures(self) -> list[RedFlagFinding]:
        for procedure in self.record.procedures:
            if Concept.TRANSPLANT_PROCEDURE in procedure.concepts:
                code = code_words(procedure.codes[0] if procedure.codes else None, procedure.label)
                return [
                    _red_flag(
                        RedFlag.IMMUNOSUPPRESSION,
                        FactKind.RED_FLAG_PROCEDURE,
                        code=code,
                        date=_iso(procedure.performed),
                    )
                ]
        return []

    def _long_term_steroids(self) -> list[RedFlagFinding]:
        steroid_orders = [
            o
            for o in self.record.orders
            if not o.is_draft
            and o.has(Concept.SYSTEMIC_CORTICOSTEROID)
            and o.authored is not None
            and self._within(o.authored, STEROID_LOOKBACK_DAYS)
        ]
        if not steroid_orders:
            return []
        first = min(steroid_orders, key=lambda o: o.authored or date.max)
        last = max(steroid_orders, key=lambda o: o.authored or date.min)
        active_since_long = any(
            o.is_active and (self.record.days_since(o.authored) or 0) >= STEROID_LONG_TERM_DAYS
            for o in steroid_orders
        )
        span = (last.authored - first.authored).days if first.authored and last.authored else 0
        if not (active_since_long or span >= STEROID_LONG_TERM_DAYS):
            return []
        return [
            _red_flag(
                RedFlag.LONG_TERM_STEROIDS,
                FactKind.RED_FLAG_MEDICATION,
                order=first.label,
                date=_iso(first.authored),
            )
        ]

    def _weight_loss_measured(self) -> list[RedFlagFinding]:
        # Oldest first. The latest weight and the heaviest one of the window before it decide.
        weights = sorted(
            (
                o
                for o in self.record.observations
                if Concept.BODY_WEIGHT in o.concepts and o.value and o.effective
            ),
            key=lambda o: o.effective or date.min,
        )
        if not weights:
            return []
        latest_at = len(weights) - 1
        latest = weights[latest_at]
        assert latest.effective is not None and latest.value is not None
        window_start = latest.effective - timedelta(days=self.thresholds.weight_loss_lookback_days)
        window_end = latest.effective - timedelta(days=WEIGHT_LOSS_MIN_SPAN_DAYS)
        earlier = [
            w
            for w in weights[:latest_at]
            if w.effective and window_start <= w.effective <= window_end
        ]
        # Heaviest first; among equals the earliest, as max() over the window would pick.
        by_weight = sorted(enumerate(earlier), key=lambda pair: (-(pair[1].value or 0.0), pair[0]))
        heaviest = next((w for _, w in by_weight), None)
        if heaviest is None:
            return []
        assert heaviest.value is not None
        loss = (heaviest.value - latest.value) / heaviest.value
        if loss <= self.thresholds.weight_loss_fraction:
            return []
        return [
            _red_flag(
                RedFlag.WEIGHT_LOSS,
                FactKind.RED_FLAG_WEIGHT_LOSS,
                percent=f"{loss * 100:.0f}",
                from_value=f"{heaviest.value:.1f}",
                from_date=_iso(heaviest.effective),
                to_value=f"{latest.value:.1f}",
                to_date=_iso(latest.effective),
            )
        ]

    def _older_with_new_pain(self) -> list[RedFlagFinding]:
        age = self.record.age
        duration = self.pain_duration_days
        limits = self.thresholds
        if (
            age is None
            or age < limits.malignancy_min_age
            or duration is None
            or duration >= limits.malignancy_new_pain_days
        ):
            return []
        return [
            _red_flag(
                RedFlag.AGE_OVER_50_NEW_PAIN,
                FactKind.RED_FLAG_AGE,
                age=str(age),
                duration_days=str(duration),
            )
        ]

    @cached_property
    def red_flags(self) -> tuple[RedFlagFinding, ...]:
        """Every red flag found, most serious first."""
        recent = RECENT_NEURO_OR_INFECTION_DAYS
        found: list[RedFlagFinding] = [
            *self._condition_flags(
                RedFlag.NEUROLOGIC_DEFICIT,
                Concept.RED_FLAG_NEUROLOGIC_DEFICIT,
                recent,
                True,
                can_be_known=True,
            ),
            *self._condition_flags(
                RedFlag.SPINAL_INFECTION,
                Concept.RED_FLAG_SPINAL_INFECTION,
                recent,
                True,
                can_be_known=True,
            ),
            *(
                self._fever_observations()
                or self._condition_flags(RedFlag.FEVER, Concept.RED_FLAG_FEVER, None, True)
            ),
            *self._condition_flags(
                RedFlag.IV_DRUG_USE, Concept.RED_FLAG_IV_DRUG_USE, recent, False
            ),
            *(
                self._condition_flags(
                    RedFlag.IMMUNOSUPPRESSION, Concept.RED_FLAG_IMMUNOSUPPRESSION, None, True
                )
                or self._transplant_procedures()
            ),
            *self._long_term_steroids(),
            *self._cancer(),
            *(
                self._condition_flags(
                    RedFlag.WEIGHT_LOSS,
                    Concept.RED_FLAG_WEIGHT_LOSS,
                    self.thresholds.weight_loss_lookback_days,
                    False,
                )
                or self._weight_loss_measured()
            ),
            *self._older_with_new_pain(),
            *self._condition_flags(
                RedFlag.SPINAL_TRAUMA,
                Concept.RED_FLAG_SPINAL_TRAUMA,
                self.thresholds.trauma_lookback_days,
                False,
            ),
            *self._condition_flags(RedFlag.OSTEOPOROSIS, Concept.RED_FLAG_OSTEOPOROSIS, None, True),
        ]
        return tuple(sorted(_suspect_infection(found), key=lambda f: _FLAG_ORDER[f.flag]))

    @property
    def has_critical_red_flag(self) -> bool:
        return any(f.is_critical for f in self.red_flags)

    @property
    def routine_advice_unfit(self) -> bool:
        """Red flags being worked up, or end-of-life care: rehabilitation advice would be
        premature or beside the point."""
        return bool(self.red_flags) or self.in_end_of_life_care

    @cached_property
    def has_active_cancer(self) -> bool:
        return bool(self.record.active_conditions_with(Concept.ACTIVE_CANCER))

    # --- exclusions from opioid advice -------------------------------------------------------

    @cached_property
    def opioid_advice_excluded(self) -> bool:
        """Active cancer, end-of-life or hospice care, or sickle cell disease."""
        record = self.record
        if self.has_active_cancer:
            return True
        if record.conditions_with(Concept.SICKLE_CELL_DISEASE):
            return True
        return self.in_end_of_life_care

    @cached_property
    def in_end_of_life_care(self) -> bool:
        """A terminal condition, or hospice care ordered or given in the last year."""
        record = self.record
        if record.active_conditions_with(Concept.END_OF_LIFE):
            return True
        if any(
            o.has(Concept.HOSPICE_CARE) and o.is_active and not o.is_draft for o in record.orders
        ):
            return True
        return any(
            Concept.HOSPICE_CARE in p.concepts
            and (p.performed is None or self._within(p.performed, HOSPICE_LOOKBACK_DAYS))
            for p in record.procedures
        )

    # --- NSAID contraindications -------------------------------------------------------------

    @cached_property
    def nsaid_contraindications(self) -> tuple[ContraindicationFinding, ...]:
        found: list[ContraindicationFinding] = []
        for contraindication, concept in (
            (Contraindication.CKD_SEVERE, Concept.CKD_SEVERE),
            (Contraindication.GI_BLEED_OR_ULCER, Concept.GI_BLEED_OR_ULCER),
            (Contraindication.HEART_FAILURE, Concept.HEART_FAILURE),
        ):
            conditions = self.record.active_conditions_with(concept)
            if conditions:
                found.append(
                    ContraindicationFinding(
                        contraindication,
                        Fact.of(
                            FactKind.CONTRAINDICATION_CONDITION,
                            contraindication=contraindication.value,
                            code=_code_of(conditions[0]),
                            date=_iso(conditions[0].start),
                        ),
                    )
                )
        anticoagulants = [
            o for o in self.record.orders if o.has(Concept.ANTICOAGULANT) and o.is_active
        ]
        if anticoagulants:
            found.append(
                ContraindicationFinding(
                    Contraindication.ANTICOAGULANT,
                    Fact.of(
                        FactKind.CONTRAINDICATION_MEDICATION,
                        contraindication=Contraindication.ANTICOAGULANT.value,
                        order=anticoagulants[0].label,
                    ),
                )
            )
        return tuple(found)

    # --- treatments already in place --------------------------------------------------------

    def _is_topical_nsaid(self, order: OrderEntry) -> bool:
        return order.has(Concept.NSAID_TOPICAL) or (
            order.has(Concept.NSAID) and order.has(Concept.TOPICAL_FORM)
        )

    def is_oral_nsaid(self, order: OrderEntry) -> bool:
        return (
            order.has(Concept.NSAID)
            and not self._is_topical_nsaid(order)
            and not order.has(Concept.OPIOID)
        )

    def is_nsaid(self, order: OrderEntry) -> bool:
        return (order.has(Concept.NSAID) or order.has(Concept.NSAID_TOPICAL)) and not order.has(
            Concept.OPIOID
        )

    @cached_property
    def topical_nsaid_tried(self) -> bool:
        return any(
            self._is_topical_nsaid(o)
            and (
                o.is_active or self._within(o.authored, self.thresholds.topical_nsaid_lookback_days)
            )
            for o in self.record.orders
        )

    @cached_property
    def physical_therapy_in_place(self) -> bool:
        if any(o.has(Concept.PHYSICAL_THERAPY) and o.is_active for o in self.record.orders):
            return True
        return any(
            Concept.PHYSICAL_THERAPY in p.concepts
            and self._within(p.performed, PHYSICAL_THERAPY_LOOKBACK_DAYS)
            for p in self.record.procedures
        )

    @cached_property
    def pain_referral_in_place(self) -> bool:
        return any(
            o.has(Concept.PAIN_MANAGEMENT_REFERRAL) and o.is_active for o in self.record.orders
        )

    def active_orders_with(self, *concepts: Concept) -> tuple[OrderEntry, ...]:
        """Orders active or drafted in this session (under review or not) that mean one of
        these concepts."""
        return tuple(o for o in self.record.orders if o.is_active and o.has_any(concepts))

    def has_active(self, *concepts: Concept) -> bool:
        return any(self.record.active_conditions_with(concept) for concept in concepts)


def _suspect_infection(flags: list[RedFlagFinding]) -> list[RedFlagFinding]:
    """Fever with IV drug use or immunosuppression is one finding, a suspected spinal
    infection, carrying the facts of both."""
    by_flag = {f.flag: f for f in flags}
    fever = by_flag.get(RedFlag.FEVER)
    risks = [by_flag[risk] for risk in _INFECTION_RISKS if risk in by_flag]
    if fever is None or not risks:
        return flags
    suspected = RedFlag.SUSPECTED_SPINAL_INFECTION
    combined = RedFlagFinding(
        suspected,
        tuple(
            Fact.of(fact.kind, **{**fact.values, "flag": suspected.value})
            for finding in (fever, *risks)
            for fact in finding.facts
        ),
    )
    merged = {RedFlag.FEVER, *(risk.flag for risk in risks)}
    return [combined, *(f for f in flags if f.flag not in merged)]
