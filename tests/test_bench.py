"""The benchmark itself runs: a smoke run with tiny sizes and durations (no targets enforced).

The full benchmark is not run here: it takes minutes and its numbers mean something only on a
quiet machine. `python bench/run.py` runs it (see docs/operators.md, Performance).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

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
    scenarios = len([p for p in (PROJECT / "fhir_fixtures").iterdir() if p.is_dir()])
    assert f"and the {scenarios} scenarios of the mix" in out
    for workload in (
        f"realistic mix ({scenarios} scenarios",
        "large record (100 resources",
        "FHIR fallback",
    ):
        assert workload in out
    rows = [line.split() for line in out.splitlines()]
    served = [
        row
        for row in rows
        if row and row[0] in {"baseline", "service", "cached", "floor"} and len(row) == 7
    ]
    # The mix: four servers; the large record: three; the fallback: two.
    assert len(served) == 9 and all(float(row[1]) > 0 for row in served)
    assert all(row[6] == "0" for row in served), out  # no errors, no refused requests
    for note in ("cached (the same requests repeated)", "floor (guideline work replayed",
                 "µs a resource over the baseline", "worker memory", "slow connections dropped",
                 "hanging FHIR server", "discovery", "cold start service"):  # fmt: skip
        assert note in out, note
    verdicts = [line for line in out.splitlines() if line.startswith(("PASS", "FAIL"))]
    assert len(verdicts) == 15
    for target in ("throughput vs bare Flask", "cold start", "deadline", "p99", "per resource",
                   "RSS", "slow-header", "hanging FHIR", "discovery"):  # fmt: skip
        assert any(target in line for line in verdicts), target
    # The stress workloads pass even in a seconds-long run: nothing there depends on speed.
    for target in ("slow-header clients", "hanging FHIR server", "deadline"):
        assert all(line.startswith("PASS") for line in verdicts if target in line), out


def test_workloads_send_content_new_to_the_service_unless_repeated() -> None:
    sys.path.insert(0, str(PROJECT / "bench"))
    try:
        import loadgen
        import workloads
    finally:
        sys.path.remove(str(PROJECT / "bench"))
    mix = workloads.fixture_mix()
    scenarios = [p for p in (PROJECT / "fhir_fixtures").iterdir() if p.is_dir()]
    assert len(mix) == len(scenarios) and {w.prefetch_resources for w in mix} == {40}
    for workload in (workloads.realistic(), mix[0], mix[-1]):
        one, two = (json.loads(workload.body(n)) for n in (1, 2))
        ids = _ids(one)
        assert ids and ids.isdisjoint(_ids(two))  # every id and reference differs
        assert one["hookInstance"] != two["hookInstance"]
        assert json.loads(workload.body(1)) == one  # the same number: the same request
    calls = [loadgen.Call(w.path, w.template) for w in mix[:2]]
    fresh = loadgen._requests("127.0.0.1:1", calls, first=5)
    repeated = loadgen._requests("127.0.0.1:1", calls, first=None)
    fresh_bodies = [fresh() for _ in range(4)]
    repeated_bodies = [repeated() for _ in range(4)]
    assert len(set(fresh_bodies)) == 4
    assert repeated_bodies[0] == repeated_bodies[2] != repeated_bodies[1] == repeated_bodies[3]


def _ids(document: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(document, dict):
        for key, value in document.items():
            if key in {"id", "reference", "patientId"} and isinstance(value, str):
                found.add(value)
            found |= _ids(value)
    elif isinstance(document, list):
        for value in document:
            found |= _ids(value)
    return found


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
    document = json.loads(realistic.body(1))
    floor_app.replay_guideline_work(runtime.handler, realistic.service, document)
    client = create_app(settings, runtime=runtime).test_client()

    answers = [
        client.post(realistic.path, json=json.loads(realistic.body(n))).get_json() for n in (2, 3)
    ]
    for answer in answers:
        topics = {card["source"]["topic"]["code"] for card in answer["cards"]}
        assert topics == realistic.expected_topics
    first, second = ({card["uuid"] for card in answer["cards"]} for answer in answers)
    assert len(first) == len(answers[0]["cards"]) and not first & second

    broken = {key: value for key, value in document.items() if key != "hookInstance"}
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
