"""GET /guidance/{topic}: each recommendation's evidence page, linked from its cards.

Built from the topic's content in `cards/` (its [guidance] words and every [[evidence]]
entry), so an informaticist edits one file for the card and its page. Printable; the patient
section prints on its own with `?part=patient`. No patient data is involved: the pages are
the same for everyone and need no credentials.
"""

from __future__ import annotations

from flask import Blueprint, Response, abort, current_app, render_template, request

from cds_service.http.pages.markdown import render_markdown
from cds_service.rules.registry import TOPICS
from cds_service.runtime import Runtime

blueprint = Blueprint("guidance", __name__)

_PARTS = ("all", "patient")


@blueprint.get("/guidance")
def index() -> Response:
    runtime: Runtime = current_app.extensions["cds_runtime"]
    topics = [(topic, runtime.content.topics[topic].title) for topic in TOPICS]
    return Response(render_template("guidance_index.html", topics=topics), mimetype="text/html")


@blueprint.get("/guidance/<topic>")
def page(topic: str) -> Response:
    runtime: Runtime = current_app.extensions["cds_runtime"]
    if topic not in TOPICS:
        abort(404, description=f"No guidance page for '{topic}'; see /guidance for the list.")
    part = request.args.get("part", "all")
    if part not in _PARTS:
        abort(400, description="'part' must be 'all' or 'patient'.")
    content = runtime.content.topics[topic]
    html = render_template(
        "guidance.html",
        topic=topic,
        title=content.title,
        part=part,
        clinician=render_markdown(content.guidance.clinician),
        patient_title=content.guidance.patient_title,
        patient=render_markdown(content.guidance.patient),
        evidence=content.evidence,
        source_label=content.source_label,
        source_url=content.source_url,
        content_version=runtime.content_version,
    )
    response = Response(html, mimetype="text/html")
    # The same for every patient and changed only by a new release of the content.
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response
