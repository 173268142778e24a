"""`cds-service fixtures review`: every fixture's cards on one sheet, budget checked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import FIXTURES, PROJECT_ROOT

from cds_service.tooling.review import budget_problems


def test_review_sheet_shows_each_card_as_a_clinician_reads_it(tmp_path: Path) -> None:
    out = tmp_path / "review.md"
    scenarios = [FIXTURES / "opioid-tramadol-acute-low-back-pain", FIXTURES / "no-back-pain-opioid"]
    store = tmp_path / "store.db"
    out_args = ("--out", str(out))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cds_service",
            "fixtures",
            "review",
            *map(str, scenarios),
            *out_args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=PROJECT_ROOT,
        env={"PATH": "/usr/bin:/bin", "CDS_DATABASE_URL": f"sqlite:///{store}"},
    )
    assert result.returncode == 0, result.stderr
    sheet = out.read_text()
    assert "## opioid-tramadol-acute-low-back-pain (order-sign)" in sheet
    assert "### WARNING · `opioid-avoidance`" in sheet
    assert "> **This patient:**" in sheet  # the detail, as markdown
    assert "Suggestion (recommended): **Replace tramadol" in sheet
    assert "create MedicationRequest: diclofenac sodium 1% topical gel" in sheet
    assert "Link: [Full guidance and patient handout](http://localhost/guidance/" in sheet
    assert "## no-back-pain-opioid (order-sign)" in sheet and "*No cards.*" in sheet
    assert "Over budget" not in sheet
    # Reviewing never writes the fixture cards into the configured decision store.
    assert not store.exists()


def test_budget_problems_name_what_is_too_long() -> None:
    fine = {"summary": "s" * 100, "detail": "d" * 700}
    assert budget_problems(fine) == []
    assert budget_problems({"summary": "s" * 101, "detail": ""}) == [
        "summary over the 100-character target"
    ]
    assert budget_problems({"summary": "s" * 140, "detail": "d" * 701}) == [
        "summary over the 139-character limit",
        "detail over 700 characters",
    ]
