"""What the decision log and the feedback store cost a request, on SQLite and PostgreSQL.

    python bench/decision_log.py [--requests 300] [--postgres]

Measures, in-process through Flask's test client (no network):
  * a hook call answered with cards, with the decision log as built (queue + writer thread)
    and, for comparison, with a synchronous insert in the request;
  * DecisionLog.record() alone;
  * a feedback post (one entry), which is stored before the answer.
--postgres also runs each against a throw-away PostgreSQL server (tests/postgres_server.py).
Numbers depend on the machine; read them side by side, not as targets.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "tests"))

from cds_service.app import create_app  # noqa: E402
from cds_service.config import Settings  # noqa: E402
from cds_service.runtime import Runtime  # noqa: E402
from cds_service.store.decision_log import DecisionLog, IssuedCards  # noqa: E402
from cds_service.vocabulary import CardRecord  # noqa: E402

FIXTURE = PROJECT / "fhir_fixtures" / "opioid-tramadol-acute-low-back-pain" / "request.json"
SIGN = "/cds-services/back-pain-order-sign"


class NoLog(DecisionLog):
    """Baseline: the cards are not logged at all."""

    def record(self, issued: IssuedCards) -> None:
        return None


class SynchronousLog(DecisionLog):
    """The alternative design: write the cards inside the request."""

    def record(self, issued: IssuedCards) -> None:
        self.store.record_decisions(issued.records(datetime.now(UTC)))


def _timings(action: Callable[[int], None], count: int) -> list[float]:
    action(-1)  # warm-up: connections, schema, first compile
    samples = []
    for index in range(count):
        started = time.perf_counter()
        action(index)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def _line(label: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[int(len(ordered) * 0.95) - 1]
    return f"  {label:<44} median {statistics.median(ordered):7.3f} ms   p95 {p95:7.3f} ms"


def run(url: str, runtime: Runtime, count: int) -> None:
    settings = dataclasses.replace(runtime.settings, database_url=url)
    app = create_app(settings, runtime=runtime)
    client = app.test_client()
    request = json.loads(FIXTURE.read_text())
    queued: DecisionLog = app.extensions["cds_decision_log"]

    def hook(_: int) -> None:
        assert client.post(SIGN, json=request).status_code == 200

    print(f"{app.extensions['cds_store'].describe()}")
    app.extensions["cds_decision_log"] = NoLog(app.extensions["cds_store"])
    print(_line("hook call, no decision log (baseline)", _timings(hook, count)))
    app.extensions["cds_decision_log"] = queued
    print(_line("hook call, decision log queued (as built)", _timings(hook, count)))
    queued.flush(30)
    app.extensions["cds_decision_log"] = SynchronousLog(app.extensions["cds_store"])
    print(_line("hook call, synchronous insert (alternative)", _timings(hook, count)))
    app.extensions["cds_decision_log"] = queued

    cards = client.post(SIGN, json=request).get_json()["cards"]
    issued = IssuedCards(
        "back-pain-order-sign",
        "order-sign",
        "hi",
        "patient",
        [CardRecord.from_json(card) for card in cards],
        "v",
    )
    print(
        _line(
            "DecisionLog.record() alone (2 cards)", _timings(lambda _: queued.record(issued), count)
        )
    )
    queued.flush(30)

    def post_feedback(index: int) -> None:
        body = {
            "feedback": [
                {
                    "card": str(uuid.uuid4()),
                    "outcome": "overridden",
                    "outcomeTimestamp": "2026-11-22T10:00:00Z",
                }
            ]
        }
        assert client.post(f"{SIGN}/feedback", json=body).status_code == 200

    print(_line("feedback post, one entry (stored before 200)", _timings(post_feedback, count)))
    queued.close()
    app.extensions["cds_store"].dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()
    runtime = Runtime.load(Settings(evaluation_date=date(2026, 11, 22)))
    with tempfile.TemporaryDirectory() as folder:
        run(f"sqlite:///{folder}/bench.db", runtime, args.requests)
    if args.postgres:
        from postgres_server import start_postgres

        server = start_postgres()
        try:
            run(server.create_database(), runtime, args.requests)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
