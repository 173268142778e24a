"""Test doubles for the EHR's FHIR server: fixture data laid out at the exact URLs the prefetch
templates name, and a real local HTTP server that can answer, fail, stall or trickle."""

from __future__ import annotations

import copy
import gzip
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote

EMPTY_SEARCHSET: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "total": 0}


def filled_template(template: str, context: Mapping[str, Any]) -> str:
    """The query a discovery template names, written out independently of the service's code."""
    return template.replace("{{context.patientId}}", quote(context["patientId"], safe=""))


def server_documents(request: Mapping[str, Any]) -> dict[str, Any]:
    """What a FHIR server would answer for each prefetch key of a fixture request: the
    prefetched resource or Bundle, and an empty search result where the prefetch was null."""
    documents = {}
    for key, value in request["prefetch"].items():
        documents[key] = copy.deepcopy(value) if value is not None else dict(EMPTY_SEARCHSET)
    return documents


def searchset(resources: list[dict[str, Any]], next_url: str | None = None) -> dict[str, Any]:
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": resource} for resource in resources],
    }
    if next_url:
        bundle["link"] = [{"relation": "next", "url": next_url}]
    return bundle


@dataclass
class Reply:
    status: int = 200
    body: bytes = b"{}"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering (a stalled server), released at shutdown
    trickle: float = 0.0  # seconds between single bytes of the body

    @classmethod
    def json(cls, document: Any, status: int = 200, **kwargs: Any) -> Reply:
        return cls(status, json.dumps(document).encode(), **kwargs)

    @classmethod
    def gzipped(cls, document: Any) -> Reply:
        body = gzip.compress(json.dumps(document).encode())
        return cls(200, body, {"Content-Encoding": "gzip"})


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    connection: int


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that give up (deadlines, a service shutting down) reset their connections.
        pass


class LocalFhirServer:
    """A threaded HTTP/1.1 server (keep-alive) on 127.0.0.1 answering through `responder`."""

    def __init__(self, responder: Callable[[str], Reply]) -> None:
        self.responder = responder
        self.seen: list[Seen] = []
        self.connections = 0
        self.released = threading.Event()
        self.client_gave_up = threading.Event()  # a client closed the connection mid-answer
        lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # Headers and body leave in separate writes; without this, Nagle's algorithm
                # and the client's delayed ACK add ~40 ms to every kept-alive answer.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                with lock:
                    owner.connections += 1
                    self.connection_number = owner.connections

            def do_GET(self) -> None:
                with lock:
                    owner.seen.append(Seen(self.path, dict(self.headers), self.connection_number))
                reply = owner.responder(self.path)
                if reply.delay and owner.released.wait(reply.delay):
                    return
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(reply.body)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                if not reply.trickle:
                    self.wfile.write(reply.body)
                    return
                for index in range(len(reply.body)):
                    if owner.released.wait(reply.trickle):
                        return
                    try:
                        self.wfile.write(reply.body[index : index + 1])
                        self.wfile.flush()
                    except OSError:
                        owner.client_gave_up.set()
                        return

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}/fhir"

    def start(self) -> LocalFhirServer:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.released.set()  # wake stalled and trickling handlers
        self._server.shutdown()
        self._server.server_close()


@contextmanager
def local_fhir_server(responder: Callable[[str], Reply]) -> Iterator[LocalFhirServer]:
    server = LocalFhirServer(responder).start()
    try:
        yield server
    finally:
        server.stop()


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = call()
    return result, time.perf_counter() - started
