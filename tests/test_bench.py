"""The benchmark itself runs: a smoke run with tiny sizes and durations (no targets enforced).

The full benchmark is not run here: it takes minutes and its numbers mean something only on a
quiet machine. `python bench/run.py` runs it (see the README's Performance section).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
    served = [row for row in rows if row and row[0] in {"baseline", "service"} and len(row) == 7]
    assert len(served) == 6 and all(float(row[1]) > 0 for row in served)
    assert all(row[6] == "0" for row in served), out  # no errors, no refused requests
    verdicts = [line for line in out.splitlines() if line.startswith(("PASS", "FAIL"))]
    assert len(verdicts) == 10
    for target in ("throughput vs bare Flask", "cold start", "deadline", "p99"):
        assert any(target in line for line in verdicts), target
