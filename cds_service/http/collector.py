"""The cyclic garbage collector stays paused while a hook call is answered.

A hook call parses the whole request into tens of thousands of dicts and lists (hundreds of
thousands for a large record) and frees them by reference counting once the answer is sent.
With the collector running, those allocations set off collections that walk the still-live
document again and again for nothing: it holds no reference cycles. Paused from parse to the
answer's close, the document is born and freed without ever being walked; the allocation
count it raised falls back as it is freed, so resuming does not set off a collection over it.
Anything cyclic made meanwhile is collected by the next collection after the call.

The pause always ends: when the answer has been sent (the WSGI server closes it), at the end of
the request when the call failed before an answer was made, and, should a server never close
an answer, when the next request begins. Only a pause this module made is ended by it. Under a
threaded server one call may resume the collector while another is still running; that costs
the other call some speed, never correctness.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask, Response, g

from cds_service.performance import end_request_pause as end_pause
from cds_service.performance import pause_for_request as pause_for_this_request

_HANDED_OVER = "_collector_resumes_on_close"  # on flask.g: the answer's close resumes it

__all__ = ["end_pause", "pause_for_this_request", "register_collector_pause", "resume_when_sent"]


def resume_when_sent(response: Response, release: Callable[[], None]) -> None:
    """After the answer is sent: run `release` (free what the call held), then resume."""

    def release_and_resume() -> None:
        try:
            release()
        finally:
            end_pause()

    response.call_on_close(release_and_resume)
    setattr(g, _HANDED_OVER, True)


def register_collector_pause(app: Flask) -> None:
    @app.before_request
    def _resume_a_pause_left_over() -> None:
        end_pause()  # an earlier answer was never closed by the server

    @app.teardown_request
    def _resume_unless_handed_over(_error: BaseException | None) -> None:
        if not g.get(_HANDED_OVER):
            end_pause()  # the call ended without an answer that resumes on close
