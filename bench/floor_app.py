"""A diagnostic, not a product: the real service with its guideline work replaced by a replay.

    python bench/floor_app.py --port 8092 --service back-pain-order-sign \
        --request realistic.json [--workers 2]

It runs `cds-service serve` itself (same gunicorn settings, logging, authentication and CORS
hooks, request parsing and validation, decision log, JSON answer), except that a hook call's
guideline work (gathering the data, the record view, the rules and the cards) is done once at
start for the one request given, and each call then answers those cards again under fresh
uuids. Its throughput is the most the service could reach on this machine if the guideline
work cost nothing: the floor of everything else a hook call pays for.

It answers only the request it was given; any other call gets the same cards. Never deploy it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from flask import Flask

import cds_service.app as app_module
from cds_service.cli import main as cli_main
from cds_service.ids import time_ordered_uuid
from cds_service.protocol.handler import HookHandler, HookOutcome
from cds_service.protocol.request import parse_hook_request


def replay_guideline_work(handler: HookHandler, service_id: str, document: dict[str, Any]) -> None:
    """Make `handler` answer every call with the outcome of `document`, computed now."""
    stored = handler.handle(service_id, document)
    if not stored.cards:
        raise SystemExit("floor_app: the request given gets no cards; nothing to replay")

    def replayed(
        called_service_id: str, called_document: dict[str, Any], *_options: Any, **_named: Any
    ) -> HookOutcome:
        request = parse_hook_request(called_document, handler.service(called_service_id))
        cards = []
        for card in stored.cards:
            uuid = time_ordered_uuid()
            cards.append(dataclasses.replace(card, uuid=uuid, json={**card.json, "uuid": uuid}))
        return dataclasses.replace(stored, request=request, cards=cards)

    handler.handle = replayed  # type: ignore[method-assign]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--request", type=Path, required=True, help="the hook request (JSON) to answer"
    )
    parser.add_argument("--service", required=True, help="the id of the service it calls")
    args = parser.parse_args()
    document = json.loads(args.request.read_text(encoding="utf-8"))
    real_create_app = app_module.create_app

    def create_app_replaying(*positional: Any, **named: Any) -> Flask:
        app = real_create_app(*positional, **named)
        handler = app.extensions["cds_runtime"].handler
        replay_guideline_work(handler, args.service, document)
        return app

    # `cds-service serve` builds its app through this function: everything else is unchanged.
    app_module.create_app = create_app_replaying
    serve = ["serve", "--host", "127.0.0.1", "--port", str(args.port)]
    return cli_main([*serve, "--workers", str(args.workers)])


if __name__ == "__main__":
    raise SystemExit(main())
