"""`cds-service config check [FILE]`: check a site configuration file and print the
configuration it puts in force."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from cds_service.card_builder.content import ContentError
from cds_service.config import ConfigError, Settings
from cds_service.runtime import load_site_and_content
from cds_service.site.config import read_site_config
from cds_service.site.render import render_site
from cds_service.terminology.index import load_terminology

CHECK_DESCRIPTION = """\
Read a site configuration file (TOML; docs/operators.md, "Configure for your site",
examples/site.toml) and check it as `cds-service serve` does at start: unknown sections or keys,
wrong types, unknown topics or orders, thresholds out of range, snooze reasons a topic does not
offer.
Print the effective configuration: every value in force, defaults included, with the override
reasons each topic's cards offer and the codings of each suggested order. The output is itself
a valid site file. FILE defaults to $CDS_SITE_CONFIG; with neither, the defaults are printed.
Card content is read from $CDS_CARDS_DIR when set. Exit status 0 when the file is good, 2 with
a one-line reason when it is not.
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("config", help="site configuration: check a file")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    check = actions.add_parser(
        "check",
        help="check a site configuration file and print the effective configuration",
        description=CHECK_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument("file", nargs="?", metavar="FILE", help="default: $CDS_SITE_CONFIG")
    check.set_defaults(handler=run_check)


def run_check(args: argparse.Namespace) -> int:
    try:
        if args.file:
            # Only what the check needs from the environment: the file is the argument.
            environ = {k: v for k, v in os.environ.items() if k != "CDS_SITE_CONFIG"}
            settings = Settings.from_env(environ)
            config = read_site_config(args.file)
            site, content = load_site_and_content(config, settings.cards_dir)
        else:
            settings = Settings.from_env()
            site, content = load_site_and_content(settings.site, settings.cards_dir)
        builder = site.card_builder(content, load_terminology())
    except (ConfigError, ContentError) as error:
        reason = str(error)
        if args.file:  # the file was named here, not by the variable
            reason = reason.removeprefix("CDS_SITE_CONFIG: ")
        print(f"cds-service: {reason}", file=sys.stderr)
        return 2
    sys.stdout.write(render_site(site, builder.order_codes))
    return 0
