"""`cds-service replay`: in-process and against a URL, pass/fail table, diff, exit status."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import responses
from conftest import FIXTURES, fixture_dirs, load_fixture
from live_server import free_port, running_server
from sqlalchemy import func, select

from cds_service.cli import main
from cds_service.store.database import parse_database_url
from cds_service.store.schema import card_decisions
from cds_service.store.store import DecisionStore
from cds_service.tooling.dates import shift_dates
from cds_service.tooling.library import discover
from cds_service.tooling.progress import LONG_RUN, Progress

TRAMADOL = "opioid-tramadol-acute-low-back-pain"
BASE = "http://cds.test"
SIGN_URL = f"{BASE}/cds-services/back-pain-order-sign"


def _copy(tmp_path: Path, *names: str) -> Path:
    root = tmp_path / "fixtures"
    for name in names:
        shutil.copytree(FIXTURES / name, root / name)
    return root


def _card(topic: str, indicator: str) -> dict[str, Any]:
    return {
        "summary": "s",
        "indicator": indicator,
        "source": {"label": "x", "topic": {"system": "s", "code": topic}},
    }


def _golden_cards_of(name: str) -> list[dict[str, Any]]:
    """Cards shaped exactly as the fixture's golden file wants them."""
    cards = []
    for expected in load_fixture(name)[2]["cards"]:
        actions = []
        for suggestion in expected["suggestions"]:
            for signature in suggestion:
                kind, rest = signature.split(" ", 1)
                if kind == "delete":
                    actions.append({"type": "delete", "description": "d", "resourceId": rest})
                else:
                    resource_type, code = rest.split(" ")
                    system, value = code.split("|")
                    resource = {
                        "resourceType": resource_type,
                        "code": {"coding": [{"system": system, "code": value}]},
                    }
                    actions.append({"type": "create", "description": "c", "resource": resource})
        card = _card(expected["topic"], expected["indicator"])
        if actions:
            # One suggestion per golden suggestion keeps the signature identical.
            card["suggestions"] = []
            position = 0
            for suggestion in expected["suggestions"]:
                card["suggestions"].append(
                    {"label": "do", "actions": actions[position : position + len(suggestion)]}
                )
                position += len(suggestion)
            card["selectionBehavior"] = "any"
        cards.append(card)
    return cards


def test_in_process_replay_of_the_whole_library_passes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(FIXTURES), "--no-progress"]) == 0
    out = capsys.readouterr().out
    count = len(fixture_dirs())
    assert f"{count} passed, 0 failed, 0 errors ({count} scenarios" in out
    assert out.count("PASS ") == count


def test_a_difference_fails_with_a_diff(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _copy(tmp_path, TRAMADOL, "no-back-pain-opioid")
    expected_file = root / TRAMADOL / "expected.json"
    expected = json.loads(expected_file.read_text())
    expected["cards"] = [c for c in expected["cards"] if c["topic"] != "exercise-therapy"]
    expected["cards"].append({"topic": "avoid-glucosamine", "indicator": "info", "suggestions": []})
    expected_file.write_text(json.dumps(expected))

    assert main(["replay", str(root), "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "FAIL    opioid-tramadol-acute-low-back-pain" in out
    assert "PASS    no-back-pain-opioid" in out
    assert "  - avoid-glucosamine (info)" in out
    assert "  + exercise-therapy (info) suggestions: create ServiceRequest" in out
    assert "1 passed, 1 failed, 0 errors" in out


def test_bad_paths_are_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(tmp_path / "missing")]) == 2
    assert main(["replay", str(tmp_path)]) == 2  # a folder without scenarios
    assert main(["replay", str(FIXTURES), "--url", "ftp://host"]) == 2
    assert main(["replay", str(FIXTURES), "--no-date-shift"]) == 2  # only with --url
    err = capsys.readouterr().err
    assert "no such fixture or folder" in err and "holds no scenario folders" in err
    assert "not an http(s) URL" in err


def test_a_file_or_a_scenario_folder_names_one_fixture() -> None:
    by_file = discover([FIXTURES / TRAMADOL / "request.json"])
    by_folder = discover([FIXTURES / TRAMADOL, FIXTURES / TRAMADOL])
    assert [f.name for f in by_file] == [f.name for f in by_folder] == [TRAMADOL]


@responses.activate
def test_url_replay_shifts_dates_to_the_given_today(capsys: pytest.CaptureFixture[str]) -> None:
    responses.post(SIGN_URL, json={"cards": _golden_cards_of(TRAMADOL)})
    code = main(["replay", str(FIXTURES / TRAMADOL), "--url", BASE + "/", "--today", "2027-01-01"])
    assert code == 0, capsys.readouterr().out
    sent = json.loads(responses.calls[0].request.body)
    original = load_fixture(TRAMADOL)[1]
    assert sent["prefetch"]["patient"]["birthDate"] == "1986-05-22"  # 1986-04-12 + 40 days
    onset = sent["prefetch"]["conditions"]["entry"][0]["resource"]["onsetDateTime"]
    assert onset == "2026-12-22"  # ten days before the new today, as in the fixture
    assert sent["hookInstance"] == original["hookInstance"]


@responses.activate
def test_url_replay_without_shift_sends_the_fixture_as_is() -> None:
    responses.post(SIGN_URL, json={"cards": _golden_cards_of(TRAMADOL)})
    assert main(["replay", str(FIXTURES / TRAMADOL), "--url", BASE, "--no-date-shift"]) == 0
    assert json.loads(responses.calls[0].request.body) == load_fixture(TRAMADOL)[1]


@responses.activate
def test_http_errors_are_reported_not_raised(capsys: pytest.CaptureFixture[str]) -> None:
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "incomplete", "diagnostics": "needs conditions"}],
    }
    responses.post(SIGN_URL, json=outcome, status=412)
    responses.post(f"{BASE}/cds-services/back-pain-patient-view", body="<html>oops</html>")
    code = main(
        [
            "replay",
            str(FIXTURES / TRAMADOL),
            str(FIXTURES / "patient-view-chronic-pain-16-weeks"),
            "--url",
            BASE,
            "--header",
            "X-Api-Key: k1",
        ]
    )
    out = capsys.readouterr().out
    assert code == 1
    assert "! HTTP 412: needs conditions" in out
    assert "! HTTP 200 but the body is not a CDS Hooks response" in out
    assert responses.calls[0].request.headers["X-Api-Key"] == "k1"
    assert "Traceback" not in out


def test_unreachable_service_stops_the_run(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()  # nothing listens there
    names = [TRAMADOL, "no-back-pain-opioid", "glucosamine-text-only"]
    code = main(
        ["replay", *(str(FIXTURES / n) for n in names), "--url", f"http://127.0.0.1:{port}"]
    )
    out = capsys.readouterr().out
    assert code == 1
    assert out.count(f"cannot connect to http://127.0.0.1:{port}") == 3
    assert out.count("! not run:") == 2
    assert "0 passed, 0 failed, 3 errors" in out


@responses.activate
def test_json_report(capsys: pytest.CaptureFixture[str]) -> None:
    responses.post(SIGN_URL, json={"cards": []})
    assert main(["replay", str(FIXTURES / TRAMADOL), "--url", BASE, "--format", "json"]) == 1
    report = json.loads(capsys.readouterr().out)
    (result,) = report["results"]
    assert result["result"] == "fail" and result["cards"] == 0
    assert {c["topic"] for c in result["missing"]} == {"opioid-avoidance", "exercise-therapy"}


def test_replay_against_a_running_server_with_shifted_dates(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """docs/integrators.md's walk-through: a real server whose today is not the fixtures' date."""
    with running_server(free_port(), {"CDS_EVALUATION_DATE": "2027-07-04"}, workers=2) as server:
        code = main(["replay", str(FIXTURES), "--url", server.base_url, "--today", "2027-07-04"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"{len(fixture_dirs())} passed, 0 failed" in out


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_counts_on_a_terminal_and_logs_long_runs() -> None:
    terminal = _Terminal()
    progress = Progress(3, "replaying", terminal)
    progress.update(1, "a")
    progress.close()
    assert "[1/3] replaying a" in terminal.getvalue() and "\r" in terminal.getvalue()

    short, long = io.StringIO(), io.StringIO()
    Progress(3, "replaying", short).update(3, "c")
    total = LONG_RUN + 5
    reporter = Progress(total, "replaying", long)
    for done in range(1, total + 1):
        reporter.update(done, "x")
    assert short.getvalue() == ""
    assert long.getvalue().splitlines() == ["replaying 10/25", "replaying 20/25", "replaying 25/25"]


def test_shift_dates_moves_full_dates_only() -> None:
    document = {
        "birthDate": "1986-04-12",
        "effectiveDateTime": "2026-11-21T09:30:00Z",
        "authoredOn": "2026-11-22T08:00:00+01:00",
        "partial": ["2026", "2026-11"],
        "id": "2026-01-01",
        "code": {"coding": [{"system": "x", "code": "2026-01-01", "version": "2024-03-01"}]},
        "notADate": "2026-13-45",
        "text": "seen 2026-11-20",
        "value": 3,
    }
    shifted = shift_dates(document, 10)
    assert shifted["birthDate"] == "1986-04-22"
    assert shifted["effectiveDateTime"] == "2026-12-01T09:30:00Z"
    assert shifted["authoredOn"] == "2026-12-02T08:00:00+01:00"
    assert shifted["partial"] == ["2026", "2026-11"]
    assert shifted["id"] == "2026-01-01"
    assert shifted["code"] == document["code"]
    assert shifted["notADate"] == "2026-13-45" and shifted["text"] == "seen 2026-11-20"
    assert document["birthDate"] == "1986-04-12"  # the original is untouched
    assert shift_dates(document, 0) == document


def test_in_process_replay_needs_no_client_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    examples = FIXTURES.parent / "examples" / "trusted-clients.sandbox.json"
    monkeypatch.setenv("CDS_TRUSTED_CLIENTS", str(examples))
    monkeypatch.setenv("CDS_PUBLIC_URL", "http://localhost:8080")
    assert main(["replay", str(FIXTURES / TRAMADOL), "--no-progress"]) == 0
    monkeypatch.setenv("CDS_MAX_BODY_BYTES", "lots")
    assert main(["replay", str(FIXTURES / TRAMADOL)]) == 2
    assert "CDS_MAX_BODY_BYTES must be a whole number" in capsys.readouterr().err


# --- the store replayed cards go to ---------------------------------------------------------


def _logged_cards(url: str) -> int:
    store = DecisionStore(parse_database_url(url), operation_seconds=None)
    try:
        with store.reading() as connection:
            return int(connection.scalar(select(func.count()).select_from(card_decisions)))
    finally:
        store.dispose()


def test_in_process_replay_never_writes_to_the_configured_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = tmp_path / "real-decisions.db"
    monkeypatch.setenv("CDS_DATABASE_URL", f"sqlite:///{real}")
    assert main(["replay", str(FIXTURES / TRAMADOL), "--no-progress"]) == 0
    assert not real.exists()  # its report counts no fixture cards
    assert not list(tmp_path.glob("*-spool"))


def test_in_process_replay_logs_in_the_store_it_is_told(tmp_path: Path) -> None:
    named = f"sqlite:///{tmp_path / 'replay.db'}"
    assert main(["replay", str(FIXTURES / TRAMADOL), "--no-progress", "--store", named]) == 0
    assert _logged_cards(named) == len(load_fixture(TRAMADOL)[2]["cards"])


def test_store_is_only_for_in_process_replay_and_must_be_a_store_url(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["replay", str(FIXTURES / TRAMADOL), "--url", BASE, "--store", "sqlite:///x"]) == 2
    assert main(["replay", str(FIXTURES / TRAMADOL), "--store", "mysql://u:hunter2@h/db"]) == 2
    assert "hunter2" not in capsys.readouterr().err
