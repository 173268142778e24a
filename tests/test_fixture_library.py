"""The fixture library: complete, current, loadable into one FHIR server, valid FHIR R4."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import FIXTURES, PROJECT_ROOT, fixture_dirs
from fhir.resources.R4B import get_fhir_model_class

from cds_service.fhir.parsing import bundle_entries

PARTS = ("scenario.json", "request.json", "expected.json", "bundle.json")

# What the library promises to demonstrate (issue #6); each must be shown by some scenario.
REQUIRED_FEATURES = {
    "red flag: neurologic deficit / cauda equina",
    "red flag: fever by temperature (°C)",
    "red flag: fever by temperature (°F)",
    "red flag: fever by diagnosis",
    "red flag: IV drug use",
    "red flag: immunosuppression (HIV)",
    "red flag: immunosuppression (transplant procedure)",
    "red flag: long-term systemic corticosteroids",
    "red flag: known spinal infection",
    "red flag: history of cancer",
    "red flag: unexplained weight loss (coded)",
    "red flag: unexplained weight loss (measured)",
    "red flag: age over 50 with new pain",
    "red flag: recent trauma / spinal fracture",
    "red flag: osteoporosis",
    "exclusion: active cancer",
    "exclusion: hospice / end-of-life care",
    "exclusion: sickle cell disease",
    "NSAID contraindication: CKD stage 4-5",
    "NSAID contraindication: GI bleeding / peptic ulcer",
    "NSAID contraindication: anticoagulant",
    "NSAID contraindication: heart failure",
    "order-select with selections",
    "patient-view",
    "messy: sandbox-style draft",
    "messy: medicationReference to a Medication in the Bundle",
    "messy: OID code systems",
    "messy: undotted ICD-10-CM code",
    "messy: text-only code",
    "messy: unknown resource types",
    "messy: malformed resource skipped",
    "messy: null prefetch keys",
}


def _load(folder: Path, part: str) -> Any:
    return json.loads((folder / part).read_text(encoding="utf-8"))


def _is_messy(folder: Path) -> bool:
    return any(s.startswith("messy:") for s in _load(folder, "scenario.json")["shows"])


def _prefetch_resources(request: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for value in request["prefetch"].values():
        if isinstance(value, dict) and value.get("resourceType") == "Bundle":
            found.extend(bundle_entries(value))
        elif isinstance(value, dict):
            found.append(value)
    return found


def test_generator_output_is_committed() -> None:
    result = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "scripts" / "build_fixtures.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_library_has_at_least_30_complete_scenarios() -> None:
    folders = fixture_dirs()
    assert len(folders) >= 30
    for folder in folders:
        for part in PARTS:
            assert (folder / part).is_file(), f"{folder.name} lacks {part}"
        scenario = _load(folder, "scenario.json")
        assert scenario["name"] == folder.name
        assert scenario["shows"], f"{folder.name} does not say what it shows"


def test_every_promised_feature_is_shown() -> None:
    shown = {feature for f in fixture_dirs() for feature in _load(f, "scenario.json")["shows"]}
    assert shown >= REQUIRED_FEATURES, sorted(REQUIRED_FEATURES - shown)


def test_index_lists_every_scenario() -> None:
    index = (FIXTURES / "README.md").read_text(encoding="utf-8")
    for folder in fixture_dirs():
        assert f"[`{folder.name}`]({folder.name}/)" in index


@pytest.mark.parametrize("folder", fixture_dirs(), ids=lambda p: p.name)
def test_bundle_is_a_valid_idempotent_transaction(folder: Path) -> None:
    bundle = _load(folder, "bundle.json")
    get_fhir_model_class("Bundle").model_validate(bundle)
    assert bundle["type"] == "transaction"
    scenario = _load(folder, "scenario.json")
    first = bundle["entry"][0]["resource"]
    assert (first["resourceType"], first["id"]) == ("Patient", scenario["patientId"])
    present = set()
    for entry in bundle["entry"]:
        resource = entry["resource"]
        # Each resource on its own too: the Bundle model does not check every nested type.
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
        reference = f"{resource['resourceType']}/{resource['id']}"
        assert entry["request"] == {"method": "PUT", "url": reference}
        present.add(reference)
    # Every reference resolves inside the Bundle, so strict servers accept it on its own.
    for entry in bundle["entry"]:
        for target in _references(entry["resource"]):
            assert target in present, f"{folder.name}: {target} is not in the Bundle"


def _references(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [v for k, v in node.items() if k == "reference" and isinstance(v, str)]
        return found + [r for v in node.values() for r in _references(v)]
    if isinstance(node, list):
        return [r for item in node for r in _references(item)]
    return []


def test_ids_are_unique_across_the_library() -> None:
    seen: dict[str, str] = {}
    patients: set[str] = set()
    for folder in fixture_dirs():
        for entry in _load(folder, "bundle.json")["entry"]:
            resource = entry["resource"]
            key = f"{resource['resourceType']}/{resource['id']}"
            assert key not in seen, f"{key} is in {seen.get(key)} and {folder.name}"
            seen[key] = folder.name
        patient_id = _load(folder, "scenario.json")["patientId"]
        assert patient_id not in patients
        patients.add(patient_id)
        assert _load(folder, "request.json")["context"]["patientId"] == patient_id


@pytest.mark.parametrize(
    "folder", [f for f in fixture_dirs() if not _is_messy(f)], ids=lambda p: p.name
)
def test_bundle_holds_exactly_what_the_prefetch_holds(folder: Path) -> None:
    """A server loaded with the Bundle answers the prefetch queries with the same data."""
    request = _load(folder, "request.json")
    bundled = {
        f"{e['resource']['resourceType']}/{e['resource']['id']}": e["resource"]
        for e in _load(folder, "bundle.json")["entry"]
    }
    prefetched = {f"{r['resourceType']}/{r['id']}": r for r in _prefetch_resources(request)}
    assert prefetched == bundled
