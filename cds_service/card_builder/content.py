"""Card content: the words of every card, loaded from the editable TOML files in `cards/`.

Loaded and checked once at start; a broken file stops the service with a one-line reason
instead of producing a broken card in front of a clinician.
"""

from __future__ import annotations

import string
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from cds_service.rules.findings import (
    Contraindication,
    FactKind,
    Indicator,
    Orderable,
    RedFlag,
    Topic,
)

SUMMARY_LIMIT = 139  # CDS Hooks: "less than 140 characters"

ALWAYS_PLACEHOLDERS = frozenset({"facts", "evidence", "duration"})
TOPIC_PLACEHOLDERS: dict[Topic, frozenset[str]] = {
    Topic.OPIOID_AVOIDANCE: frozenset({"order", "alternative", "contraindications"}),
    Topic.IMAGING_WITHOUT_RED_FLAGS: frozenset({"order"}),
    Topic.RED_FLAGS_PRESENT: frozenset({"order", "red_flags"}),
    Topic.TOPICAL_NSAID_FIRST: frozenset({"order", "alternative"}),
    Topic.NSAID_CONTRAINDICATED: frozenset({"order", "alternative", "contraindications"}),
    Topic.AVOID_ANTIDEPRESSANT: frozenset({"order"}),
    Topic.AVOID_GLUCOSAMINE: frozenset({"order"}),
    Topic.AVOID_SPINAL_INJECTION: frozenset({"order"}),
    Topic.EXERCISE_THERAPY: frozenset(),
    Topic.CHRONIC_PAIN_ASSESSMENT: frozenset(),
}
TOPIC_SUGGESTIONS: dict[Topic, frozenset[str]] = {
    Topic.OPIOID_AVOIDANCE: frozenset({"replace", "remove"}),
    Topic.IMAGING_WITHOUT_RED_FLAGS: frozenset({"cancel"}),
    Topic.RED_FLAGS_PRESENT: frozenset(),
    Topic.TOPICAL_NSAID_FIRST: frozenset({"replace"}),
    Topic.NSAID_CONTRAINDICATED: frozenset({"replace"}),
    Topic.AVOID_ANTIDEPRESSANT: frozenset({"remove"}),
    Topic.AVOID_GLUCOSAMINE: frozenset({"remove"}),
    Topic.AVOID_SPINAL_INJECTION: frozenset({"cancel"}),
    Topic.EXERCISE_THERAPY: frozenset({"refer"}),
    Topic.CHRONIC_PAIN_ASSESSMENT: frozenset({"refer"}),
}
# Which suggestion keys delete a draft and which create an order.
DELETING_KEYS = frozenset({"replace", "remove", "cancel"})
CREATING_KEYS = frozenset({"replace", "refer"})
FACT_FIELDS: dict[FactKind, frozenset[str]] = {
    FactKind.BACK_PAIN: frozenset({"code", "onset", "duration"}),
    FactKind.BACK_PAIN_REASON: frozenset({"code", "order"}),
    FactKind.DRAFT_ORDER: frozenset({"order", "code"}),
    FactKind.RED_FLAG_CONDITION: frozenset({"flag", "code", "date"}),
    FactKind.RED_FLAG_PROCEDURE: frozenset({"flag", "code", "date"}),
    FactKind.RED_FLAG_MEDICATION: frozenset({"flag", "order", "date"}),
    FactKind.RED_FLAG_TEMPERATURE: frozenset({"flag", "value", "date"}),
    FactKind.RED_FLAG_WEIGHT_LOSS: frozenset(
        {"flag", "percent", "from_value", "from_date", "to_value", "to_date"}
    ),
    FactKind.RED_FLAG_AGE: frozenset({"flag", "age", "duration"}),
    FactKind.NO_RED_FLAGS: frozenset({"checked"}),
    FactKind.CONTRAINDICATION_CONDITION: frozenset({"contraindication", "code", "date"}),
    FactKind.CONTRAINDICATION_MEDICATION: frozenset({"contraindication", "order"}),
    FactKind.NO_TOPICAL_NSAID: frozenset({"days"}),
    FactKind.NO_ANTIDEPRESSANT_INDICATION: frozenset(),
    FactKind.NO_RADICULOPATHY: frozenset(),
    FactKind.NO_PHYSICAL_THERAPY: frozenset(),
    FactKind.PAIN_DURATION: frozenset({"onset", "duration"}),
}
WORDS = (
    "not_recorded",
    "unknown_duration",
    "duration_one_day",
    "duration_days",
    "duration_weeks",
    "duration_months",
)


class ContentError(ValueError):
    """Card content that the service cannot use."""


@dataclass(frozen=True)
class Evidence:
    citation: str
    url: str | None
    finding: str


@dataclass(frozen=True)
class SuggestionContent:
    label: str
    delete: str | None
    create: str | None


@dataclass(frozen=True)
class OverrideReason:
    code: str
    display: str


@dataclass(frozen=True)
class TopicContent:
    topic: Topic
    title: str
    indicator: Indicator
    summary: str
    summary_fallback: str
    detail: str
    source_label: str
    source_url: str | None
    evidence: tuple[Evidence, ...]
    suggestions: Mapping[str, SuggestionContent]
    override_reasons: tuple[OverrideReason, ...]


@dataclass(frozen=True)
class OrderableContent:
    display: str
    instructions: str
    patient_instruction: str | None


@dataclass(frozen=True)
class CardContent:
    topic_system: str
    override_reason_system: str
    facts_heading: str
    evidence_heading: str
    fact_templates: Mapping[FactKind, str]
    red_flag_names: Mapping[RedFlag, str]
    contraindication_names: Mapping[Contraindication, str]
    words: Mapping[str, str]
    orderables: Mapping[Orderable, OrderableContent]
    topics: Mapping[Topic, TopicContent]


def _placeholders(template: str, where: str) -> set[str]:
    try:
        return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as error:
        raise ContentError(f"{where}: unbalanced braces ({error})") from None


def _check_placeholders(template: str, allowed: frozenset[str], where: str) -> None:
    unknown = _placeholders(template, where) - allowed
    if unknown:
        raise ContentError(f"{where}: unknown placeholder(s) {sorted(unknown)}")


def _text(doc: Mapping[str, Any], key: str, where: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ContentError(f"{where}: '{key}' must be non-empty text")
    return value.strip()


def _table(doc: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = doc.get(key)
    if not isinstance(value, dict):
        raise ContentError(f"{where}: [{key}] table is missing")
    return value


def content_root(override: str | Path | None = None) -> Any:
    """Where card content is read from: an override folder, the package, or the checkout."""
    if override:
        return Path(override)
    try:
        return resources.files("cds_service.card_content")
    except ModuleNotFoundError:
        # Running from a source checkout: the content sits beside the package.
        return Path(__file__).resolve().parents[2] / "cards"


def _load_toml(root: Any, name: str) -> dict[str, Any]:
    entry = root / name
    try:
        return tomllib.loads(entry.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ContentError(f"card content file {name} is missing") from None
    except tomllib.TOMLDecodeError as error:
        raise ContentError(f"{name}: not valid TOML ({error})") from None


def _common(doc: Mapping[str, Any]) -> dict[str, Any]:
    where = "_common.toml"
    facts = _table(doc, "facts", where)
    templates: dict[FactKind, str] = {}
    for kind, fields in FACT_FIELDS.items():
        template = _text(facts, kind.value, f"{where} [facts]")
        _check_placeholders(template, fields, f"{where} [facts].{kind.value}")
        templates[kind] = template
    red_flags = _table(doc, "red_flags", where)
    contraindications = _table(doc, "contraindications", where)
    words = _table(doc, "words", where)
    word_values = {key: _text(words, key, f"{where} [words]") for key in WORDS}
    _check_placeholders(word_values["duration_days"], frozenset({"days"}), f"{where} [words]")
    _check_placeholders(word_values["duration_weeks"], frozenset({"weeks"}), f"{where} [words]")
    _check_placeholders(word_values["duration_months"], frozenset({"months"}), f"{where} [words]")
    _check_placeholders(word_values["duration_one_day"], frozenset(), f"{where} [words]")
    orderables_doc = _table(doc, "orderables", where)
    orderables: dict[Orderable, OrderableContent] = {}
    for orderable in Orderable:
        spec = _table(orderables_doc, orderable.value, f"{where} [orderables]")
        orderables[orderable] = OrderableContent(
            display=_text(spec, "display", f"{where} [orderables.{orderable.value}]"),
            instructions=_text(spec, "instructions", f"{where} [orderables.{orderable.value}]"),
            patient_instruction=spec.get("patient_instruction") or None,
        )
    source = _table(doc, "source", where)
    headings = _table(doc, "headings", where)
    return {
        "topic_system": _text(doc, "topic_system", where),
        "override_reason_system": _text(doc, "override_reason_system", where),
        "source_label": _text(source, "label", f"{where} [source]"),
        "source_url": source.get("url"),
        "facts_heading": _text(headings, "facts", f"{where} [headings]"),
        "evidence_heading": _text(headings, "evidence", f"{where} [headings]"),
        "fact_templates": templates,
        "red_flag_names": {f: _text(red_flags, f.value, f"{where} [red_flags]") for f in RedFlag},
        "contraindication_names": {
            c: _text(contraindications, c.value, f"{where} [contraindications]")
            for c in Contraindication
        },
        "words": word_values,
        "orderables": orderables,
    }


def _topic(topic: Topic, doc: Mapping[str, Any], common: Mapping[str, Any]) -> TopicContent:
    where = f"{topic.value}.toml"
    if doc.get("topic") != topic.value:
        raise ContentError(f"{where}: 'topic' must be {topic.value!r}")
    allowed = TOPIC_PLACEHOLDERS[topic] | ALWAYS_PLACEHOLDERS
    try:
        indicator = Indicator(_text(doc, "indicator", where))
    except ValueError:
        raise ContentError(f"{where}: 'indicator' must be info, warning or critical") from None
    summary = _text(doc, "summary", where)
    _check_placeholders(summary, allowed - {"facts", "evidence"}, f"{where} summary")
    fallback = _text(doc, "summary_fallback", where)
    _check_placeholders(fallback, frozenset(), f"{where} summary_fallback")
    if len(fallback) > SUMMARY_LIMIT:
        raise ContentError(f"{where}: summary_fallback is longer than {SUMMARY_LIMIT} characters")
    detail = _text(doc, "detail", where)
    _check_placeholders(detail, allowed, f"{where} detail")
    missing = {"facts", "evidence"} - _placeholders(detail, where)
    if missing:
        raise ContentError(f"{where}: detail must contain {sorted(missing)}")
    evidence_docs = doc.get("evidence")
    if not isinstance(evidence_docs, list) or not evidence_docs:
        raise ContentError(f"{where}: at least one [[evidence]] entry is required")
    evidence = tuple(
        Evidence(
            citation=_text(e, "citation", f"{where} [[evidence]]"),
            url=e.get("url") or None,
            finding=_text(e, "finding", f"{where} [[evidence]]"),
        )
        for e in evidence_docs
    )
    suggestion_docs = doc.get("suggestions") or {}
    expected = TOPIC_SUGGESTIONS[topic]
    if set(suggestion_docs) != expected:
        raise ContentError(f"{where}: suggestions must be exactly {sorted(expected)}")
    suggestions = {}
    for key, spec in suggestion_docs.items():
        at = f"{where} [suggestions.{key}]"
        label = _text(spec, "label", at)
        _check_placeholders(label, allowed - {"facts", "evidence"}, at)
        delete = _text(spec, "delete", at) if key in DELETING_KEYS else None
        create = _text(spec, "create", at) if key in CREATING_KEYS else None
        for text in (delete, create):
            if text:
                _check_placeholders(text, allowed - {"facts", "evidence"}, at)
        suggestions[key] = SuggestionContent(label=label, delete=delete, create=create)
    reasons = tuple(
        OverrideReason(
            code=_text(r, "code", f"{where} [[override_reasons]]"),
            display=_text(r, "display", f"{where} [[override_reasons]]"),
        )
        for r in doc.get("override_reasons") or ()
    )
    if indicator != Indicator.INFO and not reasons:
        raise ContentError(f"{where}: {indicator} cards need [[override_reasons]]")
    if topic == Topic.RED_FLAGS_PRESENT and not reasons:
        raise ContentError(f"{where}: red-flag cards can be critical and need [[override_reasons]]")
    source = doc.get("source") or {}
    return TopicContent(
        topic=topic,
        title=_text(doc, "title", where),
        indicator=indicator,
        summary=summary,
        summary_fallback=fallback,
        detail=detail,
        source_label=source.get("label") or common["source_label"],
        source_url=source.get("url") or common["source_url"],
        evidence=evidence,
        suggestions=suggestions,
        override_reasons=reasons,
    )


def load_card_content(override: str | Path | None = None) -> CardContent:
    root = content_root(override)
    common = _common(_load_toml(root, "_common.toml"))
    topics = {
        topic: _topic(topic, _load_toml(root, f"{topic.value}.toml"), common) for topic in Topic
    }
    return CardContent(
        topic_system=common["topic_system"],
        override_reason_system=common["override_reason_system"],
        facts_heading=common["facts_heading"],
        evidence_heading=common["evidence_heading"],
        fact_templates=common["fact_templates"],
        red_flag_names=common["red_flag_names"],
        contraindication_names=common["contraindication_names"],
        words=common["words"],
        orderables=common["orderables"],
        topics=topics,
    )
