"""Shared test fixtures: one loaded runtime per session, a fresh Flask app per test."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from cds_service.app import create_app
from cds_service.config import Settings
from cds_service.runtime import Runtime

PROJECT_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = PROJECT_ROOT / "fhir_fixtures"
EVALUATION_DATE = date(2026, 11, 22)
SETTINGS = Settings(evaluation_date=EVALUATION_DATE)


def fixture_dirs() -> list[Path]:
    return sorted(p for p in FIXTURES.iterdir() if (p / "request.json").is_file())


def load_fixture(name: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(scenario metadata, request, expected) of one fixture scenario."""
    folder = FIXTURES / name
    return tuple(  # type: ignore[return-value]
        json.loads((folder / f"{part}.json").read_text(encoding="utf-8"))
        for part in ("scenario", "request", "expected")
    )


@pytest.fixture(scope="session")
def runtime() -> Runtime:
    return Runtime.load(SETTINGS)


@pytest.fixture
def app(runtime: Runtime) -> Flask:
    application = create_app(SETTINGS, runtime=runtime)
    application.config["TESTING"] = True
    return application


@pytest.fixture
def client(app: Flask) -> Iterator[FlaskClient]:
    with app.test_client() as test_client:
        yield test_client


@pytest.fixture
def fixture_request() -> Any:
    """A deep copy of a fixture's request, safe to edit."""

    def _load(name: str) -> dict[str, Any]:
        return copy.deepcopy(load_fixture(name)[1])

    return _load
