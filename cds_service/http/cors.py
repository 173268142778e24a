"""CORS for browser-based CDS clients such as the public CDS Hooks sandbox.

Preflights are answered here, before authentication and routing, so they never need a JWT
and work for every path (including endpoints added later, such as feedback). Every other
response, errors included, carries the CORS headers: without them a browser hides a 401 or
412 from the calling page and shows only a network failure. Credentials (cookies) are never
allowed, so `*` is never combined with them.
"""

from __future__ import annotations

from collections.abc import Sequence

from flask import Flask, Response, request

ALLOWED_METHODS = "GET, POST, OPTIONS"
ALLOWED_HEADERS = "Authorization, Content-Type, X-Request-ID"
EXPOSED_HEADERS = "X-Request-ID, WWW-Authenticate"
PREFLIGHT_MAX_AGE_SECONDS = 600


class OriginPolicy:
    def __init__(self, origins: Sequence[str]) -> None:
        self.any_origin = tuple(origins) == ("*",)
        self._origins = frozenset(origin.lower() for origin in origins)

    def allow_origin(self, origin: str | None) -> str | None:
        """The Access-Control-Allow-Origin value for a request's Origin, or None to refuse."""
        if not origin:
            return None
        if self.any_origin:
            return "*"
        return origin if origin.lower() in self._origins else None


def _is_preflight() -> bool:
    return request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers


def register_cors(app: Flask, origins: Sequence[str]) -> None:
    policy = OriginPolicy(origins)

    @app.before_request
    def _answer_preflight() -> Response | None:
        if not _is_preflight():
            return None
        response = Response(status=204)
        if policy.allow_origin(request.headers.get("Origin")) is not None:
            response.headers["Access-Control-Allow-Methods"] = ALLOWED_METHODS
            response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
            response.headers["Access-Control-Max-Age"] = str(PREFLIGHT_MAX_AGE_SECONDS)
            # Chrome's Private Network Access: a public page (the https sandbox) calling a
            # service on localhost or a private address must be allowed to explicitly.
            private_network = request.headers.get("Access-Control-Request-Private-Network", "")
            if private_network.lower() == "true":
                response.headers["Access-Control-Allow-Private-Network"] = "true"
        return response

    @app.after_request
    def _add_cors_headers(response: Response) -> Response:
        if not policy.any_origin:
            # The answer differs by Origin: shared caches must not reuse it across origins.
            response.vary.add("Origin")
        allowed = policy.allow_origin(request.headers.get("Origin"))
        if allowed is not None:
            response.headers["Access-Control-Allow-Origin"] = allowed
            if not _is_preflight():
                response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
        return response
