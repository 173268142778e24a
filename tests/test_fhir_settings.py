"""FHIR access settings: defaults, parsing and refusal of values the service cannot run with."""

from __future__ import annotations

import pytest

from cds_service.cli import main
from cds_service.config import ConfigError, Settings
from cds_service.fhir.client import FhirClient
from cds_service.runtime import Runtime


def test_defaults_are_a_two_second_deadline_for_everything() -> None:
    settings = Settings.from_env({})
    assert settings.fhir_deadline_seconds == 2.0
    assert settings.fhir_timeout_seconds == 2.0
    assert settings.fhir_max_pages == 10


def test_values_are_read_from_the_environment() -> None:
    settings = Settings.from_env(
        {
            "CDS_FHIR_DEADLINE_SECONDS": "1.5",
            "CDS_FHIR_TIMEOUT_SECONDS": "0.75",
            "CDS_FHIR_MAX_PAGES": "4",
        }
    )
    assert (settings.fhir_deadline_seconds, settings.fhir_timeout_seconds) == (1.5, 0.75)
    assert settings.fhir_max_pages == 4


def test_timeout_defaults_to_the_deadline() -> None:
    settings = Settings.from_env({"CDS_FHIR_DEADLINE_SECONDS": "0.8"})
    assert settings.fhir_timeout_seconds == 0.8


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("CDS_FHIR_DEADLINE_SECONDS", "soon", "number of seconds"),
        ("CDS_FHIR_DEADLINE_SECONDS", "0", "greater than 0"),
        ("CDS_FHIR_DEADLINE_SECONDS", "-1", "greater than 0"),
        ("CDS_FHIR_DEADLINE_SECONDS", "nan", "greater than 0"),
        ("CDS_FHIR_DEADLINE_SECONDS", "inf", "at most 60"),
        ("CDS_FHIR_DEADLINE_SECONDS", "120", "at most 60"),
        ("CDS_FHIR_TIMEOUT_SECONDS", "0", "greater than 0"),
        ("CDS_FHIR_TIMEOUT_SECONDS", "3", "must not exceed CDS_FHIR_DEADLINE_SECONDS"),
        ("CDS_FHIR_MAX_PAGES", "0", "greater than zero"),
        ("CDS_FHIR_MAX_PAGES", "2.5", "whole number"),
    ],
)
def test_bad_values_stop_the_service_naming_the_variable(name: str, value: str, words: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({name: value})
    assert name in str(raised.value) and words in str(raised.value)


def test_runtime_builds_its_fhir_client_from_the_settings_without_starting_threads() -> None:
    settings = Settings(fhir_deadline_seconds=1.0, fhir_timeout_seconds=0.5, fhir_max_pages=3)
    fetcher = Runtime.load(settings).fetcher
    assert isinstance(fetcher, FhirClient)
    assert (fetcher.deadline_seconds, fetcher.timeout_seconds, fetcher.max_pages) == (1.0, 0.5, 3)
    # Nothing that a fork would break exists before the first call (gunicorn preloads the app).
    assert not fetcher.is_started


def test_serve_refuses_a_deadline_the_worker_timeout_would_cut(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CDS_FHIR_DEADLINE_SECONDS", "20")
    assert main(["serve", "--timeout", "10"]) == 2
    assert "must be shorter than --timeout" in capsys.readouterr().err
