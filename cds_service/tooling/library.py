"""The fixture library on disk: scenario folders with scenario, request, expected and bundle."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from functools import cached_property
from pathlib import Path
from typing import Any

SCENARIO_FILE = "scenario.json"


class FixtureError(ValueError):
    """A path that is not a usable fixture (or folder of fixtures)."""


@dataclass(frozen=True)
class Fixture:
    folder: Path
    name: str
    service: str
    hook: str
    evaluation_date: date
    patient_id: str | None
    description: str = ""

    @classmethod
    def load(cls, folder: Path) -> Fixture:
        meta = _read_json(folder / SCENARIO_FILE)
        try:
            return cls(
                folder=folder,
                name=str(meta.get("name") or folder.name),
                service=str(meta["service"]),
                hook=str(meta["hook"]),
                evaluation_date=date.fromisoformat(str(meta["evaluationDate"])),
                patient_id=meta.get("patientId"),
                description=str(meta.get("description") or ""),
            )
        except (KeyError, ValueError) as error:
            raise FixtureError(
                f"{folder / SCENARIO_FILE}: needs 'service', 'hook' and an ISO "
                f"'evaluationDate' ({error})"
            ) from None

    @cached_property
    def request(self) -> dict[str, Any]:
        return _read_json(self.folder / "request.json")

    @cached_property
    def expected_cards(self) -> list[dict[str, Any]]:
        expected = _read_json(self.folder / "expected.json")
        cards = expected.get("cards")
        if not isinstance(cards, list):
            raise FixtureError(f"{self.folder / 'expected.json'}: needs a 'cards' list")
        return cards

    @property
    def bundle_path(self) -> Path:
        return self.folder / "bundle.json"

    def bundle(self) -> dict[str, Any]:
        return _read_json(self.bundle_path)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FixtureError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise FixtureError(f"{path}: not readable JSON ({error})") from None
    if not isinstance(document, dict):
        raise FixtureError(f"{path}: must hold a JSON object")
    return document


def _folders_of(path: Path) -> Iterable[Path]:
    if path.is_file():
        # A file inside a scenario folder (scenario.json, request.json ...) names its folder.
        path = path.parent
    if (path / SCENARIO_FILE).is_file():
        yield path
        return
    if not path.is_dir():
        raise FixtureError(f"{path}: no such fixture or folder")
    children = sorted(p for p in path.iterdir() if (p / SCENARIO_FILE).is_file())
    if not children:
        raise FixtureError(f"{path}: holds no scenario folders (folders with {SCENARIO_FILE})")
    yield from children


def discover(paths: Sequence[Path]) -> list[Fixture]:
    """Fixtures named by the paths: scenario folders, files in them, or folders of them."""
    seen: dict[Path, Fixture] = {}
    for path in paths:
        for folder in _folders_of(path):
            resolved = folder.resolve()
            if resolved not in seen:
                seen[resolved] = Fixture.load(folder)
    return list(seen.values())


def library_root(override: str | Path | None = None) -> Path | None:
    """The fixture library to offer: an override folder, the copy installed with the package
    (its scenario and request files), or the checkout's fhir_fixtures/; None if none is there."""
    if override:
        return Path(override)
    spec = importlib.util.find_spec("cds_service.fixture_library")
    # An installed or editable copy (package data without __init__: a namespace package).
    candidates = [Path(p) for p in (spec.submodule_search_locations or [])] if spec else []
    candidates.append(Path(__file__).resolve().parents[2] / "fhir_fixtures")
    for candidate in candidates:
        if candidate.is_dir() and any((p / SCENARIO_FILE).is_file() for p in candidate.iterdir()):
            return candidate
    return None


def library_scenarios(root: Path) -> list[Fixture]:
    """Every readable scenario folder directly under `root`, by name; unreadable ones skipped."""
    found = []
    for folder in sorted(p for p in root.iterdir() if (p / SCENARIO_FILE).is_file()):
        try:
            found.append(Fixture.load(folder))
        except FixtureError:
            continue
    return found
