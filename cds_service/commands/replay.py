"""`cds-service replay PATH... [--url URL]`: fixtures in, golden cards compared, pass/fail out."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from cds_service.config import ConfigError
from cds_service.store.database import parse_database_url
from cds_service.tooling.library import Fixture, FixtureError, discover
from cds_service.tooling.progress import Progress
from cds_service.tooling.remote import UsageError, base_url, parse_headers
from cds_service.tooling.replay import (
    HttpTarget,
    InProcessTarget,
    Summary,
    Target,
    differences_report,
    replay,
    table,
)

DESCRIPTION = """\
Send each fixture's request to the service and compare the cards with its golden cards
(topic, indicator and suggestion actions; never uuids or wording). PATH is a scenario folder
or a folder of them, e.g. fhir_fixtures/. Without --url the service runs in this process with
"today" pinned to each fixture's evaluationDate, and logs its cards in a throwaway decision
store (never the one CDS_DATABASE_URL names) unless --store names one. With --url every full
date and dateTime in the request (birthDate included) is first moved by (today -
evaluationDate) days, so that a service running with today's real date sees the scenario as
written; use --no-date-shift when the service runs with CDS_EVALUATION_DATE set to the
fixtures' date, or --today DATE when it pins another date. Exit status: 0 all passed, 1 a
difference or error, 2 bad usage.
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "replay",
        help="replay fixture requests and compare the cards with the golden ones",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    parser.add_argument(
        "--url",
        help="base URL of a running service, e.g. http://127.0.0.1:8080 (default: in-process)",
    )
    shift = parser.add_mutually_exclusive_group()
    shift.add_argument(
        "--no-date-shift",
        action="store_true",
        help="send the fixtures' dates unchanged (the service runs with CDS_EVALUATION_DATE)",
    )
    shift.add_argument(
        "--today",
        type=date.fromisoformat,
        metavar="YYYY-MM-DD",
        help="the date the service takes as today (default: today's UTC date)",
    )
    parser.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="extra HTTP header for --url (repeatable), e.g. for a gateway's API key",
    )
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="seconds per request with --url (default 10)"
    )
    parser.add_argument(
        "--store",
        metavar="URL",
        help="in process: the decision store to log the replayed cards in, e.g. "
        "sqlite:////tmp/replay.db (default: a throwaway store)",
    )
    parser.add_argument(
        "--format", choices=("table", "json"), default="table", help="output (default table)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress counter on stderr")
    parser.set_defaults(handler=run)


def _target(args: argparse.Namespace) -> Target:
    if args.url is None:
        if args.no_date_shift or args.today or args.header:
            raise UsageError("--no-date-shift, --today and --header only apply with --url")
        store = None
        if args.store is not None:
            try:
                store = parse_database_url(args.store).render_as_string(hide_password=False)
            except ValueError as error:  # the reason never repeats the URL (a password)
                raise UsageError(f"--store {error}") from None
        from cds_service.app import create_app

        return InProcessTarget(create_app, store_url=store)
    if args.store is not None:
        raise UsageError("--store only applies in process (without --url)")
    today = None if args.no_date_shift else (args.today or datetime.now(UTC).date())
    return HttpTarget(
        base_url(args.url, strip_suffix="/cds-services"),
        today=today,
        timeout=args.timeout,
        headers=parse_headers(args.header),
    )


def run(args: argparse.Namespace) -> int:
    try:
        fixtures = discover(args.paths)
        target = _target(args)
    except (FixtureError, UsageError, ConfigError) as error:
        print(f"cds-service replay: {error}", file=sys.stderr)
        return 2
    if args.url is None:
        # The in-process service logs like a server; a replay report is what matters here.
        logging.getLogger("cds_service").setLevel(logging.ERROR)

    progress = Progress(len(fixtures), "replaying", enabled=False if args.no_progress else None)
    started = time.perf_counter()
    try:
        results = replay(fixtures, target, lambda done, f: progress.update(done, f.name))
    finally:
        progress.close()
        if isinstance(target, InProcessTarget):
            target.close()
    summary = Summary.of(results, time.perf_counter() - started)

    if args.format == "json":
        document = {
            "target": target.description,
            "passed": summary.passed,
            "failed": summary.failed,
            "errors": summary.errors,
            "results": [r.as_json() for r in results],
        }
        print(json.dumps(document, indent=2))
    else:
        print(f"Replaying {len(fixtures)} scenarios against {_describe(target, fixtures)}\n")
        print(table(results))
        details = differences_report(results)
        if details:
            print("\nDetails (- golden card not returned, + card not expected, ! error):\n")
            print(details)
        print("\n" + summary.line())
    return 0 if summary.ok else 1


def _describe(target: Target, fixtures: list[Fixture]) -> str:
    if isinstance(target, HttpTarget):
        today = target.today
        shift = f"dates shifted to today = {today}" if today else "dates unchanged"
        return f"{target.description} ({shift})"
    dates = sorted({f.evaluation_date.isoformat() for f in fixtures})
    return f"the {target.description} (today pinned to {', '.join(dates)})"
