"""Build the patient record view from the FHIR data a request brought or the service fetched.

Codes are matched on the raw JSON first, which is cheap; only resources that mean something to
the guideline become entries, and each of those is checked first (`fhir.checks`: the elements
read here, held to the rules of FHIR R4). A resource that fails is skipped and logged, so the
record holds only well-formed entries and the rules never validate anything. On a record of
thousands of resources this keeps the work proportional to what matters.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from cds_service.fhir.checks import well_formed
from cds_service.fhir.parsing import to_date
from cds_service.performance import remembered
from cds_service.record.model import (
    CodeFact,
    ConditionEntry,
    ObservationEntry,
    OrderEntry,
    PatientRecord,
    ProcedureEntry,
)
from cds_service.terminology.concepts import Concept
from cds_service.terminology.index import (
    CPT,
    ICD10CM,
    LOINC,
    RXNORM,
    SNOMED,
    Terminology,
    canonical_system,
)
from cds_service.vocabulary import DataCategory

log = logging.getLogger(__name__)

_SYSTEM_LABELS = {
    ICD10CM: "ICD-10-CM",
    SNOMED: "SNOMED CT",
    RXNORM: "RxNorm",
    LOINC: "LOINC",
    CPT: "CPT",
}

# Units are compared in one scale: temperatures in Celsius, weights in kilograms.
_TEMPERATURE_UNITS = {
    "cel": "C",
    "c": "C",
    "°c": "C",
    "[degf]": "F",
    "degf": "F",
    "f": "F",
    "°f": "F",
}
_WEIGHT_FACTORS = {
    "kg": 1.0,
    "g": 0.001,
    "[lb_av]": 0.45359237,
    "lb": 0.45359237,
    "lbs": 0.45359237,
}

_IGNORED_OBSERVATION_STATUSES = frozenset({"entered-in-error", "cancelled"})
_IGNORED_PROCEDURE_STATUSES = frozenset({"entered-in-error", "not-done"})
_IGNORED_ORDER_STATUSES = frozenset({"entered-in-error"})


@dataclass(frozen=True)
class RecordInput:
    """Everything the builder needs, independent of where the data came from."""

    patient_id: str
    hook: str
    today: date
    encounter_id: str | None
    user_id: str | None
    draft_orders: Sequence[dict[str, Any]]
    selections: frozenset[str] | None  # None: every draft is under review (order-sign)
    data: Mapping[DataCategory, Sequence[dict[str, Any]] | None]  # None: could not be had


def _items(value: Any) -> list[Any]:
    """A repeating element as a list, whatever shape a sloppy sender gave it."""
    if isinstance(value, list):
        return value
    return [value] if isinstance(value, dict) else []


@remembered(4096)
def _code_fact(system: str | None, code: str, display: str) -> CodeFact:
    # The same codes come back call after call: one shared, immutable fact per coding.
    canonical = canonical_system(system)
    return CodeFact(_SYSTEM_LABELS.get(canonical, canonical), code, display)


def _facts_for(codeable: Any, terminology: Terminology) -> tuple[CodeFact, ...]:
    """The codings of a CodeableConcept as facts: those the value sets know, else all."""
    if not isinstance(codeable, dict):
        return ()
    matched: list[CodeFact] = []
    every: list[CodeFact] = []
    for coding in _items(codeable.get("coding")):
        if not isinstance(coding, dict):
            continue
        code = coding.get("code")
        if not isinstance(code, str):
            continue
        system = coding.get("system")
        system = system if isinstance(system, str) else None
        display = coding.get("display")
        fact = _code_fact(system, code, display if isinstance(display, str) else "")
        every.append(fact)
        if terminology.concepts_for_code(system, code):
            matched.append(fact)
    return tuple(matched or every)


def _status(raw: dict[str, Any]) -> str | None:
    """A resource's status code; anything but a string (a sloppy sender's list) is none."""
    status = raw.get("status")
    return status if isinstance(status, str) else None


def _label(codeable: Any) -> str:
    if not isinstance(codeable, dict):
        return ""
    text = codeable.get("text")
    if isinstance(text, str) and text.strip():
        return text.strip()
    for coding in _items(codeable.get("coding")):
        if isinstance(coding, dict):
            for key in ("display", "code"):
                value = coding.get(key)
                if isinstance(value, str) and value.strip():
                    return value.strip()
    return ""


def _status_code(codeable: Any) -> str | None:
    if isinstance(codeable, dict):
        for coding in _items(codeable.get("coding")):
            code = coding.get("code") if isinstance(coding, dict) else None
            if isinstance(code, str):
                return code
    return None


def _reasons(
    raw: dict[str, Any], terminology: Terminology
) -> tuple[frozenset[Concept], tuple[CodeFact, ...]]:
    concepts: set[Concept] = set()
    facts: list[CodeFact] = []
    for reason in _items(raw.get("reasonCode")):
        found = terminology.concepts_for_codeable(reason)
        if found:
            concepts |= found
            facts.extend(_facts_for(reason, terminology))
    return frozenset(concepts), tuple(facts)


class _MedicationResolver:
    """Finds the Medication a MedicationRequest points at: contained, or elsewhere in the data."""

    def __init__(self, resources: Iterable[dict[str, Any]]) -> None:
        # Set when a reference points outside the resources given: a draft-only view of the
        # call cannot know that medication, the patient's data may.
        self.unresolved = False
        self._by_reference = {
            f"Medication/{r['id']}": r
            for r in resources
            if r.get("resourceType") == "Medication" and isinstance(r.get("id"), str)
        }

    def medication_of(self, request: dict[str, Any]) -> tuple[Any, Any]:
        """(code CodeableConcept, dose form CodeableConcept) of the requested medication."""
        if isinstance(request.get("medicationCodeableConcept"), dict):
            return request["medicationCodeableConcept"], None
        reference = request.get("medicationReference")
        if not isinstance(reference, dict):
            return None, None
        target = reference.get("reference")
        medication = None
        if isinstance(target, str):
            if target.startswith("#"):
                for contained in _items(request.get("contained")):
                    if isinstance(contained, dict) and contained.get("id") == target[1:]:
                        medication = contained
            else:
                medication = self._by_reference.get(target) or self._by_reference.get(
                    "Medication/" + target.rsplit("/", 1)[-1]
                )
                if medication is None:
                    self.unresolved = True
                elif not well_formed(medication):
                    medication = None  # read as if only its display were known
        if isinstance(medication, dict):
            return medication.get("code"), medication.get("form")
        display = reference.get("display")
        return ({"text": display} if isinstance(display, str) else None), None


def _medication_concepts(
    request: dict[str, Any], resolver: _MedicationResolver, terminology: Terminology
) -> tuple[Any, frozenset[Concept]]:
    code, form = resolver.medication_of(request)
    concepts = set(terminology.concepts_for_codeable(code))
    concepts |= terminology.concepts_for_codeable(form)
    for dosage in _items(request.get("dosageInstruction")):
        if isinstance(dosage, dict):
            concepts |= terminology.concepts_for_codeable(dosage.get("route"))
    return code, frozenset(concepts)


@dataclass(frozen=True)
class DraftOrders:
    """The orders under review of one call, built from the drafts alone."""

    orders: tuple[OrderEntry, ...]
    # False when a draft names a Medication that is not among the drafts: only a build with
    # the patient's data (where an _include'd Medication may be) can say what it is.
    complete: bool


class RecordBuilder:
    def __init__(self, terminology: Terminology) -> None:
        self._terminology = terminology

    def draft_orders(self, source: RecordInput) -> DraftOrders:
        resolver = _MedicationResolver(source.draft_orders)
        orders = self._draft_orders(source, resolver)
        return DraftOrders(tuple(orders), complete=not resolver.unresolved)

    def build(
        self, source: RecordInput, drafts: Sequence[OrderEntry] | None = None
    ) -> PatientRecord:
        """The record view of a call. `drafts`: its orders under review, already built from
        the same drafts by `draft_orders` (complete), so they are not built twice."""
        data = source.data
        available = frozenset(category for category, value in data.items() if value is not None)
        history_meds = list(data.get(DataCategory.MEDICATIONS) or ())
        resolver = _MedicationResolver([*source.draft_orders, *history_meds])

        if drafts is None:
            drafts = self._draft_orders(source, resolver)
        draft_refs = {order.reference for order in drafts if order.reference}
        history = [
            order
            for order in self._history_orders(
                [*history_meds, *(data.get(DataCategory.SERVICE_REQUESTS) or ())], resolver
            )
            if order.reference not in draft_refs
        ]
        return PatientRecord(
            patient_id=source.patient_id,
            hook=source.hook,
            today=source.today,
            encounter_id=source.encounter_id,
            user_id=source.user_id,
            birth_date=self._birth_date(data.get(DataCategory.PATIENT), source.patient_id),
            conditions=tuple(self._conditions(data.get(DataCategory.CONDITIONS) or ())),
            orders=(*drafts, *history),
            procedures=tuple(self._procedures(data.get(DataCategory.PROCEDURES) or ())),
            observations=tuple(self._observations(data.get(DataCategory.OBSERVATIONS) or ())),
            available=available,
        )

    def _birth_date(
        self, patients: Sequence[dict[str, Any]] | None, patient_id: str
    ) -> date | None:
        for raw in patients or ():
            if raw.get("resourceType") != "Patient":
                continue
            if raw.get("id") not in (None, patient_id):
                continue
            if well_formed(raw):
                return to_date(raw.get("birthDate"))
        return None

    def _conditions(self, resources: Iterable[dict[str, Any]]) -> Iterable[ConditionEntry]:
        terminology = self._terminology
        for raw in resources:
            if raw.get("resourceType") != "Condition":
                continue
            concepts = terminology.concepts_for_codeable(raw.get("code"))
            if not concepts or not well_formed(raw):
                continue
            onset = raw.get("onsetDateTime")
            if onset is None and isinstance(raw.get("onsetPeriod"), dict):
                onset = raw["onsetPeriod"].get("start")
            yield ConditionEntry(
                resource_id=raw.get("id"),
                concepts=concepts,
                codes=_facts_for(raw.get("code"), terminology),
                label=_label(raw.get("code")),
                clinical_status=_status_code(raw.get("clinicalStatus")),
                verification_status=_status_code(raw.get("verificationStatus")),
                onset=to_date(onset),
                recorded=to_date(raw.get("recordedDate")),
            )

    def _order_concepts(
        self, raw: dict[str, Any], resolver: _MedicationResolver
    ) -> tuple[Any, frozenset[Concept]]:
        """(code CodeableConcept, concepts) of what an order requests."""
        if raw["resourceType"] == "MedicationRequest":
            return _medication_concepts(raw, resolver, self._terminology)
        code = raw.get("code")
        return code, self._terminology.concepts_for_codeable(code)

    def _order(
        self,
        raw: dict[str, Any],
        resolver: _MedicationResolver,
        *,
        is_draft: bool,
        is_selected: bool,
        ordered: tuple[Any, frozenset[Concept]] | None = None,
    ) -> OrderEntry:
        terminology = self._terminology
        resource_type = raw["resourceType"]
        code, concepts = ordered or self._order_concepts(raw, resolver)
        reason_concepts, reason_codes = _reasons(raw, terminology)
        return OrderEntry(
            resource_type=resource_type,
            resource_id=raw.get("id") if isinstance(raw.get("id"), str) else None,
            concepts=concepts,
            codes=_facts_for(code, terminology),
            label=_label(code) or resource_type,
            status=_status(raw),
            authored=to_date(raw.get("authoredOn")),
            reason_concepts=reason_concepts,
            reason_codes=reason_codes,
            is_draft=is_draft,
            is_selected=is_selected,
        )

    def _draft_orders(self, source: RecordInput, resolver: _MedicationResolver) -> list[OrderEntry]:
        drafts: list[OrderEntry] = []
        for raw in source.draft_orders:
            if raw.get("resourceType") not in {"MedicationRequest", "ServiceRequest"}:
                continue
            # Drafts are always checked: the rules act on them and suggestions point at them.
            if not well_formed(raw, draft=True):
                continue
            reference = f"{raw['resourceType']}/{raw.get('id')}"
            selected = source.selections is None or reference in source.selections
            drafts.append(self._order(raw, resolver, is_draft=True, is_selected=selected))
        return drafts

    def _history_orders(
        self, resources: Iterable[dict[str, Any]], resolver: _MedicationResolver
    ) -> Iterable[OrderEntry]:
        for raw in resources:
            if raw.get("resourceType") not in {"MedicationRequest", "ServiceRequest"}:
                continue
            if _status(raw) in _IGNORED_ORDER_STATUSES:
                continue
            ordered = self._order_concepts(raw, resolver)
            if not ordered[1] or not well_formed(raw):
                continue
            yield self._order(raw, resolver, is_draft=False, is_selected=False, ordered=ordered)

    def _procedures(self, resources: Iterable[dict[str, Any]]) -> Iterable[ProcedureEntry]:
        terminology = self._terminology
        for raw in resources:
            if raw.get("resourceType") != "Procedure":
                continue
            if _status(raw) in _IGNORED_PROCEDURE_STATUSES:
                continue
            concepts = terminology.concepts_for_codeable(raw.get("code"))
            if not concepts or not well_formed(raw):
                continue
            performed = raw.get("performedDateTime")
            if performed is None and isinstance(raw.get("performedPeriod"), dict):
                performed = raw["performedPeriod"].get("start")
            yield ProcedureEntry(
                concepts=concepts,
                codes=_facts_for(raw.get("code"), terminology),
                label=_label(raw.get("code")),
                status=_status(raw),
                performed=to_date(performed),
            )

    def _observations(self, resources: Iterable[dict[str, Any]]) -> Iterable[ObservationEntry]:
        terminology = self._terminology
        for raw in resources:
            if raw.get("resourceType") != "Observation":
                continue
            if _status(raw) in _IGNORED_OBSERVATION_STATUSES:
                continue
            concepts = terminology.concepts_for_codeable(raw.get("code"))
            if not concepts or not well_formed(raw):
                continue
            value, unit = _quantity(raw.get("valueQuantity"), concepts)
            effective = raw.get("effectiveDateTime") or raw.get("effectiveInstant")
            if effective is None and isinstance(raw.get("effectivePeriod"), dict):
                effective = raw["effectivePeriod"].get("start")
            yield ObservationEntry(
                concepts=concepts,
                codes=_facts_for(raw.get("code"), terminology),
                value=value,
                unit=unit,
                effective=to_date(effective or raw.get("issued")),
                status=_status(raw),
            )


def _quantity(quantity: Any, concepts: frozenset[Concept]) -> tuple[float | None, str | None]:
    """A measured value in the service's scale: Celsius for temperature, kg for weight."""
    if not isinstance(quantity, dict) or not isinstance(quantity.get("value"), int | float):
        return None, None
    value = float(quantity["value"])
    unit = str(quantity.get("code") or quantity.get("unit") or "").strip().lower()
    if Concept.BODY_TEMPERATURE in concepts:
        scale = _TEMPERATURE_UNITS.get(unit)
        if scale == "F":
            return (value - 32.0) * 5.0 / 9.0, "Cel"
        if scale == "C":
            return value, "Cel"
        return None, None
    if Concept.BODY_WEIGHT in concepts:
        factor = _WEIGHT_FACTORS.get(unit)
        return (value * factor, "kg") if factor is not None else (None, None)
    return value, unit or None
