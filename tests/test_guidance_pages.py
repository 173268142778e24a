"""GET /guidance/{topic}: the evidence page and patient handout each card links to."""

from __future__ import annotations

import dataclasses
import re

import pytest
from conftest import load_fixture
from flask.testing import FlaskClient

from cds_service.app import create_app
from cds_service.config import Settings
from cds_service.rules.registry import TOPICS
from cds_service.runtime import Runtime


@pytest.mark.parametrize("topic", list(TOPICS))
def test_every_topic_has_a_page_built_from_its_content(
    client: FlaskClient, runtime: Runtime, topic: str
) -> None:
    response = client.get(f"/guidance/{topic}")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    content = runtime.content.topics[topic]
    assert f"<h1>{content.title}</h1>" in page.replace("&#39;", "'")
    assert "For clinicians" in page and content.guidance.patient_title in page
    for evidence in content.evidence:  # the full references, not only the card's one line
        if evidence.url:
            assert f'href="{evidence.url}"' in page
    # Nothing from another host: the only stylesheet and links to assets are the service's own.
    assert not re.search(r'<(?:script|link|img)[^>]+(?:src|href)="https?://', page)
    assert "Content-Security-Policy" in response.headers


def test_exercise_page_holds_the_whole_programme(client: FlaskClient) -> None:
    page = client.get("/guidance/exercise-therapy").get_data(as_text=True)
    for words in (
        "Supervised and individualized",
        "transversus abdominis",
        "multifidus",
        "Heat before stretching",
        "every day",
        "weeks 1-2 foundation",
        "weeks 3-6 progression",
        "weeks 7-8",
        "integration",
        "yoga or tai chi",
        "Pilates has no clear advantage",
        "Motor-skill training for daily activities",
    ):
        assert words in page, words


def test_patient_handout_prints_alone(client: FlaskClient) -> None:
    whole = client.get("/guidance/opioid-avoidance").get_data(as_text=True)
    handout = client.get("/guidance/opioid-avoidance?part=patient").get_data(as_text=True)
    assert "For clinicians" in whole and "For clinicians" not in handout
    assert "Pain relief without opioids" in handout
    assert "Evidence" not in handout


def test_bad_page_requests_get_json_errors(client: FlaskClient) -> None:
    missing = client.get("/guidance/nothing-here")
    assert missing.status_code == 404 and missing.get_json()["resourceType"] == "OperationOutcome"
    bad = client.get("/guidance/exercise-therapy?part=doctor")
    assert bad.status_code == 400 and bad.get_json()["resourceType"] == "OperationOutcome"


def _cards(client: FlaskClient, **headers: str) -> list[dict]:
    scenario, request, _ = load_fixture("opioid-tramadol-acute-low-back-pain")
    response = client.post(
        f"/cds-services/{scenario['service']}", json=request, headers=headers or None
    )
    assert response.status_code == 200
    return response.get_json()["cards"]  # type: ignore[no-any-return]


def test_cards_link_to_their_page_on_this_service(client: FlaskClient) -> None:
    for card in _cards(client):
        [link] = card["links"]
        topic = card["source"]["topic"]["code"]
        assert link["type"] == "absolute"
        # Development mode: the request's own base URL.
        assert link["url"] == f"http://localhost/guidance/{topic}"
        assert client.get(link["url"].removeprefix("http://localhost")).status_code == 200


def test_links_use_the_public_url_when_it_is_set(runtime: Runtime, app_settings: Settings) -> None:
    settings = dataclasses.replace(app_settings, public_url="https://cds.example.org/back-pain")
    app = create_app(settings, runtime=runtime)
    with app.test_client() as client:
        urls = {card["links"][0]["url"] for card in _cards(client)}
    app.extensions["cds_decision_log"].close()
    assert urls == {
        "https://cds.example.org/back-pain/guidance/opioid-avoidance",
        "https://cds.example.org/back-pain/guidance/exercise-therapy",
    }
