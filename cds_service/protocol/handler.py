"""One CDS Hooks call from request to response: the protocol's orchestration.

Order hooks are triaged on the draft orders alone first: when no order under review touches
back pain, no card can fire, so the service answers at once without reading patient data.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from cds_service.card_builder.builder import (
    DEFAULT_OPTIONS,
    CardBuilder,
    CardContext,
    CardOptions,
)
from cds_service.fhir.access import PatientDataGatherer
from cds_service.protocol.bounds import DEFAULT_MAX_CARDS, most_severe_first
from cds_service.protocol.catalog import ORDER_HOOKS, ServiceDefinition
from cds_service.protocol.errors import not_found, precondition_failed
from cds_service.protocol.request import HookRequest, parse_hook_request
from cds_service.protocol.site_policy import (
    SnoozeCheck,
    hold_back_snoozed,
    snooze_candidates,
    split_silent,
)
from cds_service.record.builder import RecordBuilder, RecordInput
from cds_service.record.model import OrderEntry
from cds_service.rules.engine import (
    Evaluation,
    concerns_back_pain,
    evaluate,
    offer_each_order_once,
)
from cds_service.rules.registry import DECISION_DATA, RECOMMENDATIONS
from cds_service.rules.thresholds import DEFAULT_THRESHOLDS
from cds_service.site.resolved import Site
from cds_service.vocabulary import CardRecord, DataCategory

log = logging.getLogger(__name__)


def _log_missing(missing: tuple[DataCategory, ...], **fields: Any) -> None:
    log.info(
        "patient data missing",
        extra={"event": "data_missing", "missing": [c.value for c in missing], **fields},
    )


def record_input(
    request: HookRequest, today: date, data: Mapping[DataCategory, Any]
) -> RecordInput:
    """What the record builder needs from a hook request, with the patient data at hand."""
    return RecordInput(
        patient_id=request.patient_id,
        hook=request.hook,
        today=today,
        encounter_id=request.encounter_id,
        user_id=request.user_id,
        draft_orders=request.draft_orders,
        selections=request.selections,
        data=data,
    )


def card_context(
    request: HookRequest, evaluation: Evaluation, options: CardOptions = DEFAULT_OPTIONS
) -> CardContext:
    """What the cards need to address their suggestions to this call's patient, orders and
    client."""
    return CardContext(
        patient_id=request.patient_id,
        encounter_id=request.encounter_id,
        user_id=request.user_id,
        condition_refs=evaluation.condition_refs,
        pain_duration_days=evaluation.pain_duration_days,
        options=options,
    )


@dataclass
class HookOutcome:
    request: HookRequest
    cards: list[CardRecord] = field(default_factory=list)  # the answer's cards, in order
    evaluation: Evaluation | None = None
    fetched: tuple[DataCategory, ...] = ()
    missing: tuple[DataCategory, ...] = ()  # data that could not be had (its rules stayed silent)
    decision: str = ""
    left_out: int = 0  # cards beyond the answer's limit (CDS_MAX_CARDS), least severe first
    # Held back by the site's configuration, to be logged, never returned: cards of silent
    # topics (at most CDS_MAX_CARDS, most severe first) and info cards snoozed for the patient.
    silent_cards: list[CardRecord] = field(default_factory=list)
    snoozed_cards: list[CardRecord] = field(default_factory=list)
    snooze_checked: bool | None = None  # None: nothing to check; False: the store could not tell

    @property
    def silent_topics(self) -> list[str]:
        return [card.topic for card in self.silent_cards]

    @property
    def snoozed_topics(self) -> list[str]:
        return [card.topic for card in self.snoozed_cards]

    @property
    def response(self) -> dict[str, Any]:
        """The CDS Hooks answer."""
        return {"cards": [card.json for card in self.cards]}

    @property
    def topics(self) -> list[str]:
        return [card.topic for card in self.cards]


class HookHandler:
    def __init__(
        self,
        services: tuple[ServiceDefinition, ...],
        record_builder: RecordBuilder,
        card_builder: CardBuilder,
        gatherer: PatientDataGatherer,
        today: Callable[[], date],
        max_cards: int = DEFAULT_MAX_CARDS,
        site: Site | None = None,
    ) -> None:
        """`site`: the site's configuration (None: every topic on, the guideline's numbers)."""
        self._services = {service.id: service for service in services}
        self._max_cards = max_cards
        self._site = site
        self._recommendations = (
            site.config.evaluated(RECOMMENDATIONS) if site is not None else RECOMMENDATIONS
        )
        self._record_builder = record_builder
        self._card_builder = card_builder
        self._gatherer = gatherer
        self._today = today

    @property
    def services(self) -> tuple[ServiceDefinition, ...]:
        return tuple(self._services.values())

    def service(self, service_id: str) -> ServiceDefinition:
        service = self._services.get(service_id)
        if service is None:
            raise not_found(f"No CDS service with id '{service_id}' is offered here.")
        return service

    def handle(
        self,
        service_id: str,
        document: dict[str, Any],
        options: CardOptions = DEFAULT_OPTIONS,
        client_servers: tuple[str, ...] | None = None,
        snoozes: SnoozeCheck | None = None,
    ) -> HookOutcome:
        """Answer one hook call, shaping the cards by `options`. `client_servers`: the FHIR
        server origins the calling client may name as fhirServer (None: any the service
        allows). `snoozes`: where the site's snoozes are looked up (None: no snooze)."""
        service = self.service(service_id)
        request = parse_hook_request(document, service)
        today = self._today()

        # One pass: the drafts are built once, triaged, and become the record's orders.
        built_drafts: tuple[OrderEntry, ...] | None = None
        if request.hook in ORDER_HOOKS:
            drafts = self._record_builder.draft_orders(record_input(request, today, {}))
            if drafts.complete:
                if not concerns_back_pain(drafts.orders):
                    return HookOutcome(request, decision="no back-pain order under review")
                built_drafts = drafts.orders

        gathered = self._gatherer.gather(
            request, tuple(DataCategory), service.prefetch, client_servers
        )
        missing = tuple(gathered.missing)
        if any(category in gathered.missing for category in DECISION_DATA):
            _log_missing(missing, outcome="precondition failed")
            reasons = "; ".join(gathered.missing.values())
            raise precondition_failed(
                f"The service needs patient data it could not get: {reasons}.",
                [f"prefetch.{category.value}" for category in missing],
            )
        record = self._record_builder.build(
            record_input(request, today, gathered.data), built_drafts
        )
        site = self._site
        silent_topics = site.config.silent_topics if site else frozenset()
        evaluation = evaluate(
            record,
            self._recommendations,
            site.config.thresholds if site else DEFAULT_THRESHOLDS,
            held_back=silent_topics,
        )
        context = card_context(request, evaluation, options)
        built = self._card_builder.cards(evaluation.findings, context)
        shown, snooze_checked = built, None
        silent: list[CardRecord] = []
        snoozed: list[CardRecord] = []
        if site is not None:
            shown, silent = split_silent(built, site)
            if snoozes is not None and site.snooze:
                shown, silent, snoozed, snooze_checked = self._hold_back_snoozed(
                    shown, silent, evaluation, context, site, request.patient_id, snoozes
                )
        # Silent cards never take a place in the answer; they are bounded on their own.
        cards, left_out = most_severe_first(shown, self._max_cards)
        silent, _ = most_severe_first(silent, self._max_cards)
        if left_out:
            log.info(
                "cards left out of the answer",
                extra={
                    "event": "cards_left_out",
                    "cards": len(left_out),
                    "max_cards": self._max_cards,
                    "topics": [card.topic for card in left_out],
                },
            )
        if missing:
            _log_missing(missing, skipped=list(evaluation.skipped))
        if not evaluation.back_pain:
            decision = "no back pain"
        else:
            decision = "evaluated" if cards else "no recommendation applies"
        if left_out:
            decision += f"; {len(left_out)} less severe cards left out (CDS_MAX_CARDS)"
        if silent:
            decision += f"; {len(silent)} silent (logged, not shown)"
        if snoozed:
            decision += f"; {len(snoozed)} snoozed for this patient"
        if snooze_checked is False:
            decision += "; snooze not checked (store unavailable)"
        return HookOutcome(
            request,
            cards,
            evaluation=evaluation,
            fetched=gathered.fetched,
            missing=missing,
            decision=decision,
            left_out=len(left_out),
            silent_cards=silent,
            snoozed_cards=snoozed,
            snooze_checked=snooze_checked,
        )

    def _hold_back_snoozed(
        self,
        shown: list[CardRecord],
        silent: list[CardRecord],
        evaluation: Evaluation,
        context: CardContext,
        site: Site,
        patient_id: str,
        snoozes: SnoozeCheck,
    ) -> tuple[list[CardRecord], list[CardRecord], list[CardRecord], bool | None]:
        """(cards to answer with, silent cards, snoozed info cards, whether the snoozes could
        be checked: None when no card could be snoozed). A snoozed card's orders go back to
        the cards that show, which may bring out a card that had given way to it; its topic's
        snooze is then looked up too."""
        snoozed: list[CardRecord] = []
        snoozed_topics: frozenset[str] = frozenset()
        looked_up: set[str] = set()
        checked: bool | None = None
        while True:
            rules = {
                topic: rule
                for topic, rule in snooze_candidates(shown, site).items()
                if topic not in looked_up
            }
            if not rules:
                return shown, silent, snoozed, checked
            looked_up |= rules.keys()
            try:
                found = snoozes.snoozed_topics(patient_id, rules)
            except Exception:  # a failing lookup must never fail the call: the cards show
                log.exception("snooze lookup failed", extra={"event": "snooze_check_failed"})
                found = None
            if found is None:
                return shown, silent, snoozed, False
            checked = True
            if not found - snoozed_topics:
                return shown, silent, snoozed, checked
            snoozed_topics |= found
            findings = offer_each_order_once(
                evaluation.candidates,
                self._recommendations,
                site.config.silent_topics | snoozed_topics,
            )
            shown, silent = split_silent(self._card_builder.cards(findings, context), site)
            shown, snoozed = hold_back_snoozed(shown, snoozed_topics)
