"""A small, safe subset of Markdown for showing card details as an EHR would.

Everything is HTML-escaped first; only then are the few constructs turned into markup, so no
tag, attribute or script from a card or a request can get through. Supported: paragraphs
(blank-line separated), `-`/`*` and `1.` lists, `**bold**`, `*italic*`, `` `code` `` and
`[label](url)` links whose url is http or https (any other link stays text).
"""

from __future__ import annotations

import re

from markupsafe import Markup, escape

_BULLET = re.compile(r"^\s*[-*+]\s+(.*)$")
_NUMBERED = re.compile(r"^\s*\d{1,9}[.)]\s+(.*)$")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$")
# Applied to escaped text: quotes and angle brackets are entities there, never delimiters.
_CODE = re.compile(r"`([^`]+)`")
_LINK = re.compile(r"\[([^\]\n]+)\]\((https?://[^\s()]+)\)")
_BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*")
_ITALIC = re.compile(r"(?<![*\w])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![*\w])")


def _inline(text: str) -> str:
    escaped = str(escape(text))
    codes: list[str] = []

    def keep_code(match: re.Match[str]) -> str:
        codes.append(match.group(1))
        return f"\x00{len(codes) - 1}\x00"

    escaped = _CODE.sub(keep_code, escaped)
    escaped = _LINK.sub(r'<a href="\2" rel="noopener noreferrer" target="_blank">\1</a>', escaped)
    escaped = _BOLD.sub(r"<strong>\1</strong>", escaped)
    escaped = _ITALIC.sub(r"<em>\1</em>", escaped)
    return re.sub(r"\x00(\d+)\x00", lambda m: f"<code>{codes[int(m.group(1))]}</code>", escaped)


def render_markdown(text: str) -> Markup:
    """HTML for `text`; safe to insert into a page whatever `text` holds."""
    # NUL is the placeholder of code spans above; no card needs it.
    lines = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "").split("\n")
    html: list[str] = []
    paragraph: list[str] = []
    list_tag: str | None = None
    items: list[list[str]] = []

    def close_paragraph() -> None:
        if paragraph:
            html.append("<p>" + _inline("\n".join(paragraph)) + "</p>")
            paragraph.clear()

    def close_list() -> None:
        nonlocal list_tag
        if list_tag:
            body = "".join("<li>" + _inline("\n".join(item)) + "</li>" for item in items)
            html.append(f"<{list_tag}>{body}</{list_tag}>")
            items.clear()
            list_tag = None

    for line in lines:
        bullet, numbered = _BULLET.match(line), _NUMBERED.match(line)
        if not line.strip():
            close_paragraph()
            close_list()
        elif bullet or numbered:
            close_paragraph()
            tag = "ul" if bullet else "ol"
            if list_tag != tag:
                close_list()
                list_tag = tag
            items.append([(bullet or numbered).group(1)])  # type: ignore[union-attr]
        elif list_tag and line[:1].isspace():
            items[-1].append(line.strip())  # an item's continuation line
        elif heading := _HEADING.match(line):
            close_paragraph()
            close_list()
            html.append("<p><strong>" + _inline(heading.group(1)) + "</strong></p>")
        else:
            close_list()
            paragraph.append(line.strip())
    close_paragraph()
    close_list()
    return Markup("".join(html))
