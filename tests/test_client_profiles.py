"""Client profiles: suggestions shaped so that each real client ends up with what was meant.

The CDS Hooks sandbox applies only the first action of a suggestion it understands; clients
built for Epic take one action per suggestion. Every profile must stay valid CDS Hooks 2.0.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import PROJECT_ROOT, fixture_dirs, load_fixture
from flask import Flask
from flask.testing import FlaskClient

from cds_service.app import create_app
from cds_service.card_builder.profiles import ClientProfile
from cds_service.config import ConfigError, Settings
from cds_service.protocol.request import schema_problems
from cds_service.runtime import Runtime

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
FIXTURE_NAMES = [p.name for p in fixture_dirs()]


@pytest.fixture(params=list(ClientProfile), ids=lambda p: p.value)
def profile(request: pytest.FixtureRequest) -> ClientProfile:
    return request.param  # type: ignore[no-any-return]


def _client_for(
    runtime: Runtime, settings: Settings, profile: ClientProfile
) -> Iterator[FlaskClient]:
    app: Flask = create_app(dataclasses.replace(settings, client_profile=profile), runtime=runtime)
    app.config["TESTING"] = True
    with app.test_client() as test_client:
        yield test_client
    app.extensions["cds_decision_log"].close()
    app.extensions["cds_store"].dispose()


@pytest.fixture
def profiled_client(
    runtime: Runtime, app_settings: Settings, profile: ClientProfile
) -> Iterator[FlaskClient]:
    yield from _client_for(runtime, app_settings, profile)


@pytest.fixture
def standard_client(runtime: Runtime, app_settings: Settings) -> Iterator[FlaskClient]:
    yield from _client_for(runtime, app_settings, ClientProfile.STANDARD)


@pytest.fixture
def single_action_client(runtime: Runtime, app_settings: Settings) -> Iterator[FlaskClient]:
    yield from _client_for(runtime, app_settings, ClientProfile.SINGLE_ACTION)


def _cards(client: FlaskClient, request: dict[str, Any], service: str) -> list[dict[str, Any]]:
    response = client.post(f"/cds-services/{service}", json=request)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert schema_problems("response", body) == []
    return body["cards"]  # type: ignore[no-any-return]


def _topic(card: dict[str, Any]) -> str:
    return card["source"]["topic"]["code"]  # type: ignore[no-any-return]


def _fixture_cards(client: FlaskClient, name: str) -> list[dict[str, Any]]:
    scenario, request, _ = load_fixture(name)
    return _cards(client, request, scenario["service"])


# --- every profile: valid, described, the alternative first ------------------------------------


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_every_fixture_answers_valid_cds_hooks_in_every_profile(
    profiled_client: FlaskClient, profile: ClientProfile, name: str
) -> None:
    for card in _fixture_cards(profiled_client, name):
        suggestions = card.get("suggestions") or []
        if not suggestions:
            assert "selectionBehavior" not in card
            continue
        for suggestion in suggestions:
            actions = suggestion["actions"]
            assert actions and all(a["description"].strip() for a in actions)
            kinds = [a["type"] for a in actions]
            # A client applying only the first action it understands gets the alternative.
            assert kinds == sorted(kinds, key=lambda kind: kind != "create")
        if profile is ClientProfile.SINGLE_ACTION:
            assert card["selectionBehavior"] == "any"
            assert all(len(s["actions"]) == 1 for s in suggestions)
            signatures = [json.dumps(s["actions"][0], sort_keys=True) for s in suggestions]
            assert len(set(signatures)) == len(signatures), "an action offered twice"
        else:
            assert card["selectionBehavior"] == "at-most-one"


def test_single_action_offers_the_alternative_and_the_removal_apart(
    single_action_client: FlaskClient,
) -> None:
    (opioid,) = [
        c
        for c in _fixture_cards(single_action_client, "opioid-tramadol-acute-low-back-pain")
        if _topic(c) == "opioid-avoidance"
    ]
    create, delete = (s["actions"][0] for s in opioid["suggestions"])
    assert create["type"] == "create"
    assert create["resource"]["medicationCodeableConcept"]["coding"][0]["code"] == "855633"
    assert delete == {
        "type": "delete",
        "description": delete["description"],
        "resourceId": "MedicationRequest/rx-tramadol",
    }
    # Both are what the guideline recommends: a client may pre-select them together.
    assert all(s.get("isRecommended") for s in opioid["suggestions"])
    # Each suggestion is labelled by what its one action does.
    assert [s["label"] for s in opioid["suggestions"]] == [
        create["description"],
        delete["description"],
    ]


def test_standard_replaces_in_one_suggestion_create_first(standard_client: FlaskClient) -> None:
    (opioid,) = [
        c
        for c in _fixture_cards(standard_client, "opioid-tramadol-acute-low-back-pain")
        if _topic(c) == "opioid-avoidance"
    ]
    replace, remove = opioid["suggestions"]
    assert [a["type"] for a in replace["actions"]] == ["create", "delete"]
    assert replace["isRecommended"] is True
    assert [a["type"] for a in remove["actions"]] == ["delete"]
    assert "isRecommended" not in remove


# --- taking a suggestion as the CDS Hooks sandbox does ------------------------------------------


def _sandbox_take(order: dict[str, Any], suggestion: dict[str, Any]) -> dict[str, Any] | None:
    """The sandbox's medication views: the first action they understand decides. A create or
    update carrying a medication with `text` and `coding[0].code` replaces the medication of
    the order being written; a delete clears the order; anything else is skipped."""
    for action in suggestion["actions"]:
        if action["type"] in ("create", "update"):
            concept = (action.get("resource") or {}).get("medicationCodeableConcept")
            if concept and concept.get("text") and (concept.get("coding") or [{}])[0].get("code"):
                name, code = concept["text"], concept["coding"][0]["code"]
                written = copy.deepcopy(order)
                written["medicationCodeableConcept"] = {
                    "text": name,
                    "coding": [{"display": name, "system": RXNORM, "code": code}],
                }
                return written
        elif action["type"] == "delete":
            return None
    return order


CASES = [
    # fixture, topic of the card, draft the clinician was writing, code ordered instead
    ("opioid-tramadol-acute-low-back-pain", "opioid-avoidance", "rx-tramadol", "855633"),
    ("opioid-combination-thoracic-pain-ckd", "opioid-avoidance", None, "313782"),
    ("topical-nsaid-first-ibuprofen", "topical-nsaid-first", None, "855633"),
    ("nsaid-contraindicated-gi-bleed", "nsaid-contraindicated", None, "313782"),
]


def _case_fixture(prefix: str) -> str:
    matches = [name for name in FIXTURE_NAMES if name.startswith(prefix)]
    assert matches, f"no fixture named {prefix}*"
    return matches[0]


@pytest.mark.parametrize(("prefix", "topic", "draft_id", "code"), CASES)
def test_taking_the_recommended_suggestion_in_the_sandbox_orders_the_alternative(
    standard_client: FlaskClient, prefix: str, topic: str, draft_id: str | None, code: str
) -> None:
    name = _case_fixture(prefix)
    scenario, request, _ = load_fixture(name)
    (card,) = [
        c for c in _cards(standard_client, request, scenario["service"]) if _topic(c) == topic
    ]
    recommended = next(s for s in card["suggestions"] if s.get("isRecommended"))
    deleted = next(a["resourceId"] for a in recommended["actions"] if a["type"] == "delete")
    entries = request["context"]["draftOrders"]["entry"]
    index = next(
        i
        for i, e in enumerate(entries)
        if f"{e['resource']['resourceType']}/{e['resource']['id']}" == deleted
    )
    if draft_id is not None:
        assert deleted.endswith(draft_id)
    written = _sandbox_take(entries[index]["resource"], recommended)
    assert written is not None, "the order was emptied instead of swapped"
    assert written["medicationCodeableConcept"]["coding"][0]["code"] == code

    # The next hook call carries the alternative, and no card argues with it.
    entries[index]["resource"] = written
    request["hookInstance"] = "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea"
    again = _cards(standard_client, request, scenario["service"])
    about_it = [
        c
        for c in again
        for s in c.get("suggestions") or []
        for a in s["actions"]
        if a.get("resourceId") == deleted
    ]
    assert about_it == []
    assert topic not in {_topic(c) for c in again}


def test_the_sandbox_would_empty_the_order_with_the_old_action_order() -> None:
    """The reason for the order above, checked against the simulation itself."""
    order = {"resourceType": "MedicationRequest", "id": "rx-1"}
    create = {
        "type": "create",
        "description": "Order it",
        "resource": {"medicationCodeableConcept": {"text": "x", "coding": [{"code": "1"}]}},
    }
    delete = {"type": "delete", "description": "Remove it", "resourceId": "MedicationRequest/rx-1"}
    assert _sandbox_take(order, {"actions": [delete, create]}) is None
    taken = _sandbox_take(order, {"actions": [create, delete]})
    assert taken is not None and taken["medicationCodeableConcept"]["coding"][0]["code"] == "1"


# --- suggested medicines a client can use --------------------------------------------------------


def test_suggested_medicines_are_products_with_their_dosing(standard_client: FlaskClient) -> None:
    created: dict[str, dict[str, Any]] = {}
    for name in FIXTURE_NAMES:
        for card in _fixture_cards(standard_client, name):
            for suggestion in card.get("suggestions") or []:
                for action in suggestion["actions"]:
                    resource = action.get("resource") or {}
                    if resource.get("resourceType") == "MedicationRequest":
                        concept = resource["medicationCodeableConcept"]
                        created[concept["coding"][0]["code"]] = resource
    assert set(created) == {"855633", "313782", "198051"}
    for resource in created.values():
        concept = resource["medicationCodeableConcept"]
        assert concept["text"] and concept["coding"][0]["system"] == RXNORM
        (dosage,) = resource["dosageInstruction"]
        assert dosage["text"] and dosage["route"]["coding"][0]["code"]
    gel = created["855633"]["dosageInstruction"][0]
    assert gel["route"]["coding"][0]["code"] == "6064005"  # topical
    assert gel["timing"]["repeat"] == {
        "frequency": 3,
        "frequencyMax": 4,
        "period": 1,
        "periodUnit": "d",
    }
    tablet = created["313782"]["dosageInstruction"][0]
    assert tablet["route"]["coding"][0]["code"] == "26643006"  # oral
    assert tablet["asNeededBoolean"] is True
    assert tablet["timing"]["repeat"] == {"frequency": 1, "period": 6, "periodUnit": "h"}
    dose = tablet["doseAndRate"][0]["doseRange"]
    assert (dose["low"]["value"], dose["high"]["value"], dose["high"]["code"]) == (650, 975, "mg")
    assert tablet["maxDosePerPeriod"]["numerator"]["value"] == 4000
    ppi = created["198051"]["dosageInstruction"][0]  # omeprazole 20 mg, once before breakfast
    assert ppi["route"]["coding"][0]["code"] == "26643006"
    assert ppi["timing"]["repeat"] == {
        "frequency": 1,
        "period": 1,
        "periodUnit": "d",
        "when": ["ACM"],
    }
    assert ppi["doseAndRate"][0]["doseQuantity"]["value"] == 20
    assert "asNeededBoolean" not in ppi  # daily, for as long as the NSAID is taken


# --- choosing the profile ------------------------------------------------------------------------


def test_profile_setting_is_checked() -> None:
    assert Settings.from_env({}).client_profile is ClientProfile.STANDARD
    chosen = Settings.from_env({"CDS_CLIENT_PROFILE": "single-action"})
    assert chosen.client_profile is ClientProfile.SINGLE_ACTION
    with pytest.raises(ConfigError, match="CDS_CLIENT_PROFILE must be one of standard"):
        Settings.from_env({"CDS_CLIENT_PROFILE": "epic"})


def test_trusted_client_profile_is_checked(tmp_path: Path) -> None:
    keys = {"keys": [{"kty": "EC", "crv": "P-384", "kid": "k", "x": "AA", "y": "AA"}]}
    path = tmp_path / "clients.json"
    path.write_text(json.dumps([{"iss": "https://ehr.example", "jwks": keys, "profile": "single"}]))
    env = {"CDS_TRUSTED_CLIENTS": str(path), "CDS_PUBLIC_URL": "https://cds.example"}
    with pytest.raises(ConfigError, match='"profile" must be one of standard, single-action'):
        Settings.from_env(env)
    path.write_text(
        json.dumps([{"iss": "https://ehr.example", "jwks": keys, "profile": "single-action"}])
    )
    (client,) = Settings.from_env(env).trusted_clients
    assert client.profile is ClientProfile.SINGLE_ACTION


def test_serve_stops_on_an_unknown_profile_with_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cds_service", "serve", "--port", "18099"],
        env={"CDS_CLIENT_PROFILE": "sandbox-ish", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "CDS_CLIENT_PROFILE" in lines[0]


def test_example_trusted_clients_name_their_profiles() -> None:
    for path in sorted((PROJECT_ROOT / "examples").glob("trusted-clients*.json")):
        for entry in json.loads(path.read_text()):
            assert entry.get("profile") in {p.value for p in ClientProfile}, path.name
