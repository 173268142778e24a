"""Bounded answers: identical draft orders get one card whose suggestions act on every draft,
and an answer holds at most CDS_MAX_CARDS cards, the most severe first."""

from __future__ import annotations

import copy
import dataclasses
import json
from collections import Counter
from collections.abc import Iterator
from importlib import resources
from typing import Any

import pytest
from conftest import SETTINGS
from flask.testing import FlaskClient
from sqlalchemy import func, select

from cds_service.app import create_app
from cds_service.card_builder.profiles import ClientProfile
from cds_service.config import ConfigError, Settings
from cds_service.protocol.bounds import DEFAULT_MAX_CARDS, most_severe_first
from cds_service.runtime import Runtime
from cds_service.store.schema import card_decisions
from cds_service.vocabulary import CardRecord

SIGN = "/cds-services/back-pain-order-sign"
OPIOIDS = "cdc-opioid-analgesics-with-ambulatory-misuse-potential"


def _opioid_codings(count: int) -> list[dict[str, str]]:
    """Distinct opioid products from the service's own value set (tramadol and oxycodone)."""
    data = resources.files("cds_service.terminology") / "data" / "valuesets" / f"{OPIOIDS}.json"
    codes = json.loads(data.read_text(encoding="utf-8"))["codes"]
    chosen = [
        c
        for c in codes
        if c["display"].startswith(("tramadol", "oxycodone")) and "/" not in c["display"]
    ]
    assert len(chosen) >= count
    return chosen[:count]


def _with_drafts(request: dict[str, Any], codings: list[dict[str, str]]) -> dict[str, Any]:
    """The request with one draft MedicationRequest per coding, ids draft-0, draft-1, ..."""
    template = request["context"]["draftOrders"]["entry"][0]
    entries = []
    for index, coding in enumerate(codings):
        entry = copy.deepcopy(template)
        entry["resource"]["id"] = f"draft-{index}"
        entry["resource"]["medicationCodeableConcept"] = {"coding": [coding]}
        entries.append(entry)
    request["context"]["draftOrders"]["entry"] = entries
    return request


def _topics(cards: list[dict[str, Any]]) -> Counter[str]:
    return Counter(card["source"]["topic"]["code"] for card in cards)


def _deleted(suggestion: dict[str, Any]) -> list[str]:
    return [a["resourceId"] for a in suggestion["actions"] if a["type"] == "delete"]


def test_five_hundred_identical_drafts_get_one_card_acting_on_every_draft(
    client: FlaskClient, fixture_request: Any, app: Any
) -> None:
    request = fixture_request("opioid-tramadol-acute-low-back-pain")
    tramadol = request["context"]["draftOrders"]["entry"][0]["resource"]
    coding = tramadol["medicationCodeableConcept"]["coding"][0]
    response = client.post(SIGN, json=_with_drafts(request, [coding] * 500))
    assert response.status_code == 200
    cards = response.get_json()["cards"]
    assert _topics(cards)["opioid-avoidance"] == 1
    assert len(response.get_data()) < 300_000  # was 501 cards and 2.9 MB
    [opioid] = [c for c in cards if c["source"]["topic"]["code"] == "opioid-avoidance"]
    every_draft = [f"MedicationRequest/draft-{i}" for i in range(500)]
    deleting = [s for s in opioid["suggestions"] if _deleted(s)]
    assert deleting  # "replace" and "remove" both delete the drafts
    for suggestion in deleting:
        assert _deleted(suggestion) == every_draft
        # The builder's order is kept (what is created first), the deletes follow together.
        kinds = [a["type"] for a in suggestion["actions"]]
        assert kinds == sorted(kinds, key=lambda kind: kind == "delete")
        assert len({json.dumps(a, sort_keys=True) for a in suggestion["actions"]}) == len(kinds)
    # The decision log receives the one card, not 500.
    decision_log = app.extensions["cds_decision_log"]
    assert decision_log.flush(10)
    with app.extensions["cds_store"].reading() as connection:
        logged = connection.scalar(
            select(func.count())
            .select_from(card_decisions)
            .where(card_decisions.c.card_uuid == opioid["uuid"])
        )
    assert logged == 1


def test_for_single_action_clients_each_identical_draft_gets_its_own_delete_suggestion(
    runtime: Runtime, app_settings: Settings, fixture_request: Any
) -> None:
    settings = dataclasses.replace(app_settings, client_profile=ClientProfile.SINGLE_ACTION)
    app = create_app(settings, runtime=runtime)
    request = fixture_request("opioid-tramadol-acute-low-back-pain")
    coding = request["context"]["draftOrders"]["entry"][0]["resource"]
    coding = coding["medicationCodeableConcept"]["coding"][0]
    cards = app.test_client().post(SIGN, json=_with_drafts(request, [coding] * 4)).get_json()
    app.extensions["cds_decision_log"].close()
    app.extensions["cds_store"].dispose()
    [opioid] = [c for c in cards["cards"] if c["source"]["topic"]["code"] == "opioid-avoidance"]
    assert all(len(s["actions"]) == 1 for s in opioid["suggestions"])  # the profile's promise
    deleted = sorted(ref for s in opioid["suggestions"] for ref in _deleted(s))
    assert deleted == [f"MedicationRequest/draft-{i}" for i in range(4)]
    assert len({s["uuid"] for s in opioid["suggestions"]}) == len(opioid["suggestions"])


def test_different_products_keep_their_own_cards(client: FlaskClient, fixture_request: Any) -> None:
    request = fixture_request("opioid-tramadol-acute-low-back-pain")
    codings = _opioid_codings(3)
    body = _with_drafts(request, [codings[0], codings[1], codings[0], codings[2], codings[1]])
    cards = client.post(SIGN, json=body).get_json()["cards"]
    opioid = [c for c in cards if c["source"]["topic"]["code"] == "opioid-avoidance"]
    assert len(opioid) == 3
    deleted = sorted(
        tuple(_deleted(next(s for s in card["suggestions"] if _deleted(s)))) for card in opioid
    )
    assert deleted == [
        ("MedicationRequest/draft-0", "MedicationRequest/draft-2"),
        ("MedicationRequest/draft-1", "MedicationRequest/draft-4"),
        ("MedicationRequest/draft-3",),
    ]


@pytest.fixture(scope="module")
def capped_runtime() -> Runtime:
    return Runtime.load(dataclasses.replace(SETTINGS, max_cards=3))


@pytest.fixture
def capped_client(capped_runtime: Runtime, app_settings: Settings) -> Iterator[FlaskClient]:
    application = create_app(dataclasses.replace(app_settings, max_cards=3), capped_runtime)
    with application.test_client() as test_client:
        yield test_client
    application.extensions["cds_decision_log"].close()
    application.extensions["cds_store"].dispose()


def test_an_answer_holds_at_most_the_configured_cards(
    client: FlaskClient, capped_client: FlaskClient, fixture_request: Any
) -> None:
    request = _with_drafts(
        fixture_request("opioid-tramadol-acute-low-back-pain"), _opioid_codings(15)
    )
    full = client.post(SIGN, json=request).get_json()["cards"]
    assert len(full) == DEFAULT_MAX_CARDS  # 15 opioid cards and more would fit otherwise
    capped = capped_client.post(SIGN, json=request).get_json()["cards"]
    assert len(capped) == 3


def test_the_cards_left_out_are_the_least_severe() -> None:
    def card(name: str, indicator: str) -> CardRecord:
        return CardRecord("t", indicator, name, (), {})

    cards = [
        card("i1", "info"),
        card("w1", "warning"),
        card("c1", "critical"),
        card("i2", "info"),
        card("w2", "warning"),
        card("c2", "critical"),
    ]
    kept, left_out = most_severe_first(cards, 3)
    assert [c.uuid for c in kept] == ["c1", "c2", "w1"]
    assert [c.uuid for c in left_out] == ["w2", "i1", "i2"]


@pytest.mark.parametrize("raw", ["0", "-1", "ten", "2.5"])
def test_a_bad_max_cards_stops_the_service(raw: str) -> None:
    with pytest.raises(ConfigError, match="CDS_MAX_CARDS"):
        Settings.from_env({"CDS_MAX_CARDS": raw})


def test_max_cards_defaults_to_ten_and_can_be_set() -> None:
    assert Settings.from_env({}).max_cards == 10
    assert Settings.from_env({"CDS_MAX_CARDS": "4"}).max_cards == 4
