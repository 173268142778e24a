"""GET /metrics: Prometheus text that prometheus_client's parser reads, counting what was served,
added up over gunicorn's worker processes."""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
import os
import signal
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import responses
from conftest import SETTINGS, load_fixture
from fhir_fakes import filled_template, searchset
from flask import Flask
from flask.testing import FlaskClient
from jwt_clients import PUBLIC_URL, bearer, es384_client
from live_server import child_pids, free_port, serve, wait_healthy
from metrics_text import Samples, parse, total, value

from cds_service import metrics
from cds_service.app import create_app
from cds_service.runtime import Runtime
from cds_service.store.database import parse_database_url
from cds_service.store.decision_log import DecisionLog, IssuedCards
from cds_service.store.store import DecisionStore
from cds_service.vocabulary import CardRecord

SIGN = "/cds-services/back-pain-order-sign"
TRAMADOL = "opioid-tramadol-acute-low-back-pain"
DURATION = "cds_hook_request_duration_seconds"
ADMIN_TOKEN = "operator-" + "t" * 32


def _scrape(client: FlaskClient, **headers: str) -> Samples:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/plain"
    return parse(response.get_data(as_text=True))


def _topics(cards: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(card["source"]["topic"]["code"], card["indicator"]) for card in cards]


def test_hook_calls_are_timed_and_their_cards_counted(client: FlaskClient) -> None:
    before = _scrape(client)
    answers = [client.post(SIGN, json=load_fixture(TRAMADOL)[1]) for _ in range(3)]
    client.post(SIGN, data=b'{"hook": ', content_type="application/json")  # 400
    client.post("/cds-services/no-such-service", json={})  # 404: not a series of its own
    client.open(SIGN, method="OPTIONS", headers={"Access-Control-Request-Method": "POST"})
    after = _scrape(client)

    def added(name: str, **labels: Any) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    service = "back-pain-order-sign"
    assert added(f"{DURATION}_count", service=service, status=200) == 3
    assert added(f"{DURATION}_count", service=service, status=400) == 1
    assert added(f"{DURATION}_count", service="unknown", status=404) == 1
    assert total(after, f"{DURATION}_count") - total(before, f"{DURATION}_count") == 5
    assert added(f"{DURATION}_bucket", service=service, status=200, le="+Inf") == 3
    assert added(f"{DURATION}_sum", service=service, status=200) > 0
    cards = [pair for answer in answers for pair in _topics(answer.get_json()["cards"])]
    assert cards  # the fixture gets cards
    for topic, indicator in set(cards):
        returned = added(
            "cds_cards_returned_total", service=service, topic=topic, indicator=indicator
        )
        assert returned == cards.count((topic, indicator))
    assert (
        added(
            "cds_http_requests_total", route="/cds-services/<service_id>", method="POST", status=200
        )
        == 3
    )
    assert (
        added(
            "cds_http_requests_total",
            route="/cds-services/<service_id>",
            method="OPTIONS",
            status=204,
        )
        == 1
    )
    assert value(after, "cds_hook_answered_within_budget_ratio", service=service) > 0
    assert added("cds_http_requests_total", route="/metrics", method="GET", status=200) == 1


def test_the_share_within_the_budget_and_the_percentiles_come_from_the_histogram() -> None:
    from prometheus_client.core import HistogramMetricFamily

    family = HistogramMetricFamily(DURATION, "", labels=["service", "status"])
    # 100 calls: 90 within 0.1 s, 8 within 0.5 s, 2 within 1 s.
    family.add_metric(
        ["svc", "200"],
        [("0.1", 90), ("0.5", 98), ("1.0", 100), ("+Inf", 100)],
        sum_value=20.0,
    )
    (times,) = metrics.answer_times([family])
    assert (times.service, times.calls, times.within_budget) == ("svc", 100, 98)
    assert times.share_within_budget == 0.98
    assert times.p50 == pytest.approx(0.1 * 50 / 90)
    assert times.p99 == pytest.approx(0.5 + 0.5 * (99 - 98) / 2)
    (ratio,) = metrics._within_budget([family])
    assert ratio.samples[0].value == 0.98


def test_fhir_fallback_reads_are_counted_by_outcome(client: FlaskClient) -> None:
    request = copy.deepcopy(load_fixture(TRAMADOL)[1])
    templates = client.get("/cds-services").get_json()["services"][0]["prefetch"]
    base = request["fhirServer"]
    medications = request["prefetch"].pop("medications")
    del request["prefetch"]["procedures"]
    del request["prefetch"]["servicerequests"]
    before = _scrape(client)
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.add(
            "GET",
            f"{base}/{filled_template(templates['medications'], request['context'])}",
            json=medications or searchset([]),
        )
        mock.add(
            "GET",
            f"{base}/{filled_template(templates['procedures'], request['context'])}",
            json={"resourceType": "OperationOutcome", "issue": []},
            status=500,
        )
        # servicerequests: no answer registered, so the connection is refused.
        assert client.post(SIGN, json=request).status_code == 200
    after = _scrape(client)

    def added(query: str, outcome: str) -> float:
        name = "cds_fhir_fallback_reads_total"
        return value(after, name, query=query, outcome=outcome) - value(
            before, name, query=query, outcome=outcome
        )

    assert added("medications", "ok") == 1
    assert added("procedures", "http_error") == 1
    assert added("servicerequests", "failed") == 1
    assert metrics.fhir_read_outcome(obtained=False, answered_in_time=False, status=None) == (
        "deadline"
    )


@pytest.fixture
def trusted_app(runtime: Runtime, app_settings: Any) -> Iterator[Flask]:
    settings = dataclasses.replace(
        app_settings,
        trusted_clients=(es384_client().trusted(),),
        public_url=PUBLIC_URL,
        admin_token=ADMIN_TOKEN,
    )
    application = create_app(settings, runtime=runtime)
    yield application
    application.extensions["cds_decision_log"].close()
    application.extensions["cds_store"].dispose()


def _basic(password: str, user: str = "ops") -> dict[str, str]:
    credentials = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {credentials}"}


def test_jwt_refusals_are_counted_by_reason(trusted_app: Flask) -> None:
    client = trusted_app.test_client()
    operator = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    before = _scrape(client, **operator)
    assert client.post(SIGN, json=load_fixture(TRAMADOL)[1]).status_code == 401
    now = int(time.time())
    expired = es384_client().token(claims={"iat": now - 900, "exp": now - 600})
    assert client.post(SIGN, json=load_fixture(TRAMADOL)[1], headers=bearer(expired)).status_code
    after = _scrape(client, **operator)

    def added(reason: str) -> float:
        name = "cds_auth_refusals_total"
        return value(after, name, reason=reason) - value(before, name, reason=reason)

    assert added("no bearer token") == 1
    assert added("expired") == 1
    assert (
        value(after, f"{DURATION}_count", service="back-pain-order-sign", status=401)
        - value(before, f"{DURATION}_count", service="back-pain-order-sign", status=401)
        == 2
    )


def test_metrics_need_the_operator_token_never_the_ehr_jwt(trusted_app: Flask) -> None:
    client = trusted_app.test_client()
    refused = client.get("/metrics")
    assert refused.status_code == 401
    assert refused.get_json()["resourceType"] == "OperationOutcome"
    assert "Basic" in refused.headers.get_all("WWW-Authenticate")[0]
    assert client.get("/metrics", headers=_basic("wrong" + ADMIN_TOKEN)).status_code == 401
    ehr_token = es384_client().token(audience=f"{PUBLIC_URL}/metrics")
    assert client.get("/metrics", headers=bearer(ehr_token)).status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Basic !!!"}).status_code == 401
    assert client.get("/metrics", headers=_basic(ADMIN_TOKEN)).status_code == 200
    assert client.get("/metrics", headers=bearer(ADMIN_TOKEN)).status_code == 200
    # The operator token is not a CDS client's JWT either.
    assert client.post(SIGN, json={}, headers=bearer(ADMIN_TOKEN)).status_code == 401


def test_with_trusted_clients_and_no_operator_token_metrics_are_closed(
    runtime: Runtime, app_settings: Any
) -> None:
    settings = dataclasses.replace(
        app_settings, trusted_clients=(es384_client().trusted(),), public_url=PUBLIC_URL
    )
    client = create_app(settings, runtime=runtime).test_client()
    closed = client.get("/metrics", headers=bearer("anything"))
    assert closed.status_code == 403
    assert "CDS_ADMIN_TOKEN" in closed.get_json()["issue"][0]["diagnostics"]


def _issued(cards: int) -> IssuedCards:
    return IssuedCards(
        service_id="back-pain-order-sign",
        hook="order-sign",
        hook_instance=str(uuid.uuid4()),
        patient_id="Patient-1",
        cards=[CardRecord("t", "info", str(uuid.uuid4()), (), {}) for _ in range(cards)],
    )


def test_decision_log_queue_writes_and_losses_are_counted(
    client: FlaskClient, tmp_path: Path
) -> None:
    written, lost = "cds_decision_log_cards_written_total", "cds_decision_log_cards_lost_total"
    before = _scrape(client)
    # Every documented reason exists from the start, so a rate over it has a series to read.
    for reason in ("queue_full", "refused", "shutdown", "worker_ended"):
        assert (lost, frozenset({("reason", reason)})) in before, reason
    store = DecisionStore(parse_database_url(f"sqlite:///{tmp_path / 'd.db'}"), "s" * 40)
    log = DecisionLog(store, queue_size=100)
    log.record(_issued(3))
    assert log.flush(10)
    log.close()
    down = DecisionStore(parse_database_url(f"sqlite:///{tmp_path / 'no' / 'd.db'}"), "s" * 40)
    stuck = DecisionLog(down, queue_size=2, first_retry_seconds=0.02, max_retry_seconds=0.05)
    stuck.record(_issued(5))  # 2 queued, 3 dropped
    queued = _scrape(client)
    stuck.close(timeout=1)  # gives up on the down store: 2 lost at shutdown
    after = _scrape(client)
    assert value(after, written) - value(before, written) == 3
    assert value(after, lost, reason="queue_full") - value(before, lost, reason="queue_full") == 3
    assert value(after, lost, reason="shutdown") - value(before, lost, reason="shutdown") == 2
    assert value(after, lost, reason="refused") - value(before, lost, reason="refused") == 0
    depth = "cds_decision_log_queue_cards"
    assert value(queued, depth) - value(before, depth) == 2
    assert value(after, depth) == value(before, depth)
    store.dispose()
    down.dispose()


def test_metrics_text_is_also_served_as_openmetrics(client: FlaskClient) -> None:
    response = client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert response.mimetype == "application/openmetrics-text"
    assert response.get_data(as_text=True).rstrip().endswith("# EOF")


def test_stale_files_are_removed_unless_another_running_process_uses_the_folder(
    tmp_path: Path,
) -> None:
    ended = 2**22 + 12345  # above the default pid_max: never a running process
    (tmp_path / f"counter_{ended}.db").write_bytes(b"")
    (tmp_path / "histogram_1.db").write_bytes(b"")  # pid 1 runs, as another process
    (tmp_path / "notes.txt").write_text("not a metric file")
    assert metrics._remove_stale_files(str(tmp_path)) == 0  # a sibling worker is running
    (tmp_path / "histogram_1.db").unlink()
    assert metrics._remove_stale_files(str(tmp_path)) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


# --- across gunicorn's worker processes -------------------------------------------------------


def _get(url: str, **headers: str) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Connection": "close", **headers})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, response.read().decode("utf-8")


def _post(url: str, body: dict[str, Any]) -> int:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Connection": "close"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status


def _scrape_pids(log_file: Path) -> set[int]:
    pids = set()
    for line in log_file.read_text().splitlines():
        if '"path": "/metrics"' in line or '"path":"/metrics"' in line:
            pids.add(json.loads(line)["pid"])
    return pids


def test_counts_add_up_over_workers_and_survive_a_worker_restart(tmp_path: Path) -> None:
    folder = tmp_path / "metrics"
    folder.mkdir()
    (folder / f"counter_{2**22 + 7}.db").write_bytes(b"stale counts of an earlier server")
    port, log_file = free_port(), tmp_path / "server.log"
    env = {
        "CDS_EVALUATION_DATE": SETTINGS.evaluation_date.isoformat(),  # type: ignore[union-attr]
        "CDS_DATABASE_URL": f"sqlite:///{tmp_path / 'store.db'}",
        "CDS_METRICS_DIR": str(folder),
        "CDS_LOG_FORMAT": "json",
    }
    process = serve(port, env, workers=2, log_file=log_file)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(port, process)
        assert not (folder / f"counter_{2**22 + 7}.db").exists()  # emptied at start
        calls = 12
        for _ in range(calls):
            assert _post(f"{base}{SIGN}", load_fixture(TRAMADOL)[1]) == 200

        def hook_calls() -> float:
            status, text = _get(f"{base}/metrics")
            assert status == 200
            samples = parse(text)
            count = value(samples, f"{DURATION}_count", service="back-pain-order-sign", status=200)
            cards = total(samples, "cds_cards_returned_total", topic="opioid-avoidance")
            assert cards == count
            return count

        # Every scrape, whichever worker answers it, counts the calls of both.
        for _ in range(60):
            assert hook_calls() == calls
            if len(_scrape_pids(log_file)) == 2:
                break
        assert len(_scrape_pids(log_file)) == 2, "one worker answered every scrape"

        victim = child_pids(process.pid)[0]
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            workers = child_pids(process.pid)
            if len(workers) == 2 and victim not in workers:
                break
            time.sleep(0.1)
        else:
            pytest.fail("gunicorn did not replace the killed worker")
        wait_healthy(port, process)
        assert hook_calls() == calls  # the killed worker's counts are kept
        assert _post(f"{base}{SIGN}", load_fixture(TRAMADOL)[1]) == 200
        assert hook_calls() == calls + 1
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_operator_token_and_metrics_folder_are_checked_at_start(tmp_path: Path) -> None:
    from cds_service.config import ConfigError, Settings

    for bad in ("short", "x" * 31, "has a space " + "x" * 32, "é" * 40):
        with pytest.raises(ConfigError, match="CDS_ADMIN_TOKEN"):
            Settings.from_env({"CDS_ADMIN_TOKEN": bad})
    assert Settings.from_env({"CDS_ADMIN_TOKEN": ADMIN_TOKEN}).admin_token == ADMIN_TOKEN
    assert ADMIN_TOKEN not in repr(Settings.from_env({"CDS_ADMIN_TOKEN": ADMIN_TOKEN}))
    new_folder = tmp_path / "metrics"
    assert Settings.from_env({"CDS_METRICS_DIR": str(new_folder)}).metrics_dir == str(new_folder)
    with pytest.raises(ConfigError, match="CDS_METRICS_DIR"):
        Settings.from_env({"CDS_METRICS_DIR": str(tmp_path / "no" / "metrics")})
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="CDS_METRICS_DIR"):
        Settings.from_env({"CDS_METRICS_DIR": str(tmp_path / "file")})
