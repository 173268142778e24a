"""GET /cds-services: what this server offers."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from cds_service.runtime import Runtime

blueprint = Blueprint("discovery", __name__)


@blueprint.get("/cds-services")
def discovery() -> Response:
    runtime: Runtime = current_app.extensions["cds_runtime"]
    return jsonify({"services": [service.discovery_entry() for service in runtime.services]})
