"""CDS Hooks 2.0 "Trusting CDS Clients": service calls carry a JWT signed by a trusted client.

Every request under `/cds-services/{id}` (service calls, feedback and whatever else is added
there) needs `Authorization: Bearer <JWT>`, except CORS preflights; discovery and `/health`
stay open. Without trusted clients configured the service runs in development mode and
accepts every call.

A refused token gets one generic 401: the client is never told which check failed (that would
help an attacker), the token is never echoed, and the reason goes to the request log only.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jwt
from flask import Flask, Response, g, request

from cds_service import metrics
from cds_service.card_builder.profiles import ClientProfile
from cds_service.config import ConfigError, Settings, TrustedClient
from cds_service.http.errors import json_error
from cds_service.http.jwks import (
    SUPPORTED_ALGORITHMS,
    KeySetCache,
    KeySetUnavailable,
    VerificationKey,
    parse_key_set,
)
from cds_service.http.replay import ReplayCacheError, UsedTokens, used_tokens_record
from cds_service.store.store import DecisionStore

log = logging.getLogger(__name__)

PROTECTED_PREFIX = "/cds-services/"
CLOCK_SKEW_SECONDS = 60
# CDS Hooks tokens are per call (the sandbox and Inferno give them 5 minutes); a longer life
# only widens the replay window and the replay record.
MAX_TOKEN_LIFETIME_SECONDS = 3600
_MAX_TOKEN_CHARS = 8192
_MAX_JTI_CHARS = 255
_PRIVATE_JWK_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "k"})
_FEEDBACK_PATH = re.compile(r"^(/cds-services/[^/]+)/feedback$")
_REFUSAL = "Authentication failed: send a valid CDS Hooks JWT as 'Authorization: Bearer <token>'."


class TokenRejected(Exception):
    """Why a token was refused; for the log only, never for the client."""

    def __init__(self, reason: str, issuer: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        # Set only once the issuer is known to be a trusted one (never an arbitrary string).
        self.issuer = issuer


@dataclass(frozen=True)
class AuthenticatedClient:
    issuer: str
    tenant: str | None
    jti: str
    profile: ClientProfile | None = None
    # The FHIR server origins this client may name (its `fhirServers`); None: not limited.
    fhir_servers: tuple[str, ...] | None = None


@dataclass(frozen=True)
class _Client:
    issuer: str
    jku: str | None
    # Inline keys, never fetched; None: fetch from `jku`.
    pinned_keys: Mapping[str, VerificationKey] | None
    tenants: frozenset[str]
    profile: ClientProfile | None = None
    fhir_servers: tuple[str, ...] | None = None


def requires_authentication(path: str) -> bool:
    return path.startswith(PROTECTED_PREFIX) and len(path) > len(PROTECTED_PREFIX)


def expected_audiences(public_url: str, path: str) -> tuple[str, ...]:
    """The `aud` values accepted for a call: the URL invoked (the sandbox signs the feedback
    URL for feedback), and for feedback also the URL of the service it belongs to."""
    audiences = [public_url + path]
    feedback = _FEEDBACK_PATH.match(path)
    if feedback:
        audiences.append(public_url + feedback.group(1))
    return tuple(audiences)


def bearer_token(authorization: str | None) -> str | None:
    scheme, _, credentials = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        return None
    return credentials.strip()


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _pinned_keys(client: TrustedClient) -> Mapping[str, VerificationKey] | None:
    if client.jwks is None:
        return None
    where = f"CDS_TRUSTED_CLIENTS: the jwks of {client.issuer!r}"
    for jwk in client.jwks["keys"]:
        if isinstance(jwk, dict) and _PRIVATE_JWK_MEMBERS & set(jwk):
            raise ConfigError(f"{where} holds a private or secret key; list public keys only")
    keys = parse_key_set(client.jwks)
    if not keys:
        raise ConfigError(
            f"{where} has no usable signing key "
            "(EC P-256/P-384 or RSA of 2048+ bits, each with a kid)"
        )
    return keys


class Authenticator:
    def __init__(
        self,
        clients: Sequence[TrustedClient],
        public_url: str,
        *,
        replay_cache: UsedTokens,
        key_sets: KeySetCache | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._clients = {
            client.issuer: _Client(
                client.issuer,
                client.jku,
                _pinned_keys(client),
                frozenset(client.tenants),
                client.profile,
                client.fhir_servers,
            )
            for client in clients
        }
        self.public_url = public_url.rstrip("/")
        self._replay_cache = replay_cache
        self._key_sets = key_sets or KeySetCache()
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: Settings, store: DecisionStore) -> Authenticator | None:
        """With trusted clients configured, an authenticator recording used token ids where
        `store` says (see http/replay.py); None in development mode."""
        if not settings.trusted_clients:
            return None
        if not settings.public_url:
            raise ConfigError("CDS_PUBLIC_URL must be set when CDS_TRUSTED_CLIENTS is")
        try:
            replay_cache = used_tokens_record(settings.replay_db, store)
        except ReplayCacheError as error:
            where = "CDS_REPLAY_DB" if settings.replay_db else "the record of used tokens"
            raise ConfigError(f"{where}: {error}") from None
        return cls(settings.trusted_clients, settings.public_url, replay_cache=replay_cache)

    @property
    def issuers(self) -> list[str]:
        return sorted(self._clients)

    def authenticate(self, token: str, path: str) -> AuthenticatedClient:
        """Verify a CDS Hooks JWT for a call to `path`; raises TokenRejected."""
        if len(token) > _MAX_TOKEN_CHARS:
            raise TokenRejected("token too long")
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise TokenRejected("malformed token") from None
        algorithm, kid, typ = header.get("alg"), header.get("kid"), header.get("typ")
        if not isinstance(algorithm, str) or algorithm not in SUPPORTED_ALGORITHMS:
            raise TokenRejected("algorithm not accepted")
        if not isinstance(typ, str) or typ.upper() != "JWT":
            raise TokenRejected("typ is not JWT")
        if not isinstance(kid, str) or not kid:
            raise TokenRejected("no kid")
        issuer = unverified.get("iss")
        client = self._clients.get(issuer) if isinstance(issuer, str) else None
        if client is None:
            raise TokenRejected("issuer not trusted")
        key = self._key(client, header, kid)
        if key.algorithm != algorithm:
            raise TokenRejected("algorithm does not match the key", client.issuer)
        claims = self._verified_claims(token, key, client.issuer)
        self._check_claims(claims, client, path)
        return self._claim_token_id(claims, client)

    def _key(self, client: _Client, header: Mapping[str, Any], kid: str) -> VerificationKey:
        # Keys come only from the issuer's own configuration: a `jku` in the token is a claim
        # to check against it, never a URL to fetch.
        if "jku" in header and header["jku"] != client.jku:
            raise TokenRejected("jku not allowed for this issuer", client.issuer)
        if client.pinned_keys is not None:
            key = client.pinned_keys.get(kid)
        else:
            assert client.jku is not None  # configuration guarantees jku or jwks
            try:
                key = self._key_sets.key(client.jku, kid)
            except KeySetUnavailable:
                raise TokenRejected("key set unavailable", client.issuer) from None
        if key is None:
            raise TokenRejected("unknown kid", client.issuer)
        return key

    def _verified_claims(self, token: str, key: VerificationKey, issuer: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.public_key,
                algorithms=[key.algorithm],
                leeway=CLOCK_SKEW_SECONDS,
                options={
                    "require": ["iss", "aud", "exp", "iat", "jti"],
                    # Checked below: aud with the trailing-slash tolerance, iss already matched.
                    "verify_aud": False,
                    "verify_iss": False,
                },
            )
        except jwt.InvalidSignatureError:
            raise TokenRejected("bad signature", issuer) from None
        except jwt.ExpiredSignatureError:
            raise TokenRejected("expired", issuer) from None
        except jwt.ImmatureSignatureError:
            raise TokenRejected("not yet valid", issuer) from None
        except jwt.MissingRequiredClaimError as error:
            raise TokenRejected(f"missing claim {error.claim}", issuer) from None
        except jwt.PyJWTError as error:
            raise TokenRejected(f"invalid token ({type(error).__name__})", issuer) from None
        return claims

    def _check_claims(self, claims: Mapping[str, Any], client: _Client, path: str) -> None:
        issued, expires = claims["iat"], claims["exp"]
        if not (_is_number(issued) and _is_number(expires)):
            raise TokenRejected("iat or exp is not a number", client.issuer)
        if issued > self._clock() + CLOCK_SKEW_SECONDS:
            raise TokenRejected("not yet valid", client.issuer)
        if expires - issued > MAX_TOKEN_LIFETIME_SECONDS:
            raise TokenRejected("lifetime too long", client.issuer)
        audience = claims["aud"]
        presented = [audience] if isinstance(audience, str) else audience
        accepted = {url.removesuffix("/") for url in expected_audiences(self.public_url, path)}
        if not isinstance(presented, list) or not any(
            isinstance(url, str) and url.removesuffix("/") in accepted for url in presented
        ):
            raise TokenRejected("wrong audience", client.issuer)
        tenant = claims.get("tenant")
        if client.tenants and not (isinstance(tenant, str) and tenant in client.tenants):
            raise TokenRejected("tenant not allowed", client.issuer)

    def _claim_token_id(self, claims: Mapping[str, Any], client: _Client) -> AuthenticatedClient:
        jti = claims["jti"]
        # Printable: no control characters, and no lone surrogates no store can hold.
        if not isinstance(jti, str) or not 0 < len(jti) <= _MAX_JTI_CHARS or not jti.isprintable():
            raise TokenRejected("invalid jti", client.issuer)
        # Last, so that tokens failing any other check do not fill the replay record.
        if not self._replay_cache.first_use(
            client.issuer, jti, claims["exp"] + CLOCK_SKEW_SECONDS, self._clock()
        ):
            raise TokenRejected("jti replayed", client.issuer)
        tenant = claims.get("tenant")
        return AuthenticatedClient(
            client.issuer,
            tenant if isinstance(tenant, str) else None,
            jti,
            client.profile,
            client.fhir_servers,
        )


def _refuse(reason: str, issuer: str | None, token_sent: bool) -> Response:
    g.auth_error = reason
    metrics.count_auth_refusal(reason)
    if issuer is not None:
        g.claimed_issuer = issuer
    response = json_error(401, _REFUSAL, "login")
    # RFC 6750: no error code when the request carried no credentials at all.
    response.headers["WWW-Authenticate"] = (
        'Bearer error="invalid_token"' if token_sent else "Bearer"
    )
    return response


def register_authentication(app: Flask, authenticator: Authenticator | None) -> None:
    if authenticator is None:
        log.warning(
            "development mode: CDS_TRUSTED_CLIENTS is not set, so service calls are accepted "
            "without authentication",
            extra={"event": "authentication_disabled"},
        )
        return
    app.extensions["cds_authenticator"] = authenticator
    log.info(
        "client authentication required",
        extra={
            "event": "authentication_enabled",
            "issuers": authenticator.issuers,
            "public_url": authenticator.public_url,
        },
    )

    @app.before_request
    def _authenticate() -> Response | None:
        if request.method == "OPTIONS" or not requires_authentication(request.path):
            return None
        token = bearer_token(request.headers.get("Authorization"))
        if token is None:
            return _refuse("no bearer token", None, token_sent=False)
        try:
            client = authenticator.authenticate(token, request.path)
        except TokenRejected as rejection:
            return _refuse(rejection.reason, rejection.issuer, token_sent=True)
        except ReplayCacheError as error:
            log.error(
                "replay cache failed", extra={"event": "replay_cache_failed", "reason": str(error)}
            )
            g.auth_error = "replay cache unavailable"
            return json_error(503, "The service cannot check credentials right now.", "transient")
        g.issuer, g.tenant, g.jti = client.issuer, client.tenant, client.jti
        g.client_profile = client.profile
        g.fhir_servers = client.fhir_servers
        return None
