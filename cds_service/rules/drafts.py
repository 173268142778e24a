"""Small helpers the recommendations share: the drafts under review and the suggestions that
act on them."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from cds_service.record.model import OrderEntry
from cds_service.rules.assessment import Assessment, order_words
from cds_service.rules.findings import (
    Fact,
    FactKind,
    Orderable,
    OrderRef,
    SuggestionIntent,
    SuggestionKind,
)


def ref(order: OrderEntry) -> OrderRef:
    return OrderRef(order.reference, order_words(order))


def order_fact(order: OrderEntry) -> Fact:
    """A draft named only among the facts: a card about the draft names it in its action."""
    return Fact.of(FactKind.DRAFT_ORDER, order=order_words(order))


def drafts(assessment: Assessment, predicate: Callable[[OrderEntry], bool]) -> Iterable[OrderEntry]:
    """The orders under review (the selections at order-select, all drafts at order-sign)."""
    return (o for o in assessment.record.orders_under_review if predicate(o))


def removal(
    order: OrderEntry, kind: SuggestionKind = SuggestionKind.REMOVE
) -> SuggestionIntent | None:
    """Suggestions can only delete a draft the EHR can name."""
    return SuggestionIntent(kind, delete=ref(order)) if order.reference else None


def replacement(order: OrderEntry, alternative: Orderable) -> SuggestionIntent:
    return SuggestionIntent(
        SuggestionKind.REPLACE,
        delete=ref(order) if order.reference else None,
        create=alternative,
        recommended=True,
    )


def referral(orderable: Orderable) -> SuggestionIntent:
    """A referral the guideline recommends, created beside whatever is drafted."""
    return SuggestionIntent(SuggestionKind.REFER, create=orderable, recommended=True)


def present(*suggestions: SuggestionIntent | None) -> tuple[SuggestionIntent, ...]:
    return tuple(s for s in suggestions if s is not None)


def applicable(*notes: tuple[str, bool]) -> tuple[str, ...]:
    """The notes whose condition holds, in the order given."""
    return tuple(note for note, applies in notes if applies)
