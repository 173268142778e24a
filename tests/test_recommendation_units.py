"""One unit per recommendation: the card content and the card builder take their tables from
the units, so a new recommendation is one rule module, one cards/<topic>.toml and its value sets.
"""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pytest
from conftest import PROJECT_ROOT

from cds_service.card_builder.builder import CardBuilder, CardContext
from cds_service.card_builder.content import ContentError, load_card_content
from cds_service.protocol.request import schema_problems
from cds_service.record.model import (
    CodeFact,
    ConditionEntry,
    OrderEntry,
    PatientRecord,
)
from cds_service.rules.assessment import Assessment
from cds_service.rules.drafts import drafts, present, ref, removal
from cds_service.rules.engine import evaluate
from cds_service.rules.findings import Finding, SuggestionKind
from cds_service.rules.registry import BY_TOPIC, RECOMMENDATIONS, TOPICS
from cds_service.rules.unit import Recommendation
from cds_service.runtime import Runtime
from cds_service.terminology.concepts import Concept
from cds_service.vocabulary import DataCategory

TODAY = date(2026, 11, 22)


def test_topic_codes_are_unique_and_each_has_its_card_file() -> None:
    assert len(TOPICS) == len(set(TOPICS)) == len(BY_TOPIC)
    for topic in TOPICS:
        assert (PROJECT_ROOT / "cards" / f"{topic}.toml").is_file()


def test_every_unit_names_only_what_the_card_builder_can_fill(runtime: Runtime) -> None:
    for unit in RECOMMENDATIONS:
        content = runtime.content.topics[unit.topic]
        assert set(content.suggestions) == set(unit.suggestions)
        assert set(content.notes) == set(unit.notes)


# --- a new recommendation, added the documented way ----------------------------------------

TOPIC = "avoid-muscle-relaxant-demo"


def _evaluate(a: Assessment) -> list[Finding]:
    return [
        Finding(
            topic=TOPIC,
            facts=a.back_pain_facts,
            order=ref(order),
            suggestions=present(removal(order)),
            notes=("long-course",) if a.pain_duration_days and a.pain_duration_days > 14 else (),
        )
        for order in drafts(a, lambda o: o.has(Concept.OPIOID))
    ]


DEMO = Recommendation(
    topic=TOPIC,
    evaluate=_evaluate,
    needs=frozenset({DataCategory.CONDITIONS}),
    suggestions=frozenset({SuggestionKind.REMOVE}),
    placeholders=frozenset({"order"}),
    notes=frozenset({"long-course"}),
)

DEMO_CARD = '''
topic = "avoid-muscle-relaxant-demo"
title = "A demonstration recommendation"
indicator = "info"
summary = "Reconsider {order} for back pain"
summary_fallback = "Reconsider this order for back pain"
detail = """
Consider removing **{order}**.

{notes}

**Why:** a demonstration.

{facts}

{evidence}
"""

[notes]
long-course = "The pain has lasted {duration}."

[[evidence]]
short = "Demo 2026"
citation = "Demo A. A demonstration. 2026."
url = "https://example.org/demo"
finding = "It demonstrates."

[guidance]
patient_title = "A demonstration"
clinician = "What to do."
patient = "What it means for you."

[suggestions.remove]
label = "Remove {order}"
delete = "Remove the draft order for {order}"
'''


@pytest.fixture
def cards_with_demo(tmp_path: Path) -> Path:
    folder = tmp_path / "cards"
    shutil.copytree(PROJECT_ROOT / "cards", folder)
    (folder / f"{TOPIC}.toml").write_text(DEMO_CARD, encoding="utf-8")
    return folder


def test_a_new_unit_and_its_card_file_are_all_a_new_topic_needs(
    cards_with_demo: Path, runtime: Runtime
) -> None:
    units = (*RECOMMENDATIONS, DEMO)
    content = load_card_content(cards_with_demo, units)
    back_pain = ConditionEntry(
        resource_id="lbp",
        concepts=frozenset({Concept.BACK_PAIN_LOW}),
        codes=(CodeFact("ICD-10-CM", "M54.50", "Low back pain, unspecified"),),
        label="Low back pain",
        clinical_status="active",
        verification_status="confirmed",
        onset=date(2026, 10, 1),
        recorded=None,
    )
    draft = OrderEntry(
        resource_type="MedicationRequest",
        resource_id="rx1",
        concepts=frozenset({Concept.OPIOID}),
        codes=(),
        label="tramadol 50 mg",
        status="draft",
        authored=TODAY,
        is_draft=True,
        is_selected=True,
    )
    record = PatientRecord(
        patient_id="p1", hook="order-sign", today=TODAY, conditions=(back_pain,), orders=(draft,)
    )
    evaluation = evaluate(record, (DEMO,))
    [finding] = evaluation.findings
    context = CardContext(patient_id="p1", pain_duration_days=evaluation.pain_duration_days)
    card = CardBuilder(content, runtime.terminology).card(finding, context)
    assert card["source"]["topic"]["code"] == TOPIC
    assert card["summary"] == "Reconsider tramadol 50 mg for back pain"
    assert "The pain has lasted 7 weeks." in card["detail"]
    assert card["suggestions"][0]["actions"][0]["resourceId"] == "MedicationRequest/rx1"
    assert schema_problems("response", {"cards": [card]}) == []


def test_a_unit_without_its_card_file_or_words_is_refused(cards_with_demo: Path) -> None:
    (cards_with_demo / f"{TOPIC}.toml").unlink()
    with pytest.raises(ContentError, match=f"{TOPIC}.toml is missing"):
        load_card_content(cards_with_demo, (*RECOMMENDATIONS, DEMO))
    (cards_with_demo / f"{TOPIC}.toml").write_text(DEMO_CARD.replace("[notes]", "[notez]"))
    with pytest.raises(ContentError, match=r"\[notes\] must be exactly \['long-course'\]"):
        load_card_content(cards_with_demo, (*RECOMMENDATIONS, DEMO))
    (cards_with_demo / f"{TOPIC}.toml").write_text(DEMO_CARD)
    greedy = Recommendation(
        topic=TOPIC,
        evaluate=_evaluate,
        needs=frozenset(),
        placeholders=frozenset({"patient_name"}),
    )
    with pytest.raises(ContentError, match="declares unknown placeholders"):
        load_card_content(cards_with_demo, (*RECOMMENDATIONS, greedy))
