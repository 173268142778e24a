"""Who may open the operator pages (/dashboard, /metrics, and /preview when it is protected).

In development mode (no trusted clients) they are open, unless CDS_ADMIN_TOKEN is set. With
trusted clients configured they need CDS_ADMIN_TOKEN, sent as `Authorization: Bearer <token>`
(Prometheus, curl) or as the password of HTTP Basic (a browser asks for it; any user name);
without the setting they are closed. The EHR's JWT never opens them: only the operator token
is compared, in constant time, and never logged.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass, field

from flask import Response, g, request

from cds_service.config import Settings
from cds_service.http.errors import json_error

REALM = "cds-service operator"


@dataclass(frozen=True)
class OperatorAccess:
    token: str | None = field(repr=False)
    # With trusted clients configured, the pages need a token and are closed without one.
    token_required: bool

    @classmethod
    def from_settings(cls, settings: Settings) -> OperatorAccess:
        return cls(settings.admin_token, token_required=not settings.development_mode)

    def refusal(self, page: str) -> Response | None:
        """None when this request may see `page`; else the answer to send."""
        if self.token is None:
            if not self.token_required:
                return None
            g.auth_error = "operator pages closed: no CDS_ADMIN_TOKEN"
            return json_error(
                403,
                f"{page} needs CDS_ADMIN_TOKEN to be set on the service when trusted clients "
                "are configured.",
                "forbidden",
            )
        presented = _presented_token(request.headers.get("Authorization"))
        if presented is not None and hmac.compare_digest(
            presented.encode("utf-8", "surrogatepass"), self.token.encode("utf-8")
        ):
            return None
        g.auth_error = "operator token missing" if presented is None else "operator token wrong"
        response = json_error(
            401,
            f"{page} needs the operator token (CDS_ADMIN_TOKEN), as a Bearer token or as the "
            "password of HTTP Basic authentication.",
            "login",
        )
        response.headers["WWW-Authenticate"] = f'Basic realm="{REALM}", charset="UTF-8"'
        response.headers.add("WWW-Authenticate", f'Bearer realm="{REALM}"')
        return response


def _presented_token(authorization: str | None) -> str | None:
    scheme, _, credentials = (authorization or "").strip().partition(" ")
    credentials = credentials.strip()
    if not credentials:
        return None
    if scheme.lower() == "bearer":
        return credentials
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        _user, separator, password = decoded.partition(":")
        return password if separator else None
    return None
