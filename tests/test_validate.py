"""`cds-service validate`: CDS Hooks 2.0 shapes, FHIR R4 inside, problems at exact paths."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import PROJECT_ROOT, fixture_dirs, load_fixture
from flask.testing import FlaskClient

from cds_service.cli import main
from cds_service.fhir.conformance import resource_problems
from cds_service.tooling.validate import check_document, check_file

BROKEN = PROJECT_ROOT / "tests" / "data" / "broken"


def _found(report: Any) -> set[tuple[str, str]]:
    return {(p.severity.value, p.path) for p in report.problems}


def _is_messy(folder: Path) -> bool:
    return any(s.startswith("messy:") for s in load_fixture(folder.name)[0]["shows"])


def test_broken_request_is_flagged_at_the_right_paths() -> None:
    report = check_file(BROKEN / "request.json")
    assert report.kind == "request" and report.detail == "order-select"
    assert _found(report) == {
        ("error", "$.fhirServer"),
        ("error", "$.context.userId"),
        ("error", "$.context.selections[1]"),
        ("error", "$.context.draftOrders.entry[0].resource.dosageInstruction"),
        ("error", "$.context.draftOrders.entry[0].resource.status"),
        ("warning", "$.context.draftOrders.entry[0].resource.status"),
        ("error", "$.prefetch.patient.birthDate"),
        ("error", "$.prefetch.conditions.entry[2].resource.onsetDateTime"),
        ("error", "$.prefetch.medications.entry[0].resource.dosageText"),
        ("error", "$.prefetch.observations.entry[0].resource.resourceType"),
        ("warning", "$.hookInstance"),
        ("warning", "$.prefetch.labs"),
    }


def test_broken_response_is_flagged_at_the_right_paths() -> None:
    report = check_file(BROKEN / "response.json")
    assert report.kind == "response"
    assert _found(report) == {
        ("error", "$.cards[0].summary"),
        ("error", "$.cards[0].suggestions[0].actions[0].resourceId"),
        ("error", "$.cards[0].suggestions[0].actions[1].resource.authoredOn"),
        ("error", "$.cards[1].indicator"),
        ("error", "$.cards[1].uuid"),
        ("warning", "$.cards[0].suggestions[1].uuid"),
    }
    duplicate = next(p for p in report.problems if p.path == "$.cards[1].uuid")
    assert "$.cards[0].uuid" in duplicate.message


def test_command_prints_each_problem_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(BROKEN / "request.json")]) == 1
    out = capsys.readouterr().out
    assert "CDS Hooks request (order-select): 9 errors, 3 warnings" in out
    assert (
        "  error    $.prefetch.conditions.entry[2].resource.onsetDateTime  "
        "is not a valid FHIR dateTime" in out
    )
    # Values are never echoed: only where the problem is and what is wrong.
    assert "yesterday" not in out and "1986-13-01" not in out


@pytest.mark.parametrize(
    "folder", [f for f in fixture_dirs() if not _is_messy(f)], ids=lambda p: p.name
)
def test_clean_fixture_requests_validate_without_problems(folder: Path) -> None:
    report = check_file(folder / "request.json")
    assert report.problems == []


def test_messy_fixtures_are_flagged_where_they_are_messy() -> None:
    expected = {
        "messy-sandbox-shape-opioid": {
            "$.context.draftOrders.type",
            "$.context.draftOrders.entry[0].resource.category",
            "$.context.draftOrders.entry[0].resource.intent",
            "$.context.draftOrders.entry[0].resource.dosageInstruction[0].doseAndRate",
        },
        "messy-malformed-resource-skipped": {
            "$.prefetch.conditions.entry[2].resource.onsetDateTime"
        },
        "messy-unknown-resource-types": {"$.prefetch.medications.entry[0].resource.resourceType"},
    }
    for name, paths in expected.items():
        report = check_file(PROJECT_ROOT / "fhir_fixtures" / name / "request.json")
        assert {p.path for p in report.errors} == paths, name


@pytest.mark.parametrize("folder", fixture_dirs(), ids=lambda p: p.name)
def test_the_service_answers_validate(client: FlaskClient, folder: Path) -> None:
    scenario, request, _ = load_fixture(folder.name)
    body = client.post(f"/cds-services/{scenario['service']}", json=request).get_json()
    assert check_document(body, source=folder.name).problems == []


def test_discovery_validates_and_a_broken_one_does_not(client: FlaskClient) -> None:
    discovery = client.get("/cds-services").get_json()
    assert check_document(discovery).problems == []
    broken = json.loads(json.dumps(discovery))
    broken["services"][1]["id"] = broken["services"][0]["id"]
    broken["services"][2]["prefetch"]["meds"] = (
        "MedicationRequest?_id={{context.draftOrders.MedicationRequest.id}}"
    )
    report = check_document(broken)
    assert report.kind == "discovery"
    assert _found(report) == {
        ("error", "$.services[1].id"),
        ("warning", "$.services[2].prefetch.meds"),
    }


def test_feedback_rules() -> None:
    good = {
        "feedback": [
            {
                "card": "9368d37b-283f-44a0-93ea-547cebab93ed",
                "outcome": "accepted",
                "acceptedSuggestions": [{"id": "e56e1945-20b3-4393-8503-a1a20fd73152"}],
                "outcomeTimestamp": "2026-11-22T09:30:00Z",
            }
        ]
    }
    assert check_document(good).problems == []
    bad = json.loads(json.dumps(good))
    bad["feedback"][0]["card"] = "card-1"
    bad["feedback"][0]["outcomeTimestamp"] = "2026-11-22 09:30"
    bad["feedback"][0]["acceptedSuggestions"][0]["id"] = "s1"
    bad["feedback"].append({"card": "x", "outcome": "maybe", "outcomeTimestamp": "2026-11-22"})
    assert _found(check_document(bad)) == {
        ("warning", "$.feedback[0].card"),
        ("error", "$.feedback[0].outcomeTimestamp"),
        ("warning", "$.feedback[0].acceptedSuggestions[0].id"),
        ("warning", "$.feedback[1].card"),
        ("error", "$.feedback[1].outcome"),
        ("error", "$.feedback[1].outcomeTimestamp"),
    }


def test_unreadable_and_unknown_documents(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    not_json = tmp_path / "a.json"
    not_json.write_text('{"hook": ')
    unknown = tmp_path / "b.json"
    unknown.write_text('{"resourceType": "Patient"}')
    assert main(["validate", str(not_json), str(unknown), str(tmp_path / "missing.json")]) == 1
    out = capsys.readouterr().out
    assert "not valid JSON (line 1, column 10)" in out
    assert "not recognised as a CDS Hooks request" in out
    assert "cannot read the file" in out

    # --kind names what detection cannot; '-' reads standard input.
    monkeypatch.setattr("sys.stdin", io.StringIO('{"cards": []}'))
    assert main(["validate", "-", "--kind", "response"]) == 0
    assert "<stdin>: CDS Hooks response: valid" in capsys.readouterr().out


def test_json_output_and_strict_mode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    request = load_fixture("opioid-tramadol-acute-low-back-pain")[1]
    request["hookInstance"] = "not-a-uuid"
    path = tmp_path / "request.json"
    path.write_text(json.dumps(request))
    assert main(["validate", str(path)]) == 0  # a warning only
    assert main(["validate", str(path), "--strict", "--format", "json"]) == 1
    out = capsys.readouterr().out
    report = json.loads(out[out.index("[") :])
    assert report[0]["warnings"] == 1 and report[0]["errors"] == 0
    assert report[0]["problems"][0]["path"] == "$.hookInstance"


def test_fhir_problems_name_the_exact_element() -> None:
    problems = resource_problems(
        {
            "resourceType": "MedicationRequest",
            "status": "active",
            "intent": "order",
            "subject": {"reference": "Patient/p"},
            "medicationReference": {"reference": "#m"},
            "contained": [
                {"resourceType": "NotAType"},
                {"resourceType": "Medication", "id": "m", "colour": "blue"},
            ],
        }
    )
    assert {(p.path, p.message) for p in problems} == {
        (("contained", 0, "resourceType"), "NotAType is not a FHIR R4 resource type"),
        (("contained", 1, "colour"), "is not an element of FHIR R4 Medication"),
    }
    assert resource_problems({"resourceType": "Patient", "gender": "f"})[0].path == ("gender",)
    assert resource_problems("Patient")[0].message.startswith("must be a FHIR resource")
