"""Send fixture requests to the service and compare the cards with the golden ones.

Two targets: the service in this process (through the real Flask app, with "today" pinned to
each fixture's evaluation date), or a running service at a URL. A service running with today's
real date sees a fixture as intended only if the fixture's dates move too, so the URL target
shifts every full date and dateTime by (today - evaluationDate) days unless told not to.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import requests

from cds_service.config import Settings
from cds_service.golden import CardDifferences, card_differences, describe_signature
from cds_service.tooling.dates import shift_dates
from cds_service.tooling.library import Fixture, FixtureError
from cds_service.tooling.remote import connection_problem, error_summary


class Outcome(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    ERROR = "error"


class TargetError(Exception):
    """The service gave no usable answer. `unreachable` stops the run: nothing else will work."""

    def __init__(self, message: str, *, unreachable: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.unreachable = unreachable


@dataclass
class ReplayResult:
    fixture: Fixture
    outcome: Outcome
    differences: CardDifferences | None = None
    message: str = ""
    elapsed_ms: float = 0.0
    cards: int | None = None
    stops_run: bool = False  # the service could not be reached: later fixtures cannot run

    def as_json(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "scenario": self.fixture.name,
            "service": self.fixture.service,
            "result": self.outcome.value,
            "elapsedMs": round(self.elapsed_ms, 1),
        }
        if self.cards is not None:
            result["cards"] = self.cards
        if self.message:
            result["message"] = self.message
        if self.differences:
            result["missing"] = self.differences.missing
            result["unexpected"] = self.differences.unexpected
        return result


class Target(Protocol):
    description: str

    def cards(self, fixture: Fixture) -> list[dict[str, Any]]:
        """The cards the service answers the fixture's request with; TargetError otherwise."""
        ...


def _cards_from(status: int, body: Any, describe: Callable[[], str]) -> list[dict[str, Any]]:
    if status != 200:
        raise TargetError(describe())
    cards = body.get("cards") if isinstance(body, dict) else None
    if not isinstance(cards, list) or not all(isinstance(c, dict) for c in cards):
        raise TargetError("HTTP 200 but the body is not a CDS Hooks response with a cards list")
    return cards


class InProcessTarget:
    """The service in this process, one app per evaluation date, called through Flask.

    Its cards go to a throwaway decision store (a temporary SQLite file, removed by close()),
    so that replayed fixtures never count in the real store's report; `store_url` names a
    store to log them in instead.
    """

    description = "in-process service"

    def __init__(
        self,
        make_app: Callable[[Settings], Any],
        settings: Settings | None = None,
        store_url: str | None = None,
    ) -> None:
        # The app factory is given (commands pass cds_service.app.create_app), so that the
        # integrator tools do not depend on the application that serves them.
        self._make_app = make_app
        self._settings = settings or Settings.from_env()
        self._scratch: tempfile.TemporaryDirectory[str] | None = None
        if store_url is None:
            self._scratch = tempfile.TemporaryDirectory(prefix="cds-replay-")
            store_url = f"sqlite:///{Path(self._scratch.name) / 'replay-decisions.db'}"
        self.store_url = store_url
        self._clients: dict[date, Any] = {}

    def _client(self, today: date) -> Any:
        if today not in self._clients:
            # The fixtures' requests carry no client JWT: the in-process service checks none.
            settings = replace(
                self._settings,
                evaluation_date=today,
                trusted_clients=(),
                database_url=self.store_url,
                spool_dir=None,
            )
            app = self._make_app(settings)
            self._clients[today] = app.test_client()
        return self._clients[today]

    def close(self) -> None:
        """Stop the apps' decision-log writers (their cards are then in the store) and let go
        of their stores; a throwaway store is removed."""
        for client in self._clients.values():
            client.application.extensions["cds_decision_log"].close()
            client.application.extensions["cds_store"].dispose()
        self._clients.clear()
        if self._scratch is not None:
            self._scratch.cleanup()

    def cards(self, fixture: Fixture) -> list[dict[str, Any]]:
        client = self._client(fixture.evaluation_date)
        response = client.post(f"/cds-services/{fixture.service}", json=fixture.request)
        body = response.get_json(silent=True)

        def describe() -> str:
            issues = (body or {}).get("issue") or [{}]
            return f"HTTP {response.status_code}: {issues[0].get('diagnostics', '')}".rstrip(": ")

        return _cards_from(response.status_code, body, describe)


class HttpTarget:
    """A running service. `today` is the date the service takes as today (None: no shift)."""

    def __init__(
        self,
        base_url: str,
        *,
        today: date | None,
        timeout: float = 10.0,
        headers: dict[str, str] | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self.base_url = base_url
        self.description = base_url
        self._today = today
        self._timeout = timeout
        self._headers = {"Content-Type": "application/json", **(headers or {})}
        self._session = session or requests.Session()

    @property
    def today(self) -> date | None:
        return self._today

    def request_for(self, fixture: Fixture) -> dict[str, Any]:
        if self._today is None:
            return fixture.request
        shifted: dict[str, Any] = shift_dates(
            fixture.request, (self._today - fixture.evaluation_date).days
        )
        return shifted

    def cards(self, fixture: Fixture) -> list[dict[str, Any]]:
        url = f"{self.base_url}/cds-services/{fixture.service}"
        try:
            response = self._session.post(
                url, json=self.request_for(fixture), headers=self._headers, timeout=self._timeout
            )
        except requests.ConnectionError as error:
            raise TargetError(connection_problem(error, self.base_url), unreachable=True) from None
        except requests.RequestException as error:
            raise TargetError(connection_problem(error, url)) from None
        try:
            body = response.json()
        except ValueError:
            body = None
        return _cards_from(response.status_code, body, lambda: error_summary(response))


def replay_one(fixture: Fixture, target: Target) -> ReplayResult:
    started = time.perf_counter()
    try:
        expected = fixture.expected_cards
        fixture.request  # noqa: B018 - read now, so a broken file is this fixture's error
        cards = target.cards(fixture)
    except FixtureError as error:
        return ReplayResult(fixture, Outcome.ERROR, message=str(error))
    except TargetError as error:
        elapsed = (time.perf_counter() - started) * 1000
        return ReplayResult(
            fixture,
            Outcome.ERROR,
            message=error.message,
            elapsed_ms=elapsed,
            stops_run=error.unreachable,
        )
    elapsed = (time.perf_counter() - started) * 1000
    differences = card_differences(expected, cards)
    return ReplayResult(
        fixture,
        Outcome.FAIL if differences else Outcome.PASS,
        differences=differences,
        elapsed_ms=elapsed,
        cards=len(cards),
    )


def replay(
    fixtures: Sequence[Fixture],
    target: Target,
    on_progress: Callable[[int, Fixture], None] | None = None,
) -> list[ReplayResult]:
    results: list[ReplayResult] = []
    for index, fixture in enumerate(fixtures, start=1):
        result = replay_one(fixture, target)
        results.append(result)
        if on_progress:
            on_progress(index, fixture)
        if result.stops_run:
            reason = f"not run: {result.message}"
            results += [ReplayResult(f, Outcome.ERROR, message=reason) for f in fixtures[index:]]
            break
    return results


# --- reporting ---------------------------------------------------------------------------------


@dataclass
class Summary:
    passed: int = 0
    failed: int = 0
    errors: int = 0
    seconds: float = 0.0

    @classmethod
    def of(cls, results: Sequence[ReplayResult], seconds: float) -> Summary:
        count = {o: sum(1 for r in results if r.outcome is o) for o in Outcome}
        return cls(count[Outcome.PASS], count[Outcome.FAIL], count[Outcome.ERROR], seconds)

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.errors == 0

    def line(self) -> str:
        total = self.passed + self.failed + self.errors
        return (
            f"{self.passed} passed, {self.failed} failed, {self.errors} errors "
            f"({total} scenarios, {self.seconds:.1f} s)"
        )


def table(results: Sequence[ReplayResult]) -> str:
    rows = [("RESULT", "SCENARIO", "SERVICE", "CARDS", "TIME")]
    for r in results:
        expected = len(r.fixture.expected_cards) if r.outcome is not Outcome.ERROR else None
        if r.cards is None:
            cards = "-"
        elif r.outcome is Outcome.FAIL:
            cards = f"{r.cards} (want {expected})"
        else:
            cards = str(r.cards)
        elapsed = f"{r.elapsed_ms:.0f} ms" if r.elapsed_ms else "-"
        rows.append((r.outcome.value.upper(), r.fixture.name, r.fixture.service, cards, elapsed))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def differences_report(results: Sequence[ReplayResult]) -> str:
    """What differs, per failing scenario: `-` golden card not returned, `+` card not expected."""
    blocks = []
    for r in results:
        if r.outcome is Outcome.FAIL and r.differences:
            lines = [f"{r.fixture.name} ({r.fixture.folder}):"]
            lines += [f"  - {describe_signature(s)}" for s in r.differences.missing]
            lines += [f"  + {describe_signature(s)}" for s in r.differences.unexpected]
            blocks.append("\n".join(lines))
        elif r.outcome is Outcome.ERROR:
            blocks.append(f"{r.fixture.name} ({r.fixture.folder}):\n  ! {r.message}")
    return "\n\n".join(blocks)
