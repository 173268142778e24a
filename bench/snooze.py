"""What the snooze look-up costs a hook call, on SQLite and PostgreSQL.

    python bench/snooze.py [--requests 300] [--patients 20000] [--postgres]

A store is filled first with a realistic history: `--patients` patients with three cards each
(a quarter of them overridden, a third of those with a reason the site marks as snoozing),
about 60,000 cards and 5,000 feedback entries for the default. Then, in-process through Flask's
test client (no network), the chronic-pain patient-view fixture (two info cards, one of a
snoozable topic) is answered for a patient of that history each time (a new hookInstance and a
patient id new to the service's caches), measured:

  * without snooze (the same site file without its [snooze] table): the baseline;
  * with snooze (the look-up runs on every call);
  * the look-up alone (StoreSnoozeCheck.snoozed_topics).

--postgres also runs each against a throw-away PostgreSQL server (tests/postgres_server.py).
Numbers depend on the machine; read them side by side (the ratio), not as targets.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import tomllib
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "tests"))

from decision_log import _line, _timings  # noqa: E402  (the same timing and line format)

from cds_service.app import create_app  # noqa: E402
from cds_service.config import Settings  # noqa: E402
from cds_service.protocol.feedback import FeedbackEntry, Outcome, OverrideReason  # noqa: E402
from cds_service.runtime import Runtime  # noqa: E402
from cds_service.site.config import parse_site_config  # noqa: E402
from cds_service.store.database import parse_database_url  # noqa: E402
from cds_service.store.snooze import StoreSnoozeCheck  # noqa: E402
from cds_service.store.store import DecisionRecord, DecisionStore  # noqa: E402

FIXTURE = PROJECT / "fhir_fixtures" / "patient-view-chronic-pain-16-weeks" / "request.json"
VIEW = "/cds-services/back-pain-patient-view"
REASONS = "http://example.org/fhir/back-pain-cds/CodeSystem/override-reason"
SECRET = "snooze-bench-secret-" + "b" * 32
REASONS_TABLE = """
[topics."exercise-therapy".override_reasons]
sets = ["hl7-non-adherence-clinical"]
"""
SNOOZE_TABLE = """
[topics."exercise-therapy".snooze]
days = 30
reasons = ["exercise-deferred", "action-completed"]
"""
TOPICS = ("exercise-therapy", "chronic-pain-assessment", "opioid-avoidance")


def _patient(index: int) -> str:
    return f"bench-patient-{index:06d}"


def fill(url: str, patients: int) -> None:
    """Cards of every patient over the last 60 days, and feedback for a quarter of them."""
    store = DecisionStore(parse_database_url(url), SECRET, operation_seconds=None)
    now = datetime.now(UTC)
    records, entries = [], []
    for index in range(patients):
        issued = now - timedelta(days=index % 60, minutes=index % 1440)
        for topic in TOPICS:
            card = str(uuid.uuid4())
            records.append(
                DecisionRecord(
                    card,
                    issued,
                    "back-pain-patient-view",
                    "patient-view",
                    str(uuid.uuid4()),
                    topic,
                    "info",
                    "bench",
                    (),
                    _patient(index),
                )
            )
            if topic == "exercise-therapy" and index % 4 == 0:
                code = "exercise-deferred" if index % 12 == 0 else "patient-declined-referral"
                entries.append(
                    FeedbackEntry(
                        card,
                        Outcome.OVERRIDDEN,
                        (),
                        OverrideReason(REASONS, code, None, None),
                        issued,
                    )
                )
    for start in range(0, len(records), 5000):
        store.record_decisions(records[start : start + 5000])
    for start in range(0, len(entries), 2000):
        store.record_feedback("back-pain-patient-view", entries[start : start + 2000])
    store.dispose()
    print(f"  filled: {len(records)} cards, {len(entries)} feedback entries, {patients} patients")


def measure(url: str, site_text: str, bodies: list[dict[str, object]], patients: int) -> float:
    """Answer `bodies` under the site file `site_text`; the median call in milliseconds."""
    site = parse_site_config(tomllib.loads(site_text), "bench.toml")
    settings = Settings(
        evaluation_date=date(2026, 11, 22), database_url=url, patient_key_secret=SECRET, site=site
    )
    app = create_app(settings, runtime=Runtime.load(settings))
    client = app.test_client()
    count = len(bodies) - 1

    def hook(index: int) -> None:
        assert client.post(VIEW, json=bodies[index + 1]).status_code == 200

    samples = _timings(hook, count)
    snoozing = bool(app.extensions["cds_runtime"].site.snooze)
    print(_line("hook call, snooze looked up" if snoozing else "hook call, no snooze", samples))
    if snoozing:
        check: StoreSnoozeCheck = app.extensions["cds_snooze_check"]
        rules = app.extensions["cds_runtime"].site.snooze
        lookups = _timings(
            lambda i: check.snoozed_topics(_patient((i * 104729) % patients), rules), count
        )
        print(_line("snooze look-up alone", lookups))
    app.extensions["cds_decision_log"].close()
    app.extensions["cds_store"].dispose()
    return statistics.median(samples)


def run(url: str, count: int, patients: int) -> None:
    fill(url, patients)
    template = FIXTURE.read_text()
    original = json.loads(template)["context"]["patientId"]

    def request(index: int) -> dict[str, object]:
        # A patient of the history, every call another one, and a new hookInstance.
        patient = _patient((index * 7919) % patients)
        document: dict[str, object] = json.loads(template.replace(original, patient))
        document["hookInstance"] = str(uuid.uuid4())
        return document

    baseline = measure(url, REASONS_TABLE, [request(i) for i in range(-1, count)], patients)
    snoozed = measure(
        url,
        REASONS_TABLE + SNOOZE_TABLE,
        [request(i) for i in range(count, 2 * count + 1)],
        patients,
    )
    print(f"  ratio with snooze / baseline (medians): {snoozed / baseline:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--patients", type=int, default=20000)
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        print("SQLite")
        run(f"sqlite:///{folder}/bench.db", args.requests, args.patients)
    if args.postgres:
        from postgres_server import start_postgres

        server = start_postgres()
        try:
            print("PostgreSQL")
            run(server.create_database(), args.requests, args.patients)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
