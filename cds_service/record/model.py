"""One typed, read-only view of the patient: what the guideline rules look at.

Everything here is plain data; the codes have already been turned into concepts by the
terminology index, so rules ask "is this an opioid?" and never compare code strings.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from functools import cached_property

from cds_service.terminology.concepts import Concept
from cds_service.vocabulary import DataCategory

ACTIVE_CLINICAL_STATUSES = frozenset({"active", "recurrence", "relapse"})
INVALID_VERIFICATION_STATUSES = frozenset({"refuted", "entered-in-error"})
ACTIVE_ORDER_STATUSES = frozenset({"active", "on-hold", "draft"})


@dataclass(frozen=True)
class CodeFact:
    """A code as the record carries it, for naming the facts on a card."""

    system_label: str
    code: str
    display: str

    def __str__(self) -> str:
        label = f"{self.system_label} {self.code}".strip()
        return f"{label} {self.display}".strip() if self.display else label


@dataclass(frozen=True)
class ConditionEntry:
    resource_id: str | None
    concepts: frozenset[Concept]
    codes: tuple[CodeFact, ...]
    label: str
    clinical_status: str | None
    verification_status: str | None
    onset: date | None
    recorded: date | None

    @property
    def is_valid(self) -> bool:
        return self.verification_status not in INVALID_VERIFICATION_STATUSES

    @property
    def is_active(self) -> bool:
        return self.is_valid and (
            self.clinical_status is None or self.clinical_status in ACTIVE_CLINICAL_STATUSES
        )

    @property
    def start(self) -> date | None:
        return self.onset or self.recorded

    def first_code(self) -> CodeFact | None:
        return self.codes[0] if self.codes else None


@dataclass(frozen=True)
class OrderEntry:
    """A MedicationRequest or ServiceRequest: from the history or drafted in this session."""

    resource_type: str
    resource_id: str | None
    concepts: frozenset[Concept]
    codes: tuple[CodeFact, ...]
    label: str
    status: str | None
    authored: date | None
    reason_concepts: frozenset[Concept] = frozenset()
    reason_codes: tuple[CodeFact, ...] = ()
    is_draft: bool = False
    is_selected: bool = False

    @property
    def reference(self) -> str | None:
        return f"{self.resource_type}/{self.resource_id}" if self.resource_id else None

    @property
    def is_medication(self) -> bool:
        return self.resource_type == "MedicationRequest"

    @property
    def is_active(self) -> bool:
        return self.is_draft or (self.status or "active") in ACTIVE_ORDER_STATUSES

    def has(self, concept: Concept) -> bool:
        return concept in self.concepts

    def has_any(self, concepts: Iterable[Concept]) -> bool:
        return not self.concepts.isdisjoint(concepts)


@dataclass(frozen=True)
class ProcedureEntry:
    concepts: frozenset[Concept]
    codes: tuple[CodeFact, ...]
    label: str
    status: str | None
    performed: date | None


@dataclass(frozen=True)
class ObservationEntry:
    concepts: frozenset[Concept]
    codes: tuple[CodeFact, ...]
    value: float | None
    unit: str | None
    effective: date | None
    status: str | None


@dataclass(frozen=True)
class PatientRecord:
    patient_id: str
    hook: str
    today: date
    encounter_id: str | None = None
    user_id: str | None = None
    birth_date: date | None = None
    conditions: tuple[ConditionEntry, ...] = ()
    orders: tuple[OrderEntry, ...] = ()
    procedures: tuple[ProcedureEntry, ...] = ()
    observations: tuple[ObservationEntry, ...] = ()
    available: frozenset[DataCategory] = field(default_factory=lambda: frozenset(DataCategory))

    @property
    def age(self) -> int | None:
        if self.birth_date is None:
            return None
        born = self.birth_date
        had_birthday = (self.today.month, self.today.day) >= (born.month, born.day)
        return self.today.year - born.year - (0 if had_birthday else 1)

    # Derived views are computed once per record: the rules ask for them again and again.
    @cached_property
    def drafts(self) -> tuple[OrderEntry, ...]:
        return tuple(order for order in self.orders if order.is_draft)

    @cached_property
    def orders_under_review(self) -> tuple[OrderEntry, ...]:
        """The drafts the hook asks about: the selections at order-select, all at order-sign."""
        return tuple(order for order in self.drafts if order.is_selected)

    def has_data(self, *categories: DataCategory) -> bool:
        return all(category in self.available for category in categories)

    @cached_property
    def _conditions_by_concept(self) -> dict[Concept, tuple[ConditionEntry, ...]]:
        """Each concept's conditions, in record order (one pass instead of one per question)."""
        grouped: dict[Concept, list[ConditionEntry]] = {}
        for condition in self.conditions:
            for concept in condition.concepts:
                grouped.setdefault(concept, []).append(condition)
        return {concept: tuple(found) for concept, found in grouped.items()}

    def conditions_with(self, concept: Concept) -> tuple[ConditionEntry, ...]:
        return tuple(c for c in self._conditions_by_concept.get(concept, ()) if c.is_valid)

    def active_conditions_with(self, concept: Concept) -> tuple[ConditionEntry, ...]:
        return tuple(c for c in self._conditions_by_concept.get(concept, ()) if c.is_active)

    def days_since(self, when: date | None) -> int | None:
        return None if when is None else (self.today - when).days
