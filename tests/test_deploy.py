"""docker-compose.yml and the Dockerfile, checked without Docker (it may not run here).

The compose file is validated against the Compose Specification's JSON Schema (vendored under
tests/data/compose-spec with its licence and provenance); the Dockerfile is read for the
properties that make it reproducible and safe to run.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import PROJECT_ROOT
from jsonschema import Draft7Validator

COMPOSE_SCHEMA = PROJECT_ROOT / "tests" / "data" / "compose-spec" / "compose-spec.json"
FULL_VERSION_TAG = re.compile(r":v?\d+\.\d+(\.\d+)?([-.][0-9A-Za-z.-]+)?$")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text(encoding="utf-8"))


def _compose_errors(document: Any) -> list[str]:
    schema = json.loads(COMPOSE_SCHEMA.read_text(encoding="utf-8"))
    validator = Draft7Validator(schema)
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]


def test_compose_file_matches_the_compose_specification(compose: dict[str, Any]) -> None:
    assert _compose_errors(compose) == []


def test_the_schema_check_catches_mistakes(compose: dict[str, Any]) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["cds"]["healthchek"] = {"test": ["CMD", "true"]}
    broken["services"]["hapi"]["depends_on"] = {"postgres": {"condition": "when-ready"}}
    assert len(_compose_errors(broken)) >= 2


def test_compose_wires_service_store_fhir_server_and_loader(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"cds", "postgres", "hapi", "fixtures-loader"}

    cds = services["cds"]
    assert cds["command"][:2] == ["cds-service", "serve"]
    assert any("/health" in part for part in cds["healthcheck"]["test"])
    assert cds["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert cds["environment"]["CDS_DATABASE_URL"].startswith("postgresql://cds:")
    assert "@postgres:5432/cds" in cds["environment"]["CDS_DATABASE_URL"]
    assert "CDS_PATIENT_KEY_SECRET" in cds["environment"]

    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    hapi = services["hapi"]
    assert hapi["image"].startswith("hapiproject/hapi:")
    assert FULL_VERSION_TAG.search(hapi["image"]), "pin the HAPI image to a release tag"
    assert FULL_VERSION_TAG.search(services["postgres"]["image"])
    assert hapi["healthcheck"]["test"][0] == "CMD"

    loader = services["fixtures-loader"]
    command = " ".join(loader["command"])
    assert "cds-service fixtures load --fhir-url http://hapi:8080/fhir" in command
    assert loader["depends_on"]["hapi"]["condition"] == "service_healthy"
    assert loader["restart"] == "no"
    assert loader["image"] == cds["image"]


def test_every_compose_variable_is_in_env_example(compose: dict[str, Any]) -> None:
    text = (PROJECT_ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    used = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", text))
    example = (PROJECT_ROOT / ".env.example").read_text(encoding="utf-8")
    declared = set(re.findall(r"^([A-Z_][A-Z0-9_]*)=", example, re.MULTILINE))
    assert used <= declared, sorted(used - declared)
    # The operators' guide documents the deployment (its "Deploy with docker-compose").
    guide = (PROJECT_ROOT / "docs" / "operators.md").read_text(encoding="utf-8")
    for name in used:
        assert f"`{name}`" in guide, f"docs/operators.md does not document {name}"


def _dockerfile() -> list[str]:
    text = (PROJECT_ROOT / "Dockerfile").read_text(encoding="utf-8")
    joined = re.sub(r"\\\n\s*", " ", text)
    return [
        line.strip() for line in joined.splitlines() if line.strip() and not line.startswith("#")
    ]


def test_dockerfile_pins_its_base_image() -> None:
    lines = _dockerfile()
    args = dict(
        re.match(r"ARG (\w+)=(\S+)", line).groups()  # type: ignore[union-attr]
        for line in lines
        if re.match(r"ARG \w+=", line)
    )
    bases = [line.split()[1] for line in lines if line.startswith("FROM ")]
    assert bases
    for base in bases:
        image = args.get(base.strip("${}"), base)
        assert ":latest" not in image and FULL_VERSION_TAG.search(image), image


def test_dockerfile_runs_as_non_root_without_dev_dependencies() -> None:
    lines = _dockerfile()
    final_stage = lines[max(i for i, line in enumerate(lines) if line.startswith("FROM ")) :]
    users = [line.split()[1] for line in final_stage if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    last_user = max(i for i, line in enumerate(final_stage) if line.startswith("USER "))
    assert any(line.startswith("CMD ") for line in final_stage[last_user:])
    installs = " ".join(line for line in lines if "pip install" in line or "pip wheel" in line)
    for dev in ("[test]", "pytest", "ruff", "responses", "-e "):
        assert dev not in installs
    assert any(line.startswith("HEALTHCHECK ") and "/health" in line for line in final_stage)


def test_dockerfile_copies_only_what_exists_and_what_the_image_needs() -> None:
    copied = []
    for line in _dockerfile():
        if line.startswith("COPY ") and "--from=" not in line:
            copied += [part for part in line.split()[1:-1] if not part.startswith("--")]
    for source in copied:
        assert (PROJECT_ROOT / source).exists(), f"Dockerfile copies missing {source}"
    assert {"pyproject.toml", "cds_service", "cards", "fhir_fixtures"} <= set(copied)
    ignored = (PROJECT_ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert {".venv", ".git", "tests", ".env"} <= set(ignored)
    assert not (set(copied) & set(ignored)), "the Dockerfile copies something .dockerignore drops"


def test_vendored_schema_has_licence_and_provenance() -> None:
    folder = COMPOSE_SCHEMA.parent
    assert "Apache License" in (folder / "LICENSE").read_text(encoding="utf-8")
    provenance = (folder / "README.md").read_text(encoding="utf-8")
    assert "compose-spec/compose-spec" in provenance and re.search(r"[0-9a-f]{40}", provenance)


def test_compose_loader_uses_the_packaged_default_path() -> None:
    # The loader runs in WORKDIR /app with no PATH argument: fhir_fixtures/ must be there.
    lines = _dockerfile()
    final_stage = lines[max(i for i, line in enumerate(lines) if line.startswith("FROM ")) :]
    workdir = [line.split()[1] for line in final_stage if line.startswith("WORKDIR ")][-1]
    assert workdir == "/app"
    assert any(line == "COPY fhir_fixtures ./fhir_fixtures" for line in final_stage)
    assert Path(PROJECT_ROOT / "fhir_fixtures").is_dir()
