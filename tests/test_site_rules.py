"""A site configuration applied to whole requests: each switch and threshold changes a fixture's
outcome as expected, the defaults leave every golden file unchanged, silent cards are logged
and reported but never returned, local order codes and override reasons reach the cards."""

from __future__ import annotations

import copy
import dataclasses
import json
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import SETTINGS, fixture_dirs, load_fixture
from fhir.resources.R4B import get_fhir_model_class
from flask import Flask
from metrics_text import Samples, parse, value
from sqlalchemy import select

from cds_service.card_builder.builder import CardBuilder, CardContext
from cds_service.card_builder.profiles import ClientProfile
from cds_service.cli import main
from cds_service.golden import compare_cards
from cds_service.protocol.request import schema_problems
from cds_service.rules.findings import Orderable
from cds_service.rules.registry import TOPICS
from cds_service.rules.thresholds import LIMITS
from cds_service.runtime import Runtime, load_site_and_content
from cds_service.site.config import parse_site_config
from cds_service.site.resolved import default_site
from cds_service.store.schema import card_decisions

SECRET = "site-rules-secret-" + "s" * 32
EPIC_PREFERENCE_LIST = "urn:com.epic.cdshooks.action.code.system.preference-list-item"
EPIC_ORDERSET = "urn:com.epic.cdshooks.action.code.system.orderset-item"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
HL7 = "http://terminology.hl7.org/CodeSystem/non-adherence-reason-codes"
CONTENT_REASONS = "http://example.org/fhir/back-pain-cds/CodeSystem/override-reason"
TRAMADOL = "opioid-tramadol-acute-low-back-pain"

MakeSiteApp = Callable[..., Flask]


@pytest.fixture
def site_app(make_app: Callable[..., Flask], tmp_path: Path) -> MakeSiteApp:
    """An app (with its own runtime and a fresh SQLite store) under a site configuration."""

    made = iter(range(1000))

    def _make(text: str, **settings: Any) -> Flask:
        site = parse_site_config(tomllib.loads(text), "site.toml")
        configured = dataclasses.replace(
            SETTINGS,
            site=site,
            database_url=f"sqlite:///{tmp_path / f'cds-decisions-{next(made)}.db'}",
            patient_key_secret=SECRET,
            **settings,
        )
        return make_app(configured, Runtime.load(configured))

    return _make


def _answer(app: Flask, name: str, request: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    scenario, fixture_request, _ = load_fixture(name)
    response = app.test_client().post(
        f"/cds-services/{scenario['service']}", json=request or fixture_request
    )
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert schema_problems("response", body) == []
    cards: list[dict[str, Any]] = body["cards"]
    return cards


def _topics(cards: list[dict[str, Any]]) -> list[str]:
    return sorted(card["source"]["topic"]["code"] for card in cards)


def _logged(app: Flask) -> list[tuple[str, str]]:
    assert app.extensions["cds_decision_log"].flush(10)
    with app.extensions["cds_store"].reading() as connection:
        rows = connection.execute(select(card_decisions.c.topic, card_decisions.c.disposition))
        return sorted((topic, disposition) for topic, disposition in rows)


def _metrics(app: Flask) -> Samples:
    return parse(app.test_client().get("/metrics").get_data(as_text=True))


def _dated(name: str, resource_type: str, words: str, field: str, value: str) -> dict[str, Any]:
    """The fixture's request with `field` of the prefetched `resource_type` coded with `words`
    set to `value`."""
    request = copy.deepcopy(load_fixture(name)[1])
    changed = 0
    for bundle in request["prefetch"].values():
        for entry in (bundle or {}).get("entry", ()):
            resource = entry["resource"]
            concept = resource.get("code") or resource.get("medicationCodeableConcept") or {}
            if (
                resource["resourceType"] == resource_type
                and words in json.dumps(concept).lower()
                and field in resource
            ):
                resource[field] = value
                changed += 1
    assert changed == 1
    return request


# --- thresholds --------------------------------------------------------------------------------

# (threshold, value, fixture, request change or None, topics by default, topics with the value)
THRESHOLD_CASES = [
    (
        "persistent_pain_weeks",
        7,
        "patient-view-subacute-pain-6-weeks",
        None,
        ["chronic-pain-assessment"],
        [],
    ),
    (
        "malignancy_age_over",
        65,
        "imaging-age-over-50-new-pain",
        None,
        ["red-flags-present"],
        ["imaging-without-red-flags"],
    ),
    (
        "malignancy_new_pain_weeks",
        2,
        "imaging-age-over-50-new-pain",
        None,
        ["red-flags-present"],
        ["imaging-without-red-flags"],
    ),
    (
        "fever_celsius",
        38.7,
        "imaging-fever-order-select",
        None,
        ["red-flags-present"],
        ["imaging-without-red-flags"],
    ),
    (
        "trauma_lookback_days",
        180,
        "red-flag-spinal-fracture-xray",
        ("Condition", "fracture", "onsetDateTime", "2026-06-01"),  # 174 days ago
        ["imaging-without-red-flags"],
        ["red-flags-present"],
    ),
    (
        "topical_nsaid_lookback_days",
        180,
        "topical-nsaid-already-tried",
        ("MedicationRequest", "diclofenac", "authoredOn", "2026-07-15"),  # 130 days ago
        ["topical-nsaid-first"],
        [],
    ),
    (
        "weight_loss_percent",
        7,
        "red-flag-weight-loss-measured",  # 6.5 % lost
        None,
        ["red-flags-present"],
        ["imaging-without-red-flags"],
    ),
    (
        "weight_loss_percent",
        2,
        "weight-loss-under-5-percent-imaging",  # 2.4 % lost
        None,
        ["imaging-without-red-flags"],
        ["red-flags-present"],
    ),
    (
        "weight_loss_months",
        3,
        "red-flag-weight-loss-measured",  # the heavier weight is six months old
        None,
        ["red-flags-present"],
        ["imaging-without-red-flags"],
    ),
]


@pytest.mark.parametrize(
    ("name", "value", "fixture", "change", "by_default", "with_value"),
    THRESHOLD_CASES,
    ids=[f"{case[0]}={case[1]}" for case in THRESHOLD_CASES],
)
def test_each_threshold_changes_a_fixtures_outcome(
    app: Flask,
    site_app: MakeSiteApp,
    name: str,
    value: float,
    fixture: str,
    change: tuple[str, str, str, str] | None,
    by_default: list[str],
    with_value: list[str],
) -> None:
    request = _dated(fixture, *change) if change else None
    assert _topics(_answer(app, fixture, request)) == by_default
    tuned = site_app(f"[thresholds]\n{name} = {value}\n")
    assert _topics(_answer(tuned, fixture, request)) == with_value


def test_every_threshold_is_exercised_on_a_fixture() -> None:
    covered = {case[0] for case in THRESHOLD_CASES} | {"referral_pain_weeks"}
    assert covered == set(LIMITS)


def test_the_referral_weeks_move_the_multidisciplinary_referral(
    app: Flask, site_app: MakeSiteApp
) -> None:
    def referral(cards: list[dict[str, Any]]) -> bool:
        card = next(c for c in cards if c["source"]["topic"]["code"] == "chronic-pain-assessment")
        return bool(card.get("suggestions"))

    assert referral(_answer(app, "patient-view-chronic-pain-16-weeks"))
    assert not referral(_answer(app, "patient-view-subacute-pain-6-weeks"))
    later = site_app("[thresholds]\nreferral_pain_weeks = 20\n")
    assert not referral(_answer(later, "patient-view-chronic-pain-16-weeks"))
    earlier = site_app("[thresholds]\nreferral_pain_weeks = 6\n")
    cards = _answer(earlier, "patient-view-subacute-pain-6-weeks")
    assert referral(cards)
    # The card's words say the site's number, not the guideline's.
    assert "At 6 weeks or more" in cards[0]["detail"]


def test_cards_state_the_sites_numbers(app: Flask, site_app: MakeSiteApp) -> None:
    fixture = "imaging-age-over-50-new-pain"
    assert "age over 50" in _answer(app, fixture)[0]["summary"]
    tuned = site_app("[thresholds]\nmalignancy_age_over = 45\n")
    card = _answer(tuned, fixture)[0]
    assert "age over 45" in card["summary"] and "50" not in card["summary"]
    page = tuned.test_client().get("/guidance/chronic-pain-assessment").get_data(as_text=True)
    assert "lasts 4 weeks or more" in page  # untouched thresholds keep the guideline's words


def test_the_defaults_written_out_leave_every_golden_file_unchanged(
    site_app: MakeSiteApp, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CDS_SITE_CONFIG", raising=False)
    assert main(["config", "check"]) == 0
    every_default = site_app(capsys.readouterr().out)  # every topic on, every number written
    for folder in fixture_dirs():
        _, _, expected = load_fixture(folder.name)
        assert compare_cards(expected["cards"], _answer(every_default, folder.name)) == []


# --- modes -------------------------------------------------------------------------------------


def test_a_silent_topic_is_logged_and_reported_never_returned(
    app: Flask,
    site_app: MakeSiteApp,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert _topics(_answer(app, TRAMADOL)) == ["exercise-therapy", "opioid-avoidance"]
    pilot = site_app('[topics."opioid-avoidance"]\nmode = "silent"\n')
    held_back = {
        "service": "back-pain-order-sign",
        "topic": "opioid-avoidance",
        "disposition": "silent",
    }
    before = value(_metrics(pilot), "cds_cards_held_back_total", **held_back)
    response = pilot.test_client().post(
        "/cds-services/back-pain-order-sign", json=load_fixture(TRAMADOL)[1]
    )
    assert _topics(response.get_json()["cards"]) == ["exercise-therapy"]
    assert "opioid-avoidance" not in response.get_data(as_text=True)
    assert _logged(pilot) == [("exercise-therapy", "shown"), ("opioid-avoidance", "silent")]
    assert value(_metrics(pilot), "cds_cards_held_back_total", **held_back) == before + 1

    url = pilot.extensions["cds_store"].url.render_as_string(hide_password=False)
    monkeypatch.setenv("CDS_DATABASE_URL", url)
    monkeypatch.setenv("CDS_PATIENT_KEY_SECRET", SECRET)
    assert main(["report", "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert [row["topic"] for row in document["topics"]] == ["exercise-therapy"]
    assert document["totals"]["cardsIssued"] == 1
    assert document["cardsNotShown"] == {
        "silent": 1,
        "snoozed": 0,
        "topics": [
            {
                "topic": "opioid-avoidance",
                "title": "Avoid opioids for back pain",
                "silent": 1,
                "snoozed": 0,
            }
        ],
    }
    assert main(["report"]) == 0
    table = capsys.readouterr().out
    assert "Cards not shown to clinicians" in table
    assert "Silent: would have shown" in table
    assert [line.split() for line in table.splitlines() if line.startswith("opioid-avoidance")] == [
        ["opioid-avoidance", "1", "0"]
    ]
    assert main(["report", "--format", "csv"]) == 0
    rows = {row.split(",")[0]: row.split(",") for row in capsys.readouterr().out.splitlines()}
    assert rows["opioid-avoidance"][2] == "0" and rows["opioid-avoidance"][-2:] == ["1", "0"]
    assert rows["topic"][-2:] == ["silent_would_have_shown", "snoozed"]

    page = pilot.test_client().get("/dashboard?from=&to=").get_data(as_text=True)
    assert 'id="not-shown"' in page and "Silent: would have shown" in page
    assert (
        '<tr data-topic="opioid-avoidance"><th>Avoid opioids for back pain</th><td>1</td>' in page
    )


def test_an_off_topic_is_not_evaluated_nor_logged(app: Flask, site_app: MakeSiteApp) -> None:
    assert _topics(_answer(app, "glucosamine-text-only")) == ["avoid-glucosamine"]
    switched_off = site_app('[topics."avoid-glucosamine"]\nmode = "off"\n')
    assert _answer(switched_off, "glucosamine-text-only") == []
    assert _logged(switched_off) == []


def test_silent_cards_take_no_place_in_the_answer(site_app: MakeSiteApp) -> None:
    capped = site_app("", max_cards=1)
    assert _topics(_answer(capped, TRAMADOL)) == ["opioid-avoidance"]  # the more severe card
    silent = site_app('[topics."opioid-avoidance"]\nmode = "silent"\n', max_cards=1)
    assert _topics(_answer(silent, TRAMADOL)) == ["exercise-therapy"]
    assert _logged(silent) == [("exercise-therapy", "shown"), ("opioid-avoidance", "silent")]


def _action(action: dict[str, Any]) -> str:
    target = action.get("resource", {}).get("resourceType") or action.get("resourceId")
    return f"{action['type']} {target}"


def _shown(app: Flask, name: str) -> list[tuple[str, str, list[list[str]]]] | None:
    """Each card's topic, indicator and the actions of each suggestion (None: not a 200)."""
    scenario, request, _ = load_fixture(name)
    response = app.test_client().post(f"/cds-services/{scenario['service']}", json=request)
    if response.status_code != 200:
        return None
    return sorted(
        (
            card["source"]["topic"]["code"],
            card["indicator"],
            [[_action(a) for a in s["actions"]] for s in card.get("suggestions", [])],
        )
        for card in response.get_json()["cards"]
    )


@pytest.mark.parametrize("topic", TOPICS)
def test_a_silent_topic_leaves_the_shown_cards_as_if_it_were_off(
    site_app: MakeSiteApp, topic: str
) -> None:
    # A pilot must not change what clinicians see: an order a silent card would have offered
    # is offered by the shown card that had given way to it, as with the topic switched off.
    silent = site_app(f'[topics."{topic}"]\nmode = "silent"\n')
    off = site_app(f'[topics."{topic}"]\nmode = "off"\n')
    differing = [
        name
        for name in (folder.name for folder in fixture_dirs())
        if _shown(silent, name) != _shown(off, name)
    ]
    assert differing == []


def test_a_silent_card_keeps_the_order_it_would_have_offered(site_app: MakeSiteApp) -> None:
    name = "tens-without-exercise-therapy"  # the passive-modality card offers the PT referral
    referral = [["create ServiceRequest"]]
    assert _shown(site_app(""), name) == [("avoid-passive-modalities", "info", referral)]
    pilot = site_app('[topics."avoid-passive-modalities"]\nmode = "silent"\n')
    assert _shown(pilot, name) == [("exercise-therapy", "info", referral)]
    assert _logged(pilot) == [("avoid-passive-modalities", "silent"), ("exercise-therapy", "shown")]


def test_the_request_log_names_silent_topics(site_app: MakeSiteApp, caplog: Any) -> None:
    pilot = site_app('[topics."exercise-therapy"]\nmode = "silent"\n')
    with caplog.at_level("INFO", logger="cds_service"):
        _answer(pilot, TRAMADOL)
    request_line = next(r for r in caplog.records if getattr(r, "event", "") == "request")
    assert request_line.silent_topics == ["exercise-therapy"]
    assert request_line.topics == ["opioid-avoidance"]
    assert "1 silent (logged, not shown)" in request_line.decision


# --- local order codes -------------------------------------------------------------------------


def _created(cards: list[dict[str, Any]], topic: str) -> dict[str, Any]:
    card = next(c for c in cards if c["source"]["topic"]["code"] == topic)
    action = next(a for s in card["suggestions"] for a in s["actions"] if a["type"] == "create")
    resource: dict[str, Any] = action["resource"]
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)  # valid R4
    return resource


ORDERS = f"""
[orders."topical-nsaid"]
first = true
codings = [{{ system = "{EPIC_PREFERENCE_LIST}", code = "301010", display = "DICLOFENAC GEL" }}]

[orders."physical-therapy-referral"]
codings = [{{ system = "{EPIC_ORDERSET}", code = "4401" }}]
"""


def test_local_order_codes_are_added_to_the_created_resources(site_app: MakeSiteApp) -> None:
    cards = _answer(site_app(ORDERS), TRAMADOL)
    medicine = _created(cards, "opioid-avoidance")["medicationCodeableConcept"]
    assert [(c["system"], c["code"]) for c in medicine["coding"]] == [
        (EPIC_PREFERENCE_LIST, "301010"),
        (RXNORM, "855633"),
    ]
    assert medicine["coding"][0]["display"] == "DICLOFENAC GEL"
    assert medicine["text"] == "diclofenac sodium 1% topical gel"
    referral = _created(cards, "exercise-therapy")["code"]
    assert referral["coding"][-1] == {"system": EPIC_ORDERSET, "code": "4401"}  # after
    assert referral["coding"][0]["system"] == "http://snomed.info/sct"
    assert referral["text"]


def test_every_orderable_takes_local_codes_and_stays_valid_r4(runtime: Runtime) -> None:
    text = "".join(
        f'[orders."{o.value}"]\nfirst = {str(i % 2 == 0).lower()}\n'
        f'codings = [{{ system = "urn:site:orders", code = "{o.value}-local" }}]\n'
        for i, o in enumerate(Orderable)
    )
    site, content = load_site_and_content(parse_site_config(tomllib.loads(text), "x"), None)
    builder = site.card_builder(content, runtime.terminology)
    standard = CardBuilder(content, runtime.terminology)
    context = CardContext(patient_id="example", encounter_id="enc-1", user_id="Practitioner/1")
    for index, orderable in enumerate(Orderable):
        resource = builder._resource(orderable, context)
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
        concept = resource.get("medicationCodeableConcept") or resource["code"]
        before = standard.order_codes[orderable.value]
        local = {"system": "urn:site:orders", "code": f"{orderable.value}-local"}
        expected = [local, *before["coding"]] if index % 2 == 0 else [*before["coding"], local]
        assert concept["coding"] == expected
        assert concept["text"] == before["text"]


def test_client_profile_and_site_configuration_combine(site_app: MakeSiteApp) -> None:
    text = ORDERS + '\n[topics."exercise-therapy"]\nmode = "silent"\n'
    combined = site_app(text, client_profile=ClientProfile.SINGLE_ACTION)
    cards = _answer(combined, TRAMADOL)
    assert _topics(cards) == ["opioid-avoidance"]
    card = cards[0]
    assert card["selectionBehavior"] == "any"
    assert all(len(s["actions"]) == 1 for s in card["suggestions"])
    created = _created(cards, "opioid-avoidance")["medicationCodeableConcept"]
    assert created["coding"][0]["system"] == EPIC_PREFERENCE_LIST
    assert _logged(combined) == [("exercise-therapy", "silent"), ("opioid-avoidance", "shown")]


# --- override reasons --------------------------------------------------------------------------


def _reasons(cards: list[dict[str, Any]], topic: str) -> list[tuple[str, str]]:
    card = next(c for c in cards if c["source"]["topic"]["code"] == topic)
    return [(r["system"], r["code"]) for r in card.get("overrideReasons", ())]


def test_a_site_adds_override_reasons_and_a_ready_made_set(
    app: Flask, site_app: MakeSiteApp
) -> None:
    own = _reasons(_answer(app, TRAMADOL), "exercise-therapy")
    assert own and {system for system, _ in own} == {CONTENT_REASONS}
    added = site_app(
        '[topics."exercise-therapy".override_reasons]\n'
        'sets = ["hl7-non-adherence-categories"]\n'
        'codes = [{ system = "urn:site", code = "pt-booked", display = "PT booked" }]\n'
    )
    reasons = _reasons(_answer(added, TRAMADOL), "exercise-therapy")
    assert reasons[: len(own)] == own
    assert reasons[len(own)] == ("urn:site", "pt-booked")
    assert reasons[len(own) + 1 :] == [
        (HL7, code)
        for code in (
            "cds-not-applicable",
            "cds-suboptimal-context",
            "recipient-disagrees-evidence",
            "recipient-concerns-outcomes",
            "does-not-align-preferences",
            "not-convenient-feasible",
        )
    ]


def test_a_site_replaces_override_reasons(site_app: MakeSiteApp) -> None:
    replaced = site_app(
        '[topics."opioid-avoidance".override_reasons]\nreplace = true\n'
        'sets = ["hl7-non-adherence-clinical"]\n'
    )
    reasons = _reasons(_answer(replaced, TRAMADOL), "opioid-avoidance")
    assert len(reasons) == 12 and {system for system, _ in reasons} == {HL7}


# --- discovery -----------------------------------------------------------------------------------


def test_discovery_states_what_each_service_needs(app: Flask, site_app: MakeSiteApp) -> None:
    document = app.test_client().get("/cds-services").get_json()
    assert schema_problems("discovery", document) == []
    for service in document["services"]:
        needs = service["usageRequirements"]
        assert "Prefetch of the patient, conditions" in needs
        assert ("Draft orders coded" in needs) == (service["hook"] != "patient-view")
        assert "No site configuration" in needs
    pilot = site_app(
        '[topics."opioid-avoidance"]\nmode = "silent"\n[topics."avoid-glucosamine"]\nmode = "off"\n'
        "[thresholds]\npersistent_pain_weeks = 6\nreferral_pain_weeks = 16\n" + ORDERS
    )
    document = pilot.test_client().get("/cds-services").get_json()
    assert schema_problems("discovery", document) == []
    needs = document["services"][0]["usageRequirements"]
    assert "silent: opioid-avoidance; off: avoid-glucosamine" in needs
    assert "persistent_pain_weeks = 6" in needs
    assert "local order codes for topical-nsaid, physical-therapy-referral" in needs
    view = next(s for s in document["services"] if s["hook"] == "patient-view")
    assert "from 6 weeks of pain" in view["description"] and "from 16 weeks" in view["description"]


def test_the_site_configuration_is_part_of_the_content_version() -> None:
    from cds_service.content_version import content_version

    empty, content = load_site_and_content(parse_site_config({}, "a.toml"), None)
    assert content_version(None, empty) == content_version(None, default_site(content))
    silent = parse_site_config(tomllib.loads('[topics."opioid-avoidance"]\nmode = "silent"\n'), "b")
    other, _ = load_site_and_content(silent, None)
    assert content_version(None, other) != content_version(None, empty)
