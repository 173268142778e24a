"""`cds-service serve`: the production server (gunicorn, sync workers, one per core)."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

from cds_service.card_builder.content import ContentError
from cds_service.config import ConfigError, Settings
from cds_service.logs import configure_logging

log = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("serve", help="start the production server")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port to bind (default 8080)")
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="sync worker processes (default: one per core)",
    )
    parser.add_argument("--timeout", type=int, default=30, help="worker timeout in seconds")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.workers < 1:
        print("cds-service: --workers must be at least 1", file=sys.stderr)
        return 2
    if not 0 < args.port < 65536:
        print("cds-service: --port must be between 1 and 65535", file=sys.stderr)
        return 2
    try:
        settings = Settings.from_env()
        if settings.fhir_deadline_seconds >= args.timeout:
            # gunicorn would kill a worker still waiting on the FHIR server.
            raise ConfigError(
                f"CDS_FHIR_DEADLINE_SECONDS ({settings.fhir_deadline_seconds:g}) must be "
                f"shorter than --timeout ({args.timeout})"
            )
        configure_logging(settings.log_level, settings.log_format)
        from cds_service import metrics
        from cds_service.app import check_store, create_app, prepare_store

        check_store(settings)  # a store that cannot be opened stops here, in one line
        # Before the workers fork: the metrics folder is this server's, emptied at start.
        metrics.enable(settings.metrics_dir, server_start=True)

        # Loaded before forking: a bad configuration stops here with one line, and the
        # workers share the loaded terminology copy-on-write.
        app = create_app(settings)
    except (ConfigError, ContentError, OSError) as error:
        print(f"cds-service: configuration error: {error}", file=sys.stderr)
        return 2
    prepare_store(app)
    decision_log = app.extensions["cds_decision_log"]
    # What is loaded now lives as long as the server: keep it out of the garbage collector's
    # scans in every worker (and so off the pages each worker would otherwise copy).
    gc.freeze()
    server = gunicorn_server(
        app,
        bind=f"{args.host}:{args.port}",
        workers=args.workers,
        timeout=args.timeout,
        # Write the cards still queued for the decision log before a worker exits.
        worker_exit=lambda _arbiter, _worker: decision_log.close(),
    )
    if settings.evaluation_date:
        log.warning(
            "CDS_EVALUATION_DATE pins today's date; use only for tests and fixture replays",
            extra={"event": "evaluation_date_pinned"},
        )
    if not settings.patient_key_secret:
        log.warning(
            "CDS_PATIENT_KEY_SECRET is not set: patient pseudonyms use a key generated and kept "
            "in the decision store; set a secret kept outside the store in production",
            extra={"event": "patient_key_from_store"},
        )
    log.info(
        "starting server",
        extra={
            "event": "server_start",
            "bind": f"{args.host}:{args.port}",
            "workers": args.workers,
        },
    )
    server.run()
    return 0


def gunicorn_server(
    app: Any,
    *,
    bind: str,
    workers: int,
    timeout: int,
    proc_name: str = "cds-service",
    worker_exit: Callable[[Any, Any], None] | None = None,
) -> Any:
    """gunicorn with sync workers and the app loaded before forking (bench/ runs its bare
    Flask baseline with these very settings)."""
    from gunicorn.app.base import BaseApplication

    class _Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            self.cfg.set("bind", bind)
            self.cfg.set("workers", workers)
            self.cfg.set("worker_class", "sync")
            self.cfg.set("timeout", timeout)
            self.cfg.set("graceful_timeout", 10)
            self.cfg.set("preload_app", True)
            self.cfg.set("accesslog", None)
            self.cfg.set("errorlog", "-")
            self.cfg.set("proc_name", proc_name)
            if worker_exit is not None:
                self.cfg.set("worker_exit", worker_exit)

        def load(self) -> Any:
            return app

    return _Server()
