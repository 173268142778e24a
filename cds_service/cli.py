"""The `cds-service` command. Each subcommand lives in its own module of `cds_service.commands`
and registers itself there, so new commands never touch this file.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from collections.abc import Sequence

from cds_service import __version__, commands
from cds_service.card_builder.content import ContentError
from cds_service.config_error import ConfigError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cds-service",
        description="CDS Hooks service for mid-back and low back musculoskeletal pain.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{module_info.name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except (ConfigError, ContentError) as error:
        # Any command reading the service's settings or card content says what is wrong in
        # one line, never a traceback.
        print(f"cds-service: configuration error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The output was piped into a reader that stopped early (e.g. `| head`): not our error.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
