"""Turn findings into CDS Hooks 2.0 cards, with words from `cards/` and codes from terminology.

Suggested orders are built as FHIR R4 resources and validated with `fhir.resources.R4B` before
they leave the service.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fhir.resources.R4B import get_fhir_model_class

from cds_service.card_builder.content import (
    DATED_FACTS,
    FACTS_PER_KIND,
    RED_FLAG_FACTS,
    SUMMARY_TARGET,
    CardContent,
    SuggestionContent,
    TopicContent,
)
from cds_service.card_builder.profiles import DEFAULT_PROFILE, ClientProfile
from cds_service.golden import action_signature
from cds_service.ids import time_ordered_uuid
from cds_service.rules.findings import (
    Fact,
    FactKind,
    Finding,
    Indicator,
    Orderable,
    SuggestionIntent,
)
from cds_service.terminology.index import Terminology
from cds_service.vocabulary import CardRecord

_SEVERITY_ORDER = {Indicator.CRITICAL: 0, Indicator.WARNING: 1, Indicator.INFO: 2}
_REQUESTER_TYPES = ("Practitioner/", "PractitionerRole/")
_SELECTION_BEHAVIOR = {ClientProfile.STANDARD: "at-most-one", ClientProfile.SINGLE_ACTION: "any"}
_BLANK_LINES = re.compile(r"\n{3,}")


@dataclass(frozen=True)
class LocalCodings:
    """A site's own codings of one suggested order (a preference-list or order-set item, a
    local code), as FHIR Codings; the site configuration (cds_service/site) supplies them."""

    codings: tuple[Mapping[str, str], ...]
    first: bool = False  # before the standard codings (clients that read only the first)


def _with_site_codings(code: Mapping[str, Any], local: LocalCodings | None) -> dict[str, Any]:
    """A suggested order's CodeableConcept with the site's codings added: first when the site
    says so, else after the standard ones. Its `text` stays."""
    if local is None:
        return dict(code)
    standard = list(code.get("coding", ()))
    added = [dict(coding) for coding in local.codings]
    return {**code, "coding": added + standard if local.first else standard + added}


def _tidy(markdown: str) -> str:
    """A placeholder that rendered empty (no notes, say) leaves no gap in the text."""
    return _BLANK_LINES.sub("\n\n", markdown).strip()


@dataclass(frozen=True)
class CardOptions:
    """How the calling client wants its cards shaped; the same findings in every case."""

    profile: ClientProfile = DEFAULT_PROFILE
    # Where this service's guidance pages are (CDS_PUBLIC_URL, or the request's own base URL
    # in development mode); None: cards carry no link to them.
    guidance_base_url: str | None = None


DEFAULT_OPTIONS = CardOptions()


@dataclass(frozen=True)
class CardContext:
    """What the cards need from the hook request to address their suggestions."""

    patient_id: str
    encounter_id: str | None = None
    user_id: str | None = None
    condition_refs: tuple[str, ...] = ()
    pain_duration_days: int | None = None
    options: CardOptions = DEFAULT_OPTIONS


class _Values(dict[str, str]):
    """Template values; a value the record did not give reads as nothing rather than failing
    (dates have their own `_undated` templates)."""

    def __missing__(self, key: str) -> str:
        return ""


class CardBuilder:
    def __init__(
        self,
        content: CardContent,
        terminology: Terminology,
        *,
        override_reasons: Mapping[str, Sequence[Mapping[str, str]]] | None = None,
        local_codings: Mapping[Orderable, LocalCodings] | None = None,
    ) -> None:
        """`override_reasons`: each topic's, as FHIR Codings, when a site changes them (None:
        the content's); `local_codings`: a site's codings of the suggested orders."""
        self._content = content
        self._terminology = terminology
        # Suggested orders validated so far, by orderable and by which optional elements they
        # carry. Only reference strings differ between two orders of one shape, and any
        # non-empty reference string is valid, so one validation answers for the whole shape.
        self._validated_shapes: set[tuple[Orderable, frozenset[str]]] = set()
        # Words that never change between requests, composed once.
        self._flag_names = {flag.value: name for flag, name in content.red_flag_names.items()}
        self._contraindication_names = {
            c.value: name for c, name in content.contraindication_names.items()
        }
        # The parts of a card that are the same for every patient. Cards are only ever
        # serialised, never changed, so every card of a topic can carry the same objects.
        self._sources = {topic: self._source(c) for topic, c in content.topics.items()}
        system = content.override_reason_system
        self._override_reasons = {
            topic: [
                dict(reason)
                for reason in (
                    override_reasons[topic]
                    if override_reasons is not None
                    else [
                        {"system": system, "code": r.code, "display": r.display}
                        for r in c.override_reasons
                    ]
                )
            ]
            for topic, c in content.topics.items()
        }
        # The site's codings of each suggested order, added to the standard ones.
        self._site_orders = local_codings or {}

    def order_code(self, orderable: Orderable) -> dict[str, Any]:
        """A suggested order's CodeableConcept as created: the standard codings (terminology)
        and the site's own."""
        code = self._terminology.orderable(orderable.value).code
        return _with_site_codings(code, self._site_orders.get(orderable))

    @property
    def order_codes(self) -> dict[str, dict[str, Any]]:
        """Every suggested order's CodeableConcept as created, by orderable name."""
        return {orderable.value: self.order_code(orderable) for orderable in Orderable}

    # --- words ------------------------------------------------------------------------------

    def duration_words(self, days: int | None) -> str:
        """Days below two weeks, weeks below six months, months after."""
        words = self._content.words
        if days is None:
            return words["unknown_duration"]
        if days == 1:
            return words["duration_one_day"]
        if days < 14:
            return words["duration_days"].format(days=days)
        if days < 182:
            return words["duration_weeks"].format(weeks=days // 7)
        return words["duration_months"].format(months=days // 30)

    def _fact_phrase(self, fact: Fact) -> str:
        content = self._content
        values: dict[str, str] = {}
        for key, value in fact.values.items():
            if value is None:
                continue
            if key == "duration_days":
                values["duration"] = self.duration_words(int(value))
            elif key == "flag":
                values[key] = self._flag_names.get(value, value)
            elif key == "contraindication":
                values[key] = self._contraindication_names.get(value, value)
            else:
                values[key] = value
        date_field = DATED_FACTS.get(fact.kind)
        if date_field is not None and date_field not in values:
            return content.undated_fact_templates[fact.kind].format_map(_Values(values))
        values.setdefault("duration", self.duration_words(None))
        return content.fact_templates[fact.kind].format_map(_Values(values))

    def _phrases(self, facts: Iterable[Fact]) -> list[str]:
        """Each fact's phrase, at most FACTS_PER_KIND of one kind, then how many more."""
        by_kind: dict[FactKind, list[Fact]] = {}
        for fact in facts:
            by_kind.setdefault(fact.kind, []).append(fact)
        phrases: list[str] = []
        for of_kind in by_kind.values():
            phrases += [self._fact_phrase(fact) for fact in of_kind[:FACTS_PER_KIND]]
            if len(of_kind) > FACTS_PER_KIND:
                count = f"{len(of_kind) - FACTS_PER_KIND:,}"
                phrases.append(self._content.words["more_facts"].format(count=count))
        return phrases

    def _facts_line(self, facts: Iterable[Fact]) -> str:
        phrases = self._phrases(facts)
        if not phrases:
            return ""
        return f"**{self._content.facts_heading}:** " + "; ".join(phrases) + "."

    def _flag_lines(self, finding: Finding, topic: TopicContent) -> str:
        """One line per red flag: its name, the facts that show it, the next step."""
        assert topic.flag_lines is not None
        new_line, known_line = topic.flag_lines
        facts_of: dict[str, list[Fact]] = {}
        for fact in finding.facts:
            if fact.kind in RED_FLAG_FACTS:
                facts_of.setdefault(str(fact.values.get("flag")), []).append(fact)
        lines = []
        for flag in finding.red_flags:
            words = topic.flags[flag]
            known = flag in finding.known_red_flags
            template = known_line if known else new_line
            name = self._content.red_flag_names[flag]
            lines.append(
                template.format(
                    name=name[:1].upper() + name[1:] if not known else name,
                    facts="; ".join(self._phrases(facts_of.get(flag.value, ()))),
                    next_step=(words.known_next_step if known else None) or words.next_step,
                )
            )
        return "\n".join(lines)

    def _evidence_line(self, finding: Finding, topic: TopicContent) -> str:
        """The source behind this card: the one for the finding's contraindication or red
        flag when the content names one, else the topic's first."""
        keys = {c.value for c in finding.contraindications} | {f.value for f in finding.red_flags}
        chosen = next((e for e in topic.evidence if e.applies_to & keys), topic.evidence[0])
        return f"**{self._content.evidence_heading}:** [{chosen.short}]({chosen.url})"

    def _red_flag_summary(self, finding: Finding, topic: TopicContent) -> dict[str, str]:
        if not finding.red_flags:
            return {"flag_summary": "", "more_flags": "", "lead_flag": ""}
        lead = finding.red_flags[0]
        words = topic.flags[lead]
        summary = words.summary
        if lead in finding.known_red_flags and words.known_summary:
            summary = words.known_summary
        more = len(finding.red_flags) - 1
        return {
            "lead_flag": self._content.red_flag_names[lead],
            "flag_summary": summary,
            "more_flags": self._content.words["more_flags"].format(count=more) if more else "",
        }

    def _values(
        self, finding: Finding, topic: TopicContent, context: CardContext
    ) -> dict[str, str]:
        content = self._content
        alternative = content.orderables[finding.alternative] if finding.alternative else None
        values = {
            "order": finding.order.label if finding.order else "",
            "alternative": alternative.display if alternative else "",
            "alternative_short": alternative.short if alternative else "",
            "red_flags": ", ".join(content.red_flag_names[f] for f in finding.red_flags),
            "contraindications": ", ".join(
                content.contraindication_names[c] for c in finding.contraindications
            ),
            "contraindication_risks": "; ".join(
                content.contraindication_risks[c] for c in finding.contraindications
            ),
            "duration": self.duration_words(context.pain_duration_days),
        }
        if topic.flag_lines is not None:
            values.update(self._red_flag_summary(finding, topic))
            values["flag_lines"] = self._flag_lines(finding, topic)
            # The red flags' facts are on their own lines; the rest goes on the facts line.
            values["facts"] = self._facts_line(
                f for f in finding.facts if f.kind not in RED_FLAG_FACTS
            )
        else:
            values["facts"] = self._facts_line(finding.facts)
        values["notes"] = " ".join(topic.notes[note].format_map(values) for note in finding.notes)
        values["evidence"] = self._evidence_line(finding, topic)
        return values

    # --- FHIR suggestions -------------------------------------------------------------------

    def _resource(self, orderable: Orderable, context: CardContext) -> dict[str, Any]:
        coded = self._terminology.orderable(orderable.value)
        words = self._content.orderables[orderable]
        resource: dict[str, Any] = {
            "resourceType": coded.resource_type,
            "status": "draft",
            "intent": "order",
            "subject": {"reference": f"Patient/{context.patient_id}"},
        }
        if context.encounter_id:
            resource["encounter"] = {"reference": f"Encounter/{context.encounter_id}"}
        if context.user_id and context.user_id.startswith(_REQUESTER_TYPES):
            resource["requester"] = {"reference": context.user_id}
        if context.condition_refs and coded.for_back_pain:
            resource["reasonReference"] = [{"reference": ref} for ref in context.condition_refs]
        code = _with_site_codings(coded.code, self._site_orders.get(orderable))
        if coded.resource_type == "MedicationRequest":
            resource["medicationCodeableConcept"] = dict(code)
            dosage: dict[str, Any] = {"text": words.instructions}
            if words.patient_instruction:
                dosage["patientInstruction"] = words.patient_instruction
            if coded.dosage:
                dosage.update(coded.dosage)
            resource["dosageInstruction"] = [dosage]
        else:
            resource["code"] = dict(code)
            if coded.category:
                resource["category"] = [dict(coded.category)]
            resource["note"] = [{"text": words.instructions}]
            if words.patient_instruction:
                resource["patientInstruction"] = words.patient_instruction
        # Validation is the guarantee that the EHR receives a well-formed R4 resource.
        shape = (orderable, frozenset(resource))
        if shape not in self._validated_shapes:
            get_fhir_model_class(coded.resource_type).model_validate(resource)
            self._validated_shapes.add(shape)
        return resource

    def _actions(
        self,
        finding: Finding,
        intent: SuggestionIntent,
        words: SuggestionContent,
        values: Mapping[str, str],
        context: CardContext,
    ) -> list[dict[str, Any]]:
        # The alternative comes first: a client that applies only the first action it
        # understands (the CDS Hooks sandbox) still ends with the alternative ordered.
        actions: list[dict[str, Any]] = []
        if intent.create and words.create:
            actions.append(
                {
                    "type": "create",
                    "description": words.create.format_map(values),
                    "resource": self._resource(intent.create, context),
                }
            )
        if intent.delete and intent.delete.reference and words.delete:
            # Identical drafts the card answers for too go with the draft it names.
            also = finding.same_orders if intent.delete == finding.order else ()
            actions += [
                {
                    "type": "delete",
                    "description": words.delete.format_map(values),
                    "resourceId": draft.reference,
                }
                for draft in (intent.delete, *also)
                if draft.reference
            ]
        return actions

    @staticmethod
    def _suggestion(label: str, actions: list[dict[str, Any]], recommended: bool) -> dict[str, Any]:
        suggestion: dict[str, Any] = {
            "label": label,
            "uuid": time_ordered_uuid(),
            "actions": actions,
        }
        if recommended:
            suggestion["isRecommended"] = True
        return suggestion

    def _suggestions(
        self,
        finding: Finding,
        topic: TopicContent,
        values: Mapping[str, str],
        context: CardContext,
    ) -> list[dict[str, Any]]:
        suggestions: list[dict[str, Any]] = []
        if context.options.profile is ClientProfile.SINGLE_ACTION:
            # One action each, described by its own words; an action two intents share (the
            # delete of "replace" and of "remove") is offered once.
            offered: set[str] = set()
            for intent in finding.suggestions:
                words = topic.suggestions[intent.kind]
                for action in self._actions(finding, intent, words, values, context):
                    key = action_signature(action)
                    if key not in offered:
                        offered.add(key)
                        suggestions.append(
                            self._suggestion(action["description"], [action], intent.recommended)
                        )
            return suggestions
        for intent in finding.suggestions:
            words = topic.suggestions[intent.kind]
            actions = self._actions(finding, intent, words, values, context)
            if actions:
                suggestions.append(
                    self._suggestion(words.label.format_map(values), actions, intent.recommended)
                )
        return suggestions

    # --- cards ------------------------------------------------------------------------------

    def _source(self, topic: TopicContent) -> dict[str, Any]:
        source: dict[str, Any] = {"label": topic.source_label}
        if topic.source_url:
            source["url"] = topic.source_url
        source["topic"] = {
            "system": self._content.topic_system,
            "code": topic.topic,
            "display": topic.title,
        }
        return source

    def card(self, finding: Finding, context: CardContext) -> dict[str, Any]:
        """The card's JSON (see `build` for the record the service keeps of it)."""
        return self.build(finding, context).json

    def build(self, finding: Finding, context: CardContext) -> CardRecord:
        content = self._content
        topic = content.topics[finding.topic]
        values = self._values(finding, topic, context)
        summary = topic.summary.format_map(values)
        if len(summary) > SUMMARY_TARGET:
            # Long order names: the shorter wording, which names no order.
            summary = topic.summary_fallback.format_map(values)
        indicator = finding.indicator or topic.indicator
        card: dict[str, Any] = {
            "uuid": time_ordered_uuid(),
            "summary": summary,
            "detail": _tidy(topic.detail.format_map(values)),
            "indicator": indicator.value,
            "source": self._sources[finding.topic],
        }
        suggestions = self._suggestions(finding, topic, values, context)
        if suggestions:
            card["suggestions"] = suggestions
            card["selectionBehavior"] = _SELECTION_BEHAVIOR[context.options.profile]
        if self._override_reasons[finding.topic]:
            card["overrideReasons"] = self._override_reasons[finding.topic]
        if context.options.guidance_base_url:
            card["links"] = [
                {
                    "label": content.words["guidance_link"],
                    "url": f"{context.options.guidance_base_url}/guidance/{finding.topic}",
                    "type": "absolute",
                }
            ]
        return CardRecord(
            topic=finding.topic,
            indicator=indicator.value,
            uuid=card["uuid"],
            suggestion_uuids=tuple(suggestion["uuid"] for suggestion in suggestions),
            json=card,
        )

    def cards(self, findings: tuple[Finding, ...], context: CardContext) -> list[CardRecord]:
        """Every finding's card, critical first (in finding order within an indicator)."""
        built = [self.build(finding, context) for finding in findings]
        built.sort(key=lambda c: _SEVERITY_ORDER[Indicator(c.indicator)])
        return built
