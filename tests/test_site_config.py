"""The site configuration file (CDS_SITE_CONFIG): what is accepted, what stops the service with
one line, and `cds-service config check`."""

from __future__ import annotations

import json
import tomllib
import urllib.request
from pathlib import Path

import pytest
from live_server import free_port, serve, wait_healthy

from cds_service.card_builder.content import load_card_content
from cds_service.cli import main
from cds_service.config import ConfigError, Settings
from cds_service.rules.findings import Orderable
from cds_service.rules.registry import TOPICS
from cds_service.rules.thresholds import DEFAULT_THRESHOLDS, LIMITS, Thresholds
from cds_service.site.config import (
    DEFAULT_SITE,
    SiteConfig,
    SiteConfigError,
    TopicMode,
    parse_site_config,
    read_site_config,
)
from cds_service.site.reason_sets import REASON_SETS
from cds_service.site.render import render_site
from cds_service.site.resolved import resolve_site

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "site.toml"
FIXTURE = Path(__file__).resolve().parents[1] / "fhir_fixtures"
HL7 = "http://terminology.hl7.org/CodeSystem/non-adherence-reason-codes"
EPIC_PREFERENCE_LIST = "urn:com.epic.cdshooks.action.code.system.preference-list-item"


def _parse(text: str) -> SiteConfig:
    return parse_site_config(tomllib.loads(text), "site.toml")


def _problem(text: str) -> str:
    with pytest.raises(SiteConfigError) as caught:
        site = _parse(text)
        resolve_site(site, load_card_content(thresholds=site.thresholds))
    message = str(caught.value)
    assert "\n" not in message and message.startswith("site.toml: ")
    return message.removeprefix("site.toml: ")


# --- what a file may say ---------------------------------------------------------------------


def test_the_contract_example_runs_a_topic_silently() -> None:
    site = _parse('[topics."opioid-avoidance"]      # any topic code\nmode = "silent"\n')
    assert site.mode("opioid-avoidance") is TopicMode.SILENT
    assert site.silent_topics == {"opioid-avoidance"}
    assert all(site.mode(t) is TopicMode.ON for t in TOPICS if t != "opioid-avoidance")
    assert site.thresholds == DEFAULT_THRESHOLDS


def test_every_topic_of_the_registry_can_be_switched() -> None:
    for mode in TopicMode:
        text = "".join(f'[topics."{topic}"]\nmode = "{mode.value}"\n' for topic in TOPICS)
        site = _parse(text)
        assert {site.mode(topic) for topic in TOPICS} == {mode}
    off = _parse('[topics."avoid-glucosamine"]\nmode = "off"\n')
    from cds_service.rules.registry import RECOMMENDATIONS

    assert [u.topic for u in off.evaluated(RECOMMENDATIONS)] == [
        t for t in TOPICS if t != "avoid-glucosamine"
    ]


def test_the_example_file_is_a_good_site_file() -> None:
    site = read_site_config(str(EXAMPLE))
    resolved = resolve_site(site, load_card_content(thresholds=site.thresholds))
    assert site.silent_topics and site.orders and resolved.snooze


def test_an_empty_file_is_the_defaults() -> None:
    site = _parse("")
    assert (site.topics, site.thresholds, site.orders) == ({}, DEFAULT_THRESHOLDS, {})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            'modes = "silent"\n',
            "the file: unknown key 'modes'; allowed: topics, thresholds, orders",
        ),
        (
            '[topics."opioid-avoidance"]\nmdoe = "silent"\n',
            "[topics.\"opioid-avoidance\"]: unknown key 'mdoe'; allowed: mode, override_reasons, "
            "snooze",
        ),
        (
            '[topics."opioid-avoidance"]\nmode = "quiet"\n',
            '[topics."opioid-avoidance"]: mode must be one of "on", "silent", "off", '
            "got text ('quiet')",
        ),
        (
            '[topics."opioid-avoidance"]\nmode = true\n',
            '[topics."opioid-avoidance"]: mode must be one of "on", "silent", "off", '
            "got true/false (True)",
        ),
        ('topics = "all"\n', "[topics] must be a table, got text ('all')"),
        ("[thresholds]\nfever_celsius = 41.0\n", "fever_celsius must be between 37.5 and 39.5"),
        ("[thresholds]\nfever_celsius = '38'\n", "fever_celsius must be a number, got '38'"),
        ("[thresholds]\npersistent_pain_weeks = 4.5\n", "must be a whole number, got 4.5"),
        ("[thresholds]\npersistent_pain_weeks = true\n", "must be a whole number, got True"),
        ("[thresholds]\nfever = 38.5\n", "[thresholds]: unknown key 'fever'; allowed: "),
        ("[thresholds]\nmalignancy_age_over = 30\n", "between 40 and 70 years, got 30"),
        ("[thresholds]\ntrauma_lookback_days = 400\n", "between 30 and 365 days, got 400"),
        ("[thresholds]\nweight_loss_percent = 1\n", "between 2 and 20 %, got 1"),
        (
            "[thresholds]\npersistent_pain_weeks = 8\nreferral_pain_weeks = 6\n",
            "referral_pain_weeks (6) must not be less than persistent_pain_weeks (8)",
        ),
        (
            '[orders."ibuprofen"]\ncodings = []\n',
            "[orders.\"ibuprofen\"]: unknown order 'ibuprofen'",
        ),
        ('[orders."acetaminophen"]\ncodings = []\n', "codings must list at least one coding"),
        (
            '[orders."acetaminophen"]\nfirst = "yes"\ncodings = [{system = "urn:x", code = "1"}]\n',
            "first must be true or false, got text ('yes')",
        ),
        (
            '[orders."acetaminophen"]\ncodings = [{system = "urn:x", code = "1", text = "a"}]\n',
            "codings[0]: unknown key 'text'; allowed: system, code, display",
        ),
        (
            '[orders."acetaminophen"]\ncodings = [{system = "urn:x"}]\n',
            "codings[0]: code must be non-empty text, got missing",
        ),
        (
            '[orders."acetaminophen"]\ncodings = [{system = "urn:x y", code = "1"}]\n',
            "codings[0]: not a valid FHIR Coding (system",
        ),
        (
            '[orders."acetaminophen"]\ncodings = [{system = "urn:x", code = " 1"}]\n',
            "codings[0]: not a valid FHIR Coding (code",
        ),
        (
            '[orders."acetaminophen"]\ncodings = [{system = "urn:x", code = "1"}, '
            '{system = "urn:x", code = "1"}]\n',
            "urn:x|1 is listed twice",
        ),
        (
            '[topics."exercise-therapy".override_reasons]\nsets = ["hl7"]\n',
            "unknown reason set 'hl7'; known: hl7-non-adherence-clinical",
        ),
        (
            '[topics."exercise-therapy".override_reasons]\nreplace = 1\n',
            "replace must be true or false, got a whole number (1)",
        ),
        (
            '[topics."opioid-avoidance".override_reasons]\nreplace = true\n',
            "replace leaves opioid-avoidance cards (warning) without override reasons",
        ),
        (
            '[topics."red-flags-present".snooze]\ndays = 7\nreasons = ["recorded-in-error"]\n',
            "only info topics can be snoozed; red-flags-present cards are warning",
        ),
        (
            '[topics."exercise-therapy".snooze]\ndays = 7\nreasons = ["limited-time"]\n',
            "'limited-time' is not one of the override reasons exercise-therapy cards offer",
        ),
        (
            '[topics."exercise-therapy".snooze]\ndays = 0\nreasons = ["exercise-deferred"]\n',
            "days must be a whole number from 1 to 365, got a whole number (0)",
        ),
        (
            '[topics."exercise-therapy".snooze]\ndays = 30\nreasons = []\n',
            "reasons must list the override reasons (codes) that snooze",
        ),
        (
            '[topics."exercise-therapy".snooze]\ndays = 30\nreasons = ["exercise-deferred"]\n'
            "until = 3\n",
            "snooze: unknown key 'until'; allowed: days, reasons",
        ),
    ],
)
def test_a_bad_file_is_refused_with_one_line_naming_the_place(text: str, expected: str) -> None:
    assert expected in _problem(text)


def test_an_unknown_topic_is_named_with_the_known_ones() -> None:
    problem = _problem('[topics."opioid-avoidanse"]\nmode = "silent"\n')
    assert problem.startswith("[topics.\"opioid-avoidanse\"]: unknown topic 'opioid-avoidanse'")
    assert all(topic in problem for topic in TOPICS)


def test_a_snooze_reason_offered_under_two_systems_must_name_its_system() -> None:
    text = (
        '[topics."exercise-therapy".override_reasons]\n'
        'codes = [{system = "urn:site", code = "exercise-deferred", display = "Later"}]\n'
        '[topics."exercise-therapy".snooze]\ndays = 7\nreasons = ["exercise-deferred"]\n'
    )
    assert "offered under several systems; write system|code" in _problem(text)
    site = _parse(text.replace('["exercise-deferred"]', '["urn:site|exercise-deferred"]'))
    resolved = resolve_site(site, load_card_content())
    assert resolved.snooze["exercise-therapy"].reasons == {("urn:site", "exercise-deferred")}


def test_thresholds_are_typed_and_every_default_is_within_its_range() -> None:
    for name, limit in LIMITS.items():
        assert limit.low <= getattr(DEFAULT_THRESHOLDS, name) <= limit.high
    assert Thresholds(fever_celsius=38).fever_celsius == 38.0  # a whole number is a number
    assert isinstance(Thresholds(fever_celsius=38).fever_celsius, float)
    assert Thresholds(malignancy_age_over=55).malignancy_min_age == 56
    assert Thresholds(weight_loss_months=6).weight_loss_lookback_days == 182
    assert DEFAULT_THRESHOLDS.weight_loss_lookback_days == 365


def test_the_hl7_reason_sets_are_the_value_sets_of_the_code_system() -> None:
    clinical = REASON_SETS["hl7-non-adherence-clinical"].reasons
    assert len(clinical) == 12 and {system for system, _, _ in clinical} == {HL7}
    assert (HL7, "action-completed", "Recommended action was already completed") in clinical
    assert len(REASON_SETS["hl7-non-adherence-categories"].reasons) == 6
    assert len(REASON_SETS["hl7-non-adherence-all"].reasons) == 35


def test_a_problem_in_a_file_is_found_before_anything_starts(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text("[thresholds]\nfever_celsius = 45\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"^CDS_SITE_CONFIG: .*site.toml: \[thresholds\]"):
        Settings.from_env({"CDS_SITE_CONFIG": str(path)})
    with pytest.raises(ConfigError, match="CDS_SITE_CONFIG: cannot read"):
        Settings.from_env({"CDS_SITE_CONFIG": str(tmp_path / "missing.toml")})
    path.write_text("[topics\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"not valid TOML \(.*line 1"):
        Settings.from_env({"CDS_SITE_CONFIG": str(path)})
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="not valid TOML"):
        Settings.from_env({"CDS_SITE_CONFIG": str(path)})
    assert Settings.from_env({}).site is DEFAULT_SITE


# --- cds-service config check -----------------------------------------------------------------


def test_config_check_prints_the_effective_configuration(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CDS_SITE_CONFIG", raising=False)
    assert main(["config", "check", str(EXAMPLE)]) == 0
    printed = capsys.readouterr().out
    site = read_site_config(str(EXAMPLE))
    # Every threshold and every topic, defaults included.
    for name in LIMITS:
        assert f"\n{name} = " in printed
    for topic in TOPICS:
        assert f'[topics."{topic}"]\nmode = "{site.mode(topic).value}"' in printed
    # What the settings resolve to: the codings of a site-coded order, in order.
    assert f"#   {EPIC_PREFERENCE_LIST}|" in printed
    # The output is itself a site file meaning the same.
    again = parse_site_config(tomllib.loads(printed), "printed")
    content = load_card_content(thresholds=site.thresholds)
    assert (
        render_site(resolve_site(again, content)).split("\n", 2)[2]
        == render_site(resolve_site(site, content)).split("\n", 2)[2]
    )


def test_config_check_without_a_file_prints_the_defaults(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CDS_SITE_CONFIG", raising=False)
    assert main(["config", "check"]) == 0
    printed = capsys.readouterr().out
    assert "# no site configuration file: the defaults" in printed
    assert parse_site_config(tomllib.loads(printed), "x").thresholds == DEFAULT_THRESHOLDS
    for orderable in Orderable:
        assert f'# [orders."{orderable.value}"]: the standard codings only' in printed


def test_config_check_reads_the_variable_when_no_file_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "site.toml"
    path.write_text('[topics."avoid-glucosamine"]\nmode = "off"\n', encoding="utf-8")
    monkeypatch.setenv("CDS_SITE_CONFIG", str(path))
    assert main(["config", "check"]) == 0
    assert '[topics."avoid-glucosamine"]\nmode = "off"\n# not evaluated' in capsys.readouterr().out
    # A file named on the command line is checked, whatever the variable says.
    path.write_text("[thresholds]\nfever_celsius = 45\n", encoding="utf-8")
    assert main(["config", "check", str(EXAMPLE)]) == 0
    capsys.readouterr()
    assert main(["config", "check"]) == 2
    assert capsys.readouterr().err.startswith("cds-service: CDS_SITE_CONFIG: ")


def test_config_check_refuses_a_bad_file_with_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CDS_SITE_CONFIG", raising=False)
    path = tmp_path / "site.toml"
    path.write_text('[topics."exercise-therapy"]\nmode = "loud"\n', encoding="utf-8")
    assert main(["config", "check", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f'cds-service: {path}: [topics."exercise-therapy"]: mode must be one of "on", "silent", '
        "\"off\", got text ('loud')\n"
    )


# --- cds-service serve ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('[topics."opioid-avoidance"]\nmode = "silent"\nshow = false\n', "unknown key 'show'"),
        ("[thresholds]\nfever_celsius = 'high'\n", "fever_celsius must be a number"),
        ('[topics."opioid-avoidence"]\nmode = "silent"\n', "unknown topic 'opioid-avoidence'"),
        ("[thresholds]\nreferral_pain_weeks = 80\n", "must be between 6 and 52 weeks, got 80"),
        (
            '[topics."imaging-without-red-flags".snooze]\ndays = 7\n'
            'reasons = ["not-for-back-pain"]\n',
            "only info topics can be snoozed",
        ),
    ],
)
def test_serve_stops_on_a_bad_site_file_with_one_line(
    tmp_path: Path, text: str, reason: str
) -> None:
    path = tmp_path / "site.toml"
    path.write_text(text, encoding="utf-8")
    store = tmp_path / "cds-decisions.db"
    process = serve(
        free_port(), {"CDS_SITE_CONFIG": str(path), "CDS_DATABASE_URL": f"sqlite:///{store}"}
    )
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"cds-service: configuration error: CDS_SITE_CONFIG: {path}: ")
    assert reason in lines[0]
    assert not store.exists()  # stopped before anything was made


def test_serve_with_a_site_file_keeps_silent_topics_out_of_the_answer(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text('[topics."opioid-avoidance"]\nmode = "silent"\n', encoding="utf-8")
    port = free_port()
    env = {
        "CDS_SITE_CONFIG": str(path),
        "CDS_EVALUATION_DATE": "2026-11-22",
        "CDS_DATABASE_URL": f"sqlite:///{tmp_path / 'cds-decisions.db'}",
    }
    process = serve(port, env)
    try:
        wait_healthy(port, process)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/cds-services/back-pain-order-sign",
            data=(FIXTURE / "opioid-tramadol-acute-low-back-pain" / "request.json").read_bytes(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            body = json.load(response)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/cds-services", timeout=10) as answer:
            services = json.load(answer)["services"]
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=20)
    assert [card["source"]["topic"]["code"] for card in body["cards"]] == ["exercise-therapy"]
    assert '"silent_topics":["opioid-avoidance"]' in stderr
    assert all("silent: opioid-avoidance" in s["usageRequirements"] for s in services)
