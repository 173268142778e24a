"""What a rule concludes, as plain values: no JSON, no card words.

The card builder turns a Finding into a CDS Hooks card using the editable content in `cards/`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType


class Topic(StrEnum):
    """Card topics; each code is a stable contract (`card.source.topic.code`)."""

    OPIOID_AVOIDANCE = "opioid-avoidance"
    IMAGING_WITHOUT_RED_FLAGS = "imaging-without-red-flags"
    RED_FLAGS_PRESENT = "red-flags-present"
    TOPICAL_NSAID_FIRST = "topical-nsaid-first"
    NSAID_CONTRAINDICATED = "nsaid-contraindicated"
    AVOID_ANTIDEPRESSANT = "avoid-antidepressant"
    AVOID_GLUCOSAMINE = "avoid-glucosamine"
    AVOID_SPINAL_INJECTION = "avoid-spinal-injection"
    EXERCISE_THERAPY = "exercise-therapy"
    CHRONIC_PAIN_ASSESSMENT = "chronic-pain-assessment"


class Indicator(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class FactKind(StrEnum):
    """Kinds of patient facts a card names; each has a sentence template in cards/_common.toml.

    Fact values are plain strings (codes, ISO dates, numbers); `None` means "not recorded".
    A value named `flag` or `contraindication` is a key whose display name is card content;
    `duration_days` reaches the sentence template as `{duration}`, in words.
    """

    BACK_PAIN = "back_pain"  # code, onset, duration_days
    BACK_PAIN_REASON = "back_pain_reason"  # code, order
    DRAFT_ORDER = "draft_order"  # order, code
    RED_FLAG_CONDITION = "red_flag_condition"  # flag, code, date
    RED_FLAG_PROCEDURE = "red_flag_procedure"  # flag, code, date
    RED_FLAG_MEDICATION = "red_flag_medication"  # flag, order, date
    RED_FLAG_TEMPERATURE = "red_flag_temperature"  # flag, value, date
    RED_FLAG_WEIGHT_LOSS = (
        "red_flag_weight_loss"  # flag, percent, from_value, from_date, to_value, to_date
    )
    RED_FLAG_AGE = "red_flag_age"  # flag, age, duration_days
    NO_RED_FLAGS = "no_red_flags"  # (names of the red flags checked are card content)
    CONTRAINDICATION_CONDITION = "contraindication_condition"  # contraindication, code, date
    CONTRAINDICATION_MEDICATION = "contraindication_medication"  # contraindication, order
    NO_TOPICAL_NSAID = "no_topical_nsaid"  # days
    NO_ANTIDEPRESSANT_INDICATION = "no_antidepressant_indication"
    NO_RADICULOPATHY = "no_radiculopathy"
    NO_PHYSICAL_THERAPY = "no_physical_therapy"
    PAIN_DURATION = "pain_duration"  # onset, duration_days


class RedFlag(StrEnum):
    NEUROLOGIC_DEFICIT = "neurologic-deficit"
    FEVER = "fever"
    IV_DRUG_USE = "iv-drug-use"
    IMMUNOSUPPRESSION = "immunosuppression"
    LONG_TERM_STEROIDS = "long-term-steroids"
    SPINAL_INFECTION = "spinal-infection"
    CANCER_HISTORY = "cancer-history"
    WEIGHT_LOSS = "weight-loss"
    AGE_OVER_50_NEW_PAIN = "age-over-50-new-pain"
    SPINAL_TRAUMA = "spinal-trauma"
    OSTEOPOROSIS = "osteoporosis"


# Red flags that call for emergency evaluation; the card is then critical.
CRITICAL_RED_FLAGS = frozenset({RedFlag.NEUROLOGIC_DEFICIT, RedFlag.SPINAL_INFECTION})


class Contraindication(StrEnum):
    CKD_SEVERE = "ckd-severe"
    GI_BLEED_OR_ULCER = "gi-bleed-or-ulcer"
    HEART_FAILURE = "heart-failure"
    ANTICOAGULANT = "anticoagulant"


class Orderable(StrEnum):
    """Orders the service may suggest; coded in terminology, worded in cards/_common.toml."""

    TOPICAL_NSAID = "topical-nsaid"
    ACETAMINOPHEN = "acetaminophen"
    PHYSICAL_THERAPY_REFERRAL = "physical-therapy-referral"
    PAIN_MANAGEMENT_REFERRAL = "pain-management-referral"


@dataclass(frozen=True)
class Fact:
    kind: FactKind
    values: Mapping[str, str | None] = field(default_factory=dict)

    @staticmethod
    def of(kind: FactKind, **values: str | None) -> Fact:
        return Fact(kind, MappingProxyType(dict(values)))


@dataclass(frozen=True)
class OrderRef:
    """The draft order a finding is about."""

    reference: str | None
    label: str


@dataclass(frozen=True)
class SuggestionIntent:
    """An action the clinician may take, named by its key in the topic's card content."""

    key: str
    delete: OrderRef | None = None
    create: Orderable | None = None
    recommended: bool = False


@dataclass(frozen=True)
class Finding:
    topic: Topic
    facts: tuple[Fact, ...]
    order: OrderRef | None = None
    suggestions: tuple[SuggestionIntent, ...] = ()
    indicator: Indicator | None = None  # None: the topic's default from its card content
    red_flags: tuple[RedFlag, ...] = ()
    contraindications: tuple[Contraindication, ...] = ()
    alternative: Orderable | None = None
