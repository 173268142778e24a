"""Replay protection follows the store: two instances sharing the suite's PostgreSQL accept a
token once between them; on SQLite the record lives beside the store and survives a restart;
CDS_REPLAY_DB still overrides both; a PostgreSQL outage falls back to this host's record."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from conftest import EVALUATION_DATE, load_fixture
from flask import Flask
from jwt_clients import PUBLIC_URL, SIGN_PATH, bearer, es384_client
from postgres_server import PostgresServer

from cds_service.config import Settings
from cds_service.http.auth import Authenticator
from cds_service.http.replay import ReplayCache, StoreReplayCache
from cds_service.store.database import parse_database_url
from cds_service.store.store import DecisionStore

CLIENT = es384_client()
SECRET = "replay-test-secret-" + "r" * 32


def _settings(database_url: str, **changes: Any) -> Settings:
    return Settings(
        evaluation_date=EVALUATION_DATE,
        trusted_clients=(CLIENT.trusted(),),
        public_url=PUBLIC_URL,
        database_url=database_url,
        patient_key_secret=SECRET,
        **changes,
    )


@pytest.fixture
def instances(make_app: Callable[..., Flask]) -> Callable[..., Flask]:
    """Apps made like separate service instances (each its own store engine and record)."""
    return lambda database_url, **changes: make_app(_settings(database_url, **changes))


def _call(app: Flask, token: str) -> int:
    request = load_fixture("opioid-tramadol-acute-low-back-pain")[1]
    return app.test_client().post(SIGN_PATH, json=request, headers=bearer(token)).status_code


def test_a_token_replayed_to_a_second_instance_on_the_same_postgresql_is_refused(
    postgres_server: PostgresServer, instances: Callable[..., Flask]
) -> None:
    url = postgres_server.create_database()
    first, second = instances(url), instances(url)
    token = CLIENT.token()
    assert _call(first, token) == 200
    assert _call(second, token) == 401
    assert _call(first, token) == 401
    other = CLIENT.token()
    assert _call(second, other) == 200  # each instance accepts new tokens


def test_one_token_sent_to_two_instances_at_once_is_accepted_once(
    postgres_server: PostgresServer, instances: Callable[..., Flask]
) -> None:
    url = postgres_server.create_database()
    apps = [instances(url) for _ in range(4)]
    for _ in range(5):
        token = CLIENT.token()
        with ThreadPoolExecutor(max_workers=4) as pool:
            statuses = sorted(pool.map(lambda app, t=token: _call(app, t), apps))
        assert statuses == [200, 401, 401, 401]


def test_on_sqlite_the_record_is_beside_the_store_and_survives_a_restart(
    tmp_path: Path, instances: Callable[..., Flask]
) -> None:
    url = f"sqlite:///{tmp_path / 'cds-decisions.db'}"
    token = CLIENT.token()
    before = instances(url)
    assert _call(before, token) == 200
    before.extensions["cds_store"].dispose()
    after = instances(url)  # a restart: a new app, the same files
    assert _call(after, token) == 401
    assert (tmp_path / "cds-decisions.db-used-tokens").is_file()


def test_cds_replay_db_overrides_the_store(
    postgres_server: PostgresServer, tmp_path: Path, instances: Callable[..., Flask]
) -> None:
    replay_db = str(tmp_path / "used.sqlite3")
    token = CLIENT.token()
    on_postgres = instances(postgres_server.create_database(), replay_db=replay_db)
    assert _call(on_postgres, token) == 200
    on_sqlite = instances(f"sqlite:///{tmp_path / 'd.db'}", replay_db=replay_db)
    assert _call(on_sqlite, token) == 401  # the same file, though the stores differ
    assert not (tmp_path / "d.db-used-tokens").exists()


def test_while_postgresql_hangs_tokens_are_checked_on_this_host(
    postgres_server: PostgresServer,
    instances: Callable[..., Flask],
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = instances(postgres_server.create_database())
    assert _call(app, CLIENT.token()) == 200  # a pooled connection to the store
    known = CLIENT.token()
    assert _call(app, known) == 200  # recorded in the store and on this host
    with postgres_server.frozen(), caplog.at_level(logging.WARNING, logger="cds_service"):
        fresh = CLIENT.token()
        started = time.monotonic()
        assert _call(app, fresh) == 200
        assert time.monotonic() - started < 1.5  # waited for the store briefly, then went on
        assert _call(app, fresh) == 401  # caught by this host's record
        assert _call(app, known) == 401
    assert "replay_check_local" in [getattr(r, "event", None) for r in caplog.records]


def test_the_record_follows_the_store(tmp_path: Path, postgres_server: PostgresServer) -> None:
    def record(url: str, **changes: Any) -> Any:
        settings = dataclasses.replace(_settings(url), **changes)
        store = DecisionStore(parse_database_url(url))
        authenticator = Authenticator.from_settings(settings, store)
        assert authenticator is not None
        return authenticator._replay_cache

    sqlite_url = f"sqlite:///{tmp_path / 'd.db'}"
    assert isinstance(record(sqlite_url), ReplayCache)
    assert record(sqlite_url).path == f"{tmp_path / 'd.db'}-used-tokens"
    assert isinstance(record(postgres_server.create_database()), StoreReplayCache)
    override = record(postgres_server.create_database(), replay_db=str(tmp_path / "r.db"))
    assert isinstance(override, ReplayCache) and override.path == str(tmp_path / "r.db")
