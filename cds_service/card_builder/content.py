"""Card content: the words of every card, loaded from the editable TOML files in `cards/`.

Loaded and checked once at start; a broken file stops the service with a one-line reason
instead of producing a broken card in front of a clinician. The checks include a length
budget, so that a card stays readable in a few seconds (see cards/README.md).
"""

from __future__ import annotations

import re
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
    SuggestionKind,
)
from cds_service.rules.registry import RECOMMENDATIONS
from cds_service.rules.thresholds import DEFAULT_THRESHOLDS, LIMITS, Thresholds
from cds_service.rules.unit import Recommendation

# CDS Hooks: a summary is "less than 140 characters"; we aim for 100 so it fits on one line.
SUMMARY_LIMIT = 139
SUMMARY_TARGET = 100
# A detail of about 700 characters reads in a few seconds. The words written in a template
# (placeholders aside) may use this much; the rest is left for order names and patient facts.
DETAIL_LIMIT = 700
DETAIL_TEMPLATE_LIMIT = 480
NOTE_LIMIT = 240
FLAG_LINE_LIMIT = 120
# A card names at most this many facts of one kind ("and 12 more").
FACTS_PER_KIND = 3

ALWAYS_PLACEHOLDERS = frozenset({"facts", "evidence", "duration", "notes"})
# Whole blocks of the detail: never inside a sentence (a summary, a note, a suggestion label).
BLOCK_PLACEHOLDERS = frozenset({"facts", "evidence", "notes"})
# Every topic-specific placeholder the card builder can fill; each recommendation unit declares
# the ones its card uses (cards/README.md says what each becomes).
CARD_PLACEHOLDERS = frozenset(
    {
        "order",
        "alternative",
        "alternative_short",
        "contraindications",
        "contraindication_risks",
        "red_flags",
        "lead_flag",
        "flag_summary",
        "more_flags",
        "flag_lines",
    }
)
# The few values short enough for a fallback summary (at most 20 characters or so).
FALLBACK_PLACEHOLDERS = frozenset({"alternative_short", "duration"})
FACT_FIELDS: dict[FactKind, frozenset[str]] = {
    FactKind.BACK_PAIN: frozenset({"code", "onset", "duration"}),
    FactKind.BACK_PAIN_REASON: frozenset({"code", "order"}),
    FactKind.DRAFT_ORDER: frozenset({"order"}),
    FactKind.RED_FLAG_CONDITION: frozenset({"flag", "code", "date"}),
    FactKind.RED_FLAG_PROCEDURE: frozenset({"flag", "code", "date"}),
    FactKind.RED_FLAG_MEDICATION: frozenset({"flag", "order", "date"}),
    FactKind.RED_FLAG_TEMPERATURE: frozenset({"flag", "value", "date"}),
    FactKind.RED_FLAG_WEIGHT_LOSS: frozenset(
        {"flag", "percent", "from_value", "from_date", "to_value", "to_date"}
    ),
    FactKind.RED_FLAG_AGE: frozenset({"flag", "age", "duration"}),
    FactKind.NO_RED_FLAGS: frozenset(),
    FactKind.CONTRAINDICATION_CONDITION: frozenset({"contraindication", "code", "date"}),
    FactKind.CONTRAINDICATION_MEDICATION: frozenset({"contraindication", "order"}),
    FactKind.NO_TOPICAL_NSAID: frozenset({"days"}),
    FactKind.NO_ANTIDEPRESSANT_INDICATION: frozenset(),
    FactKind.NO_RADICULOPATHY: frozenset(),
    FactKind.NO_PHYSICAL_THERAPY: frozenset(),
    FactKind.NO_SURGICAL_INDICATION: frozenset(),
    FactKind.GI_RISK_AGE: frozenset({"age"}),
    FactKind.GI_RISK_MEDICATION: frozenset({"order"}),
    FactKind.NO_GASTROPROTECTION: frozenset(),
    FactKind.NO_OTHER_ANALGESIC: frozenset(),
}
# Fact kinds whose date may be unrecorded: `<kind>_undated` is used then, without the date.
DATED_FACTS: dict[FactKind, str] = {
    FactKind.BACK_PAIN: "onset",
    FactKind.RED_FLAG_CONDITION: "date",
    FactKind.RED_FLAG_PROCEDURE: "date",
    FactKind.RED_FLAG_MEDICATION: "date",
    FactKind.CONTRAINDICATION_CONDITION: "date",
}
RED_FLAG_FACTS = frozenset(
    {
        FactKind.RED_FLAG_CONDITION,
        FactKind.RED_FLAG_PROCEDURE,
        FactKind.RED_FLAG_MEDICATION,
        FactKind.RED_FLAG_TEMPERATURE,
        FactKind.RED_FLAG_WEIGHT_LOSS,
        FactKind.RED_FLAG_AGE,
    }
)
WORDS: dict[str, frozenset[str]] = {
    "unknown_duration": frozenset(),
    "duration_one_day": frozenset(),
    "duration_days": frozenset({"days"}),
    "duration_weeks": frozenset({"weeks"}),
    "duration_months": frozenset({"months"}),
    "more_facts": frozenset({"count"}),
    "more_flags": frozenset({"count"}),
    "guidance_link": frozenset(),
}


class ContentError(ValueError):
    """Card content that the service cannot use."""


@dataclass(frozen=True)
class Evidence:
    citation: str
    url: str | None
    finding: str
    short: str | None  # how a card names it in its one evidence line
    # The contraindications or red flags (by key) it is the card's evidence line for.
    applies_to: frozenset[str] = frozenset()


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
class FlagContent:
    """How the red-flag card speaks of one red flag."""

    summary: str  # the card's summary when this is the most serious flag
    known_summary: str | None  # ... when it is an established diagnosis (flags that can be)
    next_step: str  # what to do, on the flag's line of the detail
    known_next_step: str | None


@dataclass(frozen=True)
class Guidance:
    """The topic's page (`GET /guidance/{topic}`): fuller advice and a patient handout."""

    clinician: str
    patient_title: str
    patient: str


@dataclass(frozen=True)
class TopicContent:
    topic: str
    title: str
    indicator: Indicator
    summary: str
    summary_fallback: str
    detail: str
    source_label: str
    source_url: str | None
    evidence: tuple[Evidence, ...]
    suggestions: Mapping[SuggestionKind, SuggestionContent]
    override_reasons: tuple[OverrideReason, ...]
    notes: Mapping[str, str]
    guidance: Guidance
    flags: Mapping[RedFlag, FlagContent]
    # How one red flag's line of the detail reads: (new flag, known diagnosis).
    flag_lines: tuple[str, str] | None


@dataclass(frozen=True)
class OrderableContent:
    display: str
    short: str
    instructions: str
    patient_instruction: str | None


@dataclass(frozen=True)
class CardContent:
    topic_system: str
    override_reason_system: str
    facts_heading: str
    evidence_heading: str
    fact_templates: Mapping[FactKind, str]
    undated_fact_templates: Mapping[FactKind, str]
    red_flag_names: Mapping[RedFlag, str]
    contraindication_names: Mapping[Contraindication, str]
    contraindication_risks: Mapping[Contraindication, str]
    words: Mapping[str, str]
    orderables: Mapping[Orderable, OrderableContent]
    topics: Mapping[str, TopicContent]


def _placeholders(template: str, where: str) -> set[str]:
    try:
        return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as error:
        raise ContentError(f"{where}: unbalanced braces ({error})") from None


def _check_placeholders(template: str, allowed: frozenset[str], where: str) -> None:
    unknown = _placeholders(template, where) - allowed
    if unknown:
        raise ContentError(f"{where}: unknown placeholder(s) {sorted(unknown)}")


def written_length(template: str) -> int:
    """Characters a template writes itself, placeholders left out."""
    return sum(len(literal) for literal, _, _, _ in string.Formatter().parse(template))


def _within(template: str, limit: int, where: str) -> None:
    if written_length(template) > limit:
        raise ContentError(
            f"{where} is {written_length(template)} characters long (without placeholders); "
            f"the budget is {limit}"
        )


def _text(doc: Mapping[str, Any], key: str, where: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ContentError(f"{where}: '{key}' must be non-empty text")
    return value.strip()


def _optional_text(doc: Mapping[str, Any], key: str, where: str) -> str | None:
    return _text(doc, key, where) if key in doc else None


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


# `${persistent_pain_weeks}` in card words: the site's threshold (rules/thresholds.py), so that
# a card never states a number the site has changed.
_THRESHOLD_TOKEN = re.compile(r"\$\{([^}]*)\}")


def _with_thresholds(text: str, thresholds: Thresholds, name: str) -> str:
    def value(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in LIMITS:
            raise ContentError(f"{name}: unknown threshold ${{{key}}}; known: {', '.join(LIMITS)}")
        return f"{getattr(thresholds, key):g}"

    return _THRESHOLD_TOKEN.sub(value, text)


def _load_toml(root: Any, name: str, thresholds: Thresholds = DEFAULT_THRESHOLDS) -> dict[str, Any]:
    entry = root / name
    try:
        text = entry.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ContentError(f"card content file {name} is missing") from None
    try:
        return tomllib.loads(_with_thresholds(text, thresholds, name))
    except tomllib.TOMLDecodeError as error:
        raise ContentError(f"{name}: not valid TOML ({error})") from None


def _fact_templates(
    facts: Mapping[str, Any], where: str
) -> tuple[dict[FactKind, str], dict[FactKind, str]]:
    templates: dict[FactKind, str] = {}
    undated: dict[FactKind, str] = {}
    for kind, fields in FACT_FIELDS.items():
        template = _text(facts, kind.value, f"{where} [facts]")
        _check_placeholders(template, fields, f"{where} [facts].{kind.value}")
        templates[kind] = template
        if kind in DATED_FACTS:
            key = f"{kind.value}_undated"
            without = _text(facts, key, f"{where} [facts]")
            _check_placeholders(without, fields - {DATED_FACTS[kind]}, f"{where} [facts].{key}")
            undated[kind] = without
    return templates, undated


def _common(doc: Mapping[str, Any]) -> dict[str, Any]:
    where = "_common.toml"
    templates, undated = _fact_templates(_table(doc, "facts", where), where)
    red_flags = _table(doc, "red_flags", where)
    contraindications = _table(doc, "contraindications", where)
    risks = _table(doc, "contraindication_risks", where)
    words = _table(doc, "words", where)
    word_values = {}
    for key, fields in WORDS.items():
        word_values[key] = _text(words, key, f"{where} [words]")
        _check_placeholders(word_values[key], fields, f"{where} [words].{key}")
    orderables_doc = _table(doc, "orderables", where)
    orderables: dict[Orderable, OrderableContent] = {}
    for orderable in Orderable:
        at = f"{where} [orderables.{orderable.value}]"
        spec = _table(orderables_doc, orderable.value, f"{where} [orderables]")
        orderables[orderable] = OrderableContent(
            display=_text(spec, "display", at),
            short=_text(spec, "short", at),
            instructions=_text(spec, "instructions", at),
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
        "undated_fact_templates": undated,
        "red_flag_names": {f: _text(red_flags, f.value, f"{where} [red_flags]") for f in RedFlag},
        "contraindication_names": {
            c: _text(contraindications, c.value, f"{where} [contraindications]")
            for c in Contraindication
        },
        "contraindication_risks": {
            c: _text(risks, c.value, f"{where} [contraindication_risks]") for c in Contraindication
        },
        "words": word_values,
        "orderables": orderables,
    }


def _summaries(doc: Mapping[str, Any], allowed: frozenset[str], where: str) -> tuple[str, str]:
    summary = _text(doc, "summary", where)
    _check_placeholders(summary, allowed - BLOCK_PLACEHOLDERS, f"{where} summary")
    _within(summary, SUMMARY_TARGET, f"{where} summary")
    fallback = _text(doc, "summary_fallback", where)
    # Used when the summary runs past the target, so only short values may fill it.
    _check_placeholders(fallback, allowed & FALLBACK_PLACEHOLDERS, f"{where} summary_fallback")
    room = 20 if _placeholders(fallback, where) else 0
    _within(fallback, SUMMARY_TARGET - room, f"{where} summary_fallback")
    return summary, fallback


_EVIDENCE_KEYS = frozenset({c.value for c in Contraindication} | {f.value for f in RedFlag})


def _evidence(doc: Mapping[str, Any], where: str) -> tuple[Evidence, ...]:
    evidence_docs = doc.get("evidence")
    if not isinstance(evidence_docs, list) or not evidence_docs:
        raise ContentError(f"{where}: at least one [[evidence]] entry is required")
    evidence: list[Evidence] = []
    for entry in evidence_docs:
        at = f"{where} [[evidence]]"
        applies_to = entry.get("applies_to") or []
        if not isinstance(applies_to, list) or not set(applies_to) <= _EVIDENCE_KEYS:
            raise ContentError(f"{at}: 'applies_to' must list contraindication or red-flag keys")
        item = Evidence(
            citation=_text(entry, "citation", at),
            url=entry.get("url") or None,
            finding=_text(entry, "finding", at),
            short=_optional_text(entry, "short", at),
            applies_to=frozenset(applies_to),
        )
        # The first entry, and any entry chosen for a finding, is a card's evidence line.
        if (not evidence or item.applies_to) and (item.short is None or item.url is None):
            raise ContentError(f"{at}: an entry a card cites needs 'short' and 'url'")
        evidence.append(item)
    return tuple(evidence)


def _notes(
    doc: Mapping[str, Any], unit: Recommendation, allowed: frozenset[str], where: str
) -> dict[str, str]:
    notes_doc = doc.get("notes") or {}
    if set(notes_doc) != set(unit.notes):
        raise ContentError(f"{where}: [notes] must be exactly {sorted(unit.notes)}")
    notes: dict[str, str] = {}
    for key in sorted(unit.notes):
        text = _text(notes_doc, key, f"{where} [notes]")
        _check_placeholders(text, allowed - BLOCK_PLACEHOLDERS, f"{where} [notes].{key}")
        _within(text, NOTE_LIMIT, f"{where} [notes].{key}")
        notes[key] = text
    return notes


def _speaks_of_red_flags(unit: Recommendation) -> bool:
    """A card that lists red flags one per line has words for each flag."""
    return "flag_lines" in unit.placeholders


def _flags(doc: Mapping[str, Any], unit: Recommendation, where: str) -> dict[RedFlag, FlagContent]:
    if not _speaks_of_red_flags(unit):
        if "flags" in doc:
            raise ContentError(f"{where}: [flags] belongs to a topic whose card lists red flags")
        return {}
    flags_doc = _table(doc, "flags", where)
    flags: dict[RedFlag, FlagContent] = {}
    for flag in RedFlag:
        at = f"{where} [flags.{flag.value}]"
        spec = _table(flags_doc, flag.value, f"{where} [flags]")
        content = FlagContent(
            summary=_text(spec, "summary", at),
            known_summary=_optional_text(spec, "known_summary", at),
            next_step=_text(spec, "next_step", at),
            known_next_step=_optional_text(spec, "known_next_step", at),
        )
        for text in (content.summary, content.known_summary):
            if text is not None:
                _check_placeholders(text, frozenset(), at)
                _within(text, SUMMARY_TARGET - 12, f"{at} summary")  # room for "(+2 more)"
        for text in (content.next_step, content.known_next_step):
            if text is not None:
                _check_placeholders(text, frozenset(), at)
                _within(text, FLAG_LINE_LIMIT, f"{at} next_step")
        flags[flag] = content
    extra = set(flags_doc) - {f.value for f in RedFlag}
    if extra:
        raise ContentError(f"{where}: [flags] names unknown red flags {sorted(extra)}")
    return flags


FLAG_LINE_FIELDS = frozenset({"name", "facts", "next_step"})


def _flag_lines(doc: Mapping[str, Any], unit: Recommendation, where: str) -> tuple[str, str] | None:
    if not _speaks_of_red_flags(unit):
        return None
    lines = _table(doc, "flag_lines", where)
    new, known = (_text(lines, key, f"{where} [flag_lines]") for key in ("new", "known"))
    for key, text in (("new", new), ("known", known)):
        _check_placeholders(text, FLAG_LINE_FIELDS, f"{where} [flag_lines].{key}")
    return new, known


def _guidance(doc: Mapping[str, Any], where: str) -> Guidance:
    guidance = _table(doc, "guidance", where)
    return Guidance(
        clinician=_text(guidance, "clinician", f"{where} [guidance]"),
        patient_title=_text(guidance, "patient_title", f"{where} [guidance]"),
        patient=_text(guidance, "patient", f"{where} [guidance]"),
    )


def _topic(unit: Recommendation, doc: Mapping[str, Any], common: Mapping[str, Any]) -> TopicContent:
    topic = unit.topic
    where = f"{topic}.toml"
    if doc.get("topic") != topic:
        raise ContentError(f"{where}: 'topic' must be {topic!r}")
    unknown = unit.placeholders - CARD_PLACEHOLDERS
    if unknown:  # a rule unit asking for words the card builder cannot fill
        raise ContentError(
            f"{where}: the {topic} rule declares unknown placeholders {sorted(unknown)}"
        )
    allowed = unit.placeholders | ALWAYS_PLACEHOLDERS
    try:
        indicator = Indicator(_text(doc, "indicator", where))
    except ValueError:
        raise ContentError(f"{where}: 'indicator' must be info, warning or critical") from None
    summary, fallback = _summaries(doc, allowed, where)
    detail = _text(doc, "detail", where)
    _check_placeholders(detail, allowed, f"{where} detail")
    missing = {"facts", "evidence"} - _placeholders(detail, where)
    if missing:
        raise ContentError(f"{where}: detail must contain {sorted(missing)}")
    _within(detail, DETAIL_TEMPLATE_LIMIT, f"{where} detail")
    suggestion_docs = doc.get("suggestions") or {}
    expected = {kind.value for kind in unit.suggestions}
    if set(suggestion_docs) != expected:
        raise ContentError(f"{where}: suggestions must be exactly {sorted(expected)}")
    suggestions = {}
    for kind in sorted(unit.suggestions):
        at = f"{where} [suggestions.{kind.value}]"
        spec = suggestion_docs[kind.value]
        label = _text(spec, "label", at)
        _check_placeholders(label, allowed - BLOCK_PLACEHOLDERS, at)
        delete = _text(spec, "delete", at) if kind.deletes else None
        create = _text(spec, "create", at) if kind.creates else None
        for text in (delete, create):
            if text:
                _check_placeholders(text, allowed - BLOCK_PLACEHOLDERS, at)
        suggestions[kind] = SuggestionContent(label=label, delete=delete, create=create)
    reasons = tuple(
        OverrideReason(
            code=_text(r, "code", f"{where} [[override_reasons]]"),
            display=_text(r, "display", f"{where} [[override_reasons]]"),
        )
        for r in doc.get("override_reasons") or ()
    )
    if indicator != Indicator.INFO and not reasons:
        raise ContentError(f"{where}: {indicator} cards need [[override_reasons]]")
    if _speaks_of_red_flags(unit) and not reasons:
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
        evidence=_evidence(doc, where),
        suggestions=suggestions,
        override_reasons=reasons,
        notes=_notes(doc, unit, allowed, where),
        guidance=_guidance(doc, where),
        flags=_flags(doc, unit, where),
        flag_lines=_flag_lines(doc, unit, where),
    )


def load_card_content(
    override: str | Path | None = None,
    recommendations: tuple[Recommendation, ...] = RECOMMENDATIONS,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
) -> CardContent:
    """The card content, its `${threshold}` words filled from `thresholds` (a site's)."""
    root = content_root(override)
    common = _common(_load_toml(root, "_common.toml", thresholds))
    topics = {
        unit.topic: _topic(unit, _load_toml(root, f"{unit.topic}.toml", thresholds), common)
        for unit in recommendations
    }
    return CardContent(
        topic_system=common["topic_system"],
        override_reason_system=common["override_reason_system"],
        facts_heading=common["facts_heading"],
        evidence_heading=common["evidence_heading"],
        fact_templates=common["fact_templates"],
        undated_fact_templates=common["undated_fact_templates"],
        red_flag_names=common["red_flag_names"],
        contraindication_names=common["contraindication_names"],
        contraindication_risks=common["contraindication_risks"],
        words=common["words"],
        orderables=common["orderables"],
        topics=topics,
    )
