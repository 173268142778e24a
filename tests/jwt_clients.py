"""Test CDS clients: freshly generated key pairs that sign CDS Hooks JWTs like an EHR would."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from cds_service.config import TrustedClient

PUBLIC_URL = "https://cds.example.org"
SIGN_PATH = "/cds-services/back-pain-order-sign"
SIGN_AUDIENCE = PUBLIC_URL + SIGN_PATH
SANDBOX_ISSUER = "https://sandbox.cds-hooks.org"
SANDBOX_JKU = "https://sandbox.cds-hooks.org/.well-known/jwks.json"
SANDBOX_KID = "44823f3d-0b01-4a6c-a80e-b9d3e8a7226f"
SANDBOX_ORIGIN = "https://sandbox.cds-hooks.org"


@cache
def ec_key(curve: str = "P-384", label: str = "main") -> ec.EllipticCurvePrivateKey:
    """One generated key per (curve, label) for the whole test session."""
    return ec.generate_private_key(ec.SECP384R1() if curve == "P-384" else ec.SECP256R1())


@cache
def rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class SigningClient:
    issuer: str
    kid: str
    algorithm: str
    private_key: Any
    jku: str | None = None
    # Extra members for the published JWK (or None values to drop members).
    jwk_members: dict[str, Any] = field(default_factory=dict)

    def public_jwk(self) -> dict[str, Any]:
        loader = ECAlgorithm if self.algorithm.startswith("ES") else RSAAlgorithm
        jwk: dict[str, Any] = json.loads(loader.to_jwk(self.private_key.public_key()))
        jwk.update({"kid": self.kid, "use": "sig", "alg": self.algorithm})
        jwk.update(self.jwk_members)
        return {name: value for name, value in jwk.items() if value is not None}

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.public_jwk()]}

    def trusted(self, *, inline: bool = True, tenants: tuple[str, ...] = ()) -> TrustedClient:
        return TrustedClient(
            self.issuer, self.jku, self.jwks() if inline else None, tenants=tenants
        )

    def claims(self, audience: Any = SIGN_AUDIENCE, lifetime: int = 300) -> dict[str, Any]:
        now = int(time.time())
        return {
            "iss": self.issuer,
            "aud": audience,
            "iat": now,
            "exp": now + lifetime,
            "jti": secrets.token_hex(32),  # Inferno's shape: 64 hex characters
        }

    def header(self) -> dict[str, Any]:
        header = {"alg": self.algorithm, "typ": "JWT", "kid": self.kid}
        if self.jku:
            header["jku"] = self.jku
        return header

    def token(
        self,
        audience: Any = SIGN_AUDIENCE,
        *,
        claims: dict[str, Any] | None = None,
        header: dict[str, Any] | None = None,
        drop: tuple[str, ...] = (),
        key: Any = None,
        algorithm: str | None = None,
    ) -> str:
        """A signed token; `header` members set to None are left out, `algorithm` signs
        (default: the header's alg), so header and signature can disagree on purpose."""
        payload = {**self.claims(audience), **(claims or {})}
        for name in drop:
            payload.pop(name, None)
        headers = {**self.header(), **(header or {})}
        return sign(headers, payload, key or self.private_key, algorithm or headers["alg"])


def sign(header: dict[str, Any], payload: dict[str, Any], key: Any, algorithm: str) -> str:
    """A compact JWS of exactly this header and payload."""
    header = {name: value for name, value in header.items() if value is not None}
    signing_input = ".".join(
        b64url(json.dumps(part).encode()) for part in (header, payload)
    ).encode()
    signer = jwt.get_algorithm_by_name(algorithm)
    signature = signer.sign(signing_input, signer.prepare_key(key))
    return signing_input.decode() + "." + b64url(signature)


def unsigned_token(header: dict[str, Any], payload: dict[str, Any]) -> str:
    """A token with alg "none" and an empty signature, built by hand."""
    parts = (json.dumps(header).encode(), json.dumps(payload).encode())
    return ".".join(b64url(part) for part in parts) + "."


def hmac_token(header: dict[str, Any], payload: dict[str, Any], secret: bytes) -> str:
    """An HS256 token keyed with `secret` (the classic "public key as HMAC secret" attack)."""
    signing_input = ".".join(
        b64url(json.dumps(part).encode()) for part in (header, payload)
    ).encode()
    signature = hmac.new(secret, signing_input, hashlib.sha256).digest()
    return signing_input.decode() + "." + b64url(signature)


def tampered(token: str, **changes: Any) -> str:
    """The token with payload members changed and the original signature kept."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(changes)
    return ".".join((header, b64url(json.dumps(claims).encode()), signature))


def es384_client(**overrides: Any) -> SigningClient:
    values = {
        "issuer": "https://ehr.example.org",
        "kid": "ehr-es384",
        "algorithm": "ES384",
        "private_key": ec_key("P-384"),
        "jku": "https://ehr.example.org/.well-known/jwks.json",
        **overrides,
    }
    return SigningClient(**values)


def rs384_client(**overrides: Any) -> SigningClient:
    values = {
        "issuer": "https://rsa-ehr.example.org",
        "kid": "ehr-rs384",
        "algorithm": "RS384",
        "private_key": rsa_key(),
        **overrides,
    }
    return SigningClient(**values)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
