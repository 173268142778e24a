"""Load the fixture Bundles into a FHIR server, one transaction per scenario.

Each bundle.json is a transaction of PUTs with stable ids, so loading twice changes nothing.
Dates move to today's date by default (as in `replay --url`), so that a service running with
today's real date, reading the data from this server, sees each scenario as written.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import requests

from cds_service.tooling.dates import shift_dates
from cds_service.tooling.library import Fixture, FixtureError
from cds_service.tooling.remote import connection_problem, error_summary

FHIR_JSON = "application/fhir+json"


class LoadError(Exception):
    def __init__(self, message: str, *, unreachable: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.unreachable = unreachable


@dataclass
class LoadResult:
    fixture: Fixture
    ok: bool
    message: str = ""
    created: int = 0
    updated: int = 0
    elapsed_ms: float = 0.0
    stops_run: bool = False

    @property
    def resources(self) -> int:
        return self.created + self.updated


class FhirLoader:
    """Posts transaction Bundles to `base_url`. `today`: shift dates to it (None: no shift)."""

    def __init__(
        self,
        base_url: str,
        *,
        today: date | None,
        timeout: float = 30.0,
        headers: dict[str, str] | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self.base_url = base_url
        self.today = today
        self._timeout = timeout
        self._headers = {"Content-Type": FHIR_JSON, "Accept": FHIR_JSON, **(headers or {})}
        self._session = session or requests.Session()

    def wait_until_ready(self, seconds: float, sleep: Callable[[float], None] = time.sleep) -> None:
        """Poll `GET [base]/metadata` until the server answers 200, for up to `seconds`."""
        deadline = time.monotonic() + seconds
        last = "no answer"
        while True:
            try:
                response = self._session.get(
                    f"{self.base_url}/metadata",
                    headers={"Accept": FHIR_JSON, **self._headers},
                    timeout=min(self._timeout, 10.0),
                )
                if response.status_code == 200:
                    return
                last = error_summary(response)
            except requests.RequestException as error:
                last = connection_problem(error, self.base_url)
            if time.monotonic() >= deadline:
                raise LoadError(f"FHIR server not ready after {seconds:.0f} s: {last}")
            sleep(2.0)

    def bundle_for(self, fixture: Fixture) -> dict[str, Any]:
        bundle = fixture.bundle()
        if self.today is None:
            return bundle
        shifted: dict[str, Any] = shift_dates(bundle, (self.today - fixture.evaluation_date).days)
        return shifted

    def load(self, fixture: Fixture) -> tuple[int, int]:
        """(created, updated) for one scenario's transaction; LoadError when it failed."""
        bundle = self.bundle_for(fixture)
        if bundle.get("resourceType") != "Bundle" or bundle.get("type") != "transaction":
            raise LoadError(f"{fixture.bundle_path}: not a transaction Bundle")
        try:
            response = self._session.post(
                self.base_url, json=bundle, headers=self._headers, timeout=self._timeout
            )
        except requests.ConnectionError as error:
            raise LoadError(connection_problem(error, self.base_url), unreachable=True) from None
        except requests.RequestException as error:
            raise LoadError(connection_problem(error, self.base_url)) from None
        if not 200 <= response.status_code < 300:
            raise LoadError(error_summary(response))
        return _counts(response)


def _counts(response: requests.Response) -> tuple[int, int]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or body.get("type") != "transaction-response":
        raise LoadError(f"HTTP {response.status_code} but no transaction-response Bundle")
    created = updated = 0
    for index, entry in enumerate(body.get("entry") or []):
        status = str(((entry or {}).get("response") or {}).get("status", ""))
        code = status.split(" ", 1)[0]
        if code == "201":
            created += 1
        elif code.startswith("2"):
            updated += 1
        else:
            raise LoadError(f"entry {index} of the transaction answered {status or 'nothing'}")
    return created, updated


def load_all(
    fixtures: Sequence[Fixture],
    loader: FhirLoader,
    on_progress: Callable[[int, Fixture], None] | None = None,
) -> list[LoadResult]:
    results: list[LoadResult] = []
    for index, fixture in enumerate(fixtures, start=1):
        started = time.perf_counter()
        try:
            created, updated = loader.load(fixture)
            result = LoadResult(fixture, True, created=created, updated=updated)
        except FixtureError as error:
            result = LoadResult(fixture, False, str(error))
        except LoadError as error:
            result = LoadResult(fixture, False, error.message, stops_run=error.unreachable)
        result.elapsed_ms = (time.perf_counter() - started) * 1000
        results.append(result)
        if on_progress:
            on_progress(index, fixture)
        if result.stops_run:
            reason = f"not loaded: {result.message}"
            results += [LoadResult(f, False, reason) for f in fixtures[index:]]
            break
    return results


def table(results: Sequence[LoadResult]) -> str:
    rows = [("RESULT", "SCENARIO", "PATIENT", "RESOURCES", "TIME")]
    for r in results:
        resources = f"{r.resources} ({r.created} new)" if r.ok else "-"
        elapsed = f"{r.elapsed_ms:.0f} ms" if r.elapsed_ms else "-"
        patient = f"Patient/{r.fixture.patient_id}" if r.fixture.patient_id else "-"
        rows.append(("LOADED" if r.ok else "FAILED", r.fixture.name, patient, resources, elapsed))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    failures = [f"{r.fixture.name}: {r.message}" for r in results if not r.ok]
    if failures:
        lines += ["", "Failures:", *(f"  {line}" for line in failures)]
    return "\n".join(lines)
