"""The effective site configuration as TOML: every value in force, defaults included, with
what it resolves to (the override reasons a topic's cards offer, the codings of each suggested
order) in comments. `cds-service config check` prints it; the output is itself a valid site
configuration file meaning the same thing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cds_service.rules.findings import Orderable
from cds_service.rules.registry import TOPICS
from cds_service.rules.thresholds import DEFAULT_VALUES, LIMITS
from cds_service.site.config import Coding, TopicMode, table_key, toml_string
from cds_service.site.reason_sets import REASON_SETS
from cds_service.site.resolved import Site


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Coding):
        parts = [("system", value.system), ("code", value.code)]
        if value.display:
            parts.append(("display", value.display))
        return "{ " + ", ".join(f"{key} = {toml_string(text)}" for key, text in parts) + " }"
    if isinstance(value, Sequence):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _codings(key: str, codings: Sequence[Coding]) -> list[str]:
    return [f"{key} = [", *(f"  {_value(c)}," for c in codings), "]"]


def _listed(coding: Mapping[str, Any] | Coding) -> str:
    if isinstance(coding, Coding):
        coding = coding.as_fhir()
    text = f"{coding.get('system')}|{coding.get('code')}"
    return f"{text}  {coding['display']}" if coding.get("display") else text


def _thresholds(site: Site) -> list[str]:
    lines = ["[thresholds]"]
    for name, limit in LIMITS.items():
        value = getattr(site.config.thresholds, name)
        lines.append(
            f"{name} = {_value(value)}  # default {_value(DEFAULT_VALUES[name])}; "
            f"{limit.low:g} to {limit.high:g} {limit.unit}: {limit.meaning}"
        )
    return lines


def _topic(site: Site, topic: str) -> list[str]:
    settings = site.config.topic(topic)
    header = f"topics.{table_key(topic)}"
    lines = ["", f"[{header}]", f"mode = {_value(settings.mode.value)}"]
    if settings.mode is TopicMode.OFF:
        lines.append("# not evaluated")
    elif settings.mode is TopicMode.SILENT:
        lines.append("# evaluated and logged as silent; never returned")
    choice = settings.override_reasons
    if not choice.is_default:
        lines += ["", f"[{header}.override_reasons]", f"replace = {_value(choice.replace)}"]
        if choice.sets:
            lines.append(f"sets = {_value(list(choice.sets))}")
        if choice.codes:
            lines += _codings("codes", choice.codes)
    offered = site.override_reasons.get(topic, ())
    if choice.is_default:
        lines.append(f"# override reasons: the card content's ({len(offered)})")
    else:
        lines.append(f"# override reasons its cards offer ({len(offered)}):")
        lines += [f"#   {_listed(reason)}" for reason in offered]
    if settings.snooze is not None:
        rule = site.snooze[topic]
        lines += [
            "",
            f"[{header}.snooze]",
            f"days = {settings.snooze.days}",
            f"reasons = {_value(list(settings.snooze.reasons))}",
            "# an override with one of these silences the topic for that patient:",
            *(f"#   {system}|{code}" for system, code in sorted(rule.reasons)),
        ]
    return lines


def _orders(site: Site, standard: Mapping[str, Mapping[str, Any]] | None) -> list[str]:
    lines: list[str] = []
    for orderable in Orderable:
        configured = site.config.orders.get(orderable)
        header = f"orders.{table_key(orderable.value)}"
        if configured is None:
            lines += ["", f"# [{header}]: the standard codings only"]
            continue
        lines += ["", f"[{header}]", f"first = {_value(configured.first)}"]
        lines += _codings("codings", configured.codings)
        if standard is not None and orderable.value in standard:
            code = standard[orderable.value]
            lines.append("# the created resource's coding, in order:")
            lines += [f"#   {_listed(coding)}" for coding in code.get("coding", ())]
            if code.get("text"):
                lines.append(f"# and its text: {code['text']}")
    return lines


def render_site(site: Site, order_codes: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """The effective configuration. `order_codes`: each suggested order's CodeableConcept as
    created (the card builder's), to show the resulting codings."""
    source = site.config.source
    lines = [
        "# Effective site configuration of the back-pain CDS service",
        f"# from {source}" if source else "# no site configuration file: the defaults",
        "# Every value in force, defaults included; this is itself a valid site file.",
        f"# Ready-made override reason sets: {', '.join(REASON_SETS)}.",
        "",
        *_thresholds(site),
    ]
    for topic in TOPICS:
        lines += _topic(site, topic)
    lines += _orders(site, order_codes)
    return "\n".join(lines) + "\n"
