"""Configuration from environment variables, checked once at start.

The service starts with no configuration at all (development defaults). An invalid value stops
it with a one-line reason naming the variable.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from urllib.parse import urlsplit

from cds_service.card_builder.content import ContentError, load_card_content
from cds_service.card_builder.profiles import DEFAULT_PROFILE, PROFILE_NAMES, ClientProfile
from cds_service.config_error import ConfigError as ConfigError  # where it always was
from cds_service.fhir.servers import is_forbidden_host
from cds_service.fhir.servers import origin as fhir_origin
from cds_service.protocol.bounds import DEFAULT_MAX_CARDS
from cds_service.site.config import DEFAULT_SITE, SiteConfig, SiteConfigError, read_site_config
from cds_service.site.resolved import resolve_site
from cds_service.store.database import DEFAULT_DATABASE_URL, parse_database_url
from cds_service.store.decision_log import DEFAULT_QUEUE_SIZE
from cds_service.store.pseudonym import MIN_SECRET_LENGTH
from cds_service.store.spool import DEFAULT_SPOOL_MAX_BYTES

DEFAULT_MAX_BODY_BYTES = 5 * 1024 * 1024
DEFAULT_FHIR_DEADLINE_SECONDS = 2.0
DEFAULT_FHIR_MAX_PAGES = 10
# Hook calls of one worker process reading from FHIR servers at once (see fhir/client.py).
DEFAULT_FHIR_MAX_CALLS = 8
# An EHR waits on the answer while the clinician signs; longer than this is never reasonable.
MAX_FHIR_DEADLINE_SECONDS = 60.0
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_LOG_FORMATS = ("json", "text")


def _positive_int(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{name} must be greater than zero, got {value}")
    return value


def _seconds(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not 0 < value <= MAX_FHIR_DEADLINE_SECONDS:  # also rejects nan
        raise ConfigError(
            f"{name} must be greater than 0 and at most {MAX_FHIR_DEADLINE_SECONDS:g}, got {raw!r}"
        )
    return value


def _choice(environ: Mapping[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    raw = (environ.get(name) or default).strip()
    for choice in choices:
        if raw.lower() == choice.lower():
            return choice
    raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")


def _date(environ: Mapping[str, str], name: str) -> date | None:
    raw = environ.get(name)
    if not raw:
        return None
    try:
        return date.fromisoformat(raw.strip())
    except ValueError:
        raise ConfigError(f"{name} must be a date like 2026-11-22, got {raw!r}") from None


def _database_url(environ: Mapping[str, str]) -> str:
    raw = (environ.get("CDS_DATABASE_URL") or "").strip() or DEFAULT_DATABASE_URL
    try:
        return parse_database_url(raw).render_as_string(hide_password=False)
    except ValueError as error:  # the reason never repeats the URL: it may hold a password
        raise ConfigError(f"CDS_DATABASE_URL {error}") from None


def _secret(environ: Mapping[str, str], name: str) -> str | None:
    raw = environ.get(name) or None
    if raw is not None and len(raw) < MIN_SECRET_LENGTH:
        raise ConfigError(f"{name} must be at least {MIN_SECRET_LENGTH} characters long")
    return raw


@dataclass(frozen=True)
class TrustedClient:
    """A CDS client allowed to call the services: its JWT issuer and where its public keys are."""

    issuer: str
    # The JWK Set URL named by the tokens' `jku` header; fetched unless `jwks` is given.
    jku: str | None = None
    # An inline (pinned) JWK Set; when given, keys are never fetched.
    jwks: Mapping[str, Any] | None = None
    # When non-empty, the token's `tenant` claim must be one of these.
    tenants: tuple[str, ...] = ()
    # How this client applies suggestions; None: the service-wide CDS_CLIENT_PROFILE.
    profile: ClientProfile | None = None
    # The FHIR server origins its calls may name as fhirServer; None: not limited.
    fhir_servers: tuple[str, ...] | None = None


_CLIENT_MEMBERS = ("iss", "jku", "jwks", "tenant", "profile", "fhirServers")
_LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


def _is_key_set_url(url: str) -> bool:
    # Keys travel over https; plain http only to this machine (local test servers).
    parts = urlsplit(url)
    if not parts.hostname or parts.fragment:
        return False
    return parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in _LOOPBACK_HOSTS)


def _trusted_client(entry: Any, where: str) -> TrustedClient:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where} must be a JSON object")
    unknown = sorted(set(entry) - set(_CLIENT_MEMBERS))
    if unknown:
        raise ConfigError(
            f"{where} has unknown member(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(_CLIENT_MEMBERS)}"
        )
    issuer = entry.get("iss")
    if not isinstance(issuer, str) or not issuer.strip():
        raise ConfigError(f'{where} needs "iss", the issuer its tokens carry')
    jku, jwks = entry.get("jku"), entry.get("jwks")
    if jku is None and jwks is None:
        raise ConfigError(f'{where} needs "jku" (JWK Set URL) or "jwks" (inline JWK Set)')
    if jku is not None and not (isinstance(jku, str) and _is_key_set_url(jku)):
        raise ConfigError(
            f'{where}: "jku" must be an https URL (http only for localhost), got {jku!r}'
        )
    if jwks is not None and not (
        isinstance(jwks, dict) and isinstance(jwks.get("keys"), list) and jwks["keys"]
    ):
        raise ConfigError(f'{where}: "jwks" must be a JWK Set, {{"keys": [...]}}, with keys')
    tenant = entry.get("tenant")
    tenants = [tenant] if isinstance(tenant, str) else tenant
    if tenants is not None and not (
        isinstance(tenants, list) and all(isinstance(t, str) and t for t in tenants)
    ):
        raise ConfigError(f'{where}: "tenant" must be a string or a list of strings')
    profile = entry.get("profile")
    if profile is not None and profile not in PROFILE_NAMES:
        raise ConfigError(
            f'{where}: "profile" must be one of {", ".join(PROFILE_NAMES)}, got {profile!r}'
        )
    servers = entry.get("fhirServers")
    if servers is not None and not (
        isinstance(servers, list) and all(isinstance(item, str) for item in servers)
    ):
        raise ConfigError(f'{where}: "fhirServers" must be a list of origins')
    return TrustedClient(
        issuer,
        jku,
        jwks,
        tuple(tenants or ()),
        ClientProfile(profile) if profile is not None else None,
        None if servers is None else _fhir_origins(servers, f'{where}: "fhirServers"'),
    )


def _fhir_origins(items: list[str], where: str) -> tuple[str, ...]:
    """FHIR server origins (scheme://host[:port]); a path or a metadata host is refused."""
    origins = []
    for item in items:
        try:
            parts = urlsplit(item.strip())
        except ValueError:
            parts = None
        found = fhir_origin(item)
        if (
            parts is None
            or found is None
            or parts.path not in ("", "/")
            or parts.query
            or parts.fragment
            or parts.username is not None
        ):
            raise ConfigError(
                f"{where} must hold origins like https://fhir.example.org (no path), got {item!r}"
            )
        if is_forbidden_host(urlsplit(found).hostname or ""):
            raise ConfigError(f"{where}: {item!r} is a cloud metadata or link-local address")
        origins.append(found)
    return tuple(dict.fromkeys(origins))


def _trusted_clients(environ: Mapping[str, str]) -> tuple[TrustedClient, ...]:
    name = "CDS_TRUSTED_CLIENTS"
    path = (environ.get(name) or "").strip()
    if not path:
        return ()
    try:
        with open(path, encoding="utf-8") as file:
            document = json.load(file)
    except OSError as error:
        raise ConfigError(f"{name}: cannot read {path!r}: {error.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{name}: {path!r} is not valid JSON ({error})") from None
    # The canonical form is a list; {"clients": [...]} and a single client object are accepted.
    if isinstance(document, dict):
        document = document.get("clients", [document])
    if not isinstance(document, list) or not document:
        raise ConfigError(f"{name}: {path!r} must hold a non-empty JSON list of clients")
    clients = tuple(
        _trusted_client(entry, f"{name}: client {index}") for index, entry in enumerate(document)
    )
    issuers = [client.issuer for client in clients]
    duplicates = sorted({issuer for issuer in issuers if issuers.count(issuer) > 1})
    if duplicates:
        raise ConfigError(f"{name}: issuer {duplicates[0]!r} is listed more than once")
    return clients


def _public_url(environ: Mapping[str, str], required: bool) -> str | None:
    name = "CDS_PUBLIC_URL"
    raw = (environ.get(name) or "").strip()
    if not raw:
        if required:
            raise ConfigError(
                f"{name} must be set when CDS_TRUSTED_CLIENTS is: "
                "each JWT's aud is checked against {CDS_PUBLIC_URL}/cds-services/{id}"
            )
        return None
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ConfigError(
            f"{name} must be an http(s) base URL like https://cds.example.org, got {raw!r}"
        )
    return raw.rstrip("/")


def _origin(url: str, *, whole_url: bool = False) -> str | None:
    """scheme://host[:port] of an origin (or, with whole_url, of any http(s) URL)."""
    parts = urlsplit(url.strip().rstrip("/"))
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    if not whole_url and (parts.path or parts.query or parts.fragment):
        return None
    if parts.username or parts.password:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


def _cors_origins(
    environ: Mapping[str, str], clients: tuple[TrustedClient, ...]
) -> tuple[str, ...]:
    name = "CDS_CORS_ORIGINS"
    raw = (environ.get(name) or "").strip()
    if not raw:
        if not clients:
            return ("*",)
        # With authentication on, browsers may call only from the trusted issuers' own origins
        # (the public sandbox signs as https://sandbox.cds-hooks.org, which is its origin).
        derived = (_origin(client.issuer, whole_url=True) for client in clients)
        return tuple(dict.fromkeys(origin for origin in derived if origin))
    items = [item.strip() for item in raw.split(",") if item.strip()]
    if items == ["*"]:
        return ("*",)
    origins = []
    for item in items:
        origin = _origin(item)
        if origin is None:
            raise ConfigError(
                f"{name} must be * or comma-separated origins like https://sandbox.cds-hooks.org, "
                f"got {item!r}"
            )
        origins.append(origin)
    return tuple(dict.fromkeys(origins))


def _path_in_existing_folder(environ: Mapping[str, str], name: str) -> str | None:
    """A file or folder the service creates itself, in a folder that must exist already."""
    path = (environ.get(name) or "").strip()
    if not path:
        return None
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ConfigError(f"{name}: folder {folder!r} does not exist")
    return path


def _admin_token(environ: Mapping[str, str]) -> str | None:
    name = "CDS_ADMIN_TOKEN"
    token = _secret(environ, name)
    # It travels in an Authorization header (Bearer, or the password of HTTP Basic).
    if token is not None and not all("!" <= character <= "~" for character in token):
        raise ConfigError(f"{name} must be printable ASCII without spaces")
    return token


def _on_off(environ: Mapping[str, str], name: str) -> bool | None:
    raw = (environ.get(name) or "").strip().lower()
    if not raw:
        return None
    if raw in ("on", "true", "1", "yes"):
        return True
    if raw in ("off", "false", "0", "no"):
        return False
    raise ConfigError(f"{name} must be on or off, got {raw!r}")


def _folder(environ: Mapping[str, str], name: str, *, create: bool = False) -> str | None:
    path = (environ.get(name) or "").strip()
    if not path:
        return None
    if os.path.isdir(path):
        return path
    parent = os.path.dirname(os.path.abspath(path))
    if create and not os.path.exists(path) and os.path.isdir(parent):
        return path  # made at start
    raise ConfigError(f"{name} must be a folder, got {path!r}")


def _fhir_servers(environ: Mapping[str, str]) -> tuple[str, ...] | None:
    name = "CDS_FHIR_SERVERS"
    raw = (environ.get(name) or "").strip()
    if not raw:
        return None
    return _fhir_origins([item for item in raw.split(",") if item.strip()], name)


def _site_config(environ: Mapping[str, str], cards_dir: str | None) -> SiteConfig:
    """The site file, checked whole before anything starts: what it says about card content
    (snooze reasons, override reasons) against the content it will be used with."""
    name = "CDS_SITE_CONFIG"
    path = (environ.get(name) or "").strip()
    if not path:
        return DEFAULT_SITE
    try:
        site = read_site_config(path)
        resolve_site(site, load_card_content(cards_dir, thresholds=site.thresholds))
    except SiteConfigError as error:
        raise SiteConfigError(f"{name}: {error}") from None
    except ContentError as error:
        raise SiteConfigError(
            f"{name}: cannot be checked against the card content: {error}"
        ) from None
    return site


@dataclass(frozen=True)
class Settings:
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    log_level: str = "INFO"
    log_format: str = "json"
    cards_dir: str | None = None
    # Pins "today" for reproducible test runs and fixture replays; never set in production.
    evaluation_date: date | None = None
    # All reads from the EHR's FHIR server for one hook call share this deadline.
    fhir_deadline_seconds: float = DEFAULT_FHIR_DEADLINE_SECONDS
    # Connect and read timeout of one FHIR call; never more than the deadline.
    fhir_timeout_seconds: float = DEFAULT_FHIR_DEADLINE_SECONDS
    fhir_max_pages: int = DEFAULT_FHIR_MAX_PAGES
    # The FHIR server origins any call may name as fhirServer; None: any (but never a cloud
    # metadata or link-local address).
    fhir_servers: tuple[str, ...] | None = None
    fhir_max_calls: int = DEFAULT_FHIR_MAX_CALLS
    # Empty: development mode, service calls are accepted without a JWT.
    trusted_clients: tuple[TrustedClient, ...] = ()
    public_url: str | None = None
    cors_origins: tuple[str, ...] = ("*",)
    # SQLite file of used token ids (jti), shared by the workers; None: a private temporary file.
    replay_db: str | None = None
    # Decision log and feedback store (SQLite file or PostgreSQL).
    database_url: str = field(default=DEFAULT_DATABASE_URL, repr=False)  # may hold a password
    # Key of the patient pseudonyms; None: generated and kept in the store (development).
    patient_key_secret: str | None = field(default=None, repr=False)
    decision_queue_size: int = DEFAULT_QUEUE_SIZE
    # Suggestion shapes for callers whose trusted-clients entry names no profile.
    client_profile: ClientProfile = DEFAULT_PROFILE
    # Operator token for /dashboard and /metrics (and /preview when protected); required for
    # them when trusted clients are configured. Never the EHR's JWT.
    admin_token: str | None = field(default=None, repr=False)
    # /preview: None follows the mode (on in development mode, off with trusted clients).
    preview: bool | None = None
    # A folder of fixture scenarios for /preview instead of the packaged library.
    preview_fixtures: str | None = None
    # Folder of the per-process metric files; None: a private temporary folder per server.
    metrics_dir: str | None = None

    @property
    def development_mode(self) -> bool:
        return not self.trusted_clients

    @property
    def preview_enabled(self) -> bool:
        return self.development_mode if self.preview is None else self.preview

    # Where cards go when a worker stops while the store is down; None: beside a SQLite store,
    # or `cds-spool` in the working folder for PostgreSQL.
    spool_dir: str | None = None
    spool_max_bytes: int = DEFAULT_SPOOL_MAX_BYTES
    # Cards in one answer at most, the most severe first.
    max_cards: int = DEFAULT_MAX_CARDS
    # The site configuration (CDS_SITE_CONFIG, a TOML file; docs/operators.md, "Configure for
    # your site"),
    # read and checked here; what it says about card content is checked when that loads.
    site: SiteConfig = DEFAULT_SITE

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        cards_dir = env.get("CDS_CARDS_DIR") or None
        if cards_dir and not os.path.isdir(cards_dir):
            raise ConfigError(f"CDS_CARDS_DIR must be a folder, got {cards_dir!r}")
        deadline = _seconds(env, "CDS_FHIR_DEADLINE_SECONDS", DEFAULT_FHIR_DEADLINE_SECONDS)
        timeout = _seconds(env, "CDS_FHIR_TIMEOUT_SECONDS", deadline)
        if timeout > deadline:
            raise ConfigError(
                f"CDS_FHIR_TIMEOUT_SECONDS ({timeout:g}) must not exceed "
                f"CDS_FHIR_DEADLINE_SECONDS ({deadline:g})"
            )
        trusted_clients = _trusted_clients(env)
        return cls(
            max_body_bytes=_positive_int(env, "CDS_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES),
            log_level=_choice(env, "CDS_LOG_LEVEL", _LOG_LEVELS, "INFO"),
            log_format=_choice(env, "CDS_LOG_FORMAT", _LOG_FORMATS, "json"),
            cards_dir=cards_dir,
            evaluation_date=_date(env, "CDS_EVALUATION_DATE"),
            fhir_deadline_seconds=deadline,
            fhir_timeout_seconds=timeout,
            fhir_max_pages=_positive_int(env, "CDS_FHIR_MAX_PAGES", DEFAULT_FHIR_MAX_PAGES),
            fhir_servers=_fhir_servers(env),
            fhir_max_calls=_positive_int(env, "CDS_FHIR_MAX_CALLS", DEFAULT_FHIR_MAX_CALLS),
            trusted_clients=trusted_clients,
            public_url=_public_url(env, required=bool(trusted_clients)),
            cors_origins=_cors_origins(env, trusted_clients),
            replay_db=_path_in_existing_folder(env, "CDS_REPLAY_DB"),
            database_url=_database_url(env),
            patient_key_secret=_secret(env, "CDS_PATIENT_KEY_SECRET"),
            decision_queue_size=_positive_int(env, "CDS_DECISION_QUEUE_SIZE", DEFAULT_QUEUE_SIZE),
            client_profile=ClientProfile(
                _choice(env, "CDS_CLIENT_PROFILE", PROFILE_NAMES, DEFAULT_PROFILE.value)
            ),
            admin_token=_admin_token(env),
            preview=_on_off(env, "CDS_PREVIEW"),
            preview_fixtures=_folder(env, "CDS_PREVIEW_FIXTURES"),
            metrics_dir=_folder(env, "CDS_METRICS_DIR", create=True),
            spool_dir=_folder(env, "CDS_SPOOL_DIR", create=True),
            spool_max_bytes=_positive_int(env, "CDS_SPOOL_MAX_BYTES", DEFAULT_SPOOL_MAX_BYTES),
            max_cards=_positive_int(env, "CDS_MAX_CARDS", DEFAULT_MAX_CARDS),
            site=_site_config(env, cards_dir),
        )
