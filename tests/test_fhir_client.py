"""The FHIR client on its own: headers, paging, failures, parallelism, connections, fork."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import responses
from fhir_fakes import Reply, local_fhir_server, searchset, timed
from responses import matchers

from cds_service.fhir import client as client_module
from cds_service.fhir.access import FhirQuery, FhirServer, fill_template
from cds_service.fhir.client import FhirClient

BASE = "https://ehr.example.org/fhir"
TOKEN = "tok-3f9a.secret"
CONDITION = {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"}}
CONDITION_2 = {**CONDITION, "id": "c2"}
OUTCOME = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "x"}]}
# Generous bound for "did not hang": far below the 10 s a stalled server would cost.
NO_HANG_SECONDS = 5.0


@pytest.fixture
def fhir() -> Iterator[FhirClient]:
    client = FhirClient(deadline_seconds=2, timeout_seconds=2, max_pages=3)
    yield client
    client.close()


@pytest.fixture
def quick() -> Iterator[FhirClient]:
    """A client with a short deadline, for servers that stall."""
    client = FhirClient(deadline_seconds=0.5, timeout_seconds=0.5, max_pages=3)
    yield client
    client.close()


def _one(client: FhirClient, url: str = "Condition?patient=p1", token: str | None = TOKEN) -> Any:
    return client.fetch(FhirServer(BASE, token), [FhirQuery("conditions", url)])["conditions"]


@responses.activate
def test_bearer_token_is_sent_exactly(fhir: FhirClient) -> None:
    responses.get(
        f"{BASE}/Condition?patient=p1",
        json=searchset([CONDITION]),
        match=[matchers.header_matcher({"Authorization": f"Bearer {TOKEN}"})],
    )
    assert _one(fhir).resources == [CONDITION]
    assert responses.calls[0].request.headers["Authorization"] == f"Bearer {TOKEN}"


@responses.activate
def test_no_authorization_header_without_a_token(fhir: FhirClient) -> None:
    responses.get(f"{BASE}/Condition?patient=p1", json=searchset([CONDITION]))
    assert _one(fhir, token=None).resources == [CONDITION]
    assert "Authorization" not in responses.calls[0].request.headers


@responses.activate
def test_pages_are_followed_with_the_token(fhir: FhirClient) -> None:
    responses.get(
        f"{BASE}/Condition?patient=p1", json=searchset([CONDITION], f"{BASE}?_getpages=abc&p=2")
    )
    responses.get(f"{BASE}?_getpages=abc&p=2", json=searchset([CONDITION_2]))
    assert _one(fhir).resources == [CONDITION, CONDITION_2]
    assert [c.request.headers["Authorization"] for c in responses.calls] == [f"Bearer {TOKEN}"] * 2


@responses.activate
def test_relative_next_link_is_resolved_against_the_page(fhir: FhirClient) -> None:
    responses.get(f"{BASE}/Condition?patient=p1", json=searchset([CONDITION], "Condition?page=2"))
    responses.get(f"{BASE}/Condition?page=2", json=searchset([CONDITION_2]))
    assert _one(fhir).resources == [CONDITION, CONDITION_2]


@responses.activate
def test_paging_stops_at_the_cap_and_the_data_counts_as_missing(fhir: FhirClient) -> None:
    for page in range(1, 6):
        responses.get(
            f"{BASE}/Condition?page={page}",
            json=searchset([{**CONDITION, "id": f"c{page}"}], f"{BASE}/Condition?page={page + 1}"),
        )
    result = _one(fhir, "Condition?page=1")
    assert result.resources is None
    assert "more than 3 pages" in result.problem
    assert len(responses.calls) == 3


@responses.activate
def test_next_link_to_another_origin_is_not_followed(fhir: FhirClient) -> None:
    responses.get(
        f"{BASE}/Condition?patient=p1", json=searchset([CONDITION], "https://evil.example.com/x")
    )
    result = _one(fhir)
    assert result.resources is None
    assert "outside the FHIR server" in result.problem
    assert len(responses.calls) == 1


@responses.activate
def test_prefetch_next_link_to_another_origin_is_refused_before_any_call(fhir: FhirClient) -> None:
    result = _one(fhir, "http://ehr.example.org/fhir/Condition?page=2")  # http, not https
    assert result.resources is None
    assert len(responses.calls) == 0


@responses.activate
def test_redirects_are_not_followed(fhir: FhirClient) -> None:
    responses.get(
        f"{BASE}/Condition?patient=p1",
        status=302,
        headers={"Location": "https://other.example.com/steal"},
    )
    responses.get("https://other.example.com/steal", json=searchset([CONDITION]))
    result = _one(fhir)
    assert result.resources is None
    assert "redirect" in result.problem
    assert [c.request.url for c in responses.calls] == [f"{BASE}/Condition?patient=p1"]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 429, 500, 502, 503])
@responses.activate
def test_error_status_means_missing(fhir: FhirClient, status: int) -> None:
    responses.get(f"{BASE}/Condition?patient=p1", status=status, json=OUTCOME)
    result = _one(fhir)
    assert result.resources is None
    assert result.problem == f"the FHIR server answered HTTP {status}"


@pytest.mark.parametrize(
    "document", [OUTCOME, searchset([OUTCOME]), {"no": "resourceType"}, [1, 2]]
)
@responses.activate
def test_answer_that_is_not_data_means_missing(fhir: FhirClient, document: Any) -> None:
    responses.get(f"{BASE}/Condition?patient=p1", json=document)
    assert _one(fhir).resources is None


@pytest.mark.parametrize("body", [b"{not json", b"", b"\xff\xfe", b"[" * 100_000])
@responses.activate
def test_invalid_json_means_missing(fhir: FhirClient, body: bytes) -> None:
    responses.get(f"{BASE}/Condition?patient=p1", body=body)
    result = _one(fhir)
    assert result.resources is None
    assert "not valid JSON" in result.problem


@pytest.mark.parametrize(
    "error",
    [
        requests.ReadTimeout("slow"),
        requests.ConnectTimeout("slow"),
        requests.ConnectionError(ConnectionRefusedError("refused")),
        requests.exceptions.ChunkedEncodingError("broken"),
    ],
)
@responses.activate
def test_transport_failures_mean_missing_in_one_wording(
    fhir: FhirClient, error: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    responses.get(f"{BASE}/Condition?patient=p1", body=error)
    with caplog.at_level(logging.INFO, logger="cds_service"):
        result = _one(fhir)
    assert result.resources is None
    # The caller cannot tell a refused connection from a slow or broken answer ...
    assert result.problem == fhir.unreachable
    assert "could not be reached or did not answer in time (2 s a request, 2 s in all)" in (
        result.problem
    )
    # ... the log can.
    assert _logged_cause(caplog) in {
        "ReadTimeout",
        "ConnectTimeout",
        "ConnectionRefusedError",
        "ChunkedEncodingError",
    }


def _logged_cause(caplog: pytest.LogCaptureFixture) -> str:
    [record] = [r for r in caplog.records if getattr(r, "event", None) == "fhir_query"]
    return str(record.cause)


def test_a_defect_while_reading_costs_one_query_not_the_call(
    fhir: FhirClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("defect")

    monkeypatch.setattr(FhirClient, "_get", broken)
    result = _one(fhir)
    assert result.resources is None


@responses.activate
def test_oversized_page_is_refused(fhir: FhirClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_module, "MAX_PAGE_BYTES", 1000)
    responses.get(f"{BASE}/Condition?patient=p1", json=searchset([CONDITION] * 50))
    result = _one(fhir)
    assert result.resources is None
    assert "too large" in result.problem


@responses.activate
def test_queries_run_in_parallel(fhir: FhirClient) -> None:
    # Each answer waits until all six requests are in flight at once; run one after another,
    # the barrier would break and every query would fail.
    barrier = threading.Barrier(6, timeout=1.5)

    def answer(request: Any) -> tuple[int, dict[str, str], str]:
        barrier.wait()
        return 200, {}, '{"resourceType": "Bundle", "type": "searchset"}'

    keys = ["patient", "conditions", "medications", "observations", "procedures", "sr"]
    for key in keys:
        responses.add_callback(responses.GET, f"{BASE}/{key}", callback=answer)
    results = fhir.fetch(FhirServer(BASE, TOKEN), [FhirQuery(key, key) for key in keys])
    assert {key: result.resources for key, result in results.items()} == {k: [] for k in keys}


def test_connections_are_kept_alive_and_reused(fhir: FhirClient) -> None:
    with local_fhir_server(lambda path: Reply.json(searchset([CONDITION]))) as server:
        for _ in range(4):
            result = fhir.fetch(FhirServer(server.base_url), [FhirQuery("conditions", "C")])
            assert result["conditions"].resources == [CONDITION]
    assert len(server.seen) == 4
    assert server.connections == 1


def test_gzip_answers_are_decoded(fhir: FhirClient) -> None:
    with local_fhir_server(lambda path: Reply.gzipped(searchset([CONDITION]))) as server:
        result = fhir.fetch(FhirServer(server.base_url), [FhirQuery("conditions", "C")])
    assert result["conditions"].resources == [CONDITION]
    assert "gzip" in server.seen[0].headers.get("Accept-Encoding", "")


def test_cookies_set_by_the_server_are_never_sent_back(fhir: FhirClient) -> None:
    reply = Reply.json(searchset([]), headers={"Set-Cookie": "session=user-a; Path=/"})
    with local_fhir_server(lambda path: reply) as server:
        for _ in range(2):
            fhir.fetch(FhirServer(server.base_url, TOKEN), [FhirQuery("conditions", "C")])
    assert all("Cookie" not in seen.headers for seen in server.seen)


def test_stalled_server_costs_at_most_the_deadline(quick: FhirClient) -> None:
    with local_fhir_server(lambda path: Reply.json(searchset([]), delay=10)) as server:
        results, seconds = timed(
            lambda: quick.fetch(
                FhirServer(server.base_url, TOKEN),
                [FhirQuery(key, key) for key in ("a", "b", "c", "d", "e", "f")],
            )
        )
    assert all(result.resources is None for result in results.values())
    assert all("did not answer" in result.problem for result in results.values())
    assert seconds < NO_HANG_SECONDS


def test_calls_beyond_the_bound_are_refused_at_once_while_others_wait_on_a_dead_server() -> None:
    client = FhirClient(deadline_seconds=2.0, timeout_seconds=2.0, max_pages=3, max_calls=2)
    started = threading.Barrier(3)
    results: list[Any] = []

    def waiting_call(server: Any) -> None:
        started.wait()
        results.append(client.fetch(FhirServer(server.base_url), [FhirQuery("conditions", "x")]))

    try:
        with local_fhir_server(lambda path: Reply.json(searchset([]), delay=10)) as server:
            waiting = [threading.Thread(target=waiting_call, args=(server,)) for _ in range(2)]
            for thread in waiting:
                thread.start()
            started.wait()
            deadline = time.monotonic() + 5
            while len(server.seen) < 2 and time.monotonic() < deadline:
                time.sleep(0.01)  # both calls are now waiting on the server
            refused, seconds = timed(
                lambda: client.fetch(FhirServer(server.base_url), [FhirQuery("conditions", "x")])
            )
            for thread in waiting:
                thread.join()
            assert len(server.seen) == 2  # the refused call never reached the server
        assert seconds < 0.2
        assert refused["conditions"].resources is None
        assert (
            "already reading from FHIR servers for 2 other calls" in refused["conditions"].problem
        )
        assert all("did not answer" in r["conditions"].problem for r in results)
        # Slots are given back: once the waits are over, a call reads again.
        with local_fhir_server(lambda path: Reply.json(searchset([CONDITION]))) as server:
            again = client.fetch(FhirServer(server.base_url), [FhirQuery("conditions", "x")])
        assert again["conditions"].resources == [CONDITION]
    finally:
        client.close()


def test_trickling_server_cannot_outlast_the_deadline(quick: FhirClient) -> None:
    reply = Reply.json(searchset([CONDITION] * 4), trickle=0.05)  # ~20 s if read to the end
    with local_fhir_server(lambda path: reply) as server:
        results, seconds = timed(
            lambda: quick.fetch(FhirServer(server.base_url), [FhirQuery("conditions", "C")])
        )
        assert results["conditions"].resources is None
        assert seconds < NO_HANG_SECONDS
        # The reading thread gave up too (a socket timeout alone restarts with every byte), so
        # it is free for the next hook call.
        assert server.client_gave_up.wait(NO_HANG_SECONDS)


def test_refused_connection_means_missing(fhir: FhirClient) -> None:
    with local_fhir_server(lambda path: Reply()) as server:
        base = server.base_url
    # The server is gone: its port now refuses connections.
    result = fhir.fetch(FhirServer(base), [FhirQuery("conditions", "C")])["conditions"]
    assert result.resources is None
    assert "could not be reached" in result.problem


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_worker_starts_its_own_threads_and_connections(fhir: FhirClient) -> None:
    with local_fhir_server(lambda path: Reply.json(searchset([CONDITION]))) as server:
        query = [FhirQuery("conditions", "C")]
        assert fhir.fetch(FhirServer(server.base_url), query)["conditions"].resources
        pid = os.fork()
        if pid == 0:  # the child: what a gunicorn worker is after the master forks
            try:
                result = fhir.fetch(FhirServer(server.base_url), query)["conditions"]
                os._exit(0 if result.resources == [CONDITION] else 1)
            except BaseException:
                os._exit(2)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert len(server.seen) == 2
    assert server.connections == 2  # the child did not reuse the parent's socket


def test_one_deadline_covers_every_page_of_a_query(
    quick: FhirClient, caplog: pytest.LogCaptureFixture
) -> None:
    def respond(path: str) -> Reply:
        page = int(path.rsplit("=", 1)[1])
        return Reply.json(searchset([CONDITION], f"C?page={page + 1}"), delay=0.3)

    many_pages = FhirClient(deadline_seconds=0.5, timeout_seconds=0.5, max_pages=10)
    try:
        with local_fhir_server(respond) as server, caplog.at_level(logging.INFO):
            result = many_pages.fetch(FhirServer(server.base_url), [FhirQuery("c", "C?page=1")])
    finally:
        many_pages.close()
    # Every page alone is within the per-call timeout; together they overrun the deadline.
    assert result["c"].resources is None
    assert "0.5 s in all" in result["c"].problem
    assert _logged_cause(caplog) == "deadline"


def test_per_call_timeout_is_shorter_than_the_deadline_when_configured() -> None:
    patient = FhirClient(deadline_seconds=3, timeout_seconds=0.3, max_pages=3)
    try:
        with local_fhir_server(lambda path: Reply.json(searchset([]), delay=2)) as server:
            result, seconds = timed(
                lambda: patient.fetch(FhirServer(server.base_url), [FhirQuery("c", "C")])
            )
    finally:
        patient.close()
    assert result["c"].resources is None
    assert "0.3 s a request" in result["c"].problem
    assert seconds < 1.5  # the request's own timeout, not the 3 s deadline


@pytest.mark.parametrize(
    ("patient_id", "query"),
    [
        ("pt-ana", "Patient/pt-ana"),
        ("a&_include=*", "Patient/a%26_include%3D%2A"),
        ("x?y#z", "Patient/x%3Fy%23z"),
        ("..", None),
        (42, None),
    ],
)
def test_context_values_fill_templates_url_encoded(patient_id: Any, query: str | None) -> None:
    assert fill_template("Patient/{{context.patientId}}", {"patientId": patient_id}) == query


def test_template_with_an_unknown_token_cannot_be_filled() -> None:
    template = "Encounter/{{context.encounterId}}"
    assert fill_template(template, {"patientId": "p1"}) is None
    assert fill_template("Condition?patient={{userPractitionerId}}", {}) is None


def test_connection_is_kept_after_an_error_answer(fhir: FhirClient) -> None:
    replies = iter([Reply.json(OUTCOME, status=404), Reply.json(searchset([CONDITION]))])
    with local_fhir_server(lambda path: next(replies)) as server:
        first = fhir.fetch(FhirServer(server.base_url), [FhirQuery("c", "C")])["c"]
        second = fhir.fetch(FhirServer(server.base_url), [FhirQuery("c", "C")])["c"]
    assert (first.resources, second.resources) == (None, [CONDITION])
    assert server.connections == 1
