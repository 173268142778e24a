"""The installed package must carry its data: `pip install .` (not only editable installs)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from cds_service.card_builder.content import content_root
from cds_service.rules.registry import TOPICS

PROJECT = Path(__file__).resolve().parents[1]


def test_card_content_is_found_wherever_the_package_runs_from() -> None:
    names = {entry.name for entry in content_root().iterdir()}
    assert {f"{topic}.toml" for topic in TOPICS} | {"_common.toml"} <= names


def test_wheel_contains_cards_terminology_and_schemas(tmp_path: Path) -> None:
    source = tmp_path / "src"
    shutil.copytree(
        PROJECT,
        source,
        ignore=shutil.ignore_patterns(
            ".venv", ".git", "build", "*.egg-info", "__pycache__", "tests"
        ),
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-w",
            str(tmp_path),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    wheel = next(tmp_path.glob("back_pain_cds-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "cds_service/card_content/_common.toml" in names
    assert all(f"cds_service/card_content/{t}.toml" in names for t in TOPICS)
    assert "cds_service/terminology/data/concepts.json" in names
    assert "cds_service/terminology/data/orderables.json" in names
    assert any(n.startswith("cds_service/terminology/data/valuesets/") for n in names)
    assert "cds_service/protocol/schemas/request.schema.json" in names
    assert "cds_service/http/openapi.json" in names
    # The pages' templates and assets, and the fixture scenarios /preview offers.
    for page_file in ("templates/preview.html", "templates/dashboard.html", "static/preview.js"):
        assert f"cds_service/http/pages/{page_file}" in names
    scenario = "cds_service/fixture_library/opioid-tramadol-acute-low-back-pain"
    assert {f"{scenario}/scenario.json", f"{scenario}/request.json"} <= names
    assert not any(
        n.startswith("cds_service/fixture_library/") and n.endswith("bundle.json") for n in names
    )


def test_every_python_package_is_listed_in_pyproject() -> None:
    import tomllib

    listed = set(
        tomllib.loads((PROJECT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(path.parent.relative_to(PROJECT).parts)
        for path in (PROJECT / "cds_service").rglob("__init__.py")
    }
    assert found <= listed, f"add to [tool.setuptools] packages: {sorted(found - listed)}"
