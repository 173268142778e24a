"""Get the patient data the rules need: from prefetch first, else from the EHR's FHIR server.

Prefetch semantics (CDS Hooks 2.0): a missing key was not sent, so the data must be fetched;
`null` means the client asked and found nothing; an OperationOutcome (alone or as the only
content of a Bundle) means the client's query failed, so the data is fetched as if missing.
A prefetched search Bundle with a `next` link holds only its first page (CDS Hooks 3.0
pagination): the remaining pages are read from the FHIR server.

Fetching uses the very queries the discovery prefetch templates declare, with the context's
tokens filled in, so a fact means the same whether it came by prefetch or by fetch.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote

from cds_service.fhir.parsing import is_failed_result, next_page_link, resources_of
from cds_service.fhir.servers import FhirServerPolicy
from cds_service.vocabulary import DataCategory

_CONTEXT_TOKEN = re.compile(r"\{\{\s*context\.([A-Za-z][A-Za-z0-9]*)\s*\}\}")
# Values that would change the query's path instead of filling one segment of it.
_PATH_SEGMENT_VALUES = frozenset({"", ".", ".."})


@dataclass(frozen=True)
class FhirServer:
    """The EHR's FHIR endpoint for one hook call and the token it granted."""

    base_url: str  # no trailing slash
    access_token: str | None = field(default=None, repr=False)  # never logged


@dataclass(frozen=True)
class FhirQuery:
    key: str  # the prefetch key the query stands for; names it in logs and error bodies
    # Relative to the server's base URL (a filled prefetch template), or an absolute next-page
    # link of a prefetched search.
    url: str


@dataclass(frozen=True)
class FetchResult:
    resources: list[dict[str, Any]] | None  # None when the data could not be had
    problem: str = ""  # why not, in words fit for an error body (never a value from the data)


class FhirFetcher(Protocol):
    """Reads data from the EHR's FHIR server; one call per hook request, all queries at once."""

    def fetch(self, server: FhirServer, queries: Sequence[FhirQuery]) -> dict[str, FetchResult]:
        """A result for every query, by query key, within the fetcher's deadline."""
        ...


def fill_template(template: str, context: Mapping[str, Any]) -> str | None:
    """A prefetch template's query with its `{{context.x}}` tokens URL-encoded in place.

    None when a token has no usable value (absent, not a string, or a value such as `..`
    that would change the path rather than fill it).
    """
    unresolved = False

    def value_of(match: re.Match[str]) -> str:
        nonlocal unresolved
        value = context.get(match.group(1))
        if not isinstance(value, str) or value.strip() in _PATH_SEGMENT_VALUES:
            unresolved = True
            return ""
        return quote(value, safe="")

    query = _CONTEXT_TOKEN.sub(value_of, template)
    if unresolved or "{{" in query:
        return None
    return query


@dataclass(frozen=True)
class GatheredData:
    # Resources per kind of data; None where the data could not be had.
    data: Mapping[DataCategory, list[dict[str, Any]] | None]
    # Why each unavailable kind of data is missing, in words fit for an error body.
    missing: Mapping[DataCategory, str] = field(default_factory=dict)
    fetched: tuple[DataCategory, ...] = ()  # read (or attempted) from the FHIR server


def _prefetch_state(prefetch: Mapping[str, Any], key: str) -> str:
    if key not in prefetch:
        return "not prefetched"
    if is_failed_result(prefetch[key]):
        return "the prefetch failed"
    return "the prefetch has more pages"


class DataRequest(Protocol):
    """What gathering needs of a hook call (the protocol layer's HookRequest has it)."""

    @property
    def prefetch(self) -> Mapping[str, Any]: ...
    @property
    def context(self) -> Mapping[str, Any]: ...
    @property
    def fhir_server(self) -> str | None: ...
    @property
    def access_token(self) -> str | None: ...


class PatientDataGatherer:
    def __init__(
        self, fetcher: FhirFetcher | None = None, policy: FhirServerPolicy | None = None
    ) -> None:
        self._fetcher = fetcher
        self._policy = policy or FhirServerPolicy()

    def gather(
        self,
        request: DataRequest,
        needed: Iterable[DataCategory],
        templates: Mapping[str, str],
        client_servers: Sequence[str] | None = None,
    ) -> GatheredData:
        """The data, from prefetch or the FHIR server; `client_servers`: the FHIR server
        origins the calling client may name (None: any the service's policy allows)."""
        prefetch: Mapping[str, Any] = request.prefetch
        context: Mapping[str, Any] = request.context
        data: dict[DataCategory, list[dict[str, Any]] | None] = {}
        missing: dict[DataCategory, str] = {}
        queries: dict[DataCategory, FhirQuery] = {}
        first_pages: dict[DataCategory, list[dict[str, Any]]] = {}
        for category in needed:
            key = category.value
            value = prefetch.get(key)
            if key in prefetch and not is_failed_result(value):
                resources = [] if value is None else resources_of(value)
                link = next_page_link(value)
                if link is None:
                    data[category] = resources
                    continue
                first_pages[category] = resources
                queries[category] = FhirQuery(key, link)
                continue
            query = fill_template(templates[key], context)
            if query is None:
                data[category] = None
                missing[category] = (
                    f"'{key}': {_prefetch_state(prefetch, key)} and its query cannot be "
                    "formed from the context"
                )
                continue
            queries[category] = FhirQuery(key, query)

        if not queries:
            return GatheredData(data=data, missing=missing)
        refusal = None
        if self._fetcher is not None and request.fhir_server:
            refusal = self._policy.refusal(request.fhir_server, client_servers)
        if self._fetcher is None or not request.fhir_server or refusal:
            if not request.fhir_server:
                source = "no fhirServer was given"
            else:
                source = refusal or "fetching is off"
            for category in queries:
                data[category] = None
                missing[category] = (
                    f"'{category.value}': {_prefetch_state(prefetch, category.value)} and {source}"
                )
            return GatheredData(data=data, missing=missing)
        server = FhirServer(request.fhir_server, request.access_token)
        results = self._fetcher.fetch(server, tuple(queries.values()))
        for category, asked in queries.items():
            result = results.get(asked.key) or FetchResult(None, "it was not fetched")
            if result.resources is None:
                data[category] = None
                missing[category] = (
                    f"'{asked.key}': {_prefetch_state(prefetch, asked.key)} and {result.problem}"
                )
            else:
                data[category] = first_pages.get(category, []) + result.resources
        return GatheredData(data=data, missing=missing, fetched=tuple(queries))
