"""Reads from the EHR's FHIR server: in parallel, paged, within one deadline per hook call.

The clinician's signing workflow waits on this, so every hook call gets one deadline for all
of its FHIR reads together; each HTTP call also has its own connect/read timeout. Queries run
at once on a thread pool and share one `requests.Session` (kept-alive connections), both made
lazily in the process that uses them, because threads and sockets do not survive the server's
fork of the preloaded app.

Waiting on a FHIR server costs a hook call's thread nothing but the wait, yet a dead server
would keep every thread of a worker waiting; so only `max_calls` hook calls of a worker read
at once, and one more gets its data reported missing at once (a 412 when the patient or the
conditions were not prefetched) instead of joining the queue.

The EHR's token goes only to the EHR's FHIR server: redirects are never followed, and a
next-page link to another origin is refused. Cookies are never kept, so nothing set for one
user's call rides on another's. A connection is made only to the addresses its host name
resolved to and were checked: never to a link-local or cloud metadata address (servers.py);
behind an HTTP proxy (HTTPS_PROXY), the proxy resolves names, so it must refuse them too.
Answers are decompressed here, a bounded step at a time, so a compressed answer counts
against the size cap and the deadline by what it inflates to (a "gzip bomb" cannot overrun
either). Every failure to get an answer reads the same to the caller, so the 412 wording does
not tell a closed port from an open one; the log names the cause. Logs name the query by its
prefetch key, with status and timing; never a URL (it holds the patient id), the token or any
content.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import zlib
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from http.cookiejar import DefaultCookiePolicy
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util.connection import allowed_gai_family

from cds_service import metrics
from cds_service.fhir.access import FetchResult, FhirQuery, FhirServer
from cds_service.fhir.parsing import is_failed_result, next_page_link, resources_of
from cds_service.fhir.servers import (
    REFUSED_ADDRESS,
    is_forbidden_address,
    is_forbidden_host,
    origin,
)
from cds_service.json_text import loads_json

log = logging.getLogger(__name__)

# Only encodings this module decodes itself, step by step (see _Inflater).
_ACCEPT = {
    "Accept": "application/fhir+json, application/json;q=0.9",
    "Accept-Encoding": "gzip, deflate",
}
_CHUNK_BYTES = 64 * 1024
# A page bigger than this is not a sane search result; stop reading rather than fill memory.
MAX_PAGE_BYTES = 32 * 1024 * 1024


class _BearerToken(AuthBase):
    """Sets exactly `Authorization: Bearer <token>`, or no Authorization header at all.

    Passing an auth object also keeps requests from adding credentials from a ~/.netrc.
    """

    def __init__(self, token: str | None) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if self._token:
            request.headers["Authorization"] = f"Bearer {self._token}"
        else:
            request.headers.pop("Authorization", None)
        return request

    def __repr__(self) -> str:
        return "<bearer token>"


class _QueryFailed(Exception):
    def __init__(self, problem: str, status: int | None = None, cause: str = "") -> None:
        super().__init__(problem)
        self.problem = problem
        self.status = status
        self.cause = cause or problem  # for the log


class AddressRefused(Exception):
    """The FHIR server's host name resolved to a link-local or cloud metadata address."""


def _checked_addresses(host: str, port: int) -> list[tuple[Any, ...]]:
    """getaddrinfo for a connection, refused if any address is link-local or metadata (a name
    with one such address among others could be made to connect to it)."""
    host = host.strip("[]")
    if is_forbidden_host(host):
        raise AddressRefused(host)
    found = socket.getaddrinfo(host, port, allowed_gai_family(), socket.SOCK_STREAM)
    if any(is_forbidden_address(str(address[0])) for *_, address in found):
        raise AddressRefused(host)
    return found


class _CheckedConnectionMixin:
    """Connects only to the addresses that were checked (never resolving the name twice, so a
    name cannot resolve to a safe address for the check and another for the connection)."""

    host: str
    port: int
    timeout: Any
    socket_options: Any
    _dns_host: str

    def _new_conn(self) -> socket.socket:
        try:
            found = _checked_addresses(self._dns_host, self.port)
        except socket.gaierror as error:
            raise NameResolutionError(self.host, self, error) from error  # type: ignore[arg-type]
        failure: OSError | None = None
        for family, kind, protocol, _, address in found:
            sock = socket.socket(family, kind, protocol)
            try:
                for option in self.socket_options or ():
                    sock.setsockopt(*option)
                if self.timeout is None or isinstance(self.timeout, int | float):
                    sock.settimeout(self.timeout)
                sock.connect(address)
                return sock
            except OSError as error:
                failure = error
                sock.close()
        if isinstance(failure, TimeoutError):
            raise ConnectTimeoutError(self, f"connection to {self.host} timed out") from failure
        raise NewConnectionError(self, f"failed to connect: {failure}") from failure  # type: ignore[arg-type]


class _CheckedHTTPConnection(_CheckedConnectionMixin, HTTPConnection):
    pass


class _CheckedHTTPSConnection(_CheckedConnectionMixin, HTTPSConnection):
    pass


class _CheckedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _CheckedHTTPConnection


class _CheckedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _CheckedHTTPSConnection


class _CheckedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _CheckedHTTPPool,
            "https": _CheckedHTTPSPool,
        }


class _Inflater:
    """Decodes a gzip or deflate body a bounded step at a time: no step yields more than
    _CHUNK_BYTES, so size and deadline are checked as the body inflates, not after."""

    def __init__(self, encoding: str) -> None:
        self._gzip = encoding == "gzip"
        # gzip; deflate is zlib-wrapped by the standard, raw in some servers (tried next).
        self._window = 16 + zlib.MAX_WBITS if self._gzip else zlib.MAX_WBITS
        self._decoder = zlib.decompressobj(self._window)
        self._started = False

    def feed(self, data: bytes) -> Iterator[bytes]:
        while True:
            try:
                out = self._decoder.decompress(data, _CHUNK_BYTES)
            except zlib.error:
                if self._gzip or self._started:
                    raise
                self._window = -zlib.MAX_WBITS
                self._decoder = zlib.decompressobj(self._window)
                out = self._decoder.decompress(data, _CHUNK_BYTES)
            self._started = True
            data = self._decoder.unconsumed_tail
            if self._decoder.eof and self._gzip and self._decoder.unused_data:
                data = self._decoder.unused_data  # another gzip member follows
                self._decoder = zlib.decompressobj(self._window)
            if out:
                yield out
            if not data and len(out) < _CHUNK_BYTES:
                return


@dataclass(frozen=True)
class _Outcome:
    resources: list[dict[str, Any]] | None
    problem: str
    status: int | None
    pages: int
    seconds: float
    cause: str = ""  # for the log: what exactly failed (the problem may say less)


def _new_session(pool_size: int) -> requests.Session:
    session = requests.Session()
    adapter = _CheckedAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
    return session


class FhirClient:
    """The production `FhirFetcher`: plain FHIR REST reads, no clinical knowledge."""

    def __init__(
        self,
        *,
        deadline_seconds: float,
        timeout_seconds: float,
        max_pages: int,
        max_calls: int = 8,
        max_workers: int = 12,
    ) -> None:
        self.deadline_seconds = deadline_seconds
        self.timeout_seconds = min(timeout_seconds, deadline_seconds)
        self.max_pages = max_pages
        self.max_calls = max_calls
        self._calls = threading.BoundedSemaphore(max_calls)  # made anew in each process
        self._max_workers = max_workers
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._session: requests.Session | None = None

    @property
    def is_started(self) -> bool:
        """Whether this process has the client's threads and connections yet."""
        return self._pid == os.getpid() and self._executor is not None

    def _pool(self) -> tuple[ThreadPoolExecutor, requests.Session]:
        with self._lock:
            if self._pid != os.getpid() or self._executor is None or self._session is None:
                # First use in this process (a forked worker inherits neither threads nor
                # usable sockets): start afresh rather than reuse the parent's.
                self._executor = ThreadPoolExecutor(self._max_workers, thread_name_prefix="fhir")
                self._session = _new_session(self._max_workers)
                self._calls = threading.BoundedSemaphore(self.max_calls)
                self._pid = os.getpid()
            return self._executor, self._session

    def close(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                if self._executor is not None:
                    self._executor.shutdown(wait=False, cancel_futures=True)
                if self._session is not None:
                    self._session.close()
            self._executor, self._session, self._pid = None, None, None

    def fetch(self, server: FhirServer, queries: Sequence[FhirQuery]) -> dict[str, FetchResult]:
        executor, session = self._pool()
        calls = self._calls
        if not calls.acquire(blocking=False):
            return self._refused(queries)
        try:
            return self._fetch(executor, session, server, queries)
        finally:
            calls.release()

    def _refused(self, queries: Sequence[FhirQuery]) -> dict[str, FetchResult]:
        log.warning(
            "fhir reads refused: too many calls reading",
            extra={"event": "fhir_busy", "queries": [q.key for q in queries]},
        )
        problem = (
            f"the service is already reading from FHIR servers for {self.max_calls} other "
            "calls; try again"
        )
        return {query.key: FetchResult(None, problem) for query in queries}

    def _fetch(
        self,
        executor: ThreadPoolExecutor,
        session: requests.Session,
        server: FhirServer,
        queries: Sequence[FhirQuery],
    ) -> dict[str, FetchResult]:
        started = time.monotonic()
        deadline = started + self.deadline_seconds
        abandoned = threading.Event()
        futures: dict[Future[_Outcome], FhirQuery] = {
            executor.submit(self._read_all, session, server, query, deadline, abandoned): query
            for query in queries
        }
        done, _ = wait(futures, timeout=max(0.0, deadline - time.monotonic()))
        abandoned.set()  # stragglers stop at their next step; their results are not waited for
        results: dict[str, FetchResult] = {}
        for future, query in futures.items():
            if future in done:
                outcome = self._outcome_of(future)
            else:
                future.cancel()
                outcome = _Outcome(
                    None, self.unreachable, None, 0, time.monotonic() - started, "deadline"
                )
            results[query.key] = FetchResult(outcome.resources, outcome.problem)
            metrics.count_fhir_read(
                query.key,
                metrics.fhir_read_outcome(
                    obtained=outcome.resources is not None,
                    answered_in_time=future in done,
                    status=outcome.status,
                ),
            )
            log.info(
                "fhir query",
                extra={
                    "event": "fhir_query",
                    "query": query.key,
                    "outcome": "ok" if outcome.resources is not None else "failed",
                    "status": outcome.status,
                    "pages": outcome.pages,
                    "resources": len(outcome.resources or ()),
                    "problem": outcome.problem or None,
                    "cause": outcome.cause or None,
                    "duration_ms": round(outcome.seconds * 1000, 1),
                },
            )
        return results

    @staticmethod
    def _outcome_of(future: Future[_Outcome]) -> _Outcome:
        try:
            return future.result()
        except Exception as error:  # a defect here must cost one query, never the hook call
            log.exception(
                "fhir query crashed",
                extra={"event": "fhir_query_error", "error_type": type(error).__name__},
            )
            return _Outcome(None, "the FHIR answer could not be processed", None, 0, 0.0)

    @property
    def unreachable(self) -> str:
        """The one wording for a server that cannot be had: refused, reset, not resolved, not
        answering, too slow, not speaking HTTP. A caller cannot tell them apart (so the service
        is no port scanner); the log names the cause."""
        return (
            "the FHIR server could not be reached or did not answer in time "
            f"({self.timeout_seconds:g} s a request, {self.deadline_seconds:g} s in all)"
        )

    def _late(self, status: int | None = None) -> _QueryFailed:
        return _QueryFailed(self.unreachable, status, "deadline")

    def _read_all(
        self,
        session: requests.Session,
        server: FhirServer,
        query: FhirQuery,
        deadline: float,
        abandoned: threading.Event,
    ) -> _Outcome:
        """Every page of one query, or why not."""
        started = time.monotonic()
        resources: list[dict[str, Any]] = []
        pages = 0
        status: int | None = None
        try:
            url: str | None = self._first_url(server, query.url)
            while url is not None:
                if pages >= self.max_pages:
                    raise _QueryFailed(f"the search has more than {self.max_pages} pages", status)
                if abandoned.is_set() or time.monotonic() >= deadline:
                    raise self._late(status)
                status, document = self._get(session, url, server.access_token, deadline)
                pages += 1
                if is_failed_result(document):
                    raise _QueryFailed("the FHIR server answered with an OperationOutcome", status)
                if not isinstance(document, dict) or not isinstance(
                    document.get("resourceType"), str
                ):
                    raise _QueryFailed("the FHIR server's answer is not a FHIR resource", status)
                resources.extend(resources_of(document))
                link = next_page_link(document)
                url = self._next_url(server, url, link) if link else None
        except _QueryFailed as failure:
            problem, status, cause = failure.problem, failure.status or status, failure.cause
        except AddressRefused:
            problem, cause = REFUSED_ADDRESS, "address refused"
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as error:
            problem, cause = self.unreachable, _transport_cause(error)
        else:
            return _Outcome(resources, "", status, pages, time.monotonic() - started)
        return _Outcome(None, problem, status, pages, time.monotonic() - started, cause)

    @staticmethod
    def _first_url(server: FhirServer, url: str) -> str:
        try:
            absolute = bool(urlsplit(url).scheme)
        except ValueError:
            raise _QueryFailed("a next-page link is not a valid URL") from None
        if absolute:  # a next-page link of a prefetched search
            return FhirClient._next_url(server, server.base_url + "/", url)
        return f"{server.base_url}/{url.lstrip('/')}"

    @staticmethod
    def _next_url(server: FhirServer, current: str, link: str) -> str:
        url = urljoin(current, link)
        if origin(url) != origin(server.base_url):
            # The token is for the EHR's server only.
            raise _QueryFailed("a next-page link points outside the FHIR server; not followed")
        return url

    def _get(
        self, session: requests.Session, url: str, token: str | None, deadline: float
    ) -> tuple[int, Any]:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise self._late()
        timeout = min(self.timeout_seconds, remaining)
        with session.get(
            url,
            headers=_ACCEPT,
            auth=_BearerToken(token),
            timeout=(timeout, timeout),
            allow_redirects=False,
            stream=True,
        ) as response:
            status = response.status_code
            if 300 <= status < 400:
                raise _QueryFailed(
                    f"the FHIR server answered with a redirect (HTTP {status}); "
                    "redirects are not followed",
                    status,
                )
            if status >= 400:
                # Read the (small) error body anyway, so the connection can be kept alive.
                with contextlib.suppress(_QueryFailed):
                    self._read_body(response, deadline, status, limit=_CHUNK_BYTES)
                raise _QueryFailed(f"the FHIR server answered HTTP {status}", status)
            body = self._read_body(response, deadline, status)
        try:
            return status, loads_json(body)
        except (ValueError, RecursionError):
            raise _QueryFailed("the FHIR server's answer is not valid JSON", status) from None

    def _read_body(
        self, response: requests.Response, deadline: float, status: int, limit: int = 0
    ) -> bytes:
        """The body, decoded and read as it arrives: a server trickling bytes cannot outlast
        the deadline (a socket timeout alone restarts with every byte), and a compressed body
        counts by what it inflates to, checked every _CHUNK_BYTES."""
        raw = response.raw
        read = getattr(raw, "read1", None) or raw.read
        encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("identity", "", "gzip", "deflate"):
            raise _QueryFailed("the FHIR server's answer has an unsupported encoding", status)
        inflater = _Inflater(encoding) if encoding in ("gzip", "deflate") else None
        cap = limit or MAX_PAGE_BYTES
        chunks: list[bytes] = []
        size = 0
        while True:
            received = read(_CHUNK_BYTES, decode_content=False)
            if not received:
                return b"".join(chunks)
            try:
                for chunk in inflater.feed(received) if inflater else (received,):
                    chunks.append(chunk)
                    size += len(chunk)
                    if size > cap:
                        raise _QueryFailed("the FHIR server's answer is too large", status)
                    if time.monotonic() >= deadline:
                        raise self._late(status)
            except zlib.error:
                raise _QueryFailed(
                    "the FHIR server's answer is not validly compressed", status
                ) from None
            if time.monotonic() >= deadline:
                raise self._late(status)


def _transport_cause(error: BaseException) -> str:
    """The innermost cause of a transport failure, for the log (e.g. ConnectionRefusedError)."""
    seen = 0
    while seen < 10:
        seen += 1
        inner = getattr(error, "reason", None) or (error.args[0] if error.args else None)
        if not isinstance(inner, BaseException):
            inner = error.__cause__ or error.__context__
        if not isinstance(inner, BaseException):
            break
        error = inner
    return type(error).__name__
