"""The benchmark itself runs: a smoke run with tiny sizes and durations (no targets enforced).

The full benchmark is not run here: it takes minutes and its numbers mean something only on a
quiet machine. `python bench/run.py` runs it (see the README's Performance section).
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

from cds_service.app import create_app
from cds_service.config import Settings
from cds_service.runtime import Runtime

PROJECT = Path(__file__).resolve().parents[1]


def test_benchmark_smoke_run_reports_every_workload_and_target() -> None:
    result = subprocess.run(
        [sys.executable, str(PROJECT / "bench" / "run.py"), "--smoke", "--generator", "python"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=PROJECT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "answers checked: exercise-therapy, imaging-without-red-flags, opioid-avoidance" in out
    for workload in ("realistic order-sign", "large record", "FHIR fallback"):
        assert workload in out
    rows = [line.split() for line in out.splitlines()]
    served = [
        row for row in rows if row and row[0] in {"baseline", "service", "floor"} and len(row) == 7
    ]
    assert len(served) == 7 and all(float(row[1]) > 0 for row in served)
    assert any(line.startswith("floor: ") for line in out.splitlines()), out
    assert all(row[6] == "0" for row in served), out  # no errors, no refused requests
    verdicts = [line for line in out.splitlines() if line.startswith(("PASS", "FAIL"))]
    assert len(verdicts) == 10
    for target in ("throughput vs bare Flask", "cold start", "deadline", "p99"):
        assert any(target in line for line in verdicts), target


def test_floor_replays_the_stored_cards_under_fresh_uuids_and_still_checks_requests(
    app_settings: Settings,
) -> None:
    sys.path.insert(0, str(PROJECT / "bench"))
    try:
        import floor_app
        import workloads
    finally:
        sys.path.remove(str(PROJECT / "bench"))
    realistic = workloads.realistic()  # dated from today, so not evaluated on the pinned date
    settings = dataclasses.replace(app_settings, evaluation_date=None)
    runtime = Runtime.load(settings)  # its own: the replay replaces the handler's method
    floor_app.replay_guideline_work(runtime.handler, realistic.service, realistic.request)
    client = create_app(settings, runtime=runtime).test_client()

    answers = [
        client.post(f"/cds-services/{realistic.service}", json=realistic.request).get_json()
        for _ in range(2)
    ]
    for answer in answers:
        topics = {card["source"]["topic"]["code"] for card in answer["cards"]}
        assert topics == realistic.expected_topics
    first, second = ({card["uuid"] for card in answer["cards"]} for answer in answers)
    assert len(first) == len(answers[0]["cards"]) and not first & second

    broken = {key: value for key, value in realistic.request.items() if key != "hookInstance"}
    refused = client.post(f"/cds-services/{realistic.service}", json=broken)
    assert refused.status_code == 400


def test_stage_breakdown_runs_the_realistic_call_and_reports_every_stage() -> None:
    result = subprocess.run(
        [sys.executable, str(PROJECT / "bench" / "stages.py"), "--calls", "5", "--batches", "2"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=PROJECT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()[2:]}
    for stage in ("parse", "check", "triage", "gather", "record", "rules", "cards", "answer"):
        assert float(rows[stage][0]) > 0, result.stdout
    assert float(rows["handle"][0]) > 0
