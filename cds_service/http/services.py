"""POST /cds-services/{id}: run a service for one hook call."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, g, jsonify, request

from cds_service import metrics
from cds_service.card_builder.builder import CardOptions
from cds_service.http.collector import pause_for_this_request, resume_when_sent
from cds_service.protocol.request import parse_json_object
from cds_service.runtime import Runtime
from cds_service.store.decision_log import DecisionLog, IssuedCards
from cds_service.store.schema import Disposition

blueprint = Blueprint("services", __name__)


def _card_options() -> CardOptions:
    """The calling client's suggestion profile (its own, else the service-wide one) and where
    the guidance pages its cards link to are served."""
    public_url = current_app.extensions["cds_public_url"] or request.host_url.rstrip("/")
    return CardOptions(
        profile=g.get("client_profile") or current_app.extensions["cds_client_profile"],
        guidance_base_url=public_url,
    )


@blueprint.post("/cds-services/<service_id>")
def call_service(service_id: str) -> Response:
    runtime: Runtime = current_app.extensions["cds_runtime"]
    g.service_id = service_id
    runtime.handler.service(service_id)  # unknown service: 404 before reading the body
    pause_for_this_request()
    document = parse_json_object(request.get_data(cache=False))
    if isinstance(document.get("hookInstance"), str):
        g.hook_instance = document["hookInstance"]
    options = _card_options()
    g.profile = options.profile.value
    outcome = runtime.handler.handle(
        service_id,
        document,
        options,
        g.get("fhir_servers"),
        snoozes=current_app.extensions["cds_snooze_check"],
    )
    if outcome.cards or outcome.silent_cards or outcome.snoozed_cards:
        decision_log: DecisionLog = current_app.extensions["cds_decision_log"]
        decision_log.record(
            IssuedCards(
                service_id=service_id,
                hook=outcome.request.hook,
                hook_instance=outcome.request.hook_instance,
                patient_id=outcome.request.patient_id,
                cards=outcome.cards,
                content_version=runtime.content_version,
                silent=outcome.silent_cards,
                snoozed=outcome.snoozed_cards,
            )
        )
    metrics.count_cards(service_id, outcome.cards)
    metrics.count_cards_held_back(service_id, Disposition.SILENT.value, outcome.silent_cards)
    metrics.count_cards_held_back(service_id, Disposition.SNOOZED.value, outcome.snoozed_cards)
    g.topics = outcome.topics
    if outcome.silent_cards:
        g.silent_topics = outcome.silent_topics
    if outcome.snoozed_cards:
        g.snoozed_topics = outcome.snoozed_topics
    g.decision = outcome.decision
    if outcome.fetched:
        g.fetched = [category.value for category in outcome.fetched]
    if outcome.missing:
        g.missing = [category.value for category in outcome.missing]
    response = jsonify(outcome.response)
    # Freeing a large parsed record takes milliseconds: let it happen once the answer is sent.
    held = [document, outcome]
    resume_when_sent(response, held.clear)
    return response
