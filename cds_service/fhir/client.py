"""Reads from the EHR's FHIR server: in parallel, paged, within one deadline per hook call.

The clinician's signing workflow waits on this, so every hook call gets one deadline for all
of its FHIR reads together; each HTTP call also has its own connect/read timeout. Queries run
at once on a thread pool and share one `requests.Session` (kept-alive connections), both made
lazily in the process that uses them, because threads and sockets do not survive gunicorn's
fork of the preloaded app.

The EHR's token goes only to the EHR's FHIR server: redirects are never followed, and a
next-page link to another origin is refused. Cookies are never kept, so nothing set for one
user's call rides on another's. Logs name the query by its prefetch key, with status and
timing; never a URL (it holds the patient id), the token or any content.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from http.cookiejar import DefaultCookiePolicy
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase

from cds_service import metrics
from cds_service.fhir.access import FetchResult, FhirQuery, FhirServer
from cds_service.fhir.parsing import is_failed_result, loads_json, next_page_link, resources_of

log = logging.getLogger(__name__)

_ACCEPT = {"Accept": "application/fhir+json, application/json;q=0.9"}
_CHUNK_BYTES = 64 * 1024
# A page bigger than this is not a sane search result; stop reading rather than fill memory.
MAX_PAGE_BYTES = 32 * 1024 * 1024
_DEFAULT_PORTS = {"http": 80, "https": 443}


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
    def __init__(self, problem: str, status: int | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.status = status


@dataclass(frozen=True)
class _Outcome:
    resources: list[dict[str, Any]] | None
    problem: str
    status: int | None
    pages: int
    seconds: float


def _origin(url: str) -> tuple[str, str, int | None] | None:
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        return scheme, (parts.hostname or "").lower(), parts.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:
        return None


def _new_session(pool_size: int) -> requests.Session:
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
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
        max_workers: int = 12,
    ) -> None:
        self.deadline_seconds = deadline_seconds
        self.timeout_seconds = min(timeout_seconds, deadline_seconds)
        self.max_pages = max_pages
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
        started = time.monotonic()
        deadline = started + self.deadline_seconds
        executor, session = self._pool()
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
                outcome = _Outcome(None, self._late(), None, 0, time.monotonic() - started)
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

    def _late(self) -> str:
        return f"the FHIR server did not answer within the {self.deadline_seconds:g} s deadline"

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
                    raise _QueryFailed(self._late(), status)
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
            problem, status = failure.problem, failure.status or status
        except (requests.Timeout, urllib3.exceptions.TimeoutError):
            problem = self._timed_out(deadline)
        except requests.ConnectionError:
            problem = "the FHIR server could not be reached"
        except (requests.RequestException, urllib3.exceptions.HTTPError) as error:
            problem = f"the FHIR request failed ({type(error).__name__})"
        else:
            return _Outcome(resources, "", status, pages, time.monotonic() - started)
        return _Outcome(None, problem, status, pages, time.monotonic() - started)

    def _timed_out(self, deadline: float) -> str:
        if time.monotonic() >= deadline - 0.01:
            return self._late()
        return f"the FHIR server did not answer within the {self.timeout_seconds:g} s timeout"

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
        if _origin(url) != _origin(server.base_url):
            # The token is for the EHR's server only.
            raise _QueryFailed("a next-page link points outside the FHIR server; not followed")
        return url

    def _get(
        self, session: requests.Session, url: str, token: str | None, deadline: float
    ) -> tuple[int, Any]:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _QueryFailed(self._late())
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
        """The body, read as it arrives so that a server trickling bytes cannot outlast the
        deadline (a socket timeout alone restarts with every byte)."""
        raw = response.raw
        read = getattr(raw, "read1", None) or raw.read
        chunks: list[bytes] = []
        size = 0
        while True:
            chunk = read(_CHUNK_BYTES, decode_content=True)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            size += len(chunk)
            if size > (limit or MAX_PAGE_BYTES):
                raise _QueryFailed("the FHIR server's answer is too large", status)
            if time.monotonic() >= deadline:
                raise _QueryFailed(self._late(), status)
