"""Get the patient data the rules need: from prefetch first, else from the EHR's FHIR server.

Prefetch semantics (CDS Hooks 2.0): a missing key was not sent, so the data must be fetched;
`null` means the client asked and found nothing; an OperationOutcome (alone or as the only
content of a Bundle) means the client's query failed, so the data is fetched as if missing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from cds_service.fhir.parsing import is_failed_result, resources_of
from cds_service.record.model import DataCategory


@dataclass(frozen=True)
class GatheredData:
    # Resources per kind of data; None where the data could not be had.
    data: Mapping[DataCategory, list[dict[str, Any]] | None]
    # Why each unavailable kind of data is missing, in words fit for an error body.
    missing: Mapping[DataCategory, str] = field(default_factory=dict)
    fetched: tuple[DataCategory, ...] = ()


class FhirFetcher(Protocol):
    """Reads data from the EHR's FHIR server with the queries of the prefetch templates."""

    def fetch(
        self, request: Any, wanted: Mapping[DataCategory, str]
    ) -> tuple[dict[DataCategory, list[dict[str, Any]]], dict[DataCategory, str]]:
        """(resources per category, reason per category that failed)."""
        ...


class PatientDataGatherer:
    def __init__(self, fetcher: FhirFetcher | None = None) -> None:
        self._fetcher = fetcher

    def gather(
        self, request: Any, needed: Iterable[DataCategory], templates: Mapping[str, str]
    ) -> GatheredData:
        data: dict[DataCategory, list[dict[str, Any]] | None] = {}
        to_fetch: dict[DataCategory, str] = {}
        prefetch: Mapping[str, Any] = request.prefetch
        for category in needed:
            key = category.value
            if key in prefetch and not is_failed_result(prefetch[key]):
                value = prefetch[key]
                data[category] = [] if value is None else resources_of(value)
            else:
                to_fetch[category] = templates[key]
        missing: dict[DataCategory, str] = {}
        if to_fetch and self._fetcher is not None and request.fhir_server:
            fetched, failures = self._fetcher.fetch(request, to_fetch)
            data.update(fetched)
            for category, reason in failures.items():
                data[category] = None
                missing[category] = reason
        else:
            source = (
                "no fhirServer was given" if not request.fhir_server else "it cannot be fetched"
            )
            for category in to_fetch:
                data[category] = None
                missing[category] = (
                    f"prefetch '{category.value}' was not provided (or failed) and {source}"
                )
        return GatheredData(data=data, missing=missing, fetched=tuple(to_fetch))
