"""POST /cds-services/{id}/feedback: what the clinician did with the cards (CDS Hooks 2.0).

Answered only once the entries are stored: 200 with counts; 400 for a bad body, or for text
the store cannot hold (sending it again cannot help); 404 for an unknown service; 503 when the
store cannot take them just now, so the client can send them again.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, current_app, g, jsonify, request

from cds_service.http.errors import json_error
from cds_service.protocol.feedback import parse_feedback
from cds_service.protocol.request import parse_json_object
from cds_service.runtime import Runtime
from cds_service.store.database import StoreUnavailable, ValuesRefused
from cds_service.store.store import DecisionStore

log = logging.getLogger(__name__)
blueprint = Blueprint("feedback", __name__)
RETRY_AFTER_SECONDS = 5


@blueprint.post("/cds-services/<service_id>/feedback")
def receive_feedback(service_id: str) -> Response:
    runtime: Runtime = current_app.extensions["cds_runtime"]
    store: DecisionStore = current_app.extensions["cds_store"]
    g.service_id = service_id
    runtime.handler.service(service_id)  # unknown service: 404 before reading the body
    entries = parse_feedback(parse_json_object(request.get_data(cache=False)))
    try:
        receipt = store.record_feedback(service_id, entries)
    except StoreUnavailable as error:
        log.error(
            "feedback not stored: store unavailable",
            extra={"event": "feedback_store_unavailable", "reason": str(error)},
        )
        g.error = "feedback store unavailable"
        response = json_error(
            503,
            "The feedback could not be stored just now. Send it again later: an entry that "
            "reached the store anyway is stored once.",
            "transient",
        )
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    except ValuesRefused as error:
        log.warning(
            "feedback not stored: the store refused its values",
            extra={"event": "feedback_refused", "reason": str(error)},
        )
        g.error = "feedback values refused by the store"
        return json_error(
            400,
            "The feedback holds text the decision store cannot keep (such as a NUL character); "
            "nothing was kept.",
        )
    g.decision = (
        f"feedback: {receipt.stored} stored, {receipt.duplicates} already stored, "
        f"{receipt.unknown_cards} for cards not in the decision log"
    )
    return jsonify(
        {
            "received": receipt.received,
            "stored": receipt.stored,
            "alreadyStored": receipt.duplicates,
            "unknownCards": receipt.unknown_cards,
        }
    )
