"""`cds-service validate FILE...`: CDS Hooks 2.0 shapes and the FHIR R4 resources inside."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from cds_service.tooling.validate import KINDS, check_file, check_text, describe

DESCRIPTION = """\
Check CDS Hooks 2.0 documents: service requests (with their prefetch and draft orders),
responses (cards and suggestion resources), discovery responses and feedback bodies. The kind
is detected from the document's members unless --kind names it. Every FHIR resource inside is
validated as FHIR R4 (fhir.resources R4B models); every problem names its JSON path, e.g.
$.prefetch.conditions.entry[2].resource.onsetDateTime. FILE '-' reads standard input.
Exit status: 0 no errors (warnings allowed unless --strict), 1 errors, 2 bad usage.
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "validate",
        help="check CDS Hooks requests, responses, discovery and feedback documents",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("files", nargs="+", metavar="FILE")
    parser.add_argument("--kind", choices=KINDS, help="what the files are (default: detect)")
    parser.add_argument(
        "--format", choices=("text", "json"), default="text", help="output (default text)"
    )
    parser.add_argument("--strict", action="store_true", help="warnings fail too")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    reports = []
    for name in args.files:
        if name == "-":
            reports.append(check_text(sys.stdin.read(), args.kind, "<stdin>"))
        else:
            reports.append(check_file(Path(name), args.kind))
    if args.format == "json":
        print(json.dumps([r.as_json() for r in reports], indent=2))
    else:
        print("\n".join(describe(r) for r in reports))
    failed = any(r.errors or (args.strict and r.warnings) for r in reports)
    return 1 if failed else 0
