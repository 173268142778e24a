"""The packages of cds_service depend on each other in one direction only: no import cycle."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "cds_service"


def _unit(parts: tuple[str, ...]) -> str:
    """A sub-package ("rules"), or a top-level module ("app")."""
    return parts[0] if (PACKAGE / parts[0]).is_dir() else parts[0].removesuffix(".py")


def _imports() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        source = _unit(path.relative_to(PACKAGE).parts)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cds_service."):
                target = _unit(tuple(node.module.split(".")[1:2]))  # type: ignore[union-attr]
                if target != source:
                    edges.setdefault(source, set()).add(target)
    return edges


def _cycle_through(edges: dict[str, set[str]], start: str) -> list[str] | None:
    stack = [(start, [start])]
    seen: set[str] = set()
    while stack:
        node, path = stack.pop()
        for target in edges.get(node, ()):
            if target == start:
                return [*path, start]
            if target not in seen:
                seen.add(target)
                stack.append((target, [*path, target]))
    return None


def test_no_import_cycle_between_packages() -> None:
    edges = _imports()
    cycles = [cycle for unit in sorted(edges) if (cycle := _cycle_through(edges, unit))]
    assert cycles == [], " ; ".join(" -> ".join(c) for c in cycles)


def test_the_shared_vocabulary_and_the_rules_stay_at_the_bottom() -> None:
    edges = _imports()
    assert edges.get("vocabulary", set()) == set()
    assert edges.get("json_text", set()) == set()
    # Rules are pure: they read the record and the terminology, nothing of HTTP, FHIR or the store.
    assert edges["rules"] <= {"record", "terminology", "vocabulary"}
