"""What one recommendation is: a pure decision over the patient's assessment, and everything
the rest of the service needs to know about it.

Each recommendation is one module of this package defining `UNIT`; `registry.py` lists them.
The card content loader and the card builder take their tables from the units, so adding a
recommendation is one rule module, one `cards/<topic>.toml` and its value sets
(docs/adding-a-recommendation.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cds_service.rules.assessment import Assessment
from cds_service.rules.findings import Finding, SuggestionKind
from cds_service.vocabulary import DataCategory


@dataclass(frozen=True)
class Recommendation:
    # Stable contract: `card.source.topic.code`, the cards/<topic>.toml file, the report.
    topic: str
    # Pure: assessment in, findings out. No I/O, no logging, no validation.
    evaluate: Callable[[Assessment], list[Finding]]
    # The data it reads; when any of it could not be had, the engine leaves it silent.
    needs: frozenset[DataCategory]
    # The suggestions its findings may carry; the content gives each its words.
    suggestions: frozenset[SuggestionKind] = frozenset()
    # The topic-specific placeholders its card words may use (see cards/README.md).
    placeholders: frozenset[str] = frozenset()
    # The sentences (keys of the content's [notes]) its findings may add.
    notes: frozenset[str] = frozenset()
    # General advice that a more specific card can carry for it: when other findings of the
    # same answer already suggest every order this one would, it is left out (rules/engine.py).
    general: bool = False
