"""`cds-service purge --older-than DAYS`: retention for the decision store.

Deletes card decisions issued, and feedback received, more than DAYS days ago, and says how
many rows it deleted (or, with --dry-run, would delete).
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from cds_service.config import Settings
from cds_service.store.database import StoreUnavailable, parse_database_url
from cds_service.store.retention import purge
from cds_service.store.store import open_existing_store


def _days(value: str) -> int:
    try:
        days = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a whole number of days") from None
    if days < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return days


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "purge",
        help="delete card decisions and feedback older than DAYS days",
        description="Retention: delete card decisions issued and feedback received more "
        "than DAYS days ago from the decision store named by CDS_DATABASE_URL.",
    )
    parser.add_argument("--older-than", type=_days, required=True, metavar="DAYS")
    parser.add_argument(
        "--dry-run", action="store_true", help="count what would be deleted; delete nothing"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    cutoff = datetime.now(UTC) - timedelta(days=args.older_than)
    try:
        store = open_existing_store(
            parse_database_url(settings.database_url), settings.patient_key_secret
        )
        try:
            result = purge(store, cutoff, dry_run=args.dry_run)
        finally:
            store.dispose()
    except StoreUnavailable as error:
        print(f"cds-service: cannot purge the decision store: {error}", file=sys.stderr)
        return 1
    verb = "Would delete" if result.dry_run else "Deleted"
    decisions = "card decision" if result.card_decisions == 1 else "card decisions"
    entries = "feedback entry" if result.feedback_entries == 1 else "feedback entries"
    print(
        f"{verb} {result.card_decisions} {decisions} issued and {result.feedback_entries} "
        f"{entries} received before {cutoff:%Y-%m-%d %H:%M} UTC "
        f"(older than {args.older_than} days). Store: {store.describe()}"
    )
    return 0
