"""The readers of the curated data in scripts/: scenario files and terminology sources.

Their output is checked byte for byte by the `--check` tests (test_fixture_library,
test_terminology); these tests hold the readers to what their READMEs promise an editor:
shorthand golden cards mean the same cards, and a mistake in a data file stops the build with a
message that names the entry instead of writing wrong data.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
sys.path.insert(0, str(SCRIPTS))

import build_fixtures  # noqa: E402
import terminology_kit as kit  # noqa: E402

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"


# --- scenario files --------------------------------------------------------------------------


def _scenario(**changes: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": "test-opioid-ckd",
        "description": "Tramadol drafted for low back pain with CKD stage 4.",
        "hook": "order-sign",
        "patient": "ben",
        "shows": ["opioid avoidance, acetaminophen alternative"],
        "conditions": [
            {"id": "cond-lbp", "code": "low-back-pain", "onset_days_ago": 5},
            {
                "id": "cond-ckd",
                "code": ["ICD-10-CM", "N18.4", "Chronic kidney disease, stage 4 (severe)"],
            },
        ],
        "drafts": [{"resource": "MedicationRequest", "id": "rx-tramadol", "code": "tramadol"}],
        "expected": [
            {
                "card": "opioid-avoidance",
                "order": "MedicationRequest/rx-tramadol",
                "nsaid_unsafe": True,
            }
        ],
        "tags": ["opioid-avoidance"],
    }
    entry.update(changes)
    return entry


def _load(entry: dict[str, Any]) -> Any:
    library = build_fixtures.Library(build_fixtures.SCENARIOS)
    return build_fixtures.load_scenario(entry, library, build_fixtures.Golden(), "test.toml")


def test_shorthand_card_expands_to_the_golden_suggestions() -> None:
    orderables = json.loads(
        (SCRIPTS.parent / "cds_service/terminology/data/orderables.json").read_text()
    )["orderables"]
    acetaminophen = orderables["acetaminophen"]["code"]["coding"][0]
    scenario = _load(_scenario())
    assert scenario.expected_cards() == {
        "cards": [
            {
                "topic": "opioid-avoidance",
                "indicator": "warning",
                "suggestions": [
                    [
                        f"create MedicationRequest {RXNORM}|{acetaminophen['code']}",
                        "delete MedicationRequest/rx-tramadol",
                    ],
                    ["delete MedicationRequest/rx-tramadol"],
                ],
            }
        ]
    }
    conditions = scenario.request()["prefetch"]["conditions"]["entry"]
    assert conditions[1]["resource"]["code"]["coding"][0] == {
        "system": ICD10CM,
        "code": "N18.4",
        "display": "Chronic kidney disease, stage 4 (severe)",
    }


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"onset": 3}, "unknown keys ['onset']"),
        ({"patient": "zed"}, "unknown hook or patient"),
        ({"shows": ["opioid avoidance"]}, "not in library.toml features"),
        (
            {"expected": [{"card": "opioid-avoidance", "order": "MedicationRequest/rx-x"}]},
            "not a draft",
        ),
        ({"expected": [{"card": "opioid"}]}, "card must be one of"),
        ({"expected": [{"card": "exercise-therapy", "refer": True}]}, "unexpected keyword"),
        ({"drafts": [{"id": "rx-tramadol", "code": "tramadol"}]}, "missing ['resource']"),
        ({"conditions": [{"id": "cond-lbp", "code": "back-pain"}]}, "neither a named code"),
        ({"conditions": [{"id": "c", "code": ["ICD-10", "M54.5", "x"]}]}, "unknown code system"),
        ({"edit_request": "shuffle"}, "edit_request must be one of"),
    ],
)
def test_a_mistake_in_a_scenario_is_named(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(SystemExit) as stopped:
        _load(_scenario(**changes))
    assert message in str(stopped.value)
    assert "test.toml scenario test-opioid-ckd" in str(stopped.value)


# --- terminology sources --------------------------------------------------------------------------


@pytest.fixture()
def ctx(tmp_path: Path) -> kit.Context:
    contains = [
        {"system": ICD10CM, "code": "M48.062", "display": "Spinal stenosis, lumbar region"},
        {"system": ICD10CM, "code": "G83.4", "display": "Cauda equina syndrome"},
    ]
    document = {"resourceType": "ValueSet", "expansion": {"contains": contains}}
    (tmp_path / "neuro.json").write_text(json.dumps(document))
    (tmp_path / "index.json").write_text(json.dumps([{"file": "neuro.json", "license": "L"}]))
    return kit.Context(
        kit.Shared.load(tmp_path),
        {"ICD-10-CM": ICD10CM, "SNOMED CT": SNOMED},
        "compiled licence",
        {"deficit-words": ["cauda equina", "foot drop"]},
        {"icd-2026": "ICD-10-CM April 2026, checked"},
    )


def _copy(**changes: Any) -> dict[str, Any]:
    entry = {"id": "neuro", "title": "t", "description": "d", "copy_of": "neuro"}
    return {**entry, **changes}


def test_filter_note_and_hand_added_rows_make_the_provenance(ctx: kit.Context) -> None:
    entry = _copy(
        filter={"kind": "drop-codes", "codes": ["M48.062"], "note": "dropped M48.062 (chronic)"},
        extra=[{"system": "ICD-10-CM", "code": "G83.40", "display": "x", "verified": "{icd-2026}"}],
    )
    vs = kit.copied(ctx, entry, "test")
    assert [c["code"] for c in vs.codes] == ["G83.4", "G83.40"]
    assert vs.provenance["method"] == (
        "filtered subset: dropped M48.062 (chronic) (1 of 2 codes dropped); added by hand: "
        "ICD-10-CM G83.40 x (ICD-10-CM April 2026, checked)"
    )
    assert vs.provenance["license"] == "L"


def test_compiled_rows_carry_their_own_or_the_entrys_verification(ctx: kit.Context) -> None:
    entry = {
        "id": "c",
        "title": "t",
        "description": "d",
        "system": "ICD-10-CM",
        "verified": "{icd-2026}",
        "source": "ICD-10-CM G83.4 ({verified}); SNOMED CT {row notes}",
        "method": "compiled from verified facts",
        "codes": [
            {"code": "G83.4", "display": "Cauda equina syndrome"},
            {"system": "SNOMED CT", "code": "192970008", "display": "y", "verified": "seen in z"},
        ],
    }
    vs = kit.compiled(ctx, entry, "test")
    assert vs.provenance["source"] == (
        "ICD-10-CM G83.4 (ICD-10-CM April 2026, checked); SNOMED CT 192970008 (seen in z)"
    )
    del entry["verified"]
    with pytest.raises(SystemExit, match=r"G83\.4 needs a display and a verification"):
        kit.compiled(ctx, entry, "test")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"filter": {"kind": "drop-codes", "codes": ["M48.062"], "note": "x"}}, "must say why"),
        ({"filter": {"kind": "drop", "codes": [], "note": "x"}}, "filter kind must be one of"),
        ({"filter": {"kind": "keep-codes", "code": ["G83.4"], "note": "x"}}, "has note and"),
        ({"filter": {"kind": "drop-display-words", "words": "w", "unless_words": []}}, "no list"),
        ({"filter": {"kind": "keep-codes", "codes": ["G83.4"], "note": "{why}"}}, "{why}"),
        (
            {
                "filter": {"kind": "keep-codes", "codes": ["G83.4"], "note": "kept"},
                "extra": [{"system": "ICD-10-CM", "code": "X", "display": "x", "verified": "v"}],
            },
            "hand-added codes fail the filter",
        ),
        (
            {"extra": [{"system": "ICD-9", "code": "X", "display": "x", "verified": "v"}]},
            "unknown code system",
        ),
        ({"copy_of": "missing"}, "no shared ValueSet 'missing'"),
    ],
)
def test_a_mistake_in_a_value_set_is_named(
    ctx: kit.Context, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(SystemExit) as stopped:
        kit.copied(ctx, _copy(**changes), "valuesets/x.toml neuro")
    assert message in str(stopped.value)


def test_placeholders_quote_lists_and_shared_notes(ctx: kit.Context) -> None:
    text = ctx.expand("display names {deficit-words}; {icd-2026}", "test")
    assert text == "display names cauda equina, foot drop; ICD-10-CM April 2026, checked"
