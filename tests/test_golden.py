"""Golden-file tests: every fixture request in, its expected cards out."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import fixture_dirs, load_fixture
from flask.testing import FlaskClient

from cds_service.card_builder.content import DETAIL_LIMIT, SUMMARY_TARGET
from cds_service.golden import compare_cards
from cds_service.protocol.request import schema_problems
from cds_service.rules.registry import TOPICS

FIXTURE_NAMES = [p.name for p in fixture_dirs()]


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_fixture_gives_its_golden_cards(client: FlaskClient, name: str) -> None:
    scenario, request, expected = load_fixture(name)
    response = client.post(f"/cds-services/{scenario['service']}", json=request)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert schema_problems("response", body) == []
    assert compare_cards(expected["cards"], body["cards"]) == []


def test_every_topic_fires_on_a_fixture_and_has_a_negative_fixture() -> None:
    fired: set[str] = set()
    negative: set[str] = set()
    for folder in fixture_dirs():
        scenario, _, expected = load_fixture(folder.name)
        topics = {card["topic"] for card in expected["cards"]}
        fired |= topics
        for tag in scenario["tags"]:
            if tag.endswith(" (negative)"):
                topic = tag.removesuffix(" (negative)")
                assert topic not in topics, f"{folder.name} is tagged negative for {topic}"
                negative.add(topic)
    assert fired == {topic for topic in TOPICS}
    assert negative >= {topic for topic in TOPICS}


def test_fixture_folders_are_complete() -> None:
    for folder in fixture_dirs():
        for part in ("scenario.json", "request.json", "expected.json"):
            assert (folder / part).is_file(), f"{folder.name} lacks {part}"
    assert Path(fixture_dirs()[0]).parent.name == "fhir_fixtures"


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_fixture_cards_stay_within_the_length_budget(client: FlaskClient, name: str) -> None:
    """Read in a few seconds: a one-line summary and a detail of about 700 characters."""
    scenario, request, _ = load_fixture(name)
    body = client.post(f"/cds-services/{scenario['service']}", json=request).get_json()
    for card in body["cards"]:
        assert len(card["summary"]) <= SUMMARY_TARGET, card["summary"]
        assert len(card["detail"]) <= DETAIL_LIMIT, card["detail"]
        # No placeholder left unfilled, no empty parentheses or doubled words from a blank.
        assert "{" not in card["detail"] and "()" not in card["detail"]
        assert card["detail"].count("**This patient:**") <= 1
