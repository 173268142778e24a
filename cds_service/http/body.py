"""Request bodies: the size limit holds for chunked bodies (no Content-Length) too."""

from __future__ import annotations

from flask import Request
from werkzeug.exceptions import RequestEntityTooLarge


class BoundedRequest(Request):
    """Flask's request, refusing any body longer than MAX_CONTENT_LENGTH with a 413.

    A too-large Content-Length is refused by Werkzeug before reading. A body without one
    (chunked) is cut off at the limit by Werkzeug instead, and the truncated JSON would then
    look malformed (a misleading 400); here a body that goes on past the limit is a 413 too.
    """

    def get_data(  # type: ignore[override]
        self, cache: bool = True, as_text: bool = False, parse_form_data: bool = False
    ) -> bytes | str:
        data = super().get_data(cache=cache, as_text=False, parse_form_data=parse_form_data)
        limit = self.max_content_length
        if (
            limit is not None
            and self.content_length is None
            and len(data) >= limit
            # One byte past the limit, read from the server's own (terminated) input stream.
            and self.environ["wsgi.input"].read(1)
        ):
            raise RequestEntityTooLarge()
        return data.decode(errors="replace") if as_text else data
