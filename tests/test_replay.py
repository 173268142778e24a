"""The record of used token ids: first use wins, also across worker processes."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from cds_service.http.replay import ReplayCache, ReplayCacheError


def test_first_use_then_replay(tmp_path: Path) -> None:
    cache = ReplayCache(str(tmp_path / "used.sqlite3"))
    assert cache.first_use("iss-a", "jti-1", expires_at=1360.0, now=1000.0)
    assert not cache.first_use("iss-a", "jti-1", expires_at=1360.0, now=1001.0)
    # Another issuer's token with the same id is another token.
    assert cache.first_use("iss-b", "jti-1", expires_at=1360.0, now=1001.0)


def test_entries_expire_with_their_token(tmp_path: Path) -> None:
    cache = ReplayCache(str(tmp_path / "used.sqlite3"))
    assert cache.first_use("iss", "jti", expires_at=1360.0, now=1000.0)
    assert not cache.first_use("iss", "jti", expires_at=1360.0, now=1359.0)
    # Past its expiry the token itself is refused as expired; its id may be recorded again.
    assert cache.first_use("iss", "jti", expires_at=2000.0, now=1361.0)
    assert not cache.first_use("iss", "jti", expires_at=2000.0, now=1362.0)


def test_expired_entries_are_purged(tmp_path: Path) -> None:
    path = tmp_path / "used.sqlite3"
    cache = ReplayCache(str(path))
    for index in range(10):
        cache.first_use("iss", f"old-{index}", expires_at=1100.0, now=1000.0)
    cache.first_use("iss", "new", expires_at=5000.0, now=4000.0)
    with sqlite3.connect(path) as connection:
        (count,) = connection.execute("SELECT count(*) FROM used_tokens").fetchone()
    assert count == 1


def test_shared_by_separate_caches_on_one_file(tmp_path: Path) -> None:
    path = str(tmp_path / "used.sqlite3")
    assert ReplayCache(path).first_use("iss", "jti", expires_at=2000.0, now=1000.0)
    assert not ReplayCache(path).first_use("iss", "jti", expires_at=2000.0, now=1000.0)


def test_default_is_a_private_temporary_file() -> None:
    cache = ReplayCache()
    folder = Path(cache.path).parent
    assert folder.stat().st_mode & 0o077 == 0
    assert cache.first_use("iss", "jti", expires_at=2000.0, now=1000.0)


def test_unusable_location_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ReplayCacheError):
        ReplayCache(str(tmp_path))  # a folder, not a database file


def _claim_all(cache: ReplayCache, token_ids: list[str], results: multiprocessing.Queue) -> None:
    claimed = [jti for jti in token_ids if cache.first_use("iss", jti, 2e9, now=1e9)]
    results.put(claimed)


def test_each_token_id_is_claimed_once_across_forked_processes(tmp_path: Path) -> None:
    # As under gunicorn: the cache is made (and even used) before the workers fork.
    cache = ReplayCache(str(tmp_path / "used.sqlite3"))
    assert cache.first_use("iss", "before-fork", 2e9, now=1e9)
    token_ids = [f"jti-{index}" for index in range(150)] + ["before-fork"]
    context = multiprocessing.get_context("fork")
    results: multiprocessing.Queue = context.Queue()
    workers = [
        context.Process(target=_claim_all, args=(cache, token_ids, results)) for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    claimed = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    everything = [jti for per_process in claimed for jti in per_process]
    assert sorted(everything) == sorted(token_ids[:-1])  # each once; the pre-fork one never
