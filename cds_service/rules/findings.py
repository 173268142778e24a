"""What a rule concludes, as plain values: no JSON, no card words.

The card builder turns a Finding into a CDS Hooks card using the editable content in `cards/`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType


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
    NO_SURGICAL_INDICATION = "no_surgical_indication"
    GI_RISK_AGE = "gi_risk_age"  # age
    GI_RISK_MEDICATION = "gi_risk_medication"  # order
    NO_GASTROPROTECTION = "no_gastroprotection"
    NO_OTHER_ANALGESIC = "no_other_analgesic"


class RedFlag(StrEnum):
    """Red flags, most serious first: a card leads with the first one found."""

    NEUROLOGIC_DEFICIT = "neurologic-deficit"
    SPINAL_INFECTION = "spinal-infection"
    # Fever together with a risk factor for infection (IV drug use, immunosuppression).
    SUSPECTED_SPINAL_INFECTION = "suspected-spinal-infection"
    ACTIVE_CANCER = "active-cancer"
    CANCER_HISTORY = "cancer-history"
    SPINAL_TRAUMA = "spinal-trauma"
    FEVER = "fever"
    IV_DRUG_USE = "iv-drug-use"
    IMMUNOSUPPRESSION = "immunosuppression"
    WEIGHT_LOSS = "weight-loss"
    AGE_OVER_50_NEW_PAIN = "age-over-50-new-pain"
    LONG_TERM_STEROIDS = "long-term-steroids"
    OSTEOPOROSIS = "osteoporosis"


# Red flags that call for emergency (same-day) evaluation while they are new; the card is then
# critical. The same diagnosis recorded weeks ago is known and being managed, not an emergency.
CRITICAL_RED_FLAGS = frozenset(
    {RedFlag.NEUROLOGIC_DEFICIT, RedFlag.SPINAL_INFECTION, RedFlag.SUSPECTED_SPINAL_INFECTION}
)


class FirstTest(StrEnum):
    """The first test a guideline recommends for a red flag (ACP/APS, Chou et al. 2007;
    ACP high-value care, Chou et al. 2011); named on the card by its content words."""

    MRI = "mri"  # cauda equina, severe or progressive deficit, infection, cancer
    MARKERS_THEN_MRI = "markers-then-mri"  # a risk factor for infection alone: ESR/CRP first
    XRAY_AND_MARKERS = "xray-and-markers"  # other risk factors for cancer: X-ray with ESR/CRP
    XRAY = "xray"  # suspected compression or traumatic fracture


FIRST_TEST: Mapping[RedFlag, FirstTest] = MappingProxyType(
    {
        RedFlag.NEUROLOGIC_DEFICIT: FirstTest.MRI,
        RedFlag.SPINAL_INFECTION: FirstTest.MRI,
        RedFlag.SUSPECTED_SPINAL_INFECTION: FirstTest.MRI,
        RedFlag.ACTIVE_CANCER: FirstTest.MRI,
        RedFlag.CANCER_HISTORY: FirstTest.MRI,
        RedFlag.SPINAL_TRAUMA: FirstTest.XRAY,
        RedFlag.FEVER: FirstTest.MARKERS_THEN_MRI,
        RedFlag.IV_DRUG_USE: FirstTest.MARKERS_THEN_MRI,
        RedFlag.IMMUNOSUPPRESSION: FirstTest.MARKERS_THEN_MRI,
        RedFlag.WEIGHT_LOSS: FirstTest.XRAY_AND_MARKERS,
        RedFlag.AGE_OVER_50_NEW_PAIN: FirstTest.XRAY_AND_MARKERS,
        RedFlag.LONG_TERM_STEROIDS: FirstTest.XRAY,
        RedFlag.OSTEOPOROSIS: FirstTest.XRAY,
    }
)


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
    PROTON_PUMP_INHIBITOR = "proton-pump-inhibitor"


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


class SuggestionKind(StrEnum):
    """What a suggestion does; its words are the topic's [suggestions.<kind>] content."""

    REPLACE = "replace"  # order the alternative, then remove the draft
    REMOVE = "remove"  # remove a drafted medicine
    CANCEL = "cancel"  # cancel a drafted procedure or study
    REFER = "refer"  # create a referral
    ADD = "add"  # order something alongside the draft (stomach protection with an NSAID)

    @property
    def deletes(self) -> bool:
        return self in (SuggestionKind.REPLACE, SuggestionKind.REMOVE, SuggestionKind.CANCEL)

    @property
    def creates(self) -> bool:
        return self in (SuggestionKind.REPLACE, SuggestionKind.REFER, SuggestionKind.ADD)


@dataclass(frozen=True)
class SuggestionIntent:
    """An action the clinician may take."""

    kind: SuggestionKind
    delete: OrderRef | None = None
    create: Orderable | None = None
    recommended: bool = False


@dataclass(frozen=True)
class Finding:
    topic: str  # the recommendation's topic code (`card.source.topic.code`)
    facts: tuple[Fact, ...]
    order: OrderRef | None = None
    # Other drafts identical to `order` (same product) that this one card answers for too.
    same_orders: tuple[OrderRef, ...] = ()
    suggestions: tuple[SuggestionIntent, ...] = ()
    indicator: Indicator | None = None  # None: the topic's default from its card content
    red_flags: tuple[RedFlag, ...] = ()  # most serious first
    known_red_flags: frozenset[RedFlag] = frozenset()  # established diagnoses, not suspicions
    contraindications: tuple[Contraindication, ...] = ()
    alternative: Orderable | None = None
    notes: tuple[str, ...] = ()  # sentences the card adds: keys of the topic's [notes]
