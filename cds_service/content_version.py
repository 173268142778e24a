"""A stable name for the rules and content in force: the package version plus a short hash of
the loaded card content and terminology data. The decision log keeps it with every card, so
acceptance can be compared before and after a change of words or value sets.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from cds_service import __version__
from cds_service.card_builder.content import content_root

_CONTENT_SUFFIXES = (".toml", ".json")


def _files(root: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        name = f"{prefix}{entry.name}"
        if entry.is_dir():
            yield from _files(entry, f"{name}/")
        elif entry.name.endswith(_CONTENT_SUFFIXES):
            yield name, entry


def content_version(cards_dir: str | Path | None = None) -> str:
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
    return f"{__version__}+{digest.hexdigest()[:12]}"
