"""Shared test fixtures: one loaded runtime per session, a fresh Flask app per test."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from postgres_server import PostgresServer, PostgresUnavailable, start_postgres

from cds_service.app import create_app
from cds_service.config import Settings
from cds_service.http import collector
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


@pytest.fixture(autouse=True, scope="session")
def _scratch_working_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Tests run in a scratch folder, so that an app or server started with the default
    decision store (`cds-decisions.db` in the working folder) never writes into the checkout.
    """
    previous = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("working-folder"))
    yield
    os.chdir(previous)


@pytest.fixture(autouse=True)
def _collector_pause_ends_with_the_test() -> Iterator[None]:
    """Flask's test client does not close answers as a WSGI server does, so a hook call's
    collector pause (cds_service.http.collector) would last until the next request; end it
    with the test instead."""
    yield
    collector.end_pause()


@pytest.fixture(scope="session")
def runtime() -> Runtime:
    return Runtime.load(SETTINGS)


@pytest.fixture(scope="session")
def app_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """SETTINGS with the decision store in a temporary SQLite file (never the working folder)."""
    folder = tmp_path_factory.mktemp("store")
    return dataclasses.replace(SETTINGS, database_url=f"sqlite:///{folder / 'cds-decisions.db'}")


@pytest.fixture
def app(runtime: Runtime, app_settings: Settings) -> Iterator[Flask]:
    application = create_app(app_settings, runtime=runtime)
    application.config["TESTING"] = True
    yield application
    application.extensions["cds_decision_log"].close()
    application.extensions["cds_store"].dispose()


@pytest.fixture
def make_app(runtime: Runtime) -> Iterator[Callable[..., Flask]]:
    """Apps with the given settings (and the session's runtime unless given), each like a
    separate service instance; their decision logs and stores are closed after the test."""
    made: list[Flask] = []

    def _make(settings: Settings, runtime_for_app: Runtime | None = None) -> Flask:
        application = create_app(settings, runtime=runtime_for_app or runtime)
        made.append(application)
        return application

    yield _make
    for application in made:
        application.extensions["cds_decision_log"].close()
        application.extensions["cds_store"].dispose()


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


# --- the decision store on both backends ------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the session (see tests/postgres_server.py for where from)."""
    try:
        server = start_postgres()
    except PostgresUnavailable as error:
        pytest.skip(f"PostgreSQL tests skipped: no PostgreSQL server could be started ({error})")
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty store of each backend: a new SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'cds-decisions.db'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.create_database()
