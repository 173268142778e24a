"""The Flask application factory: wiring only, no clinical logic."""

from __future__ import annotations

import logging
import os
import re
import time

from flask import Flask, Response, g, request

from cds_service import metrics
from cds_service.config import ConfigError, Settings
from cds_service.http import discovery, feedback, health, openapi, services
from cds_service.http import metrics as metrics_endpoint
from cds_service.http.auth import Authenticator, register_authentication
from cds_service.http.body import BoundedRequest
from cds_service.http.collector import register_collector_pause
from cds_service.http.cors import register_cors
from cds_service.http.errors import register_error_handlers
from cds_service.http.json_provider import OrjsonProvider
from cds_service.http.metrics import register_request_metrics
from cds_service.http.operator import OperatorAccess
from cds_service.http.pages import blueprint as pages_blueprint
from cds_service.http.pages import dashboard, guidance
from cds_service.http.pages.preview import register_preview
from cds_service.ids import request_id as new_request_id
from cds_service.runtime import Runtime
from cds_service.store.database import StoreUnavailable, parse_database_url
from cds_service.store.decision_log import DecisionLog
from cds_service.store.snooze import StoreSnoozeCheck
from cds_service.store.spool import Spool, default_spool_folder, import_spool
from cds_service.store.store import DecisionStore, start_up_problem

log = logging.getLogger("cds_service.requests")
store_log = logging.getLogger("cds_service.store")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def create_app(
    settings: Settings | None = None,
    runtime: Runtime | None = None,
    authenticator: Authenticator | None = None,
) -> Flask:
    settings = settings or Settings.from_env()
    runtime = runtime or Runtime.load(settings)
    # No connection is made here: engines are per process, made on first use after fork.
    url = parse_database_url(settings.database_url)
    store = DecisionStore(url, settings.patient_key_secret)
    authenticator = authenticator or Authenticator.from_settings(settings, store)
    _enable_metrics(settings)
    app = Flask("cds_service")
    app.request_class = BoundedRequest
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    # Errors are always answered by our JSON handlers, also under FLASK_DEBUG or TESTING.
    app.config["PROPAGATE_EXCEPTIONS"] = False
    app.config["TRAP_HTTP_EXCEPTIONS"] = False
    app.config["TRAP_BAD_REQUEST_ERRORS"] = False
    app.json = OrjsonProvider(app)
    # Werkzeug would answer a path with doubled slashes by an HTML redirect; no route has one.
    app.url_map.merge_slashes = False
    app.extensions["cds_runtime"] = runtime
    # Suggestion shapes for callers whose trusted-clients entry names no profile.
    app.extensions["cds_client_profile"] = settings.client_profile
    # Base URL of the links cards carry; None: each request's own (development mode).
    app.extensions["cds_public_url"] = settings.public_url
    spool = Spool(settings.spool_dir or default_spool_folder(url), url, settings.spool_max_bytes)
    app.extensions["cds_store"] = store
    app.extensions["cds_decision_log"] = DecisionLog(
        store, queue_size=settings.decision_queue_size, spool=spool
    )
    # Snoozes are read from the same store, bounded (store/snooze.py).
    app.extensions["cds_snooze_check"] = StoreSnoozeCheck(store)
    app.extensions["cds_operator_access"] = OperatorAccess.from_settings(settings)
    for module in (
        discovery,
        services,
        feedback,
        health,
        openapi,
        metrics_endpoint,
        dashboard,
        guidance,
    ):
        app.register_blueprint(module.blueprint)
    app.register_blueprint(pages_blueprint)
    register_preview(app, settings)
    register_error_handlers(app)
    register_collector_pause(app)
    # Order matters: the request log starts first, preflights are answered before
    # authentication, and authentication runs before any route reads the body.
    _register_request_log(app)
    register_request_metrics(app, frozenset(service.id for service in runtime.services))
    register_cors(app, settings.cors_origins)
    register_authentication(app, authenticator)
    return app


def _enable_metrics(settings: Settings) -> None:
    """Metrics are never a reason not to serve: a failure is logged and the service runs."""
    try:
        metrics.enable(settings.metrics_dir)
    except (OSError, metrics.MetricsUnavailable) as error:
        log.error(
            "metrics unavailable",
            extra={"event": "metrics_unavailable", "reason": str(error)},
        )


def check_store(settings: Settings) -> None:
    """Refuse (ConfigError, one line) a store the service cannot work with until an operator
    acts: a SQLite file in a folder that does not exist, or that cannot be opened and written;
    a schema from a newer release. A PostgreSQL server that is down passes: the service starts,
    serves cards, and uses the store once it is back. Run before the server starts."""
    store = DecisionStore(parse_database_url(settings.database_url), settings.patient_key_secret)
    try:
        store.ensure_ready()
    except StoreUnavailable as error:
        problem = start_up_problem(store, error)
        if problem is not None:
            raise ConfigError(f"CDS_DATABASE_URL: {problem}") from None
    finally:
        store.dispose()


def prepare_store(app: Flask) -> bool:
    """Create or migrate the store schema at start and write the spool of a previous run to
    it, then close the connections (workers fork after this). A store that is down does not
    stop the service: cards still go out, and the schema is made (and the spool written) when
    the store is first reachable. True when the store is ready.

    A store that cannot work without an operator's help is refused before, by check_store.
    """
    store: DecisionStore = app.extensions["cds_store"]
    decision_log: DecisionLog = app.extensions["cds_decision_log"]
    try:
        store.ensure_ready()
        import_spool(decision_log.spool, store)
    except StoreUnavailable as error:
        store_log.error(
            "decision store unavailable at start; cards are served and writes will be retried",
            extra={"event": "store_unavailable", "reason": str(error), "store": store.describe()},
        )
        return False
    finally:
        store.dispose()
    store_log.info(
        "decision store ready", extra={"event": "store_ready", "store": store.describe()}
    )
    return True


def _register_request_log(app: Flask) -> None:
    @app.before_request
    def _start() -> None:
        g.started = time.perf_counter()
        supplied = request.headers.get("X-Request-ID", "")
        g.request_id = supplied if _REQUEST_ID.match(supplied) else new_request_id()

    @app.after_request
    def _finish(response: Response) -> Response:
        response.headers["X-Request-ID"] = g.get("request_id", "")
        fields = {
            "event": "request",
            "request_id": g.get("request_id"),
            "method": request.method,
            "path": request.path,
            "status": response.status_code,
            "pid": os.getpid(),
            "duration_ms": round(
                (time.perf_counter() - g.get("started", time.perf_counter())) * 1000, 2
            ),
        }
        for key in (
            "service_id",
            "hook_instance",
            "decision",
            "profile",
            "topics",
            "silent_topics",
            "snoozed_topics",
            "fetched",
            "missing",
            "error",
            "issuer",
            "tenant",
            "jti",
            "auth_error",
            "claimed_issuer",
        ):
            value = g.get(key)
            if value is not None:
                fields[key] = value
        log.info("request", extra=fields)
        return response
