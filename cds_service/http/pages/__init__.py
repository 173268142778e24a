"""Pages for people: the card preview (/preview) and the decision dashboard (/dashboard).

Served entirely by the service: templates and assets are package data, nothing is loaded from
another host, and every page is sent with a Content-Security-Policy that lets the browser
fetch only from this service and run only its script files (no inline script or style).
"""

from __future__ import annotations

from flask import Blueprint, Response

# Templates and /assets/<file> (stylesheet, preview script) for both pages.
blueprint = Blueprint(
    "pages",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/assets",
)

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


@blueprint.after_app_request
def _page_headers(response: Response) -> Response:
    if response.mimetype in ("text/html", "text/css", "text/javascript", "application/javascript"):
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers.setdefault("Cache-Control", "no-store")
    return response
