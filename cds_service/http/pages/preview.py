"""GET /preview: try the services in a browser, as a tester would in an EHR, without one.

The page runs a request through the very handler the service endpoints use, in this process,
and shows the cards as an EHR does. Nothing it runs is written to the decision log or counted
as a service call. Taking a suggestion is the EHR's part: the page's script applies the
suggestion's actions to the draft orders and runs the request again.

On in development mode; with trusted clients configured, off unless CDS_PREVIEW=on, and then
behind the operator token like the dashboard (it runs whatever request it is given).
"""

from __future__ import annotations

import copy
from datetime import date
from pathlib import Path
from typing import Any

from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    jsonify,
    render_template,
    request,
    url_for,
)

from cds_service.card_builder.builder import CardOptions
from cds_service.card_builder.profiles import PROFILE_NAMES, ClientProfile
from cds_service.config import Settings
from cds_service.http.errors import json_error
from cds_service.http.operator import OperatorAccess
from cds_service.http.pages.markdown import render_markdown
from cds_service.protocol.errors import CdsError, bad_request, error_body, not_found
from cds_service.protocol.request import parse_json_object
from cds_service.runtime import Runtime
from cds_service.tooling.bundle_request import BundleError, request_from_bundle
from cds_service.tooling.dates import shift_dates
from cds_service.tooling.library import Fixture, library_root, library_scenarios

blueprint = Blueprint("preview", __name__)

_LIBRARY = "cds_preview_library"
_ENABLED = "cds_preview_enabled"


class ScenarioLibrary:
    """The fixture scenarios offered by the page, read once per process on first use."""

    def __init__(self, root: Path | None) -> None:
        self.root = root
        self._scenarios: dict[str, Fixture] | None = None

    @property
    def scenarios(self) -> dict[str, Fixture]:
        if self._scenarios is None:
            found = library_scenarios(self.root) if self.root else []
            self._scenarios = {fixture.folder.name: fixture for fixture in found}
        return self._scenarios

    def request_for(self, name: str, today: date) -> tuple[Fixture, dict[str, Any]]:
        """A scenario's request, its dates moved so that it means on `today` what it says on
        its evaluation date (as `cds-service replay --url` does)."""
        fixture = self.scenarios.get(name)
        if fixture is None:
            raise not_found(f"No scenario named '{name}' in the preview's fixture library.")
        shift = (today - fixture.evaluation_date).days
        return fixture, shift_dates(copy.deepcopy(fixture.request), shift)


def register_preview(app: Flask, settings: Settings) -> None:
    app.extensions[_ENABLED] = settings.preview_enabled
    app.extensions[_LIBRARY] = ScenarioLibrary(library_root(settings.preview_fixtures))
    app.register_blueprint(blueprint)


@blueprint.before_request
def _when_enabled() -> Response | None:
    if not current_app.extensions[_ENABLED]:
        return json_error(
            404,
            "The preview is off on this service (CDS_PREVIEW=on turns it on).",
            "not-found",
        )
    access: OperatorAccess = current_app.extensions["cds_operator_access"]
    return access.refusal("The preview")


@blueprint.get("/preview")
def page() -> Response:
    runtime: Runtime = current_app.extensions["cds_runtime"]
    library: ScenarioLibrary = current_app.extensions[_LIBRARY]
    services = [{"id": s.id, "hook": s.hook, "title": s.title} for s in runtime.services]
    scenarios = [
        {
            "name": name,
            "service": fixture.service,
            "hook": fixture.hook,
            "description": fixture.description,
        }
        for name, fixture in library.scenarios.items()
    ]
    body = render_template(
        "preview.html",
        services=services,
        scenarios=scenarios,
        library_found=library.root is not None,
        profiles=PROFILE_NAMES,
        default_profile=current_app.extensions["cds_client_profile"].value,
        urls={
            "run": url_for("preview.run"),
            "scenarios": url_for("preview.scenario", name="x").removesuffix("x"),
        },
        today=runtime.today().isoformat(),
    )
    return Response(body, mimetype="text/html")


@blueprint.get("/preview/scenarios/<name>")
def scenario(name: str) -> Response:
    runtime: Runtime = current_app.extensions["cds_runtime"]
    library: ScenarioLibrary = current_app.extensions[_LIBRARY]
    fixture, hook_request = library.request_for(name, runtime.today())
    return jsonify(
        {
            "name": name,
            "service": fixture.service,
            "hook": fixture.hook,
            "description": fixture.description,
            "request": hook_request,
        }
    )


@blueprint.post("/preview/run")
def run() -> Response:
    """Body: {"service": id, "request": a CDS Hooks request} or {"service", "bundle": a FHIR
    Bundle}, and optionally "profile" (the client profile shaping suggestions; default: the
    service's). Answer: the service's status and answer, the request run, and each card's
    detail as safe HTML."""
    runtime: Runtime = current_app.extensions["cds_runtime"]
    document = parse_json_object(request.get_data(cache=False))
    service_id = document.get("service")
    if not isinstance(service_id, str):
        raise bad_request("Name the service to run in 'service'.", ["service"])
    service = runtime.handler.service(service_id)
    profile = _profile(document.get("profile"))
    if isinstance(document.get("bundle"), dict):
        try:
            hook_request = request_from_bundle(document["bundle"], service)
        except BundleError as error:
            raise bad_request(str(error), ["bundle"]) from None
    elif isinstance(document.get("request"), dict):
        hook_request = document["request"]
    else:
        raise bad_request(
            "Send the CDS Hooks request in 'request', or a FHIR Bundle in 'bundle'.",
            ["request"],
        )
    try:
        # The handler may normalise what it reads; the page gets back what it sent.
        options = CardOptions(profile=profile, guidance_base_url=request.host_url.rstrip("/"))
        outcome = runtime.handler.handle(service_id, copy.deepcopy(hook_request), options)
    except CdsError as error:
        return jsonify(
            {"status": error.status, "request": hook_request, "response": error_body(error)}
        )
    cards = outcome.response.get("cards", [])
    return jsonify(
        {
            "status": 200,
            "request": hook_request,
            "response": outcome.response,
            "details": [str(render_markdown(str(card.get("detail") or ""))) for card in cards],
        }
    )


def _profile(requested: Any) -> ClientProfile:
    if requested is None:
        default: ClientProfile = current_app.extensions["cds_client_profile"]
        return default
    if requested not in PROFILE_NAMES:
        raise bad_request(f"'profile' must be one of {', '.join(PROFILE_NAMES)}.", ["profile"])
    return ClientProfile(requested)
