"""`cds-service fixtures load|list`: put the fixture library on a FHIR server, or list it."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from cds_service.config import Settings
from cds_service.tooling.library import FixtureError, discover
from cds_service.tooling.loader import FhirLoader, LoadError, load_all, table
from cds_service.tooling.progress import Progress
from cds_service.tooling.remote import UsageError, base_url, parse_headers
from cds_service.tooling.replay import InProcessTarget
from cds_service.tooling.review import review_sheet

DEFAULT_PATH = Path("fhir_fixtures")

LOAD_DESCRIPTION = """\
POST each scenario's bundle.json (a FHIR R4 transaction of PUTs with stable ids) to the FHIR
server at --fhir-url, e.g. http://localhost:8090/fhir. Loading again updates in place. Every
full date and dateTime moves by (today - evaluationDate) days first, so a service running with
today's real date sees each scenario as written; --no-date-shift loads the dates unchanged (for
a service running with CDS_EVALUATION_DATE set to the fixtures' date). PATH defaults to
fhir_fixtures/ in the current folder. Exit status: 0 all loaded, 1 a failure, 2 bad usage.
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "fixtures", help="load the fixture library into a FHIR server, or list it"
    )
    actions = parser.add_subparsers(dest="fixtures_action", metavar="ACTION", required=True)

    load = actions.add_parser(
        "load",
        help="load fixture Bundles into a FHIR server",
        description=LOAD_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    load.add_argument("paths", nargs="*", type=Path, metavar="PATH")
    load.add_argument("--fhir-url", required=True, help="base URL of the FHIR R4 server")
    shift = load.add_mutually_exclusive_group()
    shift.add_argument("--no-date-shift", action="store_true", help="load dates unchanged")
    shift.add_argument(
        "--today",
        type=date.fromisoformat,
        metavar="YYYY-MM-DD",
        help="shift dates to this day instead of today's UTC date",
    )
    load.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait up to this long for GET [base]/metadata to answer 200 before loading",
    )
    load.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="extra HTTP header (repeatable), e.g. 'Authorization: Bearer ...'",
    )
    load.add_argument(
        "--timeout", type=float, default=30.0, help="seconds per transaction (default 30)"
    )
    load.add_argument("--no-progress", action="store_true", help="no progress counter on stderr")
    load.set_defaults(handler=run_load)

    review = actions.add_parser(
        "review",
        help="write a review sheet of every scenario's cards (markdown)",
        description="Run each scenario through the service in this process (a throwaway "
        "decision store) and write every card as a clinician sees it: indicator, summary, "
        "detail, suggestions, links, override reasons, with the length budget checked. Exit "
        "status 1 when a card is past the hard limits (summary 139, detail 700 characters).",
    )
    review.add_argument("paths", nargs="*", type=Path, metavar="PATH")
    review.add_argument("--out", type=Path, help="file to write (default: standard output)")
    review.set_defaults(handler=run_review)

    listing = actions.add_parser("list", help="list the scenarios and their patient ids")
    listing.add_argument("paths", nargs="*", type=Path, metavar="PATH")
    listing.set_defaults(handler=run_list)


def _fixtures(paths: list[Path]) -> list[Any]:
    if not paths and not DEFAULT_PATH.is_dir():
        raise FixtureError(
            f"no {DEFAULT_PATH}/ folder here: run from the project folder or name the folder"
        )
    return discover(paths or [DEFAULT_PATH])


def run_load(args: argparse.Namespace) -> int:
    try:
        fixtures = _fixtures(args.paths)
        today = None if args.no_date_shift else (args.today or datetime.now(UTC).date())
        loader = FhirLoader(
            base_url(args.fhir_url),
            today=today,
            timeout=args.timeout,
            headers=parse_headers(args.header),
        )
    except (FixtureError, UsageError) as error:
        print(f"cds-service fixtures load: {error}", file=sys.stderr)
        return 2
    if args.wait > 0:
        try:
            loader.wait_until_ready(args.wait)
        except LoadError as error:
            print(f"cds-service fixtures load: {error.message}", file=sys.stderr)
            return 1

    progress = Progress(len(fixtures), "loading", enabled=False if args.no_progress else None)
    started = time.perf_counter()
    try:
        results = load_all(fixtures, loader, lambda done, f: progress.update(done, f.name))
    finally:
        progress.close()
    seconds = time.perf_counter() - started

    shift = f"dates shifted to today = {today}" if today else "dates unchanged"
    print(f"Loading {len(fixtures)} scenarios into {loader.base_url} ({shift})\n")
    print(table(results))
    loaded = [r for r in results if r.ok]
    failed = len(results) - len(loaded)
    resources = sum(r.resources for r in loaded)
    print(f"\n{len(loaded)} loaded, {failed} failed ({resources} resources, {seconds:.1f} s)")
    return 0 if failed == 0 else 1


def run_list(args: argparse.Namespace) -> int:
    try:
        fixtures = _fixtures(args.paths)
    except FixtureError as error:
        print(f"cds-service fixtures list: {error}", file=sys.stderr)
        return 2
    rows = [("SCENARIO", "HOOK", "PATIENT", "EXPECTED CARDS")]
    for fixture in fixtures:
        try:
            topics = ", ".join(c.get("topic", "?") for c in fixture.expected_cards) or "none"
        except FixtureError:
            topics = "(unreadable expected.json)"
        rows.append((fixture.name, fixture.hook, fixture.patient_id or "-", topics))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True)), row[3])
    return 0


def run_review(args: argparse.Namespace) -> int:
    try:
        fixtures = _fixtures(args.paths)
    except FixtureError as error:
        print(f"cds-service fixtures review: {error}", file=sys.stderr)
        return 2
    from cds_service.app import create_app

    # Reviewing never writes the fixture cards into the real decision store: the in-process
    # service logs them in a throwaway one.
    target = InProcessTarget(create_app, Settings.from_env())
    try:
        sheet, over = review_sheet(fixtures, target)
    finally:
        target.close()
    if args.out:
        args.out.write_text(sheet, encoding="utf-8")
        print(f"wrote {args.out} ({len(fixtures)} scenarios)", file=sys.stderr)
    else:
        sys.stdout.write(sheet)
    for problem in over:
        print(f"over budget: {problem}", file=sys.stderr)
    return 1 if over else 0
