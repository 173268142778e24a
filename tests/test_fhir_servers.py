"""Which FHIR servers the service reads: CDS_FHIR_SERVERS for every caller (development mode
included), a trusted client's fhirServers for its calls, never a cloud metadata or link-local
address (by URL or by what the name resolves to); one wording for every unreachable server;
a compressed answer counts against the size cap and the deadline by what it inflates to."""

from __future__ import annotations

import dataclasses
import gzip
import json
import re
import socket
import threading
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import responses
from conftest import SETTINGS, load_fixture
from fhir_fakes import Reply, local_fhir_server, searchset, server_documents
from flask import Flask
from jwt_clients import PUBLIC_URL, SIGN_PATH, bearer, es384_client

from cds_service.config import ConfigError, Settings
from cds_service.fhir import client as client_module
from cds_service.fhir.access import FhirQuery, FhirServer
from cds_service.fhir.client import FhirClient
from cds_service.fhir.servers import REFUSED_ADDRESS, FhirServerPolicy
from cds_service.runtime import Runtime

EHR = "https://ehr.example.org"
OTHER = "https://other.example.org"
CONDITION = {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"}}


def _without_prefetch(fhir_server: str) -> dict[str, Any]:
    """The tramadol fixture with its data to be read from `fhir_server` instead of prefetch."""
    request = load_fixture("opioid-tramadol-acute-low-back-pain")[1]
    documents = server_documents(request)
    request["prefetch"] = {}
    request["fhirServer"] = fhir_server + "/fhir"
    return {"request": request, "documents": documents}


def _lay_out(mock: responses.RequestsMock, fhir_server: str, documents: dict[str, Any]) -> None:
    """Answer every read under `fhir_server` with the fixture's data for its resource type."""
    by_type = {
        "Patient": documents["patient"],
        "Condition": documents["conditions"],
        "MedicationRequest": documents["medications"],
        "Observation": documents["observations"],
        "Procedure": documents["procedures"],
        "ServiceRequest": documents["servicerequests"],
    }
    for resource_type, document in by_type.items():
        mock.add(
            responses.GET,
            re.compile(rf"{re.escape(fhir_server)}/fhir/{resource_type}\b.*"),
            json=document,
        )


@pytest.fixture
def app_for(make_app: Callable[..., Flask]) -> Callable[..., Flask]:
    """An app with SETTINGS changed as given (its own runtime: the FHIR policy is in it)."""

    def _make(**changes: Any) -> Flask:
        settings = dataclasses.replace(SETTINGS, **changes)
        return make_app(settings, Runtime.load(settings))

    return _make


def _sign(app: Flask, request: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    return app.test_client().post(SIGN_PATH, json=request, headers=headers or {})


def _reason(response: Any) -> str:
    assert response.status_code == 412, response.get_json()
    return str(response.get_json()["issue"][0]["diagnostics"])


# --- CDS_FHIR_SERVERS -------------------------------------------------------------------------


@responses.activate
def test_cds_fhir_servers_limits_every_caller_in_development_mode(
    app_for: Callable[..., Flask], tmp_path: Path
) -> None:
    app = app_for(fhir_servers=(EHR,), database_url=f"sqlite:///{tmp_path / 'd.db'}")
    allowed, other = _without_prefetch(EHR), _without_prefetch(OTHER)
    _lay_out(responses.mock, EHR, allowed["documents"])
    _lay_out(responses.mock, OTHER, other["documents"])
    assert _sign(app, allowed["request"]).status_code == 200
    fetched = len(responses.calls)
    assert fetched >= 2
    reason = _reason(_sign(app, other["request"]))
    assert "CDS_FHIR_SERVERS" in reason
    assert len(responses.calls) == fetched  # the other server was not read


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("https://ehr.example.org/fhir", "no path"),
        ("ftp://ehr.example.org", "origins like"),
        ("http://169.254.169.254", "metadata or link-local"),
    ],
)
def test_a_bad_cds_fhir_servers_stops_the_service(raw: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        Settings.from_env({"CDS_FHIR_SERVERS": raw})


def test_origins_are_compared_in_one_form() -> None:
    settings = Settings.from_env(
        {"CDS_FHIR_SERVERS": "HTTPS://EHR.example.org:443/, http://x:8080"}
    )
    assert settings.fhir_servers == (EHR, "http://x:8080")
    policy = FhirServerPolicy.of(settings.fhir_servers)
    assert policy.refusal("https://ehr.EXAMPLE.org/fhir/r4") is None
    assert policy.refusal("https://ehr.example.org:8443/fhir") is not None
    assert policy.refusal("http://x:8080/fhir") is None


# --- a trusted client's fhirServers -----------------------------------------------------------

CLIENT = es384_client()


@responses.activate
def test_a_client_may_only_name_its_own_fhir_servers(
    app_for: Callable[..., Flask], tmp_path: Path
) -> None:
    trusted = dataclasses.replace(CLIENT.trusted(), fhir_servers=(EHR,))
    app = app_for(
        trusted_clients=(trusted,),
        public_url=PUBLIC_URL,
        database_url=f"sqlite:///{tmp_path / 'd.db'}",
    )
    own, other = _without_prefetch(EHR), _without_prefetch(OTHER)
    _lay_out(responses.mock, EHR, own["documents"])
    _lay_out(responses.mock, OTHER, other["documents"])
    assert _sign(app, own["request"], bearer(CLIENT.token())).status_code == 200
    fetched = len(responses.calls)
    reason = _reason(_sign(app, other["request"], bearer(CLIENT.token())))
    assert "fhirServers" in reason and "example.org" not in reason  # names why, not the URL
    assert len(responses.calls) == fetched


def test_fhir_servers_in_the_trusted_clients_file(tmp_path: Path) -> None:
    entry = {"iss": CLIENT.issuer, "jwks": CLIENT.jwks(), "fhirServers": [EHR + "/", OTHER]}
    path = tmp_path / "clients.json"
    path.write_text(json.dumps([entry, {"iss": "https://b.example", "jwks": CLIENT.jwks()}]))
    settings = Settings.from_env({"CDS_TRUSTED_CLIENTS": str(path), "CDS_PUBLIC_URL": PUBLIC_URL})
    assert settings.trusted_clients[0].fhir_servers == (EHR, OTHER)
    assert settings.trusted_clients[1].fhir_servers is None  # not limited
    entry["fhirServers"] = "https://ehr.example.org"
    path.write_text(json.dumps([entry]))
    with pytest.raises(ConfigError, match="fhirServers"):
        Settings.from_env({"CDS_TRUSTED_CLIENTS": str(path), "CDS_PUBLIC_URL": PUBLIC_URL})


# --- never metadata or link-local -------------------------------------------------------------


@pytest.mark.parametrize(
    "fhir_server",
    [
        "http://169.254.169.254",
        "http://169.254.170.2",
        "http://[fe80::1]",
        "http://[::ffff:169.254.169.254]",
        "http://[fd00:ec2::254]",
        "http://100.100.100.200",
        "http://metadata.google.internal",
    ],
)
@responses.activate
def test_metadata_and_link_local_servers_are_never_read(
    app_for: Callable[..., Flask], tmp_path: Path, fhir_server: str
) -> None:
    app = app_for(database_url=f"sqlite:///{tmp_path / 'd.db'}")  # development mode, no list
    request = _without_prefetch(fhir_server)["request"]
    assert "never read" in _reason(_sign(app, request))
    assert len(responses.calls) == 0


@pytest.fixture
def resolving(monkeypatch: pytest.MonkeyPatch) -> Callable[[dict[str, list[str]]], None]:
    """Make chosen host names resolve to chosen addresses (a DNS answer the service gets)."""

    def _install(names: dict[str, list[str]]) -> None:
        real = socket.getaddrinfo

        def fake(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
            if host in names:
                return [
                    (
                        socket.AF_INET6 if ":" in address else socket.AF_INET,
                        socket.SOCK_STREAM,
                        6,
                        "",
                        (address, port),
                    )
                    for address in names[host]
                ]
            return real(host, port, *args, **kwargs)

        monkeypatch.setattr(client_module.socket, "getaddrinfo", fake)

    return _install


def _read_by_name(addresses: list[str], install: Callable[[dict[str, list[str]]], None]) -> Any:
    """Read a local server through a host name that resolves to `addresses`: (result, how many
    connections the server saw)."""
    with local_fhir_server(lambda path: Reply.json(searchset([CONDITION]))) as server:
        port = server.base_url.split(":")[2].split("/")[0]
        install({"fhir.example.test": addresses})
        client = FhirClient(deadline_seconds=2, timeout_seconds=2, max_pages=3)
        try:
            result = client.fetch(
                FhirServer(f"http://fhir.example.test:{port}/fhir"), [FhirQuery("c", "C")]
            )["c"]
        finally:
            client.close()
        return result, server.connections


@pytest.mark.parametrize(
    "addresses",
    [["169.254.169.254"], ["127.0.0.1", "169.254.169.254"], ["fe80::1"]],
    ids=["metadata", "one-of-several", "link-local-v6"],
)
def test_a_name_that_resolves_to_a_forbidden_address_is_not_connected_to(
    resolving: Callable[[dict[str, list[str]]], None], addresses: list[str]
) -> None:
    result, connections = _read_by_name(addresses, resolving)
    assert result.resources is None and result.problem == REFUSED_ADDRESS
    assert connections == 0  # not even the allowed address was tried


def test_a_name_that_resolves_to_an_ordinary_address_is_read(
    resolving: Callable[[dict[str, list[str]]], None],
) -> None:
    result, connections = _read_by_name(["127.0.0.1"], resolving)
    assert result.resources == [CONDITION] and connections == 1


# --- one wording for every unreachable server -------------------------------------------------


@pytest.fixture
def silent_port() -> Iterator[int]:
    """An open port that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    yield listener.getsockname()[1]
    listener.close()


@pytest.fixture
def babbling_port() -> Iterator[int]:
    """An open port that speaks another protocol and hangs up."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                continue
            with connection:
                connection.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(2)
    listener.close()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_closed_port_and_an_open_one_read_the_same_to_the_caller(
    silent_port: int, babbling_port: int
) -> None:
    client = FhirClient(deadline_seconds=0.5, timeout_seconds=0.5, max_pages=3)
    try:
        problems = {
            name: client.fetch(FhirServer(f"http://127.0.0.1:{port}/fhir"), [FhirQuery("c", "C")])[
                "c"
            ].problem
            for name, port in {
                "closed": _closed_port(),
                "silent": silent_port,
                "other protocol": babbling_port,
            }.items()
        }
    finally:
        client.close()
    assert set(problems.values()) == {client.unreachable}, problems


# --- compressed answers -----------------------------------------------------------------------


def _gzip_bomb(inflated_megabytes: int) -> bytes:
    """A gzip body of many identical members, each 16 MB of zeros (about 16 KB compressed)."""
    member = gzip.compress(bytes(16 * 1024 * 1024), compresslevel=9)
    return member * (inflated_megabytes // 16)


def _fetch_measured(client: FhirClient, reply: Reply) -> tuple[Any, float]:
    """One query's result from a server answering `reply`, and the peak megabytes allocated."""
    with local_fhir_server(lambda path: reply) as server:
        tracemalloc.start()
        try:
            result = client.fetch(FhirServer(server.base_url), [FhirQuery("c", "C")])["c"]
            return result, tracemalloc.get_traced_memory()[1] / 1024 / 1024
        finally:
            tracemalloc.stop()
            client.close()


def test_a_gzip_bomb_counts_against_the_size_cap_as_it_inflates(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(client_module, "MAX_PAGE_BYTES", 1024 * 1024)
    bomb = _gzip_bomb(1024)  # 1 GB inflated, 1 MB sent
    client = FhirClient(deadline_seconds=5, timeout_seconds=5, max_pages=3)
    result, peak = _fetch_measured(client, Reply(200, bomb, {"Content-Encoding": "gzip"}))
    assert result.resources is None
    assert "too large" in result.problem
    # Inflated a step at a time by the service itself: never much more than the cap in memory,
    # whatever urllib3 does (before, with urllib3 2.2, this body inflated past 140 MB and
    # held the read until the deadline, never reaching the cap check).
    assert peak < 16, f"{peak:.1f} MB"


def test_a_gzip_bomb_counts_against_the_deadline_as_it_inflates(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = client_module.FhirClient._read_body

    def read_with_deadline_passed(self: Any, response: Any, deadline: float, *args: Any) -> Any:
        return original(self, response, 0.0, *args)

    # The deadline passes once the first bytes are read: inflating stops at the next step.
    monkeypatch.setattr(client_module.FhirClient, "_read_body", read_with_deadline_passed)
    client = FhirClient(deadline_seconds=5, timeout_seconds=5, max_pages=3)
    bomb = _gzip_bomb(512)
    result, peak = _fetch_measured(client, Reply(200, bomb, {"Content-Encoding": "gzip"}))
    assert result.problem == client.unreachable
    assert peak < 4, f"{peak:.1f} MB"


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "raw-deflate"])
def test_compressed_answers_are_read(encoding: str) -> None:
    body = json.dumps(searchset([CONDITION])).encode()
    if encoding == "gzip":
        sent, header = gzip.compress(body), "gzip"
    elif encoding == "deflate":
        sent, header = zlib.compress(body), "deflate"
    else:  # what some servers send as "deflate"
        compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        sent, header = compressor.compress(body) + compressor.flush(), "deflate"
    client = FhirClient(deadline_seconds=2, timeout_seconds=2, max_pages=3)
    try:
        with local_fhir_server(lambda path: Reply(200, sent, {"Content-Encoding": header})) as s:
            result = client.fetch(FhirServer(s.base_url), [FhirQuery("c", "C")])["c"]
    finally:
        client.close()
    assert result.resources == [CONDITION]


def test_an_encoding_the_service_did_not_ask_for_is_refused() -> None:
    client = FhirClient(deadline_seconds=2, timeout_seconds=2, max_pages=3)
    reply = Reply(200, b"\x00\x01", {"Content-Encoding": "br"})
    try:
        with local_fhir_server(lambda path: reply) as server:
            result = client.fetch(FhirServer(server.base_url), [FhirQuery("c", "C")])["c"]
            [seen] = server.seen
    finally:
        client.close()
    assert result.resources is None and "encoding" in result.problem
    assert seen.headers["Accept-Encoding"] == "gzip, deflate"
