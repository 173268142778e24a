"""Trusted clients' key sets: which keys are usable, fetching, caching and rate limits."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import responses
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm
from jwt_clients import ec_key, es384_client, rs384_client, rsa_key

from cds_service.http.jwks import (
    KeySetCache,
    KeySetUnavailable,
    fetch_key_set,
    parse_key_set,
    verification_key,
)

URL = "https://ehr.example.org/.well-known/jwks.json"


@pytest.mark.parametrize(
    ("jwk_members", "algorithm"),
    [({}, "ES384"), ({"alg": None}, "ES384"), ({"use": None}, "ES384")],
)
def test_ec_p384_key_is_pinned_to_es384(jwk_members: dict[str, Any], algorithm: str) -> None:
    key = verification_key(es384_client(jwk_members=jwk_members).public_jwk())
    assert key is not None and key.algorithm == algorithm


def test_p256_key_is_pinned_to_es256() -> None:
    signer = es384_client(algorithm="ES256", private_key=ec_key("P-256"))
    key = verification_key(signer.public_jwk())
    assert key is not None and key.algorithm == "ES256"


@pytest.mark.parametrize(
    ("alg", "expected"), [(None, "RS384"), ("RS384", "RS384"), ("RS256", "RS256")]
)
def test_rsa_key_algorithm(alg: str | None, expected: str) -> None:
    key = verification_key(rs384_client(jwk_members={"alg": alg}).public_jwk())
    assert key is not None and key.algorithm == expected


@pytest.mark.parametrize(
    "jwk",
    [
        {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0", "alg": "HS256"},
        es384_client(jwk_members={"alg": "ES256"}).public_jwk(),  # curve and alg disagree
        es384_client(jwk_members={"use": "enc"}).public_jwk(),
        es384_client(jwk_members={"key_ops": ["encrypt"]}).public_jwk(),
        es384_client(jwk_members={"kid": None}).public_jwk(),
        es384_client(jwk_members={"crv": "P-521"}).public_jwk(),
        rs384_client(jwk_members={"alg": "RS512"}).public_jwk(),
        rs384_client(jwk_members={"alg": "PS384"}).public_jwk(),
        rs384_client(private_key=rsa_key(1024)).public_jwk(),
        {"kty": "EC", "kid": "broken", "crv": "P-384", "x": "AA", "y": "AA"},
        "not a key",
    ],
    ids=[
        "symmetric",
        "alg-curve-mismatch",
        "encryption-use",
        "no-verify-op",
        "no-kid",
        "p521",
        "rs512",
        "ps384",
        "rsa-1024",
        "bad-point",
        "not-an-object",
    ],
)
def test_unusable_keys_are_left_out(jwk: Any) -> None:
    assert verification_key(jwk) is None


def test_private_jwk_yields_only_the_public_key() -> None:
    private = json.loads(ECAlgorithm.to_jwk(ec_key("P-384")))
    private.update({"kid": "k", "alg": "ES384"})
    key = verification_key(private)
    assert key is not None
    assert isinstance(key.public_key, ec.EllipticCurvePublicKey)


def test_parse_key_set_keeps_usable_keys_by_kid() -> None:
    document = {
        "keys": [
            es384_client().public_jwk(),
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            rs384_client().public_jwk(),
        ]
    }
    assert sorted(parse_key_set(document)) == ["ehr-es384", "ehr-rs384"]
    with pytest.raises(KeySetUnavailable):
        parse_key_set({"keys": "nope"})


# --- the cache --------------------------------------------------------------------------------


class _FakeEndpoint:
    def __init__(self, *documents: Any) -> None:
        self.documents = list(documents)
        self.calls = 0

    def __call__(self, url: str) -> Any:
        self.calls += 1
        document = self.documents[min(self.calls, len(self.documents)) - 1]
        if isinstance(document, Exception):
            raise document
        return document


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _cache(endpoint: _FakeEndpoint, clock: _Clock) -> KeySetCache:
    return KeySetCache(ttl_seconds=300, min_fetch_interval_seconds=30, fetch=endpoint, clock=clock)


def test_cached_until_the_ttl_then_refetched() -> None:
    old, new = es384_client(), es384_client(kid="k2", private_key=ec_key("P-384", "k2"))
    endpoint, clock = _FakeEndpoint(old.jwks(), new.jwks()), _Clock()
    cache = _cache(endpoint, clock)
    assert cache.key(URL, "ehr-es384") is not None
    clock.now += 299
    assert cache.key(URL, "ehr-es384") is not None
    assert endpoint.calls == 1
    clock.now += 2
    # Refetched: the old key was withdrawn.
    assert cache.key(URL, "ehr-es384") is None
    assert cache.key(URL, "k2") is not None
    assert endpoint.calls == 2


def test_stale_copy_serves_while_the_endpoint_is_down() -> None:
    signer = es384_client()
    endpoint = _FakeEndpoint(signer.jwks(), KeySetUnavailable("down"))
    clock = _Clock()
    cache = _cache(endpoint, clock)
    assert cache.key(URL, signer.kid) is not None
    clock.now += 400
    assert cache.key(URL, signer.kid) is not None
    assert cache.key(URL, signer.kid) is not None
    assert endpoint.calls == 2  # one failed refresh, then the retry interval holds


def test_no_copy_and_endpoint_down_fails_fast_until_the_interval() -> None:
    signer = es384_client()
    endpoint = _FakeEndpoint(OSError("refused"), signer.jwks())
    clock = _Clock()
    cache = _cache(endpoint, clock)
    for _ in range(3):
        with pytest.raises(KeySetUnavailable):
            cache.key(URL, signer.kid)
    assert endpoint.calls == 1
    clock.now += 30
    assert cache.key(URL, signer.kid) is not None
    assert endpoint.calls == 2


def test_not_a_key_set_counts_as_a_failed_fetch() -> None:
    endpoint, clock = _FakeEndpoint({"error": "nope"}), _Clock()
    with pytest.raises(KeySetUnavailable):
        _cache(endpoint, clock).key(URL, "k")


def test_unknown_kid_refetches_at_most_once_per_interval() -> None:
    signer = es384_client()
    endpoint, clock = _FakeEndpoint(signer.jwks()), _Clock()
    cache = _cache(endpoint, clock)
    assert cache.key(URL, "unknown") is None  # first fetch, kid not there: no second fetch
    assert endpoint.calls == 1
    for _ in range(5):
        assert cache.key(URL, "unknown") is None
    assert endpoint.calls == 1
    clock.now += 31
    assert cache.key(URL, "unknown") is None
    assert cache.key(URL, "unknown") is None
    assert endpoint.calls == 2


# --- fetching ---------------------------------------------------------------------------------


@responses.activate
def test_fetch_reads_a_key_set() -> None:
    signer = es384_client()
    responses.get(URL, json=signer.jwks())
    assert fetch_key_set(URL) == signer.jwks()


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"status": 404}, "HTTP 404"),
        ({"status": 302, "headers": {"Location": "https://evil.example.org/jwks"}}, "HTTP 302"),
        ({"body": b"x" * (300 * 1024)}, "too large"),
        ({"body": b"<html>"}, "not JSON"),
    ],
    ids=["404", "redirect-not-followed", "too-large", "not-json"],
)
@responses.activate
def test_fetch_failures(kwargs: dict[str, Any], reason: str) -> None:
    responses.get(URL, **kwargs)
    with pytest.raises(KeySetUnavailable, match=reason):
        fetch_key_set(URL)
    assert len(responses.calls) == 1


def test_fetch_from_a_closed_port_fails() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(KeySetUnavailable):
        fetch_key_set(f"http://127.0.0.1:{port}/jwks.json", timeout=1)


def test_fetch_from_a_silent_server_gives_up() -> None:
    # The server accepts the connection (backlog) and never answers.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        port = sock.getsockname()[1]
        with pytest.raises(KeySetUnavailable, match="Timeout"):
            fetch_key_set(f"http://127.0.0.1:{port}/jwks.json", timeout=0.3)


@pytest.fixture
def dripping_server() -> Iterator[int]:
    """Answers 200 and then sends one byte at a time (until the client hangs up)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    stop = threading.Event()

    def _serve() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(4096)
            connection.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
            )
            # Bounded, so that a client without a deadline fails the test instead of hanging.
            give_up = time.monotonic() + 5
            try:
                while not stop.is_set() and time.monotonic() < give_up:
                    connection.sendall(b"1\r\n \r\n")
                    time.sleep(0.02)
            except OSError:
                pass

    thread = threading.Thread(target=_serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    listener.close()
    thread.join(timeout=5)


def test_fetch_has_an_overall_deadline(dripping_server: int) -> None:
    # Every read succeeds quickly, so only the overall deadline can end this.
    with pytest.raises(KeySetUnavailable, match="timed out"):
        fetch_key_set(f"http://127.0.0.1:{dripping_server}/jwks.json", timeout=0.5)
