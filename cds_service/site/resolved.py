"""A site configuration resolved against the loaded card content: the override reasons each
topic's cards offer and the snooze rules naming them. Resolving checks what the file alone
cannot: that a snooze names reasons the topic offers, and only on info topics.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from cds_service.card_builder.builder import CardBuilder, LocalCodings
from cds_service.card_builder.content import CardContent
from cds_service.rules.findings import Indicator
from cds_service.site.config import (
    DEFAULT_SITE,
    Coding,
    SiteConfig,
    SiteConfigError,
    SnoozeChoice,
    table_key,
)
from cds_service.site.reason_sets import REASON_SETS
from cds_service.terminology.index import Terminology


@dataclass(frozen=True)
class SnoozeRule:
    """Overriding a card of `topic` with one of `reasons` silences the topic for that patient
    for `days`."""

    topic: str
    days: int
    reasons: frozenset[tuple[str, str]]  # (system, code)

    @property
    def codes(self) -> frozenset[str]:
        return frozenset(code for _, code in self.reasons)


@dataclass(frozen=True)
class Site:
    config: SiteConfig
    # Every topic's override reasons, in the order its cards offer them.
    override_reasons: Mapping[str, tuple[Coding, ...]]
    snooze: Mapping[str, SnoozeRule]

    def card_builder(self, content: CardContent, terminology: Terminology) -> CardBuilder:
        """The card builder of this site: its override reasons and its order codings."""
        return CardBuilder(
            content,
            terminology,
            override_reasons={
                topic: [reason.as_fhir() for reason in reasons]
                for topic, reasons in self.override_reasons.items()
            },
            local_codings={
                orderable: LocalCodings(tuple(c.as_fhir() for c in local.codings), local.first)
                for orderable, local in self.config.orders.items()
            },
        )


def offered_reasons(config: SiteConfig, topic: str, content: CardContent) -> tuple[Coding, ...]:
    """The content's own reasons (unless replaced), then the site's codes, then its sets; a
    reason offered twice (the same system and code) is offered once, where it first comes."""
    choice = config.topic(topic).override_reasons
    offered: list[Coding] = []
    if not choice.replace:
        system = content.override_reason_system
        offered += [
            Coding(system, r.code, r.display) for r in content.topics[topic].override_reasons
        ]
    offered += choice.codes
    for name in choice.sets:
        offered += [Coding(*reason) for reason in REASON_SETS[name].reasons]
    unique: dict[tuple[str, str], Coding] = {}
    for coding in offered:
        unique.setdefault((coding.system, coding.code), coding)
    return tuple(unique.values())


def _snooze_rule(
    topic: str, choice: SnoozeChoice, offered: tuple[Coding, ...], where: str
) -> SnoozeRule:
    reasons: set[tuple[str, str]] = set()
    for written in choice.reasons:
        system, bar, code = written.rpartition("|")
        matches = [
            (c.system, c.code)
            for c in offered
            if c.code == code and (not bar or c.system == system)
        ]
        if not matches:
            raise SiteConfigError(
                f"{where}: {written!r} is not one of the override reasons {topic} cards offer "
                f"({', '.join(c.code for c in offered) or 'none'})"
            )
        if len(matches) > 1:
            raise SiteConfigError(
                f"{where}: {written!r} is offered under several systems; write system|code"
            )
        reasons.add(matches[0])
    return SnoozeRule(topic, choice.days, frozenset(reasons))


def resolve_site(config: SiteConfig, content: CardContent) -> Site:
    """The site's override reasons and snooze rules over `content` (SiteConfigError: one line,
    naming the file)."""
    reasons = {topic: offered_reasons(config, topic, content) for topic in content.topics}
    rules: dict[str, SnoozeRule] = {}
    try:
        for topic, settings in config.topics.items():
            where = f"[topics.{table_key(topic)}]"
            indicator = content.topics[topic].indicator
            if not reasons[topic] and indicator is not Indicator.INFO:
                raise SiteConfigError(
                    f"{where} override_reasons: replace leaves {topic} cards ({indicator}) "
                    "without override reasons; add codes or sets"
                )
            if settings.snooze is None:
                continue
            if indicator is not Indicator.INFO:
                raise SiteConfigError(
                    f"{where} snooze: only info topics can be snoozed; {topic} cards are "
                    f"{indicator} and always show"
                )
            rules[topic] = _snooze_rule(topic, settings.snooze, reasons[topic], f"{where} snooze")
    except SiteConfigError as error:
        raise SiteConfigError(f"{config.source}: {error}") from None
    return Site(config, MappingProxyType(reasons), MappingProxyType(rules))


def default_site(content: CardContent) -> Site:
    """No site configuration: today's behaviour."""
    return resolve_site(DEFAULT_SITE, content)
