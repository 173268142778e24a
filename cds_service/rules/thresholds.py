"""The numbers of the guideline logic a site may tune, each with its default and allowed range.

The defaults are the guideline's (see docs/clinical-content.md, "Clinical logic in brief"); a
site changes them in its site configuration (`[thresholds]`, docs/operators.md, "Configure for
your site"). The rules read them through the `Assessment`, never as module globals, so one
process can serve the defaults to one caller and a site's values to another (tests do).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Any


class ThresholdError(ValueError):
    """A threshold value outside its type or range; the message names it."""


@dataclass(frozen=True)
class Limit:
    """How far a threshold may be moved from the guideline's number, and what it means."""

    low: int | float
    high: int | float
    unit: str
    meaning: str


@dataclass(frozen=True)
class Thresholds:
    # Back pain lasting this long calls for a psychosocial assessment (chronic-pain card).
    persistent_pain_weeks: int = 4
    # ... and this long is chronic: a multidisciplinary pain referral is offered and
    # acetaminophen alone is advised against (at least the above).
    referral_pain_weeks: int = 12
    # The malignancy red flag: a patient older than this with back pain newer than the window.
    malignancy_age_over: int = 50
    malignancy_new_pain_weeks: int = 6
    # A measured temperature at or above this (in the last 7 days) is the fever red flag.
    fever_celsius: float = 38.0
    # Significant trauma or a vertebral fracture recorded this recently is a red flag.
    trauma_lookback_days: int = 90
    # A topical NSAID active or ordered this recently silences the topical-first card.
    topical_nsaid_lookback_days: int = 90
    # Weight loss of more than this share of body weight within the window is a red flag.
    weight_loss_percent: float = 5.0
    weight_loss_months: int = 12

    def __post_init__(self) -> None:
        for name, limit in LIMITS.items():
            value = getattr(self, name)
            check_threshold(name, value, limit)
            if isinstance(DEFAULT_VALUES[name], float):
                object.__setattr__(self, name, float(value))  # 38 in a file means 38.0
        if self.referral_pain_weeks < self.persistent_pain_weeks:
            raise ThresholdError(
                f"referral_pain_weeks ({self.referral_pain_weeks}) must not be less than "
                f"persistent_pain_weeks ({self.persistent_pain_weeks})"
            )

    # --- the units the rules count in -------------------------------------------------------

    @property
    def persistent_pain_days(self) -> int:
        return 7 * self.persistent_pain_weeks

    @property
    def referral_pain_days(self) -> int:
        return 7 * self.referral_pain_weeks

    @property
    def malignancy_min_age(self) -> int:
        """The first age that is "over" the threshold age (ages are whole years)."""
        return self.malignancy_age_over + 1

    @property
    def malignancy_new_pain_days(self) -> int:
        return 7 * self.malignancy_new_pain_weeks

    @property
    def weight_loss_fraction(self) -> float:
        return self.weight_loss_percent / 100

    @property
    def weight_loss_lookback_days(self) -> int:
        """12 months are 365 days."""
        return self.weight_loss_months * 365 // 12

    def changed(self) -> dict[str, int | float]:
        """The values that differ from the guideline's defaults."""
        return {
            name: getattr(self, name)
            for name in LIMITS
            if getattr(self, name) != getattr(DEFAULT_THRESHOLDS, name)
        }


def _limit(low: float, high: float, unit: str, meaning: str) -> Limit:
    return Limit(low, high, unit, meaning)


LIMITS = MappingProxyType(
    {
        "persistent_pain_weeks": _limit(
            2, 12, "weeks", "pain this long: psychosocial assessment (chronic-pain-assessment)"
        ),
        "referral_pain_weeks": _limit(
            6, 52, "weeks", "chronic pain: multidisciplinary referral, no acetaminophen alone"
        ),
        "malignancy_age_over": _limit(40, 70, "years", "red flag: older than this, with new pain"),
        "malignancy_new_pain_weeks": _limit(2, 12, "weeks", "... pain newer than this"),
        "fever_celsius": _limit(37.5, 39.5, "°C", "red flag: temperature this high, last 7 days"),
        "trauma_lookback_days": _limit(
            30, 365, "days", "red flag: significant trauma or vertebral fracture this recent"
        ),
        "topical_nsaid_lookback_days": _limit(
            30, 365, "days", "topical NSAID this recent: no topical-first card"
        ),
        "weight_loss_percent": _limit(2, 20, "%", "red flag: more weight lost than this"),
        "weight_loss_months": _limit(3, 24, "months", "... within this many months"),
    }
)


def check_threshold(name: str, value: Any, limit: Limit) -> None:
    """A value of the threshold's type within its range, else ThresholdError naming both."""
    whole = isinstance(DEFAULT_VALUES[name], int)
    if isinstance(value, bool) or not isinstance(value, int if whole else (int, float)):
        kind = "a whole number" if whole else "a number"
        raise ThresholdError(f"{name} must be {kind}, got {value!r}")
    if not (math.isfinite(value) and limit.low <= value <= limit.high):
        raise ThresholdError(
            f"{name} must be between {limit.low:g} and {limit.high:g} {limit.unit}, got {value!r}"
        )


DEFAULT_VALUES: dict[str, Any] = {f.name: f.default for f in fields(Thresholds)}
DEFAULT_THRESHOLDS = Thresholds()
