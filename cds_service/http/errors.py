"""Every error leaves as JSON (an OperationOutcome) with the right status; never a stack trace."""

from __future__ import annotations

import logging

from flask import Flask, Response, g, jsonify
from werkzeug.exceptions import HTTPException

from cds_service.protocol.errors import CdsError, error_body, operation_outcome

log = logging.getLogger(__name__)

_HTTP_ISSUE_CODES = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    413: "too-long",
    415: "not-supported",
    429: "throttled",
}
_HTTP_MESSAGES = {
    404: "No such endpoint. Discovery is at GET /cds-services.",
    405: "This endpoint does not accept that HTTP method.",
    413: "The request body is larger than this service accepts.",
}


def json_error(status: int, message: str, issue_code: str = "invalid") -> Response:
    response = jsonify(operation_outcome(message, issue_code=issue_code))
    response.status_code = status
    return response


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(CdsError)
    def _cds_error(error: CdsError) -> Response:
        g.error = error.message
        response = jsonify(error_body(error))
        response.status_code = error.status
        return response

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        status = error.code or 500
        message = _HTTP_MESSAGES.get(status) or (error.description or error.name)
        response = json_error(status, message, _HTTP_ISSUE_CODES.get(status, "processing"))
        if status == 405 and error.valid_methods:  # type: ignore[attr-defined]
            response.headers["Allow"] = ", ".join(error.valid_methods)  # type: ignore[attr-defined]
        return response

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        log.exception(
            "unhandled error",
            extra={"event": "unhandled_error", "error_type": type(error).__name__},
        )
        return json_error(500, "The service failed to process the request.", "exception")
