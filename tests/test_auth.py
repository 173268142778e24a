"""CDS Hooks JWT client authentication through the Flask app (keys generated per test session)."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
import responses
from conftest import EVALUATION_DATE, PROJECT_ROOT
from cryptography.hazmat.primitives import serialization
from flask.testing import FlaskClient
from jwt_clients import (
    PUBLIC_URL,
    SANDBOX_ISSUER,
    SANDBOX_JKU,
    SANDBOX_KID,
    SIGN_AUDIENCE,
    SIGN_PATH,
    SigningClient,
    bearer,
    ec_key,
    es384_client,
    hmac_token,
    rs384_client,
    rsa_key,
    tampered,
    unsigned_token,
)

from cds_service.app import create_app
from cds_service.card_builder.profiles import ClientProfile
from cds_service.config import Settings, TrustedClient
from cds_service.http.auth import Authenticator, TokenRejected
from cds_service.http.jwks import KeySetCache, parse_key_set
from cds_service.http.replay import ReplayCache, ReplayCacheError
from cds_service.logs import JsonFormatter
from cds_service.runtime import Runtime

UPSTREAM = PROJECT_ROOT / "tests" / "data" / "upstream" / "cds-hooks"
EXAMPLES = PROJECT_ROOT / "examples"
FIXTURE = "opioid-tramadol-acute-low-back-pain"
FIXTURE_TOPICS = ["exercise-therapy", "opioid-avoidance"]

ClientFactory = Callable[..., FlaskClient]


@pytest.fixture
def secure_client(runtime: Runtime, tmp_path: Path) -> ClientFactory:
    """A test client of an app that trusts the given clients (inline keys unless told)."""

    def _build(
        trusted: Sequence[TrustedClient],
        *,
        key_sets: KeySetCache | None = None,
        public_url: str = PUBLIC_URL,
    ) -> FlaskClient:
        settings = Settings(
            evaluation_date=EVALUATION_DATE,
            trusted_clients=tuple(trusted),
            public_url=public_url,
            cors_origins=("https://sandbox.cds-hooks.org",),
        )
        authenticator = Authenticator(
            trusted,
            public_url,
            replay_cache=ReplayCache(str(tmp_path / "used-tokens.sqlite3")),
            key_sets=key_sets,
        )
        app = create_app(settings, runtime=runtime, authenticator=authenticator)
        return app.test_client()

    return _build


def _assert_refused(response: Any) -> None:
    assert response.status_code == 401
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == "login"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def _topics(response: Any) -> list[str]:
    assert response.status_code == 200, response.get_data(as_text=True)
    return sorted(card["source"]["topic"]["code"] for card in response.get_json()["cards"])


def _auth_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.auth_error
        for record in caplog.records
        if getattr(record, "event", None) == "request" and hasattr(record, "auth_error")
    ]


# --- accepted ---------------------------------------------------------------------------------


@pytest.mark.parametrize("make_client", [es384_client, rs384_client], ids=["ES384", "RS384"])
def test_valid_token_gets_cards(
    secure_client: ClientFactory, fixture_request: Any, make_client: Any
) -> None:
    signer = make_client()
    client = secure_client([signer.trusted()])
    response = client.post(SIGN_PATH, json=fixture_request(FIXTURE), headers=bearer(signer.token()))
    assert _topics(response) == FIXTURE_TOPICS


@pytest.mark.parametrize(
    "signer",
    [
        es384_client(kid="p256", algorithm="ES256", private_key=ec_key("P-256")),
        rs384_client(kid="rs256", algorithm="RS256"),
    ],
    ids=["ES256", "RS256"],
)
def test_es256_and_rs256_when_the_key_says_so(
    secure_client: ClientFactory, fixture_request: Any, signer: SigningClient
) -> None:
    client = secure_client([signer.trusted()])
    response = client.post(SIGN_PATH, json=fixture_request(FIXTURE), headers=bearer(signer.token()))
    assert _topics(response) == FIXTURE_TOPICS


def test_rsa_key_without_alg_is_pinned_to_rs384(
    secure_client: ClientFactory, fixture_request: Any
) -> None:
    signer = rs384_client(jwk_members={"alg": None})
    client = secure_client([signer.trusted()])
    request = fixture_request(FIXTURE)
    assert client.post(SIGN_PATH, json=request, headers=bearer(signer.token())).status_code == 200
    rs256 = signer.token(header={"alg": "RS256"})
    _assert_refused(client.post(SIGN_PATH, json=request, headers=bearer(rs256)))


@pytest.mark.parametrize(
    "audience",
    [SIGN_AUDIENCE + "/", [SIGN_AUDIENCE, "https://other.example.org"]],
    ids=["trailing-slash", "list"],
)
def test_audience_tolerates_trailing_slash_and_lists(
    secure_client: ClientFactory, fixture_request: Any, audience: Any
) -> None:
    signer = es384_client()
    client = secure_client([signer.trusted()])
    response = client.post(
        SIGN_PATH, json=fixture_request(FIXTURE), headers=bearer(signer.token(audience))
    )
    assert _topics(response) == FIXTURE_TOPICS


def test_public_url_given_with_trailing_slash(
    secure_client: ClientFactory, fixture_request: Any
) -> None:
    signer = es384_client()
    client = secure_client([signer.trusted()], public_url=PUBLIC_URL + "/")
    response = client.post(SIGN_PATH, json=fixture_request(FIXTURE), headers=bearer(signer.token()))
    assert _topics(response) == FIXTURE_TOPICS


def test_open_endpoints_need_no_token(secure_client: ClientFactory) -> None:
    client = secure_client([es384_client().trusted()])
    assert client.get("/cds-services").status_code == 200
    assert client.get("/health").status_code == 200
    assert client.options(SIGN_PATH).status_code == 200


def test_tenant_allow_list(secure_client: ClientFactory, fixture_request: Any) -> None:
    signer = es384_client()
    client = secure_client([signer.trusted(tenants=("org-1",))])
    request = fixture_request(FIXTURE)
    ok = client.post(
        SIGN_PATH, json=request, headers=bearer(signer.token(claims={"tenant": "org-1"}))
    )
    assert ok.status_code == 200
    for claims in ({"tenant": "org-2"}, {}, {"tenant": ["org-1"]}, {"tenant": {"org-1": 1}}):
        token = signer.token(claims=claims, drop=() if claims else ("tenant",))
        _assert_refused(client.post(SIGN_PATH, json=request, headers=bearer(token)))


def test_each_trusted_client_gets_its_own_suggestion_profile(
    secure_client: ClientFactory, fixture_request: Any
) -> None:
    """One service, two EHRs: one applies one action per suggestion, the other does not."""
    epic_like = es384_client(issuer="https://single-action.example", kid="one")
    other = es384_client(issuer="https://standard.example", kid="two")
    client = secure_client(
        [
            dataclasses.replace(epic_like.trusted(), profile=ClientProfile.SINGLE_ACTION),
            other.trusted(),
        ]
    )

    def opioid_card(signer: SigningClient) -> dict[str, Any]:
        response = client.post(
            SIGN_PATH, json=fixture_request(FIXTURE), headers=bearer(signer.token())
        )
        assert response.status_code == 200
        cards = response.get_json()["cards"]
        return next(c for c in cards if c["source"]["topic"]["code"] == "opioid-avoidance")

    single = opioid_card(epic_like)
    assert single["selectionBehavior"] == "any"
    assert [len(s["actions"]) for s in single["suggestions"]] == [1, 1]
    standard = opioid_card(other)
    assert standard["selectionBehavior"] == "at-most-one"
    assert [len(s["actions"]) for s in standard["suggestions"]] == [2, 1]


# --- refused ----------------------------------------------------------------------------------


def _now() -> int:
    return int(time.time())


_PUBLIC_PEM = (
    ec_key("P-384")
    .public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
)

# name → (Authorization headers made for the trusted ES384 signer, reason in the request log)
_REFUSALS: dict[str, tuple[Callable[[SigningClient], dict[str, str]], str]] = {
    "missing": (lambda s: {}, "no bearer token"),
    "basic-scheme": (lambda s: {"Authorization": "Basic dXNlcjpwYXNz"}, "no bearer token"),
    "garbage": (lambda s: bearer("not.a.jwt"), "malformed token"),
    "expired": (
        lambda s: bearer(s.token(claims={"iat": _now() - 900, "exp": _now() - 600})),
        "expired",
    ),
    "iat-in-future": (
        lambda s: bearer(s.token(claims={"iat": _now() + 600, "exp": _now() + 900})),
        "not yet valid",
    ),
    "nbf-in-future": (lambda s: bearer(s.token(claims={"nbf": _now() + 600})), "not yet valid"),
    "aud-other-service": (
        lambda s: bearer(s.token(PUBLIC_URL + "/cds-services/back-pain-patient-view")),
        "wrong audience",
    ),
    "aud-other-host": (
        lambda s: bearer(s.token("https://evil.example.org" + SIGN_PATH)),
        "wrong audience",
    ),
    "aud-discovery": (lambda s: bearer(s.token(PUBLIC_URL + "/cds-services")), "wrong audience"),
    "untrusted-iss": (
        lambda s: bearer(s.token(claims={"iss": "https://evil.example.org"})),
        "issuer not trusted",
    ),
    "jku-mismatch": (
        lambda s: bearer(s.token(header={"jku": "https://evil.example.org/jwks.json"})),
        "jku not allowed for this issuer",
    ),
    "unknown-kid": (lambda s: bearer(s.token(header={"kid": "rotated"})), "unknown kid"),
    "signed-es256-claims-es384": (
        lambda s: bearer(s.token(key=ec_key("P-256"), algorithm="ES256")),
        "bad signature",
    ),
    "other-key-same-kid": (
        lambda s: bearer(s.token(key=ec_key("P-384", "attacker"))),
        "bad signature",
    ),
    "tampered-payload": (
        lambda s: bearer(tampered(s.token(), jti="0" * 64)),
        "bad signature",
    ),
    "alg-none": (
        lambda s: bearer(unsigned_token({**s.header(), "alg": "none"}, s.claims())),
        "algorithm not accepted",
    ),
    "hs256-with-public-key": (
        lambda s: bearer(hmac_token({**s.header(), "alg": "HS256"}, s.claims(), _PUBLIC_PEM)),
        "algorithm not accepted",
    ),
    "es256-header-on-es384-key": (
        lambda s: bearer(s.token(key=ec_key("P-256"), header={"alg": "ES256"})),
        "algorithm does not match the key",
    ),
    "rs384-header-on-ec-key": (
        lambda s: bearer(s.token(key=rsa_key(), header={"alg": "RS384"})),
        "algorithm does not match the key",
    ),
    "no-typ": (lambda s: bearer(s.token(header={"typ": None})), "typ is not JWT"),
    "typ-at-jwt": (lambda s: bearer(s.token(header={"typ": "at+jwt"})), "typ is not JWT"),
    "no-kid": (lambda s: bearer(s.token(header={"kid": None})), "no kid"),
    "no-jti": (lambda s: bearer(s.token(drop=("jti",))), "missing claim jti"),
    "no-iat": (lambda s: bearer(s.token(drop=("iat",))), "missing claim iat"),
    "no-exp": (lambda s: bearer(s.token(drop=("exp",))), "missing claim exp"),
    "no-aud": (lambda s: bearer(s.token(drop=("aud",))), "missing claim aud"),
    "no-iss": (lambda s: bearer(s.token(drop=("iss",))), "issuer not trusted"),
    "empty-jti": (lambda s: bearer(s.token(claims={"jti": ""})), "invalid jti"),
    "lone-surrogate-jti": (lambda s: bearer(s.token(claims={"jti": "\ud800"})), "invalid jti"),
    "alg-object": (
        lambda s: bearer(unsigned_token({**s.header(), "alg": {}}, s.claims())),
        "algorithm not accepted",
    ),
    "day-long-lifetime": (
        lambda s: bearer(s.token(claims={"iat": _now(), "exp": _now() + 86400})),
        "lifetime too long",
    ),
}


@pytest.mark.parametrize("case", sorted(_REFUSALS))
def test_refused_tokens_get_one_generic_401(
    secure_client: ClientFactory,
    fixture_request: Any,
    caplog: pytest.LogCaptureFixture,
    case: str,
) -> None:
    signer = es384_client()
    client = secure_client([signer.trusted()])
    make_headers, reason = _REFUSALS[case]
    headers = make_headers(signer)
    with caplog.at_level("INFO", logger="cds_service"):
        response = client.post(SIGN_PATH, json=fixture_request(FIXTURE), headers=headers)
    _assert_refused(response)
    # The same answer whatever failed, and never the token itself.
    reference = client.post(SIGN_PATH, json=fixture_request(FIXTURE))
    assert response.get_json() == reference.get_json()
    credentials = headers.get("Authorization", "").partition(" ")[2]
    if credentials:
        assert credentials not in response.get_data(as_text=True)
    # RFC 6750: an error code only when a bearer token was sent.
    expected = "Bearer" if reason == "no bearer token" else 'Bearer error="invalid_token"'
    assert response.headers["WWW-Authenticate"] == expected
    assert _auth_errors(caplog)[0] == reason


def test_replayed_jti_is_refused(secure_client: ClientFactory, fixture_request: Any) -> None:
    signer = es384_client()
    client = secure_client([signer.trusted()])
    token = signer.token()
    first = client.post(SIGN_PATH, json=fixture_request(FIXTURE), headers=bearer(token))
    assert _topics(first) == FIXTURE_TOPICS
    _assert_refused(client.post(SIGN_PATH, json=fixture_request(FIXTURE), headers=bearer(token)))
    # The same jti from another issuer is another token.
    other = rs384_client()
    client = secure_client([signer.trusted(), other.trusted()])
    jti = jwt.decode(token, options={"verify_signature": False})["jti"]
    reused = other.token(claims={"jti": jti})
    assert (
        client.post(SIGN_PATH, json=fixture_request(FIXTURE), headers=bearer(reused)).status_code
        == 200
    )


def test_a_refused_token_does_not_use_up_its_jti(
    secure_client: ClientFactory, fixture_request: Any
) -> None:
    signer = es384_client()
    client = secure_client([signer.trusted()])
    jti = uuid.uuid4().hex
    wrong = signer.token(PUBLIC_URL + "/cds-services/back-pain-patient-view", claims={"jti": jti})
    _assert_refused(client.post(SIGN_PATH, json=fixture_request(FIXTURE), headers=bearer(wrong)))
    right = signer.token(claims={"jti": jti})
    assert (
        client.post(SIGN_PATH, json=fixture_request(FIXTURE), headers=bearer(right)).status_code
        == 200
    )


def test_every_path_below_a_service_is_protected(secure_client: ClientFactory) -> None:
    client = secure_client([es384_client().trusted()])
    for path in (
        SIGN_PATH,
        SIGN_PATH + "/feedback",
        "/cds-services/no-such-service",
        "/cds-services/back-pain-order-sign/anything",
    ):
        _assert_refused(client.post(path, json={}))
    _assert_refused(client.get(SIGN_PATH))


def test_feedback_accepts_the_feedback_url_or_the_service_url_as_aud(
    secure_client: ClientFactory,
) -> None:
    signer = es384_client()
    client = secure_client([signer.trusted()])
    feedback = SIGN_PATH + "/feedback"
    body = json.loads((UPSTREAM / "spec-2.0.1" / "feedback-accepted.json").read_text())
    for audience in (PUBLIC_URL + feedback, SIGN_AUDIENCE):
        response = client.post(feedback, json=body, headers=bearer(signer.token(audience)))
        # Past authentication: whatever the feedback endpoint answers, it is not a 401.
        assert response.status_code != 401
    wrong = signer.token(PUBLIC_URL + "/cds-services/back-pain-patient-view/feedback")
    _assert_refused(client.post(feedback, json=body, headers=bearer(wrong)))


# --- keys fetched from jku --------------------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@responses.activate
def test_unknown_kid_refetches_the_key_set_once_and_rate_limited(
    secure_client: ClientFactory, fixture_request: Any
) -> None:
    old = es384_client()
    new = es384_client(kid="ehr-es384-2025", private_key=ec_key("P-384", "rotated"))
    assert old.jku == new.jku and old.jku is not None
    before = responses.get(old.jku, json=old.jwks())
    clock = _Clock()
    key_sets = KeySetCache(ttl_seconds=300, min_fetch_interval_seconds=30, clock=clock)
    client = secure_client([old.trusted(inline=False)], key_sets=key_sets)
    request = fixture_request(FIXTURE)
    assert client.post(SIGN_PATH, json=request, headers=bearer(old.token())).status_code == 200
    assert before.call_count == 1
    # The client rotates its key; the service refetches on the first token with the new kid.
    clock.now += 60
    responses.replace(responses.GET, old.jku, json={"keys": [old.public_jwk(), new.public_jwk()]})
    assert client.post(SIGN_PATH, json=request, headers=bearer(new.token())).status_code == 200
    assert len(responses.calls) == 2
    # More unknown kids right after: refused without another fetch (rate limit).
    for kid in ("made-up-1", "made-up-2", "made-up-3"):
        token = new.token(header={"kid": kid})
        _assert_refused(client.post(SIGN_PATH, json=request, headers=bearer(token)))
    assert len(responses.calls) == 2
    # Known kids keep working from the cache.
    assert client.post(SIGN_PATH, json=request, headers=bearer(old.token())).status_code == 200
    assert len(responses.calls) == 2
    # Once the interval has passed an unknown kid may refetch again (once).
    clock.now += 31
    _assert_refused(
        client.post(SIGN_PATH, json=request, headers=bearer(new.token(header={"kid": "x"})))
    )
    assert len(responses.calls) == 3


@responses.activate
def test_key_set_endpoint_down_is_a_quick_401(
    secure_client: ClientFactory, fixture_request: Any, caplog: pytest.LogCaptureFixture
) -> None:
    signer = es384_client()
    assert signer.jku is not None
    responses.get(signer.jku, body=requests.ConnectionError("connection refused"))
    client = secure_client([signer.trusted(inline=False)])
    with caplog.at_level("INFO", logger="cds_service"):
        for _ in range(3):
            response = client.post(
                SIGN_PATH, json=fixture_request(FIXTURE), headers=bearer(signer.token())
            )
            _assert_refused(response)
    # Tried once; later calls within the retry interval do not wait on the dead endpoint.
    assert len(responses.calls) == 1
    assert _auth_errors(caplog) == ["key set unavailable"] * 3


@responses.activate
def test_key_set_http_error_is_a_401(secure_client: ClientFactory, fixture_request: Any) -> None:
    signer = es384_client()
    assert signer.jku is not None
    responses.get(signer.jku, status=503, body="down")
    client = secure_client([signer.trusted(inline=False)])
    _assert_refused(
        client.post(SIGN_PATH, json=fixture_request(FIXTURE), headers=bearer(signer.token()))
    )


# --- the public sandbox and the spec's example ------------------------------------------------


def _sandbox_stand_in() -> SigningClient:
    """A fresh key standing in for the sandbox's private key (which we never copy)."""
    return SigningClient(
        issuer=SANDBOX_ISSUER,
        kid=SANDBOX_KID,
        algorithm="ES384",
        private_key=ec_key("P-384", "sandbox"),
        jku=SANDBOX_JKU,
    )


def _sandbox_token(signer: SigningClient, audience: str) -> str:
    """The sandbox's shape: header {alg, typ, kid, jku}, payload {iss, aud, exp, iat, jti}."""
    now = int(time.time())
    payload = {
        "iss": SANDBOX_ISSUER,
        "aud": audience,
        "exp": now + 300,
        "iat": now,
        "jti": str(uuid.uuid4()),
    }
    header = {"alg": "ES384", "typ": "JWT", "kid": SANDBOX_KID, "jku": SANDBOX_JKU}
    return jwt.encode(payload, signer.private_key, algorithm="ES384", headers=header)


@responses.activate
def test_sandbox_request_shape_is_accepted_with_the_example_configuration(
    runtime: Runtime, fixture_request: Any, tmp_path: Path
) -> None:
    settings = Settings.from_env(
        {
            "CDS_TRUSTED_CLIENTS": str(EXAMPLES / "trusted-clients.sandbox.json"),
            "CDS_PUBLIC_URL": "http://localhost:8080",
            "CDS_EVALUATION_DATE": EVALUATION_DATE.isoformat(),
            "CDS_REPLAY_DB": str(tmp_path / "used.sqlite3"),
        }
    )
    assert settings.cors_origins == ("https://sandbox.cds-hooks.org",)
    signer = _sandbox_stand_in()
    responses.get(SANDBOX_JKU, json=signer.jwks())
    client = create_app(settings, runtime=runtime).test_client()
    audience = "http://localhost:8080" + SIGN_PATH
    response = client.post(
        SIGN_PATH,
        json=fixture_request(FIXTURE),
        headers={
            **bearer(_sandbox_token(signer, audience)),
            "Origin": "https://sandbox.cds-hooks.org",
        },
    )
    assert _topics(response) == FIXTURE_TOPICS
    assert response.headers["Access-Control-Allow-Origin"] == "https://sandbox.cds-hooks.org"


def test_sandbox_published_key_parses_and_the_offline_example_pins_it(
    runtime: Runtime, fixture_request: Any, tmp_path: Path
) -> None:
    published = json.loads((UPSTREAM / "sandbox" / "jwks.json").read_text())
    keys = parse_key_set(published)
    assert list(keys) == [SANDBOX_KID]
    assert keys[SANDBOX_KID].algorithm == "ES384"
    offline = json.loads((EXAMPLES / "trusted-clients.sandbox-offline.json").read_text())
    assert offline[0]["jwks"] == published
    settings = Settings.from_env(
        {
            "CDS_TRUSTED_CLIENTS": str(EXAMPLES / "trusted-clients.sandbox-offline.json"),
            "CDS_PUBLIC_URL": "http://localhost:8080",
            "CDS_REPLAY_DB": str(tmp_path / "used.sqlite3"),
        }
    )
    client = create_app(settings, runtime=runtime).test_client()
    # Our stand-in key is not the sandbox's: the pinned public key rejects its signature.
    token = _sandbox_token(_sandbox_stand_in(), "http://localhost:8080" + SIGN_PATH)
    _assert_refused(client.post(SIGN_PATH, json=fixture_request(FIXTURE), headers=bearer(token)))


def test_spec_example_jwt_verifies_but_is_expired(tmp_path: Path) -> None:
    folder = UPSTREAM / "spec-3.0.0-ballot"
    token = (folder / "jwt-example-compact.txt").read_text().strip()
    jwks = json.loads((folder / "jwks-public.json").read_text())
    key = parse_key_set(jwks)["example-kid"]
    # The signature is good...
    claims = jwt.decode(
        token,
        key.public_key,
        algorithms=[key.algorithm],
        options={"verify_exp": False, "verify_aud": False},
    )
    assert claims["iss"] == "https://fhir-ehr.example.com/"
    # ...but the token expired in 2015.
    authenticator = Authenticator(
        [
            TrustedClient(
                "https://fhir-ehr.example.com/", "https://fhir-ehr.example.com/jwk_uri", jwks
            )
        ],
        "https://cds.example.org",
        replay_cache=ReplayCache(str(tmp_path / "used.sqlite3")),
    )
    with pytest.raises(TokenRejected) as rejection:
        authenticator.authenticate(token, "/cds-services/some-service")
    assert rejection.value.reason == "expired"


# --- logs -------------------------------------------------------------------------------------


def test_logs_carry_issuer_and_reasons_but_no_token_or_patient_data(
    secure_client: ClientFactory, fixture_request: Any, caplog: pytest.LogCaptureFixture
) -> None:
    signer = es384_client()
    client = secure_client([signer.trusted(tenants=("org-7",))])
    request = fixture_request(FIXTURE)
    good = signer.token(claims={"tenant": "org-7"})
    expired = signer.token(claims={"iat": _now() - 900, "exp": _now() - 600, "tenant": "org-7"})
    with caplog.at_level("DEBUG", logger="cds_service"):
        ok = client.post(SIGN_PATH, json=request, headers={**bearer(good), "X-Request-ID": "r-1"})
        replayed = client.post(SIGN_PATH, json=request, headers=bearer(good))
        old = client.post(SIGN_PATH, json=request, headers=bearer(expired))
    assert (ok.status_code, replayed.status_code, old.status_code) == (200, 401, 401)
    lines = [r for r in caplog.records if getattr(r, "event", None) == "request"]
    assert len(lines) == 3
    accepted = lines[0].__dict__
    assert accepted["issuer"] == signer.issuer
    assert accepted["tenant"] == "org-7"
    assert accepted["jti"] == jwt.decode(good, options={"verify_signature": False})["jti"]
    assert accepted["request_id"] == "r-1"
    assert sorted(accepted["topics"]) == FIXTURE_TOPICS
    assert [line.__dict__.get("auth_error") for line in lines] == [None, "jti replayed", "expired"]
    assert all(line.__dict__.get("claimed_issuer") == signer.issuer for line in lines[1:])
    # Everything as it would be written (the JSON formatter includes every extra field).
    written = "\n".join(JsonFormatter().format(record) for record in caplog.records)
    for secret in (good, expired, *good.split("."), *expired.split(".")):
        assert secret not in written
    for patient_field in ("Moreno", "1986-04-12", request["context"]["patientId"], "Bearer"):
        assert patient_field not in written


def test_development_mode_is_announced_once_and_accepts_calls(
    runtime: Runtime, fixture_request: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("INFO", logger="cds_service"):
        app = create_app(Settings(evaluation_date=EVALUATION_DATE), runtime=runtime)
    warnings = [r for r in caplog.records if getattr(r, "event", None) == "authentication_disabled"]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    response = app.test_client().post(SIGN_PATH, json=fixture_request(FIXTURE))
    assert _topics(response) == FIXTURE_TOPICS


def test_replay_record_failure_is_a_503_not_a_pass(
    runtime: Runtime, fixture_request: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    signer = es384_client()
    replay_cache = ReplayCache(str(tmp_path / "used.sqlite3"))
    authenticator = Authenticator([signer.trusted()], PUBLIC_URL, replay_cache=replay_cache)
    settings = Settings(evaluation_date=EVALUATION_DATE, trusted_clients=(signer.trusted(),))
    client = create_app(settings, runtime=runtime, authenticator=authenticator).test_client()

    def _broken(*_: Any, **__: Any) -> bool:
        raise ReplayCacheError("disk I/O error")

    monkeypatch.setattr(replay_cache, "first_use", _broken)
    response = client.post(SIGN_PATH, json=fixture_request(FIXTURE), headers=bearer(signer.token()))
    assert response.status_code == 503
    assert response.get_json()["resourceType"] == "OperationOutcome"
