"""Security configuration: trusted clients, public URL, CORS origins; bad values stop the start."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import PROJECT_ROOT
from jwt_clients import es384_client, rs384_client, rsa_key

from cds_service.app import create_app
from cds_service.config import ConfigError, Settings, TrustedClient
from cds_service.http.jwks import SUPPORTED_ALGORITHMS
from cds_service.runtime import Runtime

EXAMPLES = PROJECT_ROOT / "examples"
EHR = {"iss": "https://ehr.example.org", "jku": "https://ehr.example.org/jwks.json"}


def _settings(tmp_path: Path, document: Any, **env: str) -> Settings:
    path = tmp_path / "clients.json"
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return Settings.from_env(
        {"CDS_TRUSTED_CLIENTS": str(path), "CDS_PUBLIC_URL": "https://cds.example.org", **env}
    )


def test_no_trusted_clients_is_development_mode() -> None:
    settings = Settings.from_env({})
    assert settings.trusted_clients == ()
    assert settings.cors_origins == ("*",)


@pytest.mark.parametrize(
    "document",
    [[EHR], {"clients": [EHR]}, EHR],
    ids=["list", "clients-object", "single-client"],
)
def test_trusted_clients_file_forms(tmp_path: Path, document: Any) -> None:
    settings = _settings(tmp_path, document)
    assert settings.trusted_clients == (
        TrustedClient("https://ehr.example.org", "https://ehr.example.org/jwks.json"),
    )
    assert settings.public_url == "https://cds.example.org"


def test_tenant_and_inline_keys(tmp_path: Path) -> None:
    jwks = es384_client().jwks()
    settings = _settings(
        tmp_path,
        [
            {"iss": "a", "jwks": jwks, "tenant": "org-1"},
            {**EHR, "tenant": ["org-2", "org-3"]},
        ],
    )
    first, second = settings.trusted_clients
    assert (first.jku, first.jwks, first.tenants) == (None, jwks, ("org-1",))
    assert second.tenants == ("org-2", "org-3")


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("{not json", "is not valid JSON"),
        ([], "non-empty JSON list"),
        ("42", "non-empty JSON list"),
        (["x"], "client 0 must be a JSON object"),
        ([{"jku": EHR["jku"]}], 'client 0 needs "iss"'),
        ([{"iss": "a"}], 'needs "jku" (JWK Set URL) or "jwks"'),
        ([{**EHR, "jwks_uri": "x"}], "unknown member(s) jwks_uri"),
        ([{"iss": "a", "jku": "http://ehr.example.org/jwks"}], "must be an https URL"),
        ([{"iss": "a", "jku": "ftp://ehr.example.org/jwks"}], "must be an https URL"),
        ([{"iss": "a", "jwks": {"keys": []}}], '"jwks" must be a JWK Set'),
        ([{"iss": "a", "jwks": [1]}], '"jwks" must be a JWK Set'),
        ([{**EHR, "tenant": 7}], '"tenant" must be a string'),
        ([EHR, EHR], "listed more than once"),
    ],
)
def test_bad_trusted_clients_file_is_refused(tmp_path: Path, document: Any, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        _settings(tmp_path, document)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        Settings.from_env({"CDS_TRUSTED_CLIENTS": str(tmp_path / "nope.json")})


def test_http_jku_is_allowed_on_this_machine_only(tmp_path: Path) -> None:
    settings = _settings(tmp_path, [{"iss": "a", "jku": "http://127.0.0.1:9999/jwks.json"}])
    assert settings.trusted_clients[0].jku == "http://127.0.0.1:9999/jwks.json"


def test_trusted_clients_need_a_public_url(tmp_path: Path) -> None:
    path = tmp_path / "clients.json"
    path.write_text(json.dumps([EHR]))
    with pytest.raises(ConfigError, match="CDS_PUBLIC_URL must be set"):
        Settings.from_env({"CDS_TRUSTED_CLIENTS": str(path)})


@pytest.mark.parametrize(
    "url", ["cds.example.org", "ftp://cds.example.org", "https://cds.example.org/?x=1", "https://"]
)
def test_bad_public_url_is_refused(tmp_path: Path, url: str) -> None:
    with pytest.raises(ConfigError, match="CDS_PUBLIC_URL"):
        _settings(tmp_path, [EHR], CDS_PUBLIC_URL=url)


def test_public_url_keeps_a_path_and_loses_the_trailing_slash(tmp_path: Path) -> None:
    settings = _settings(tmp_path, [EHR], CDS_PUBLIC_URL="https://host.example.org/back-pain/")
    assert settings.public_url == "https://host.example.org/back-pain"


def test_cors_default_with_trusted_clients_is_their_issuers_origins(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path,
        [
            {"iss": "https://sandbox.cds-hooks.org", "jku": "https://sandbox.cds-hooks.org/j"},
            {"iss": "https://EHR.example.org:8443/fhir/", "jku": EHR["jku"]},
            {"iss": "urn:uuid:0d7a8ab4", "jku": EHR["jku"]},
        ],
    )
    assert settings.cors_origins == (
        "https://sandbox.cds-hooks.org",
        "https://ehr.example.org:8443",
    )


def test_cors_origins_configured(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path,
        [EHR],
        CDS_CORS_ORIGINS=" https://sandbox.cds-hooks.org/ , http://localhost:3000",
    )
    assert settings.cors_origins == ("https://sandbox.cds-hooks.org", "http://localhost:3000")
    assert Settings.from_env({"CDS_CORS_ORIGINS": "*"}).cors_origins == ("*",)


@pytest.mark.parametrize(
    "value", ["*, https://a.example.org", "sandbox.cds-hooks.org", "https://a.org/path"]
)
def test_bad_cors_origins_are_refused(value: str) -> None:
    with pytest.raises(ConfigError, match="CDS_CORS_ORIGINS"):
        Settings.from_env({"CDS_CORS_ORIGINS": value})


def test_replay_db_folder_must_exist(tmp_path: Path) -> None:
    assert Settings.from_env({"CDS_REPLAY_DB": str(tmp_path / "r.sqlite3")}).replay_db
    with pytest.raises(ConfigError, match="CDS_REPLAY_DB"):
        Settings.from_env({"CDS_REPLAY_DB": str(tmp_path / "absent" / "r.sqlite3")})


@pytest.mark.parametrize(
    ("jwk_members", "message"),
    [
        ({"d": "c2VjcmV0"}, "private or secret key"),
        ({"alg": "ES256"}, "no usable signing key"),
        ({"use": "enc"}, "no usable signing key"),
        ({"kid": None}, "no usable signing key"),
    ],
)
def test_unusable_inline_keys_stop_the_start(
    runtime: Runtime, tmp_path: Path, jwk_members: dict[str, Any], message: str
) -> None:
    signer = es384_client(jwk_members=jwk_members)
    settings = _settings(tmp_path, [{"iss": "a", "jwks": signer.jwks()}])
    with pytest.raises(ConfigError, match=message):
        create_app(settings, runtime=runtime)


def test_weak_rsa_inline_key_stops_the_start(runtime: Runtime, tmp_path: Path) -> None:
    signer = rs384_client(private_key=rsa_key(1024))
    settings = _settings(tmp_path, [{"iss": "a", "jwks": signer.jwks()}])
    with pytest.raises(ConfigError, match="no usable signing key"):
        create_app(settings, runtime=runtime)


def test_example_configurations_load() -> None:
    for name in ("trusted-clients.sandbox.json", "trusted-clients.sandbox-offline.json"):
        settings = Settings.from_env(
            {"CDS_TRUSTED_CLIENTS": str(EXAMPLES / name), "CDS_PUBLIC_URL": "http://localhost:8080"}
        )
        (client,) = settings.trusted_clients
        assert client.issuer == "https://sandbox.cds-hooks.org"
        assert client.jku == "https://sandbox.cds-hooks.org/.well-known/jwks.json"


def test_supported_algorithms_are_asymmetric_only() -> None:
    assert {"ES384", "RS384"} <= SUPPORTED_ALGORITHMS
    assert not any(alg.startswith("HS") or alg == "none" for alg in SUPPORTED_ALGORITHMS)
