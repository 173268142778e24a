"""Trusted clients' public keys: JWK Set parsing, and fetching from an allow-listed `jku`.

Each usable key is pinned to exactly one signing algorithm, decided by the key itself (its
type, curve and declared `alg`), so a token can never choose how its signature is checked.
Fetched sets are cached per process with a TTL; a token naming an unknown `kid` causes at most
one refetch, and fetch attempts for a URL are rate-limited, so a flood of made-up `kid`s or an
unreachable endpoint costs at most one short request per interval.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import requests
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from jwt.exceptions import InvalidKeyError

log = logging.getLogger(__name__)

SUPPORTED_ALGORITHMS = frozenset({"ES256", "ES384", "RS256", "RS384"})
_EC_CURVE_ALGORITHMS = {"P-256": "ES256", "P-384": "ES384"}
_RSA_ALGORITHMS = frozenset({"RS256", "RS384"})
# CDS Hooks recommends RS384; an RSA key that does not declare `alg` is used with RS384 only.
_RSA_DEFAULT_ALGORITHM = "RS384"
_MIN_RSA_BITS = 2048
_PRIVATE_KEYS = (EllipticCurvePrivateKey, RSAPrivateKey)

DEFAULT_TTL_SECONDS = 300.0
DEFAULT_MIN_FETCH_INTERVAL_SECONDS = 30.0
DEFAULT_FETCH_TIMEOUT_SECONDS = 3.0
_MAX_KEY_SET_BYTES = 256 * 1024


class KeySetUnavailable(Exception):
    """The key set could not be fetched (network, HTTP status, size or JSON problem)."""


@dataclass(frozen=True)
class VerificationKey:
    kid: str
    algorithm: str
    public_key: Any


def _pinned_algorithm(jwk: Mapping[str, Any]) -> str | None:
    declared = jwk.get("alg")
    if jwk.get("kty") == "EC":
        algorithm = _EC_CURVE_ALGORITHMS.get(jwk.get("crv"))  # type: ignore[arg-type]
    elif jwk.get("kty") == "RSA":
        algorithm = declared if declared in _RSA_ALGORITHMS else None
        if declared is None:
            algorithm = _RSA_DEFAULT_ALGORITHM
    else:
        return None  # symmetric ("oct") and other key types are never trusted
    if algorithm is None or (declared is not None and declared != algorithm):
        return None
    return algorithm


def verification_key(jwk: Any) -> VerificationKey | None:
    """The signature-checking key a JWK describes, or None when it is not usable for that."""
    if not isinstance(jwk, dict):
        return None
    kid = jwk.get("kid")
    if not isinstance(kid, str) or not kid:
        return None
    if jwk.get("use", "sig") != "sig":
        return None
    key_ops = jwk.get("key_ops")
    if key_ops is not None and (not isinstance(key_ops, list) or "verify" not in key_ops):
        return None
    algorithm = _pinned_algorithm(jwk)
    if algorithm is None:
        return None
    loader = ECAlgorithm if algorithm.startswith("ES") else RSAAlgorithm
    try:
        key = loader.from_jwk(jwk)
    except (InvalidKeyError, ValueError, KeyError, TypeError):
        return None
    # A set that (wrongly) carries private parts still yields only the public half here.
    public_key = key.public_key() if isinstance(key, _PRIVATE_KEYS) else key
    if algorithm.startswith("RS") and public_key.key_size < _MIN_RSA_BITS:
        return None
    return VerificationKey(kid, algorithm, public_key)


def parse_key_set(document: Any) -> dict[str, VerificationKey]:
    """`kid` → key for every usable key of a JWK Set; keys that cannot verify are left out."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise KeySetUnavailable("not a JWK Set (no 'keys' list)")
    keys: dict[str, VerificationKey] = {}
    for jwk in document["keys"]:
        key = verification_key(jwk)
        if key is not None:
            keys.setdefault(key.kid, key)
    return keys


def fetch_key_set(url: str, timeout: float = DEFAULT_FETCH_TIMEOUT_SECONDS) -> Any:
    """GET a JWK Set document with a short overall deadline and a size cap."""
    deadline = time.monotonic() + timeout
    try:
        with requests.get(
            url,
            timeout=(timeout, timeout),
            stream=True,
            # The configured URL must be the final one: keys are never taken from elsewhere.
            allow_redirects=False,
            headers={"Accept": "application/jwk-set+json, application/json"},
        ) as response:
            if response.status_code != 200:
                raise KeySetUnavailable(f"HTTP {response.status_code}")
            body = bytearray()
            for chunk in response.iter_content(16 * 1024):
                body += chunk
                if len(body) > _MAX_KEY_SET_BYTES:
                    raise KeySetUnavailable("key set too large")
                if time.monotonic() > deadline:
                    raise KeySetUnavailable("timed out")
    except (requests.RequestException, OSError) as error:
        raise KeySetUnavailable(type(error).__name__) from None
    try:
        return json.loads(body)
    except ValueError:
        raise KeySetUnavailable("not JSON") from None


@dataclass
class _CachedSet:
    keys: dict[str, VerificationKey] | None = None
    fetched_at: float = -math.inf
    attempted_at: float = -math.inf
    lock: threading.Lock = field(default_factory=threading.Lock)


class KeySetCache:
    """Fetched JWK Sets by URL, for one worker process."""

    def __init__(
        self,
        *,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        min_fetch_interval_seconds: float = DEFAULT_MIN_FETCH_INTERVAL_SECONDS,
        fetch: Callable[[str], Any] = fetch_key_set,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl_seconds
        self._min_interval = min_fetch_interval_seconds
        self._fetch = fetch
        self._clock = clock
        self._sets: dict[str, _CachedSet] = {}
        self._sets_lock = threading.Lock()

    def key(self, url: str, kid: str) -> VerificationKey | None:
        """The key `kid` from the set at `url`, or None when the set does not have it.

        Raises KeySetUnavailable when no copy of the set could ever be fetched.
        """
        with self._sets_lock:
            cached = self._sets.setdefault(url, _CachedSet())
        with cached.lock:
            now = self._clock()
            stale = now - cached.fetched_at >= self._ttl
            unknown_kid = cached.keys is not None and kid not in cached.keys
            if (stale or unknown_kid) and now - cached.attempted_at >= self._min_interval:
                reason = "unknown kid" if unknown_kid else "expired"
                if cached.keys is None:
                    reason = "first"
                self._refresh(url, cached, now, reason)
            if cached.keys is None:
                raise KeySetUnavailable("no copy of the key set")
            return cached.keys.get(kid)

    def _refresh(self, url: str, cached: _CachedSet, now: float, reason: str) -> None:
        cached.attempted_at = now
        try:
            keys = parse_key_set(self._fetch(url))
        except (KeySetUnavailable, OSError, ValueError) as error:
            # A stale copy stays in use while the endpoint is down.
            log.warning(
                "key set fetch failed",
                extra={"event": "jwks_fetch_failed", "jku": url, "reason": str(error)},
            )
            return
        cached.keys, cached.fetched_at = keys, now
        log.info(
            "key set fetched",
            extra={"event": "jwks_fetched", "jku": url, "keys": len(keys), "reason": reason},
        )
