"""The site configuration file: read, checked and turned into plain values.

Everything a file may say is checked when it is read: an unknown section or key, a value of the
wrong type, an unknown topic or orderable, a threshold out of its range. What refers to card
content (the override reasons a snooze names) is checked against the loaded content by
`site.reasons.check_against_content`. Every problem is one line naming the file, the place in
it and what is allowed.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from fhir.resources.R4B.coding import Coding as FhirCoding
from pydantic import ValidationError

from cds_service.config_error import ConfigError
from cds_service.rules.findings import Orderable
from cds_service.rules.registry import TOPICS
from cds_service.rules.thresholds import DEFAULT_THRESHOLDS, LIMITS, ThresholdError, Thresholds
from cds_service.rules.unit import Recommendation
from cds_service.site.reason_sets import REASON_SETS

# A snooze longer than a year is not "not now".
MAX_SNOOZE_DAYS = 365


class SiteConfigError(ConfigError):
    """A site configuration the service cannot run with; the message is one line."""


class TopicMode(StrEnum):
    ON = "on"  # evaluated, cards returned (the default)
    SILENT = "silent"  # evaluated, cards logged as silent, never returned
    OFF = "off"  # not evaluated


@dataclass(frozen=True)
class Coding:
    system: str
    code: str
    display: str | None = None

    def as_fhir(self) -> dict[str, str]:
        coding = {"system": self.system, "code": self.code}
        if self.display:
            coding["display"] = self.display
        return coding


@dataclass(frozen=True)
class OverrideReasonChoice:
    """The override reasons a site offers on a topic's cards, besides or instead of the card
    content's own."""

    replace: bool = False  # True: the content's own reasons are not offered
    codes: tuple[Coding, ...] = ()  # the site's own
    sets: tuple[str, ...] = ()  # ready-made sets by name (site/reason_sets.json)

    @property
    def is_default(self) -> bool:
        return not (self.replace or self.codes or self.sets)


@dataclass(frozen=True)
class SnoozeChoice:
    """Overrides with one of these reasons silence the topic for that patient for `days`."""

    days: int
    reasons: tuple[str, ...]  # as written: "code", or "system|code" where a code is ambiguous


@dataclass(frozen=True)
class TopicSettings:
    mode: TopicMode = TopicMode.ON
    override_reasons: OverrideReasonChoice = OverrideReasonChoice()
    snooze: SnoozeChoice | None = None


@dataclass(frozen=True)
class OrderCodings:
    """The site's codings for one suggested order (a preference-list item, an order-set item,
    a local code), added to the standard ones of the created resource."""

    codings: tuple[Coding, ...]
    first: bool = False  # before the standard codings (clients that read only the first)


DEFAULT_TOPIC = TopicSettings()
_EMPTY: Mapping[Any, Any] = MappingProxyType({})


@dataclass(frozen=True)
class SiteConfig:
    # The file read; None: no site configuration (every topic on, the guideline's numbers).
    source: str | None = None
    topics: Mapping[str, TopicSettings] = field(default_factory=lambda: _EMPTY)
    thresholds: Thresholds = DEFAULT_THRESHOLDS
    orders: Mapping[Orderable, OrderCodings] = field(default_factory=lambda: _EMPTY)

    def topic(self, topic: str) -> TopicSettings:
        return self.topics.get(topic, DEFAULT_TOPIC)

    def mode(self, topic: str) -> TopicMode:
        return self.topic(topic).mode

    def evaluated(self, recommendations: tuple[Recommendation, ...]) -> tuple[Recommendation, ...]:
        """The recommendations to evaluate: every one not switched off."""
        return tuple(unit for unit in recommendations if self.mode(unit.topic) is not TopicMode.OFF)

    @property
    def silent_topics(self) -> frozenset[str]:
        return frozenset(t for t, s in self.topics.items() if s.mode is TopicMode.SILENT)

    @property
    def off_topics(self) -> frozenset[str]:
        return frozenset(t for t, s in self.topics.items() if s.mode is TopicMode.OFF)

    @property
    def snoozable_topics(self) -> frozenset[str]:
        return frozenset(t for t, s in self.topics.items() if s.snooze is not None)


DEFAULT_SITE = SiteConfig()

# --- reading --------------------------------------------------------------------------------

_SECTIONS = ("topics", "thresholds", "orders")
_TOPIC_KEYS = ("mode", "override_reasons", "snooze")
_REASON_KEYS = ("replace", "codes", "sets")
_SNOOZE_KEYS = ("days", "reasons")
_ORDER_KEYS = ("codings", "first")
_CODING_KEYS = ("system", "code", "display")


def toml_string(text: str) -> str:
    """A TOML basic string: JSON's escapes, plus DEL, which TOML wants escaped too."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def table_key(name: str) -> str:
    """A key as a table header writes it: `[topics."opioid-avoidance"]`."""
    return toml_string(name)


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SiteConfigError(f"{where} must be a table, got {_kind(value)}")
    return value


def _kind(value: Any) -> str:
    kinds = {bool: "true/false", int: "a whole number", float: "a number", str: "text"}
    for kind, name in kinds.items():
        if type(value) is kind:
            return f"{name} ({value!r})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


def _known_keys(table: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
    unknown = [key for key in table if key not in allowed]
    if unknown:
        raise SiteConfigError(f"{where}: unknown key {unknown[0]!r}; allowed: {', '.join(allowed)}")


def _text(table: Mapping[str, Any], key: str, where: str, *, required: bool = True) -> str | None:
    value = table.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        found = "missing" if value is None else _kind(value)
        raise SiteConfigError(f"{where}: {key} must be non-empty text, got {found}")
    return value


def _flag(table: Mapping[str, Any], key: str, where: str) -> bool:
    value = table.get(key, False)
    if not isinstance(value, bool):
        raise SiteConfigError(f"{where}: {key} must be true or false, got {_kind(value)}")
    return value


def _list(table: Mapping[str, Any], key: str, where: str) -> list[Any]:
    value = table.get(key, [])
    if not isinstance(value, list):
        raise SiteConfigError(f"{where}: {key} must be a list, got {_kind(value)}")
    return value


def _coding(value: Any, where: str) -> Coding:
    table = _table(value, where)
    _known_keys(table, _CODING_KEYS, where)
    system = _text(table, "system", where)
    code = _text(table, "code", where)
    display = _text(table, "display", where, required=False)
    assert system is not None and code is not None
    # What FHIR R4 allows in a Coding: a uri without spaces (fhir.resources leaves that to
    # us), a code without leading, trailing or doubled spaces.
    wrong = ["system"] if any(character.isspace() for character in system) else []
    try:
        FhirCoding.model_validate({"system": system, "code": code, "display": display})
    except ValidationError as error:
        wrong += sorted({str(e["loc"][0]) for e in error.errors() if e.get("loc")})
    if wrong:
        raise SiteConfigError(
            f"{where}: not a valid FHIR Coding ({', '.join(dict.fromkeys(wrong))}: a system "
            "URI without spaces, a code without leading, trailing or doubled spaces)"
        )
    return Coding(system, code, display)


def _codings(items: list[Any], where: str) -> tuple[Coding, ...]:
    codings = tuple(_coding(item, f"{where}[{index}]") for index, item in enumerate(items))
    seen: set[tuple[str, str]] = set()
    for coding in codings:
        key = (coding.system, coding.code)
        if key in seen:
            raise SiteConfigError(f"{where}: {coding.system}|{coding.code} is listed twice")
        seen.add(key)
    return codings


def _override_reasons(value: Any, where: str) -> OverrideReasonChoice:
    table = _table(value, where)
    _known_keys(table, _REASON_KEYS, where)
    sets = _list(table, "sets", where)
    for name in sets:
        if name not in REASON_SETS:
            raise SiteConfigError(
                f"{where}: unknown reason set {name!r}; known: {', '.join(REASON_SETS)}"
            )
    return OverrideReasonChoice(
        replace=_flag(table, "replace", where),
        codes=_codings(_list(table, "codes", where), f"{where}.codes"),
        sets=tuple(dict.fromkeys(sets)),
    )


def _whole_number(table: Mapping[str, Any], key: str, where: str, low: int, high: int) -> int:
    value = table.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        found = "missing" if value is None else _kind(value)
        raise SiteConfigError(
            f"{where}: {key} must be a whole number from {low} to {high}, got {found}"
        )
    return value


def _snooze(value: Any, where: str) -> SnoozeChoice:
    table = _table(value, where)
    _known_keys(table, _SNOOZE_KEYS, where)
    days = _whole_number(table, "days", where, 1, MAX_SNOOZE_DAYS)
    reasons = _list(table, "reasons", where)
    if not reasons or not all(isinstance(r, str) and r.strip() for r in reasons):
        raise SiteConfigError(
            f"{where}: reasons must list the override reasons (codes) that snooze, "
            'e.g. ["exercise-deferred"]'
        )
    return SnoozeChoice(days, tuple(dict.fromkeys(r.strip() for r in reasons)))


def _topic(name: str, value: Any) -> TopicSettings:
    where = f"[topics.{table_key(name)}]"
    if name not in TOPICS:
        raise SiteConfigError(f"{where}: unknown topic {name!r}; known: {', '.join(TOPICS)}")
    table = _table(value, where)
    _known_keys(table, _TOPIC_KEYS, where)
    raw_mode = table.get("mode", TopicMode.ON.value)
    try:
        mode = TopicMode(raw_mode)
    except ValueError:
        modes = ", ".join(f'"{m.value}"' for m in TopicMode)
        raise SiteConfigError(
            f"{where}: mode must be one of {modes}, got {_kind(raw_mode)}"
        ) from None
    reasons = table.get("override_reasons")
    snooze = table.get("snooze")
    return TopicSettings(
        mode=mode,
        override_reasons=OverrideReasonChoice()
        if reasons is None
        else _override_reasons(reasons, f"{where} override_reasons"),
        snooze=None if snooze is None else _snooze(snooze, f"{where} snooze"),
    )


def _thresholds(value: Any) -> Thresholds:
    where = "[thresholds]"
    table = _table(value, where)
    _known_keys(table, tuple(LIMITS), where)
    try:
        return Thresholds(**table)
    except ThresholdError as error:
        raise SiteConfigError(f"{where}: {error}") from None


def _order(name: str, value: Any) -> tuple[Orderable, OrderCodings]:
    where = f"[orders.{table_key(name)}]"
    try:
        orderable = Orderable(name)
    except ValueError:
        known = ", ".join(o.value for o in Orderable)
        raise SiteConfigError(f"{where}: unknown order {name!r}; known: {known}") from None
    table = _table(value, where)
    _known_keys(table, _ORDER_KEYS, where)
    codings = _codings(_list(table, "codings", where), f"{where} codings")
    if not codings:
        raise SiteConfigError(f"{where}: codings must list at least one coding")
    return orderable, OrderCodings(codings, first=_flag(table, "first", where))


def parse_site_config(document: Mapping[str, Any], source: str) -> SiteConfig:
    """A site configuration from a parsed TOML document (messages name `source`)."""
    try:
        _known_keys(document, _SECTIONS, "the file")
        topics = _table(document.get("topics", {}), "[topics]")
        orders = _table(document.get("orders", {}), "[orders]")
        parsed = {name: _topic(name, value) for name, value in topics.items()}
        return SiteConfig(
            source=source,
            # In the registry's order, whatever the file's.
            topics=MappingProxyType({name: parsed[name] for name in TOPICS if name in parsed}),
            thresholds=_thresholds(document.get("thresholds", {})),
            orders=MappingProxyType(dict(_order(name, value) for name, value in orders.items())),
        )
    except SiteConfigError as error:
        raise SiteConfigError(f"{source}: {error}") from None


def read_site_config(path: str) -> SiteConfig:
    """Read and check a site configuration file (SiteConfigError: one line)."""
    try:
        with open(path, "rb") as file:
            document = tomllib.load(file)
    except OSError as error:
        raise SiteConfigError(f"cannot read {path!r}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise SiteConfigError(f"{path}: not valid TOML ({error})") from None
    except UnicodeDecodeError:
        raise SiteConfigError(f"{path}: not valid TOML (not UTF-8 text)") from None
    return parse_site_config(document, path)
