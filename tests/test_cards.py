"""Card content (cards/) and card building: valid CDS Hooks cards with valid FHIR suggestions."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.medicationrequest import MedicationRequest
from fhir.resources.R4B.servicerequest import ServiceRequest

from cds_service.card_builder.builder import CardBuilder, CardContext, CardOptions
from cds_service.card_builder.content import ContentError, content_root, load_card_content
from cds_service.protocol.request import schema_problems
from cds_service.rules.findings import (
    Contraindication,
    Fact,
    FactKind,
    Finding,
    Indicator,
    Orderable,
    OrderRef,
    RedFlag,
    SuggestionIntent,
    SuggestionKind,
)
from cds_service.rules.registry import TOPICS
from cds_service.runtime import Runtime

CONTEXT = CardContext(
    patient_id="p1",
    encounter_id="e1",
    user_id="Practitioner/dr-1",
    condition_refs=("Condition/lbp",),
    pain_duration_days=20,
)
LONG_ORDER = OrderRef(
    "MedicationRequest/m1",
    "24 HR tramadol hydrochloride 100 MG Extended Release Oral Capsule [ConZip], local name",
)


def _walk_for_empties(value: Any, path: str = "$") -> list[str]:
    if value is None or value == "" or value == [] or value == {}:
        return [path]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _walk_for_empties(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _walk_for_empties(v, f"{path}[{i}]")]
    return []


def _builder(runtime: Runtime) -> CardBuilder:
    return CardBuilder(runtime.content, runtime.terminology)


@pytest.mark.parametrize("topic", list(TOPICS))
def test_every_topic_builds_a_valid_card_even_with_a_long_order_name(
    runtime: Runtime, topic: str
) -> None:
    finding = Finding(
        topic=topic,
        facts=(
            Fact.of(
                FactKind.BACK_PAIN, code="ICD-10-CM M54.50", onset="2026-11-01", duration_days="21"
            ),
        ),
        order=LONG_ORDER,
        suggestions=tuple(
            SuggestionIntent(
                kind,
                delete=LONG_ORDER if kind.deletes else None,
                create=Orderable.TOPICAL_NSAID if kind.creates else None,
            )
            for kind in sorted(runtime.content.topics[topic].suggestions)
        ),
        red_flags=(RedFlag.FEVER, RedFlag.CANCER_HISTORY) if topic == "red-flags-present" else (),
        alternative=Orderable.TOPICAL_NSAID,
    )
    card = _builder(runtime).card(finding, CONTEXT)
    assert schema_problems("response", {"cards": [card]}) == []
    assert len(card["summary"]) < 140
    assert _walk_for_empties(card) == []
    assert card["source"]["topic"]["code"] == topic
    assert "{" not in card["detail"] and "{" not in card["summary"]
    if card["indicator"] != "info":
        assert card["overrideReasons"]
    if card.get("suggestions"):
        assert card["selectionBehavior"] == "at-most-one"
    assert "M54.50" in card["detail"]  # the triggering facts are named
    # and the evidence is cited, with its link (a DOI, or a guideline body's page such as NICE's)
    assert re.search(r"\*\*Evidence:\*\* \[[^\]]+\]\(https://", card["detail"])


def test_suggested_orders_are_valid_r4_and_addressed_from_the_context(runtime: Runtime) -> None:
    builder = _builder(runtime)
    for orderable in Orderable:
        finding = Finding(
            topic="exercise-therapy",
            facts=(),
            suggestions=(SuggestionIntent(SuggestionKind.REFER, create=orderable),),
        )
        resource = builder.card(finding, CONTEXT)["suggestions"][0]["actions"][0]["resource"]
        model = {"MedicationRequest": MedicationRequest, "ServiceRequest": ServiceRequest}[
            resource["resourceType"]
        ]
        model.model_validate(resource)
        assert resource["status"] == "draft"
        assert resource["subject"] == {"reference": "Patient/p1"}
        assert resource["encounter"] == {"reference": "Encounter/e1"}
        assert resource["requester"] == {"reference": "Practitioner/dr-1"}
        # The back pain is the reason of what treats it, not of a stomach protector.
        if orderable is Orderable.PROTON_PUMP_INHIBITOR:
            assert "reasonReference" not in resource
        else:
            assert resource["reasonReference"] == [{"reference": "Condition/lbp"}]


def test_delete_action_names_the_draft(runtime: Runtime) -> None:
    finding = Finding(
        topic="avoid-glucosamine",
        facts=(),
        order=OrderRef("MedicationRequest/g1", "glucosamine"),
        suggestions=(
            SuggestionIntent(
                SuggestionKind.REMOVE, delete=OrderRef("MedicationRequest/g1", "glucosamine")
            ),
        ),
    )
    suggestion = _builder(runtime).card(finding, CONTEXT)["suggestions"][0]
    [action] = suggestion["actions"]
    assert {key: action[key] for key in ("type", "resourceId")} == {
        "type": "delete",
        "resourceId": "MedicationRequest/g1",
    }
    assert set(action) == {"type", "description", "resourceId"}
    assert "glucosamine" in action["description"] and "{" not in action["description"]
    assert suggestion["uuid"] and suggestion["label"]


def test_indicator_raised_by_the_rule(runtime: Runtime) -> None:
    finding = Finding(
        topic="red-flags-present",
        facts=(),
        indicator=Indicator.CRITICAL,
        red_flags=(RedFlag.SPINAL_INFECTION,),
    )
    card = _builder(runtime).card(finding, CONTEXT)
    assert card["indicator"] == "critical"
    assert "spinal infection" in card["summary"]


def test_cards_are_ordered_critical_first(runtime: Runtime) -> None:
    findings = (
        Finding(topic="exercise-therapy", facts=()),
        Finding(
            topic="red-flags-present",
            facts=(),
            indicator=Indicator.CRITICAL,
            red_flags=(RedFlag.FEVER,),
        ),
        Finding(topic="avoid-glucosamine", facts=()),
    )
    indicators = [c.indicator for c in _builder(runtime).cards(findings, CONTEXT)]
    assert indicators == ["critical", "info", "info"]


@pytest.mark.parametrize(
    ("days", "words"),
    [
        (None, "duration unknown"),
        (0, "0 days"),
        (1, "1 day"),
        (13, "13 days"),
        (20, "2 weeks"),
        (112, "16 weeks"),  # weeks below six months, never "about 3 months"
        (181, "25 weeks"),
        (200, "6 months"),
    ],
)
def test_duration_words(runtime: Runtime, days: int | None, words: str) -> None:
    assert _builder(runtime).duration_words(days) == words


# --- the content files themselves --------------------------------------------------------------


@pytest.fixture
def content_copy(tmp_path: Path) -> Path:
    target = tmp_path / "cards"
    target.mkdir()
    for entry in content_root().iterdir():
        if entry.name.endswith(".toml"):
            (target / entry.name).write_text(entry.read_text(encoding="utf-8"), encoding="utf-8")
    return target


def test_edited_copy_is_used_through_cds_cards_dir(content_copy: Path) -> None:
    path = content_copy / "avoid-glucosamine.toml"
    path.write_text(path.read_text().replace('title = "', 'title = "EDITED '))
    assert load_card_content(content_copy).topics["avoid-glucosamine"].title.startswith("EDITED ")


@pytest.mark.parametrize(
    ("file", "old", "new", "message"),
    [
        ("opioid-avoidance.toml", "{order}", "{patient_name}", "unknown placeholder"),
        ("opioid-avoidance.toml", 'indicator = "warning"', 'indicator = "hard-stop"', "indicator"),
        (
            "avoid-glucosamine.toml",
            'topic = "avoid-glucosamine"',
            'topic = "other"',
            "'topic' must be",
        ),
        ("_common.toml", "\n[red_flags]\n", "\n[red_flag_names]\n", r"\[red_flags\]"),
        ("exercise-therapy.toml", "{facts}", "", "detail must contain"),
        (
            "avoid-glucosamine.toml",
            'summary_fallback = "',
            'summary_fallback = "' + "x" * 40,
            "summary_fallback is 120 characters long .* the budget is 100",
        ),
        (
            "exercise-therapy.toml",
            "{facts}",
            "{facts} " + "More words. " * 30,
            "detail is .* characters long .* the budget is 480",
        ),
        (
            "opioid-avoidance.toml",
            'extended-release = "',
            'extended-release = "' + "y" * 200,
            r"\[notes\].extended-release is .* the budget is 240",
        ),
        (
            "red-flags-present.toml",
            "[flags.fever]",
            "[flags.fevers]",
            r"\[fever\] table is missing",
        ),
        ("red-flags-present.toml", 'short = "Chou et al., ACP', 'brief = "Chou', "needs 'short'"),
        (
            "chronic-pain-assessment.toml",
            'summary_fallback = "',
            'summary_fallback = "{order} ',
            "summary_fallback: unknown placeholder",
        ),
        ("avoid-glucosamine.toml", "[[evidence]]", "[[sources]]", r"at least one \[\[evidence\]\]"),
    ],
)
def test_broken_content_is_refused_with_a_clear_reason(
    content_copy: Path, file: str, old: str, new: str, message: str
) -> None:
    path = content_copy / file
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(ContentError, match=message):
        load_card_content(content_copy)


def test_missing_and_unparseable_files_are_refused(content_copy: Path) -> None:
    (content_copy / "avoid-glucosamine.toml").write_text("topic = [unclosed")
    with pytest.raises(ContentError, match="not valid TOML"):
        load_card_content(content_copy)
    (content_copy / "avoid-glucosamine.toml").unlink()
    with pytest.raises(ContentError, match="missing"):
        load_card_content(content_copy)


# --- cards a clinician reads in a few seconds -------------------------------------------------


def test_facts_are_one_line_and_capped_per_kind(runtime: Runtime) -> None:
    pains = tuple(
        Fact.of(FactKind.BACK_PAIN, code=f"Back pain {n} (M54.5{n})", onset="2026-11-01")
        for n in range(7)
    )
    card = _builder(runtime).card(Finding(topic="exercise-therapy", facts=pains), CONTEXT)
    [line] = [x for x in card["detail"].splitlines() if x.startswith("**This patient:**")]
    assert line.count("Back pain") == 3
    assert "and 4 more" in line
    assert len(card["detail"]) <= 700


def test_an_undated_fact_reads_without_a_date(runtime: Runtime) -> None:
    fact = Fact.of(FactKind.BACK_PAIN, code="Low back pain (M54.50)", onset=None)
    card = _builder(runtime).card(Finding(topic="exercise-therapy", facts=(fact,)), CONTEXT)
    assert "Low back pain (M54.50), onset not recorded" in card["detail"]
    assert "None" not in card["detail"]


def test_notes_appear_only_when_the_rule_attached_them(runtime: Runtime) -> None:
    builder = _builder(runtime)
    base = Finding(
        topic="opioid-avoidance",
        facts=(),
        order=OrderRef("MedicationRequest/o1", "oxycodone 10 MG 12 HR Extended Release Tablet"),
        alternative=Orderable.ACETAMINOPHEN,
    )
    plain = builder.card(base, CONTEXT)["detail"]
    assert "extended-release" not in plain and "NSAID" not in plain
    noted = builder.card(
        replace(
            base,
            notes=("extended-release", "nsaids-contraindicated"),
            contraindications=(Contraindication.CKD_SEVERE,),
        ),
        CONTEXT,
    )["detail"]
    assert "**extended-release or long-acting**" in noted
    assert "because of CKD stage 4-5" in noted
    assert "\n\n\n" not in plain and "\n\n\n" not in noted


def test_red_flag_summary_leads_with_the_most_serious_and_counts_the_rest(
    runtime: Runtime,
) -> None:
    builder = _builder(runtime)
    flags = (RedFlag.NEUROLOGIC_DEFICIT, RedFlag.AGE_OVER_50_NEW_PAIN, RedFlag.OSTEOPOROSIS)
    card = builder.card(
        Finding(
            topic="red-flags-present",
            facts=(),
            red_flags=flags,
            indicator=Indicator.CRITICAL,
        ),
        CONTEXT,
    )
    assert card["summary"].startswith("Emergency:") and "MRI" in card["summary"]
    assert card["summary"].endswith("(+2 more)")
    # Each flag gets its own line with its next step.
    lines = [x for x in card["detail"].splitlines() if x.startswith("- **")]
    assert len(lines) == 3 and "X-ray" in lines[1] and "X-ray" in lines[2]
    known = builder.card(
        Finding(
            topic="red-flags-present",
            facts=(),
            red_flags=(RedFlag.SPINAL_INFECTION,),
            known_red_flags=frozenset({RedFlag.SPINAL_INFECTION}),
        ),
        CONTEXT,
    )
    assert known["summary"].startswith("Known spinal infection")
    assert "- **Known spinal infection:**" in known["detail"]
    assert "Emergency" not in known["summary"] + known["detail"]


def test_evidence_line_cites_the_source_for_the_finding(runtime: Runtime) -> None:
    def evidence(contraindication: Contraindication) -> str:
        card = _builder(runtime).card(
            Finding(
                topic="nsaid-contraindicated",
                facts=(),
                order=OrderRef("MedicationRequest/n1", "naproxen"),
                alternative=Orderable.ACETAMINOPHEN,
                contraindications=(contraindication,),
            ),
            CONTEXT,
        )
        [line] = [x for x in card["detail"].splitlines() if x.startswith("**Evidence:**")]
        return line

    assert "KDIGO" in evidence(Contraindication.CKD_SEVERE)
    assert "heart failure" in evidence(Contraindication.HEART_FAILURE)
    assert "doi.org" in evidence(Contraindication.GI_BLEED_OR_ULCER)


def test_cards_link_to_their_guidance_page_when_the_base_url_is_known(runtime: Runtime) -> None:
    finding = Finding(topic="exercise-therapy", facts=())
    builder = _builder(runtime)
    assert "links" not in builder.card(finding, CONTEXT)
    context = replace(CONTEXT, options=CardOptions(guidance_base_url="https://cds.example.org"))
    [link] = builder.card(finding, context)["links"]
    assert link["url"] == "https://cds.example.org/guidance/exercise-therapy"
    assert link["type"] == "absolute" and link["label"]


def test_long_order_names_fall_back_to_the_shorter_summary(runtime: Runtime) -> None:
    card = _builder(runtime).card(
        Finding(
            topic="opioid-avoidance",
            facts=(),
            order=LONG_ORDER,
            alternative=Orderable.TOPICAL_NSAID,
        ),
        CONTEXT,
    )
    assert len(card["summary"]) <= 100
    assert card["summary"] == "Avoid this opioid for back pain; use diclofenac 1% gel instead"
    assert LONG_ORDER.label in card["detail"]  # the order is still named where there is room
