"""GET /metrics (Prometheus text format) and the per-request measurements behind it."""

from __future__ import annotations

import time

from flask import Blueprint, Flask, Response, current_app, g, request

from cds_service import metrics
from cds_service.http.operator import OperatorAccess

blueprint = Blueprint("metrics", __name__)

_SERVICE_ENDPOINT = "services.call_service"


@blueprint.get("/metrics")
def scrape() -> Response:
    access: OperatorAccess = current_app.extensions["cds_operator_access"]
    refusal = access.refusal("/metrics")
    if refusal is not None:
        return refusal
    body, content_type = metrics.exposition(request.headers.get("Accept"))
    response = Response(body, content_type=content_type)
    response.headers["Cache-Control"] = "no-store"
    return response


def register_request_metrics(app: Flask, service_ids: frozenset[str]) -> None:
    """Count every answer by route and status; time CDS service calls by service and status.
    Route and service labels come from the app's own rules and services, never from the raw
    path, so that no caller can grow the number of series."""

    @app.after_request
    def _measure(response: Response) -> Response:
        started = g.get("started")
        seconds = time.perf_counter() - started if started is not None else 0.0
        rule = request.url_rule
        service = None
        if request.endpoint == _SERVICE_ENDPOINT and request.method == "POST":
            requested = (request.view_args or {}).get("service_id")
            service = requested if requested in service_ids else metrics.UNKNOWN_SERVICE
        metrics.observe_request(
            rule.rule if rule is not None else "unmatched",
            request.method if request.method in _METHODS else "other",
            response.status_code,
            seconds,
            service,
        )
        return response


_METHODS = frozenset({"GET", "POST", "OPTIONS", "HEAD", "PUT", "DELETE", "PATCH"})
