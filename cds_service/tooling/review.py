"""A review sheet of every fixture's cards, as a clinician reads them (one markdown file).

`cds-service fixtures review` runs each scenario through the service in this process and
writes what each card shows: indicator, summary, detail, suggestions, links, with the length
budget of cards/README.md checked on every card.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cds_service.card_builder.content import DETAIL_LIMIT, SUMMARY_LIMIT, SUMMARY_TARGET
from cds_service.tooling.library import Fixture
from cds_service.tooling.replay import Target, TargetError


def _action_line(action: Mapping[str, Any]) -> str:
    what = action.get("resourceId")
    if what is None:
        resource = action.get("resource") or {}
        concept = resource.get("medicationCodeableConcept") or resource.get("code") or {}
        what = f"{resource.get('resourceType', '?')}: {concept.get('text', '?')}"
    return f"{action.get('type', '?')} {what} ({action.get('description', '')})"


def budget_problems(card: Mapping[str, Any]) -> list[str]:
    """How a card breaks the length budget: summary over 100 (target) or 139 (limit)
    characters, detail over 700."""
    problems = []
    summary, detail = str(card.get("summary", "")), str(card.get("detail", ""))
    if len(summary) > SUMMARY_LIMIT:
        problems.append(f"summary over the {SUMMARY_LIMIT}-character limit")
    elif len(summary) > SUMMARY_TARGET:
        problems.append(f"summary over the {SUMMARY_TARGET}-character target")
    if len(detail) > DETAIL_LIMIT:
        problems.append(f"detail over {DETAIL_LIMIT} characters")
    return problems


def _card_section(card: Mapping[str, Any]) -> list[str]:
    topic = ((card.get("source") or {}).get("topic") or {}).get("code", "?")
    summary, detail = str(card.get("summary", "")), str(card.get("detail", ""))
    lines = [
        f"### {str(card.get('indicator', '?')).upper()} · `{topic}`",
        "",
        f"**{summary}** *({len(summary)} characters; detail {len(detail)})*",
        "",
        *(f"> {line}" if line else ">" for line in detail.splitlines()),
        "",
    ]
    for suggestion in card.get("suggestions") or ():
        recommended = " (recommended)" if suggestion.get("isRecommended") else ""
        lines.append(f"- Suggestion{recommended}: **{suggestion.get('label', '')}**")
        lines += [f"  - {_action_line(a)}" for a in suggestion.get("actions") or ()]
    for link in card.get("links") or ():
        lines.append(f"- Link: [{link.get('label', '')}]({link.get('url', '')})")
    reasons = [r.get("display", "") for r in card.get("overrideReasons") or ()]
    if reasons:
        lines.append(f"- Override reasons: {'; '.join(reasons)}")
    lines += [f"- **Over budget:** {problem}" for problem in budget_problems(card)]
    return [*lines, ""]


def review_sheet(fixtures: Sequence[Fixture], target: Target) -> tuple[str, list[str]]:
    """The sheet for these scenarios, in markdown, and the cards past the hard limits."""
    over: list[str] = []
    out = [
        "# Card review sheet",
        "",
        f"Every card of {len(fixtures)} fixture scenarios, as the service answers them. Budget: "
        f"summary at most {SUMMARY_TARGET} characters where possible ({SUMMARY_LIMIT} at "
        f"most), detail about {DETAIL_LIMIT} characters of markdown.",
        "",
    ]
    for fixture in fixtures:
        out += [f"## {fixture.name} ({fixture.hook})", "", fixture.description, ""]
        try:
            cards = target.cards(fixture)
        except TargetError as error:
            out += [f"**Error:** {error}", ""]
            continue
        if not cards:
            out += ["*No cards.*", ""]
        for card in cards:
            out += _card_section(card)
            hard = [p for p in budget_problems(card) if "target" not in p]
            if hard:
                over.append(f"{fixture.name}: {', '.join(hard)}")
    return "\n".join(out).rstrip() + "\n", over
