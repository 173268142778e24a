"""Value sets as data: load once per worker, then answer "which concepts does this code mean?".

The index maps `(canonical system, normalised code)` to the concepts whose value sets hold that
code. Code systems arrive under several spellings (OIDs, http/https, trailing slashes), and
ICD-10-CM codes with or without their dot, so both sides are normalised the same way.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from cds_service.performance import Memo, remembered, worth_remembering
from cds_service.terminology.concepts import Concept

ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
LOINC = "http://loinc.org"
CPT = "http://www.ama-assn.org/go/cpt"
HCPCS = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
ICD10PCS = "http://www.cms.gov/Medicare/Coding/ICD10"

# Spellings seen in EHR traffic and in published value sets, mapped to one canonical URI.
_SYSTEM_ALIASES: dict[str, str] = {
    "urn:oid:2.16.840.1.113883.6.90": ICD10CM,
    "http://hl7.org/fhir/sid/icd-10": ICD10CM,
    "urn:oid:2.16.840.1.113883.6.96": SNOMED,
    "urn:oid:2.16.840.1.113883.6.88": RXNORM,
    "urn:oid:2.16.840.1.113883.6.1": LOINC,
    "urn:oid:2.16.840.1.113883.6.12": CPT,
    "urn:oid:2.16.840.1.113883.6.285": HCPCS,
    "urn:oid:2.16.840.1.113883.6.4": ICD10PCS,
    "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets": HCPCS,
    "http://www.nlm.nih.gov/research/umls/hcpcs": HCPCS,
    "https://www.cms.gov/Medicare/Coding/ICD10": ICD10PCS,
}

_UNDOTTED_SYSTEMS = frozenset({ICD10CM})

_NO_CONCEPTS: frozenset[Concept] = frozenset()
# Text matching runs every concept's pattern over a text, and the same texts (displays of the
# same codes) arrive in call after call, so each worker remembers what a text means. Bounded:
# long free text is not remembered, and the memory starts afresh when full.
TEXT_MEMORY_ENTRIES = 20_000
# Codings as sent (system spelling, code) to their concepts, per worker, for the same reason.
CODE_MEMORY_ENTRIES = 50_000


@remembered(1024)
def canonical_system(system: str | None) -> str:
    # Cached: a handful of system URIs make up nearly every coding the service reads.
    if not system:
        return ""
    cleaned = system.strip().rstrip("/")
    if cleaned in _SYSTEM_ALIASES:
        return _SYSTEM_ALIASES[cleaned]
    if cleaned.startswith("https://"):
        http_form = "http://" + cleaned[len("https://") :]
        return _SYSTEM_ALIASES.get(http_form, http_form)
    return cleaned


def normalise_code(system: str, code: str) -> str:
    cleaned = code.strip()
    if system in _UNDOTTED_SYSTEMS:
        return cleaned.replace(".", "").upper()
    return cleaned


@dataclass(frozen=True)
class Coded:
    """One code as a value set lists it."""

    system: str
    code: str
    display: str


@dataclass(frozen=True)
class Orderable:
    """Something the service may suggest creating: the coded parts of a suggested order."""

    name: str
    resource_type: str
    code: Mapping[str, Any]
    category: Mapping[str, Any] | None = None
    # Coded parts of a medicine's FHIR Dosage (timing, route, dose); the words are card content.
    dosage: Mapping[str, Any] | None = None
    # Whether the back pain is the order's reason (reasonReference); not for, say, a PPI that
    # protects the stomach from an NSAID.
    for_back_pain: bool = True


@dataclass
class Terminology:
    """Concept index over all value sets, built once per worker."""

    code_index: dict[tuple[str, str], frozenset[Concept]]
    text_patterns: dict[Concept, re.Pattern[str]]
    value_set_ids: frozenset[str]
    orderables: dict[str, Orderable]
    concept_value_sets: dict[Concept, tuple[str, ...]] = field(default_factory=dict)
    concept_codes: dict[Concept, tuple[Coded, ...]] = field(default_factory=dict)
    _text_memory: Memo[str, frozenset[Concept]] = field(
        default_factory=lambda: Memo(TEXT_MEMORY_ENTRIES), init=False, repr=False, compare=False
    )
    _code_memory: Memo[tuple[str | None, str], frozenset[Concept]] = field(
        default_factory=lambda: Memo(CODE_MEMORY_ENTRIES), init=False, repr=False, compare=False
    )
    # Whole codings (system, code, display as sent) to their concepts.
    _coding_memory: Memo[tuple[Any, Any, Any], frozenset[Concept]] = field(
        default_factory=lambda: Memo(CODE_MEMORY_ENTRIES), init=False, repr=False, compare=False
    )
    # One object per distinct concept set, so that "the same set again" is an identity check
    # and a codeable whose code and display mean the same thing costs no set union.
    _interned: Memo[frozenset[Concept], frozenset[Concept]] = field(
        default_factory=lambda: Memo(CODE_MEMORY_ENTRIES), init=False, repr=False, compare=False
    )

    @property
    def code_count(self) -> int:
        return len(self.code_index)

    def concepts_for_code(self, system: str | None, code: str | None) -> frozenset[Concept]:
        if not code:
            return _NO_CONCEPTS
        memory = self._code_memory
        found = memory.get((system, code))
        if found is None:
            canonical = canonical_system(system)
            found = self.code_index.get((canonical, normalise_code(canonical, code)), _NO_CONCEPTS)
            memory.keep((system, code), found)
        return found

    def concepts_for_text(self, text: str | None) -> frozenset[Concept]:
        if not text:
            return _NO_CONCEPTS
        memory = self._text_memory
        found = memory.get(text)
        if found is None:
            found = frozenset(
                concept for concept, pattern in self.text_patterns.items() if pattern.search(text)
            )
            if worth_remembering(text):
                found = memory.keep(text, self._intern(found))
        return found

    def _intern(self, concepts: frozenset[Concept]) -> frozenset[Concept]:
        found = self._interned.get(concepts)
        return found if found is not None else self._interned.keep(concepts, concepts)

    def _union(self, found: frozenset[Concept], more: frozenset[Concept]) -> frozenset[Concept]:
        if not found:
            return more
        if not more or more is found or more <= found:
            return found
        return self._intern(found | more)

    def concepts_for_coding(self, coding: Mapping[str, Any]) -> frozenset[Concept]:
        """Concepts of one raw Coding dict: its code in its system, and its display."""
        system, code, display = coding.get("system"), coding.get("code"), coding.get("display")
        key: tuple[Any, Any, Any] | None = (system, code, display)
        memory = self._coding_memory
        try:
            found = memory.get(key)  # type: ignore[arg-type]
        except TypeError:  # a list or dict where a string belongs: nothing to remember
            found, key = None, None
        if found is not None:
            return found
        found = _NO_CONCEPTS
        if isinstance(code, str):
            found = self.concepts_for_code(system if isinstance(system, str) else None, code)
        if isinstance(display, str):
            found = self._union(found, self.concepts_for_text(display))
        found = self._intern(found)
        if key is not None and worth_remembering(system, code, display):
            memory.keep(key, found)
        return found

    def concepts_for_codeable(self, codeable: Any) -> frozenset[Concept]:
        """Concepts of a raw CodeableConcept dict: every coding, plus its text and displays."""
        if not isinstance(codeable, dict):
            return _NO_CONCEPTS
        found = _NO_CONCEPTS
        codings = codeable.get("coding")
        if isinstance(codings, list):
            for coding in codings:
                if isinstance(coding, dict):
                    found = self._union(found, self.concepts_for_coding(coding))
        text = codeable.get("text")
        if isinstance(text, str):
            found = self._union(found, self.concepts_for_text(text))
        return found

    def codes_of(self, concept: Concept, system: str) -> tuple[str, ...]:
        """The codes of one system that make up a concept, in value-set order, without repeats."""
        wanted = canonical_system(system)
        return tuple(
            dict.fromkeys(c.code for c in self.concept_codes.get(concept, ()) if c.system == wanted)
        )

    def orderable(self, name: str) -> Orderable:
        return self.orderables[name]


def _data_files() -> Any:
    return resources.files("cds_service.terminology") / "data"


def load_terminology() -> Terminology:
    """Read the packaged value sets and concept definitions and build the index."""
    data = _data_files()
    concepts_doc = json.loads((data / "concepts.json").read_text(encoding="utf-8"))
    value_sets: dict[str, list[Coded]] = {}
    for entry in sorted((data / "valuesets").iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".json"):
            continue
        doc = json.loads(entry.read_text(encoding="utf-8"))
        value_sets[doc["id"]] = [
            Coded(canonical_system(c["system"]), c["code"], c.get("display", ""))
            for c in doc["codes"]
        ]
    orderables_doc = json.loads((data / "orderables.json").read_text(encoding="utf-8"))
    return build_terminology(concepts_doc, value_sets, orderables_doc)


def build_terminology(
    concepts_doc: Mapping[str, Any],
    value_sets: Mapping[str, Iterable[Coded]],
    orderables_doc: Mapping[str, Any],
) -> Terminology:
    index: dict[tuple[str, str], set[Concept]] = {}
    patterns: dict[Concept, re.Pattern[str]] = {}
    concept_sets: dict[Concept, tuple[str, ...]] = {}
    concept_codes: dict[Concept, tuple[Coded, ...]] = {}
    definitions = concepts_doc["concepts"]
    unknown = set(definitions) - {c.value for c in Concept}
    if unknown:
        raise ValueError(f"concepts.json defines unknown concepts: {sorted(unknown)}")
    for concept in Concept:
        definition = definitions.get(concept.value)
        if definition is None:
            raise ValueError(f"concepts.json does not define concept {concept.value!r}")
        set_ids = tuple(definition.get("valueSets", ()))
        concept_sets[concept] = set_ids
        members: list[Coded] = []
        for set_id in set_ids:
            if set_id not in value_sets:
                raise ValueError(f"concept {concept.value!r} names missing value set {set_id!r}")
            members.extend(value_sets[set_id])
            for coded in value_sets[set_id]:
                key = (coded.system, normalise_code(coded.system, coded.code))
                index.setdefault(key, set()).add(concept)
        concept_codes[concept] = tuple(members)
        text = definition.get("textPatterns") or []
        if text:
            patterns[concept] = re.compile("|".join(f"(?:{p})" for p in text), re.IGNORECASE)
    orderables = {
        name: Orderable(
            name=name,
            resource_type=spec["resourceType"],
            code=spec["code"],
            category=spec.get("category"),
            dosage=spec.get("dosage"),
            for_back_pain=spec.get("forBackPain", True),
        )
        for name, spec in orderables_doc["orderables"].items()
    }
    return Terminology(
        code_index={key: frozenset(value) for key, value in index.items()},
        text_patterns=patterns,
        value_set_ids=frozenset(value_sets),
        orderables=orderables,
        concept_value_sets=concept_sets,
        concept_codes=concept_codes,
    )
