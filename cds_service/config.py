"""Configuration from environment variables, checked once at start.

The service starts with no configuration at all (development defaults). An invalid value stops
it with a one-line reason naming the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

DEFAULT_MAX_BODY_BYTES = 5 * 1024 * 1024
DEFAULT_FHIR_DEADLINE_SECONDS = 2.0
DEFAULT_FHIR_MAX_PAGES = 10
# An EHR waits on the answer while the clinician signs; longer than this is never reasonable.
MAX_FHIR_DEADLINE_SECONDS = 60.0
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_LOG_FORMATS = ("json", "text")


class ConfigError(ValueError):
    """A configuration value the service cannot run with."""


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
        return cls(
            max_body_bytes=_positive_int(env, "CDS_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES),
            log_level=_choice(env, "CDS_LOG_LEVEL", _LOG_LEVELS, "INFO"),
            log_format=_choice(env, "CDS_LOG_FORMAT", _LOG_FORMATS, "json"),
            cards_dir=cards_dir,
            evaluation_date=_date(env, "CDS_EVALUATION_DATE"),
            fhir_deadline_seconds=deadline,
            fhir_timeout_seconds=timeout,
            fhir_max_pages=_positive_int(env, "CDS_FHIR_MAX_PAGES", DEFAULT_FHIR_MAX_PAGES),
        )
