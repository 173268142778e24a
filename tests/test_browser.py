"""/preview and /dashboard in a real headless Chromium (see tests/browser.py).

Every request the pages make is intercepted: one to any other host fails the test. Cards are
found by their topic code and suggestions by their actions, never by their words.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from browser import CHROMIUM_ARGUMENTS, chromium_executable
from conftest import SETTINGS
from flask import Flask
from test_dashboard import SECRET, _fill
from werkzeug.serving import BaseWSGIServer, make_server

from cds_service.app import create_app
from cds_service.runtime import Runtime
from cds_service.store.database import parse_database_url
from cds_service.store.store import DecisionStore

TRAMADOL = "opioid-tramadol-acute-low-back-pain"
OPIOID_CARD = 'article[data-topic="opioid-avoidance"]'
# Would set window.__xss if any of it ran.
HOSTILE = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'


@dataclass
class LiveService:
    app: Flask
    base_url: str


@pytest.fixture(scope="module")
def live(runtime: Runtime, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    """The service in this process behind a real HTTP server, with a store of known contents
    (those of test_dashboard)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('browser-store') / 'cds-decisions.db'}"
    store = DecisionStore(parse_database_url(url), SECRET)
    _fill(store)
    store.dispose()
    settings = dataclasses.replace(SETTINGS, database_url=url, patient_key_secret=SECRET)
    app = create_app(settings, runtime=runtime)
    server: BaseWSGIServer = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield LiveService(app, f"http://127.0.0.1:{server.server_port}")
    server.shutdown()
    app.extensions["cds_decision_log"].close()
    app.extensions["cds_store"].dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        pytest.skip("browser tests skipped: Playwright is not installed (pip install '.[test]')")
    executable = chromium_executable()
    if executable is None:
        pytest.skip(
            "browser tests skipped: no Chromium found (run scripts/install-test-tools, which "
            "installs Debian's chromium, or set CDS_TEST_CHROMIUM to a Chromium binary)"
        )
    with sync_playwright() as playwright:
        try:
            started = playwright.chromium.launch(
                executable_path=executable, args=CHROMIUM_ARGUMENTS, timeout=60_000
            )
        except Error as error:
            pytest.skip(f"browser tests skipped: {executable} could not be started: {error}")
        yield started
        started.close()


@dataclass
class Watched:
    page: Any
    outside: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _watch(context: Any, own: str) -> Watched:
    """A page whose requests to hosts other than `own` are refused and noted, and whose
    console errors (a Content-Security-Policy violation among them) are noted."""
    watched = Watched(context.new_page())

    def only_this_service(route: Any) -> None:
        address = route.request.url
        if urlsplit(address).netloc == own or address.startswith(("data:", "about:")):
            route.continue_()
        else:
            watched.outside.append(address)
            route.abort()

    context.route("**/*", only_this_service)
    watched.page.on(
        "console",
        lambda message: watched.errors.append(message.text) if message.type == "error" else None,
    )
    watched.page.on("pageerror", lambda error: watched.errors.append(str(error)))
    watched.page.set_default_timeout(20_000)
    return watched


@pytest.fixture
def page(browser: Any, live: LiveService) -> Iterator[Watched]:
    context = browser.new_context()
    watched = _watch(context, urlsplit(live.base_url).netloc)
    yield watched
    context.close()
    assert watched.outside == [], f"the page requested other hosts: {watched.outside}"
    assert watched.errors == [], f"the page logged errors: {watched.errors}"


def test_the_watch_notices_a_request_to_another_host(browser: Any, live: LiveService) -> None:
    context = browser.new_context()
    watched = _watch(context, urlsplit(live.base_url).netloc)
    watched.page.set_content('<img src="http://cdn.example.invalid/chart.js">')
    watched.page.wait_for_timeout(200)
    context.close()
    assert watched.outside == ["http://cdn.example.invalid/chart.js"]


def _service_answer(live: LiveService, request: dict[str, Any]) -> dict[str, Any]:
    answer = live.app.test_client().post(
        "/preview/run", json={"service": "back-pain-order-sign", "request": request}
    )
    return answer.get_json()


def _alternative(answer: dict[str, Any]) -> dict[str, Any]:
    """The opioid card's suggestion that creates another order (the alternative)."""
    (card,) = [
        c for c in answer["response"]["cards"] if c["source"]["topic"]["code"] == "opioid-avoidance"
    ]
    return next(s for s in card["suggestions"] if any(a["type"] == "create" for a in s["actions"]))


def _name(resource: dict[str, Any]) -> str:
    concept = resource.get("medicationCodeableConcept") or resource.get("code") or {}
    return concept.get("text") or concept["coding"][0]["display"]


def test_a_tester_runs_a_scenario_and_takes_the_alternative(
    page: Watched, live: LiveService
) -> None:
    client = live.app.test_client()
    scenario = client.get(f"/preview/scenarios/{TRAMADOL}").get_json()
    suggestion = _alternative(_service_answer(live, scenario["request"]))
    created = next(a["resource"] for a in suggestion["actions"] if a["type"] == "create")
    removed = [a["resourceId"] for a in suggestion["actions"] if a["type"] == "delete"]
    assert removed  # the alternative replaces the opioid draft

    browser_page = page.page
    browser_page.goto(f"{live.base_url}/preview")
    browser_page.select_option("#scenario", TRAMADOL)
    browser_page.wait_for_selector(OPIOID_CARD)
    for reference in removed:
        assert browser_page.locator(f'#drafts li[data-reference="{reference}"]').count() == 1
    before = json.loads(browser_page.input_value("#request-text"))["hookInstance"]
    card = browser_page.locator(OPIOID_CARD)
    assert card.locator(".summary").inner_text().strip()
    assert card.locator(".detail p").count() > 0  # the Markdown detail is rendered

    card.locator(".suggestion[data-action-types~=create] button.take").first.click()
    browser_page.wait_for_selector(OPIOID_CARD, state="detached")
    browser_page.wait_for_function(
        "!document.getElementById('status').textContent.startsWith('Took')"
        " && !document.getElementById('status').textContent.startsWith('Running')"
    )
    for reference in removed:
        assert browser_page.locator(f'#drafts li[data-reference="{reference}"]').count() == 0
    new_draft = browser_page.locator(f'#drafts li[data-reference^="{created["resourceType"]}/"]')
    assert new_draft.count() == 1
    assert new_draft.locator(".name").inner_text() == _name(created)
    after = json.loads(browser_page.input_value("#request-text"))
    assert after["hookInstance"] != before
    (entry,) = after["context"]["draftOrders"]["entry"]
    assert entry["resource"]["status"] == "draft"
    # The request shown is the one the page ran again: the service answers it without the card.
    again = _service_answer(live, after)
    assert "opioid-avoidance" not in {
        c["source"]["topic"]["code"] for c in again["response"]["cards"]
    }
    assert browser_page.locator("#cards article").count() == len(again["response"]["cards"])


def test_html_and_script_in_a_request_are_shown_as_text(page: Watched, live: LiveService) -> None:
    request = copy.deepcopy(
        live.app.test_client().get(f"/preview/scenarios/{TRAMADOL}").get_json()["request"]
    )
    draft = request["context"]["draftOrders"]["entry"][0]["resource"]
    draft["medicationCodeableConcept"]["text"] = HOSTILE
    draft["medicationCodeableConcept"]["coding"][0]["display"] = HOSTILE
    for entry in request["prefetch"]["conditions"]["entry"]:
        entry["resource"]["code"]["text"] = HOSTILE
        for coding in entry["resource"]["code"]["coding"]:
            coding["display"] = HOSTILE
    served = json.dumps(_service_answer(live, request)["response"])

    browser_page = page.page
    browser_page.goto(f"{live.base_url}/preview")
    browser_page.fill("#request-text", json.dumps(request))
    browser_page.click("#run")
    browser_page.wait_for_selector(OPIOID_CARD)
    injected = "#cards img, #cards script, #cards iframe, #drafts img, #drafts script"
    assert browser_page.locator(injected).count() == 0
    assert browser_page.evaluate("window.__xss") is None
    assert HOSTILE in browser_page.locator("#drafts").inner_text()
    if HOSTILE in served:  # where the cards repeat the order's name, they show it as text
        assert HOSTILE in browser_page.locator("#cards").inner_text()


def test_the_dashboard_draws_its_charts_from_the_store(page: Watched, live: LiveService) -> None:
    browser_page = page.page
    browser_page.goto(f"{live.base_url}/dashboard?from=2026-11-20&to=2026-11-22")
    assert browser_page.locator("#total-cards").inner_text() == "6"
    trend = browser_page.locator("#trend svg.chart")
    # Cards per day and topic (see test_dashboard): 5 non-empty day-topic cells.
    assert trend.locator("rect").count() == 5
    assert trend.bounding_box()["width"] > 300  # styled and laid out
    titles = sorted(trend.locator("rect title").all_text_contents())
    assert titles[0].startswith("2026-11-20: opioid-avoidance, 2")
    outcomes = browser_page.locator("#outcomes svg.chart rect")
    # opioid: accepted, overridden, no feedback; exercise: accepted, no feedback.
    assert outcomes.count() == 5
    assert browser_page.locator("#reasons svg.chart").count() == 1
    assert browser_page.locator("#trend ul.legend li").count() == 2

    browser_page.fill('input[name="from"]', "2026-11-22")
    browser_page.click('form.period button[type="submit"]')
    browser_page.wait_for_url("**/dashboard?from=2026-11-22*")
    assert browser_page.locator("#total-cards").inner_text() == "2"
    json_link = browser_page.locator("#report-json").get_attribute("href")
    assert json_link == "/dashboard/report.json?from=2026-11-22&to=2026-11-22"


def test_the_install_script_and_the_readme_agree() -> None:
    """The README's test command installs the browser (CI runs exactly that command)."""
    project = Path(__file__).resolve().parents[1]
    readme = (project / "README.md").read_text()
    ci = (project / ".ci" / "run").read_text()
    command = (
        "scripts/install-test-tools && python3 -m venv .venv && "
        ".venv/bin/pip install '.[test]' && .venv/bin/pytest"
    )
    assert command in readme and command in ci
