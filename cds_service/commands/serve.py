"""`cds-service serve`: the production server, granian (WSGI), one worker process per core.

Chosen by measurement against gunicorn (sync and gthread) and uWSGI (docs/operators.md,
Performance): its HTTP layer, asynchronous and written in Rust, reads a request's headers
without holding a Python thread, so clients that send slowly never hold up the others and are
dropped after `HEADER_TIMEOUT_MS`; each worker runs hook calls on a pool of threads, so calls
waiting on an EHR's FHIR server do not hold up the others (the FHIR client bounds how many may
wait); and its per-request cost is a fraction of gunicorn's.

The application is loaded once, before the workers are forked (they share the terminology
copy-on-write). SIGTERM or SIGINT stops accepting, lets the calls in flight finish (for at most
`--timeout` seconds), writes each worker's queued decision log, then exits; SIGHUP replaces
the workers one after the other (a graceful restart); a worker that dies is replaced.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import socket
import sys
from collections.abc import Callable
from typing import Any

from cds_service.card_builder.content import ContentError
from cds_service.config import ConfigError, Settings
from cds_service.logs import configure_logging
from cds_service.performance import freeze_loaded_heap, limit_malloc_arenas

log = logging.getLogger(__name__)

# A client has this long to send its request headers; then its connection is closed.
HEADER_TIMEOUT_MS = 10_000
DEFAULT_THREADS = 32
CONNECTIONS_PER_WORKER = 1024


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("serve", help="start the production server")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port to bind (default 8080)")
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="worker processes (default: one per core)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=DEFAULT_THREADS,
        help=f"threads per worker that run hook calls (default {DEFAULT_THREADS})",
    )
    parser.add_argument(
        "--timeout",
        type=int,
        default=30,
        help="seconds the calls in flight get to finish when the server stops (default 30)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    for name, value in (("--workers", args.workers), ("--threads", args.threads)):
        if value < 1:
            print(f"cds-service: {name} must be at least 1", file=sys.stderr)
            return 2
    if not 0 < args.port < 65536:
        print("cds-service: --port must be between 1 and 65535", file=sys.stderr)
        return 2
    try:
        settings = Settings.from_env()
        if settings.fhir_deadline_seconds >= args.timeout:
            # A call waiting on the FHIR server could not finish in a graceful stop.
            raise ConfigError(
                f"CDS_FHIR_DEADLINE_SECONDS ({settings.fhir_deadline_seconds:g}) must be "
                f"shorter than --timeout ({args.timeout})"
            )
        if settings.fhir_max_calls >= args.threads:
            # Calls waiting on FHIR servers must never take every thread of a worker.
            raise ConfigError(
                f"CDS_FHIR_MAX_CALLS ({settings.fhir_max_calls}) must be smaller than "
                f"--threads ({args.threads})"
            )
    except ConfigError as error:
        print(f"cds-service: configuration error: {error}", file=sys.stderr)
        return 2
    problem = address_problem(args.host, args.port)
    if problem:
        print(f"cds-service: cannot listen on {args.host}:{args.port}: {problem}", file=sys.stderr)
        return 2
    try:
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
            "threads": args.threads,
        },
    )
    freeze_loaded_heap()
    limit_malloc_arenas()
    granian_server(
        app,
        host=args.host,
        port=args.port,
        workers=args.workers,
        threads=args.threads,
        stop_timeout=args.timeout,
        log_format=settings.log_format,
        # Write the cards still queued for the decision log before a worker exits.
        on_worker_exit=decision_log.close,
    )
    return 0


def address_problem(host: str, port: int) -> str:
    """Why the server could not listen on host:port (in use, no such address), or ""."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            # As a server binds (TIME_WAIT leftovers do not count), but without SO_REUSEPORT:
            # a port another server shares that way is in use too.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as error:
        return (error.strerror or str(error)).lower()
    return ""


class _ExpectedThreads(logging.Filter):
    """granian warns that many threads per core are a lot for CPU-bound work; here most of
    them wait on FHIR servers, by design (see `run`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Python threads" not in record.getMessage()


def _log_config(log_format: str) -> dict[str, Any]:
    """granian's own log lines in the service's format, on stderr."""
    formatter = "JsonFormatter" if log_format == "json" else "TextFormatter"
    handler = {
        "class": "logging.StreamHandler",
        "formatter": "service",
        "stream": "ext://sys.stderr",
        "filters": ["expected_threads"],
    }
    return {
        "formatters": {"service": {"()": f"cds_service.logs.{formatter}"}},
        "filters": {"expected_threads": {"()": f"{__name__}._ExpectedThreads"}},
        "handlers": {"service": handler},
        "loggers": {
            "_granian": {"handlers": ["service"], "level": "INFO", "propagate": False},
            "granian.access": {"handlers": ["service"], "level": "WARNING", "propagate": False},
        },
    }


def granian_server(
    app: Any,
    *,
    host: str,
    port: int,
    workers: int,
    threads: int,
    stop_timeout: int,
    log_format: str,
    on_worker_exit: Callable[[], None],
) -> None:
    """Serve `app` (already loaded) with granian's WSGI workers until stopped."""
    from granian.constants import HTTPModes, Interfaces
    from granian.http import HTTP1Settings
    from granian.server import MPServer

    def worker(*arguments: Any) -> None:
        try:
            # granian's own WSGI worker (not public API, hence granian < 3 in pyproject.toml;
            # tests/test_serve_stress.py fails if it changes): returns once the calls in
            # flight are done.
            MPServer._spawn_wsgi_worker(*arguments)
        finally:
            on_worker_exit()

    # The workers must be forked from this process, where the application is loaded (granian
    # takes the default start method, which Python 3.14 no longer makes "fork" on Linux).
    multiprocessing.set_start_method("fork", force=True)

    server = MPServer(
        "cds_service.wsgi:app",  # a name for granian's logs: the loaded `app` is what runs
        address=host,
        port=port,
        interface=Interfaces.WSGI,
        workers=workers,
        blocking_threads=threads,
        # Connections a worker serves at once (granian's "backpressure", its default share of
        # the backlog): idle and slow connections count, so it is far above the threads.
        backlog=CONNECTIONS_PER_WORKER * workers,
        http=HTTPModes.http1,
        websockets=False,
        http1_settings=HTTP1Settings(header_read_timeout=HEADER_TIMEOUT_MS),
        log_dictconfig=_log_config(log_format),
        log_access=False,
        respawn_failed_workers=True,
        respawn_interval=1.0,
        workers_kill_timeout=stop_timeout,
    )
    server.serve(spawn_target=worker, target_loader=lambda: app, wrap_loader=False)
