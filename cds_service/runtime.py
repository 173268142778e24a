"""Everything a worker loads once at start: terminology, card content, services, handler."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime

from fhir.resources.R4B import get_fhir_model_class

from cds_service.card_builder.content import CardContent, load_card_content
from cds_service.config import Settings
from cds_service.content_version import content_version
from cds_service.fhir.access import FhirFetcher, PatientDataGatherer
from cds_service.fhir.client import FhirClient
from cds_service.fhir.servers import FhirServerPolicy
from cds_service.protocol.catalog import ServiceDefinition, build_catalog
from cds_service.protocol.handler import HookHandler
from cds_service.protocol.request import schema_problems
from cds_service.record.builder import RecordBuilder
from cds_service.site.config import SiteConfig, SiteConfigError
from cds_service.site.resolved import Site, resolve_site
from cds_service.terminology.index import Terminology, load_terminology
from cds_service.vocabulary import DataCategory

log = logging.getLogger(__name__)


def utc_today() -> date:
    return datetime.now(UTC).date()


@dataclass
class Runtime:
    settings: Settings
    terminology: Terminology
    content: CardContent
    services: tuple[ServiceDefinition, ...]
    handler: HookHandler
    load_seconds: float
    fetcher: FhirFetcher | None = None
    # Package version + hash of the loaded card content and terminology (decision log).
    content_version: str = ""
    # The service's "today" (CDS_EVALUATION_DATE when pinned); the handler's clock.
    today: Callable[[], date] = utc_today
    # The site configuration in force (CDS_SITE_CONFIG), resolved against the card content.
    site: Site | None = None

    @classmethod
    def load(
        cls,
        settings: Settings,
        *,
        fetcher: FhirFetcher | None = None,
        today: Callable[[], date] | None = None,
    ) -> Runtime:
        started = time.perf_counter()
        terminology = load_terminology()
        site, content = load_site_and_content(settings.site, settings.cards_dir)
        services = build_catalog(terminology, site.config)
        pinned = settings.evaluation_date
        clock = today or ((lambda: pinned) if pinned else utc_today)
        if fetcher is None:
            # Threads and connections start lazily in each worker, after the server's fork.
            # A reading thread for each kind of data of every call allowed to read at once,
            # and those of one more call, so that reads abandoned at one call's deadline never
            # hold up the next call.
            fetcher = FhirClient(
                deadline_seconds=settings.fhir_deadline_seconds,
                timeout_seconds=settings.fhir_timeout_seconds,
                max_pages=settings.fhir_max_pages,
                max_calls=settings.fhir_max_calls,
                max_workers=(settings.fhir_max_calls + 1) * len(DataCategory),
            )
        handler = HookHandler(
            services=services,
            record_builder=RecordBuilder(terminology),
            card_builder=site.card_builder(content, terminology),
            gatherer=PatientDataGatherer(fetcher, FhirServerPolicy.of(settings.fhir_servers)),
            today=clock,
            max_cards=settings.max_cards,
            site=site,
        )
        version = content_version(settings.cards_dir, site)
        _warm_up(terminology)
        elapsed = time.perf_counter() - started
        log.info(
            "runtime loaded",
            extra={
                "event": "runtime_loaded",
                "value_sets": len(terminology.value_set_ids),
                "codes": terminology.code_count,
                "card_topics": len(content.topics),
                "content_version": version,
                "seconds": round(elapsed, 3),
            },
        )
        return cls(
            settings,
            terminology,
            content,
            services,
            handler,
            elapsed,
            fetcher,
            version,
            clock,
            site,
        )


def load_site_and_content(site: SiteConfig, cards_dir: str | None) -> tuple[Site, CardContent]:
    """The card content with the site's thresholds in its words, and the site configuration
    resolved against it (a snooze naming a reason no card offers: one-line SiteConfigError)."""
    content = load_card_content(cards_dir, thresholds=site.thresholds)
    try:
        return resolve_site(site, content), content
    except SiteConfigError as error:
        raise SiteConfigError(f"CDS_SITE_CONFIG: {error}") from None


def _warm_up(terminology: Terminology) -> None:
    """Import the FHIR models of the suggested orders and compile the schemas now, not on the
    first clinical request (and before forking, so the workers share them)."""
    for resource_type in sorted({o.resource_type for o in terminology.orderables.values()}):
        get_fhir_model_class(resource_type)
    for name in ("request", "response", "discovery", "feedback"):
        schema_problems(name, {})
