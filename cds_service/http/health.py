"""GET /health: 200 once this worker has loaded terminology and card content."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from cds_service.runtime import Runtime

blueprint = Blueprint("health", __name__)


@blueprint.get("/health")
def health() -> Response:
    runtime: Runtime = current_app.extensions["cds_runtime"]
    return jsonify(
        {
            "status": "ok",
            "services": len(runtime.services),
            "valueSets": len(runtime.terminology.value_set_ids),
            "codes": runtime.terminology.code_count,
            "cardTopics": len(runtime.content.topics),
        }
    )
