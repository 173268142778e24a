"""A stable name for the rules and content in force: the package version plus a short hash of
the loaded card content and terminology data, and of the site configuration when a file is in
use. The decision log keeps it with every card, so acceptance can be compared before and after
a change of words, value sets or site settings.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from cds_service import __version__
from cds_service.card_builder.content import content_root
from cds_service.site.render import render_site
from cds_service.site.resolved import Site

_CONTENT_SUFFIXES = (".toml", ".json")


def _files(root: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        name = f"{prefix}{entry.name}"
        if entry.is_dir():
            yield from _files(entry, f"{name}/")
        elif entry.name.endswith(_CONTENT_SUFFIXES):
            yield name, entry


def content_version(cards_dir: str | Path | None = None, site: Site | None = None) -> str:
    """`site`: a site configuration changes what is said as much as the content does, so the
    configuration in force is part of the version (the same settings, the same version,
    whichever file they come from)."""
    digest = hashlib.sha256()
    roots = {
        "cards": content_root(cards_dir),
        "terminology": resources.files("cds_service.terminology") / "data",
    }
    for label, root in roots.items():
        for name, entry in _files(root):
            digest.update(f"{label}/{name}\0".encode())
            digest.update(entry.read_bytes())
            digest.update(b"\0")
    if site is not None:
        digest.update(b"site\0" + render_site(site).split("\n", 2)[2].encode())
    return f"{__version__}+{digest.hexdigest()[:12]}"
