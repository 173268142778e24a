"""The documentation holds together: every relative link and section anchor in the project's
Markdown files leads somewhere, and the README keeps what a newcomer needs.

The README links into docs/ by section; a section renamed or moved must not leave a dead link.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import PROJECT_ROOT

MARKDOWN_LINK = re.compile(r"\[[^\]]+\]\(([^)\s]+)\)")
HEADING = re.compile(r"(?m)^#{1,6} (.*)$")
DOCUMENTS = sorted(
    [
        PROJECT_ROOT / "README.md",
        *(PROJECT_ROOT / "docs").glob("*.md"),
        PROJECT_ROOT / "cards" / "README.md",
        PROJECT_ROOT / "examples" / "README.md",
        PROJECT_ROOT / "fhir_fixtures" / "README.md",
    ]
)


def heading_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    kept = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return kept.replace(" ", "-")


def anchors_of(document: Path) -> set[str]:
    return {heading_anchor(h) for h in HEADING.findall(document.read_text(encoding="utf-8"))}


def relative_links(document: Path) -> list[str]:
    links = MARKDOWN_LINK.findall(document.read_text(encoding="utf-8"))
    return [link for link in links if not re.match(r"^[a-z]+:", link) and not link.startswith("/")]


def leads_somewhere(document: Path, link: str) -> bool:
    path, _, anchor = link.partition("#")
    target = (document.parent / path).resolve() if path else document
    if not target.exists():
        return False
    return not anchor or target.suffix != ".md" or anchor in anchors_of(target)


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(PROJECT_ROOT)))
def test_every_relative_link_and_anchor_resolves(document: Path) -> None:
    dead = [link for link in relative_links(document) if not leads_somewhere(document, link)]
    assert dead == []


def test_anchor_rule_matches_github_for_punctuated_headings() -> None:
    assert heading_anchor("Security: trusted clients, CORS") == "security-trusted-clients-cors"
    assert heading_anchor("Validate your EHR's requests") == "validate-your-ehrs-requests"


def test_readme_keeps_the_newcomer_essentials_and_links_every_audience_document() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    sections = HEADING.findall(readme)
    for needed in ("Quick start", "Configuration", "Endpoints", "Documentation"):
        assert needed in sections
    linked = {link.partition("#")[0] for link in relative_links(PROJECT_ROOT / "README.md")}
    for audience in ("integrators", "operators", "clinical-content", "contributors"):
        assert f"docs/{audience}.md" in linked
    assert "docs/adding-a-recommendation.md" in linked
