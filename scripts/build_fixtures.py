"""Write the clinical scenario library in `fhir_fixtures/` from the scenario files in
`scripts/scenarios/` (their format: `scripts/scenarios/README.md`).

Each scenario becomes a folder with:
  scenario.json  what it shows, which service it calls, its patient id, the evaluation date
  request.json   the complete CDS Hooks request, prefetch included
  expected.json  the golden cards, by topic, indicator and suggestion actions
  bundle.json    the scenario's stored FHIR resources as an idempotent transaction Bundle
and `fhir_fixtures/README.md` indexes them.

The expected cards are written by hand in the scenario files from the guideline (README
"Clinical logic"), never taken from the service's output. Run: python scripts/build_fixtures.py
(`--check` reports whether the committed files are current; `--out DIR` writes elsewhere).
"""

from __future__ import annotations

import argparse
import filecmp
import json
import shutil
import sys
import tempfile
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fixture_kit import (
    EVALUATION_DATE,
    SERVICE_FOR_HOOK,
    SYSTEMS,
    VITAL_SIGNS,
    Code,
    Expected,
    Persona,
    Scenario,
    condition,
    medication,
    order,
    orderable_signature,
    procedure,
    vital_sign,
)
from messy_requests import REQUEST_EDITS

PROJECT = Path(__file__).resolve().parents[1]
ROOT = PROJECT / "fhir_fixtures"
SCENARIOS = PROJECT / "scripts" / "scenarios"
PREFETCH_KEYS = (
    "patient", "conditions", "medications", "observations", "procedures", "servicerequests",
)  # fmt: skip


class ScenarioError(SystemExit):
    """A scenario file that cannot be read: the message names the file, scenario and entry."""


def _checked(entry: Any, where: str, allowed: set[str], required: set[str]) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise ScenarioError(f"{where}: expected a table, got {entry!r}")
    unknown, missing = set(entry) - allowed, required - set(entry)
    if unknown or missing:
        raise ScenarioError(f"{where}: unknown keys {sorted(unknown)}, missing {sorted(missing)}")
    return entry


class Golden:
    """The golden card shapes a scenario names with `card = "<topic>"`; the suggested orders'
    codes come from the packaged orderables data. Any other card is written out in full."""

    def __init__(self) -> None:
        self.topical = orderable_signature(PROJECT, "topical-nsaid")
        self.acetaminophen = orderable_signature(PROJECT, "acetaminophen")
        self.pt_referral = orderable_signature(PROJECT, "physical-therapy-referral")
        self.pain_referral = orderable_signature(PROJECT, "pain-management-referral")

    def opioid(self, order: str, *, nsaid_unsafe: bool = False) -> Expected:
        alternative = self.acetaminophen if nsaid_unsafe else self.topical
        return Expected(
            "opioid-avoidance", "warning", [[alternative, f"delete {order}"], [f"delete {order}"]]
        )

    def imaging(self, order: str) -> Expected:
        return Expected("imaging-without-red-flags", "warning", [[f"delete {order}"]])

    @staticmethod
    def red_flags(indicator: str = "warning") -> Expected:
        return Expected("red-flags-present", indicator)

    def topical_first(self, order: str) -> Expected:
        return Expected("topical-nsaid-first", "info", [[self.topical, f"delete {order}"]])

    def nsaid_contraindicated(self, order: str) -> Expected:
        return Expected(
            "nsaid-contraindicated", "warning", [[self.acetaminophen, f"delete {order}"]]
        )

    def exercise(self) -> Expected:
        return Expected("exercise-therapy", "info", [[self.pt_referral]])

    def chronic(self, *, refer: bool) -> Expected:
        return Expected("chronic-pain-assessment", "info", [[self.pain_referral]] if refer else [])

    def card(self, spec: dict[str, Any], drafts: set[str], where: str) -> Expected:
        if "topic" in spec:
            full = _checked(
                spec, where, {"topic", "indicator", "suggestions"}, {"topic", "indicator"}
            )
            return Expected(full["topic"], full["indicator"], full.get("suggestions", []))
        shapes: dict[str, Callable[..., Expected]] = {
            "opioid-avoidance": self.opioid,
            "imaging-without-red-flags": self.imaging,
            "red-flags-present": self.red_flags,
            "topical-nsaid-first": self.topical_first,
            "nsaid-contraindicated": self.nsaid_contraindicated,
            "exercise-therapy": self.exercise,
            "chronic-pain-assessment": self.chronic,
        }
        arguments = {k: v for k, v in spec.items() if k != "card"}
        if spec.get("card") not in shapes:
            raise ScenarioError(f"{where}: card must be one of {sorted(shapes)} (or give topic)")
        if "order" in arguments and arguments["order"] not in drafts:
            raise ScenarioError(f"{where}: {arguments['order']} is not a draft of this scenario")
        try:
            return shapes[spec["card"]](**arguments)
        except TypeError as error:
            raise ScenarioError(f"{where}: {error}") from None


class Library:
    """The shared parts of the scenario files (library.toml): patients, named codes, the
    vocabulary of `shows` and the order of the scenario files."""

    def __init__(self, folder: Path) -> None:
        data = tomllib.loads((folder / "library.toml").read_text(encoding="utf-8"))
        self.files: list[str] = data["files"]
        self.features: set[str] = set(data["features"])
        self.codes: dict[str, list[str]] = data["codes"]
        self.patients = {
            name: Persona(f"pt-{name}", p["birth_date"], p["gender"], p["given"], p["family"])
            for name, p in data["patients"].items()
        }
        listed = {folder / f for f in self.files}
        unlisted = sorted(p.name for p in folder.glob("*.toml") if p not in listed)
        if unlisted != ["library.toml"]:
            raise ScenarioError(f"{folder}: scenario files not in library.toml files: {unlisted}")

    def code(self, value: Any, where: str) -> Code:
        """A named code from library.toml, or [system, code, display] with the system by name
        (ICD-10-CM, SNOMED CT, RxNorm, LOINC, CPT) or as a URI."""
        row = self.codes.get(value) if isinstance(value, str) else value
        if not isinstance(row, list) or len(row) != 3:
            raise ScenarioError(f"{where}: {value!r} is neither a named code nor a 3-item row")
        system, code, display = row
        if system not in SYSTEMS and ":" not in system:
            raise ScenarioError(f"{where}: unknown code system {system!r}")
        return SYSTEMS.get(system, system), code, display


ORDER_KEYS = {
    "resource", "id", "code", "text", "medication", "status", "authored_days_ago", "reason",
}  # fmt: skip


def _order(
    lib: Library, patient: Persona, entry: Any, where: str, kind: str, status: str
) -> dict[str, Any]:
    """A MedicationRequest, ServiceRequest or Medication of a scenario: `kind` and `status` are
    the defaults of the list it is in (drafts name their `resource`)."""
    _checked(entry, where, ORDER_KEYS, {"id"} if kind else {"id", "resource"})
    kind = entry.get("resource", kind)
    given = [k for k in ("code", "text", "medication") if k in entry]
    valid = {
        "MedicationRequest": [["code"], ["text"], ["medication"]],
        "ServiceRequest": [["code"], ["text"]],
        "Medication": [["code"]],
    }
    if given not in valid.get(kind, []):
        raise ScenarioError(f"{where}: a {kind} names one of {valid.get(kind)}, not {given}")
    code = lib.code(entry["code"], where) if "code" in entry else None
    if kind == "Medication" and code:
        return medication(entry["id"], code)
    options: dict[str, Any] = {
        "status": entry.get("status", status),
        "authored_days_ago": entry.get("authored_days_ago", 0),
        "reason": lib.code(entry["reason"], where) if "reason" in entry else None,
    }
    return order(
        kind,
        patient,
        entry["id"],
        code,
        entry.get("text", ""),
        medication_id=entry.get("medication"),
        **options,
    )


def _condition(lib: Library, patient: Persona, entry: Any, where: str) -> dict[str, Any]:
    keys = {"id", "code", "onset_days_ago", "clinical", "verification", "category"}
    _checked(entry, where, keys, {"id", "code"})
    options = {k: entry[k] for k in ("onset_days_ago", "verification", "category") if k in entry}
    if "clinical" in entry:
        options["clinical"] = entry["clinical"] or None  # "" leaves clinicalStatus out
    return condition(patient, entry["id"], lib.code(entry["code"], where), **options)


def _observation(patient: Persona, entry: Any, where: str) -> dict[str, Any]:
    _checked(entry, where, {"id", "unit", "days_ago", *VITAL_SIGNS}, {"id", "unit", "days_ago"})
    kinds = [k for k in VITAL_SIGNS if k in entry]
    if len(kinds) != 1 or entry["unit"] not in VITAL_SIGNS[kinds[0]][1]:
        raise ScenarioError(f"{where}: one of {sorted(VITAL_SIGNS)} with a unit it allows")
    kind = kinds[0]
    return vital_sign(patient, entry["id"], kind, entry[kind], entry["unit"], entry["days_ago"])


def _procedure(lib: Library, patient: Persona, entry: Any, where: str) -> dict[str, Any]:
    _checked(entry, where, {"id", "code", "days_ago"}, {"id", "code", "days_ago"})
    return procedure(patient, entry["id"], lib.code(entry["code"], where), entry["days_ago"])


SCENARIO_KEYS = {
    "name", "description", "hook", "patient", "shows", "tags", "conditions", "medications",
    "observations", "procedures", "service_requests", "drafts", "selections", "expected",
    "null_prefetch", "edit_request",
}  # fmt: skip


def load_scenario(entry: Any, lib: Library, golden: Golden, source: str) -> Scenario:
    where = f"{source} scenario {entry.get('name', '?') if isinstance(entry, dict) else '?'}"
    required = {"name", "description", "hook", "patient", "shows", "tags", "expected"}
    _checked(entry, where, SCENARIO_KEYS, required)
    if entry["hook"] not in SERVICE_FOR_HOOK or entry["patient"] not in lib.patients:
        raise ScenarioError(f"{where}: unknown hook or patient")
    unknown = [s for s in entry["shows"] if s not in lib.features]
    if unknown or set(entry.get("null_prefetch", [])) - set(PREFETCH_KEYS):
        raise ScenarioError(
            f"{where}: shows not in library.toml features {unknown}, or bad null_prefetch"
        )
    edit = entry.get("edit_request")
    if edit is not None and edit not in REQUEST_EDITS:
        raise ScenarioError(f"{where}: edit_request must be one of {sorted(REQUEST_EDITS)}")
    patient = lib.patients[entry["patient"]]

    def each(key: str) -> list[tuple[Any, str]]:
        return [(item, f"{where} {key}[{i}]") for i, item in enumerate(entry.get(key, []))]

    drafts = [_order(lib, patient, e, w, "", "draft") for e, w in each("drafts")]
    draft_refs = {f"{d['resourceType']}/{d['id']}" for d in drafts}
    return Scenario(
        name=entry["name"],
        description=entry["description"],
        hook=entry["hook"],
        patient=patient,
        shows=entry["shows"],
        conditions=[_condition(lib, patient, e, w) for e, w in each("conditions")],
        medications=[
            _order(lib, patient, e, w, "MedicationRequest", "active")
            for e, w in each("medications")
        ],
        observations=[_observation(patient, e, w) for e, w in each("observations")],
        procedures=[_procedure(lib, patient, e, w) for e, w in each("procedures")],
        service_requests=[
            _order(lib, patient, e, w, "ServiceRequest", "active")
            for e, w in each("service_requests")
        ],
        drafts=drafts,
        selections=entry.get("selections"),
        expected=[golden.card(e, draft_refs, w) for e, w in each("expected")],
        tags=entry["tags"],
        null_prefetch=entry.get("null_prefetch", []),
        mutate=REQUEST_EDITS[edit] if edit else None,
    )


def scenarios(folder: Path = SCENARIOS) -> list[Scenario]:
    library, golden = Library(folder), Golden()
    found = []
    for name in library.files:
        data = tomllib.loads((folder / name).read_text(encoding="utf-8"))
        found += [load_scenario(e, library, golden, name) for e in data.get("scenario", [])]
    return found


# --- writing -----------------------------------------------------------------------------------


def _dump(path: Path, document: Any) -> None:
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_scenario(root: Path, scenario: Scenario) -> None:
    folder = root / scenario.name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    _dump(folder / "scenario.json", scenario.metadata())
    _dump(folder / "request.json", scenario.request())
    _dump(folder / "expected.json", scenario.expected_cards())
    _dump(folder / "bundle.json", scenario.bundle())


def _cards_cell(scenario: Scenario) -> str:
    if not scenario.expected:
        return "none"
    return ", ".join(f"`{e.topic}` ({e.indicator})" for e in scenario.expected)


def index_markdown(all_scenarios: list[Scenario], intro: str) -> str:
    """The library index: the prose of `index-intro.md`, then the tables."""
    head = intro.replace("{count}", str(len(all_scenarios)))
    lines = [head.replace("{evaluation_date}", EVALUATION_DATE.isoformat()).rstrip("\n")]
    lines += ["", "| scenario | hook | what it shows | expected cards |", "|---|---|---|---|"]
    for s in all_scenarios:
        lines.append(f"| [`{s.name}`]({s.name}/) | {s.hook} | {s.description} | {_cards_cell(s)} |")
    features: dict[str, list[str]] = {}
    for s in all_scenarios:
        for feature in s.shows:
            features.setdefault(feature, []).append(s.name)
    lines += ["", "## Where to find what", "", "| shows | scenarios |", "|---|---|"]
    for feature in sorted(features):
        names = ", ".join(f"[`{n}`]({n}/)" for n in features[feature])
        lines.append(f"| {feature} | {names} |")
    return "\n".join(lines) + "\n"


def write_library(root: Path) -> list[Scenario]:
    all_scenarios = scenarios()
    names = [s.name for s in all_scenarios]
    if len(names) != len(set(names)):
        raise SystemExit("scenario names must be unique")
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.iterdir():
        if stale.is_dir() and stale.name not in names:
            shutil.rmtree(stale)
    for scenario in all_scenarios:
        write_scenario(root, scenario)
    intro = (SCENARIOS / "index-intro.md").read_text(encoding="utf-8")
    (root / "README.md").write_text(index_markdown(all_scenarios, intro), encoding="utf-8")
    return all_scenarios


def _differences(expected: Path, actual: Path) -> list[str]:
    comparison = filecmp.dircmp(expected, actual)
    found: list[str] = []

    def walk(c: filecmp.dircmp[str], prefix: str) -> None:
        found.extend(f"{prefix}{n}: only in the fresh build" for n in c.left_only)
        found.extend(f"{prefix}{n}: not produced by the script" for n in c.right_only)
        found.extend(f"{prefix}{n}: differs" for n in c.diff_files)
        for name, sub in c.subdirs.items():
            walk(sub, f"{prefix}{name}/")

    walk(comparison, "")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=ROOT, help="folder to write (default: %(default)s)"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write to a temporary folder and report whether --out is current",
    )
    args = parser.parse_args(argv)
    if args.check:
        with tempfile.TemporaryDirectory() as scratch:
            write_library(Path(scratch))
            stale = _differences(Path(scratch), args.out)
        for line in stale:
            print(line)
        print("fixtures are current" if not stale else f"{len(stale)} fixture files are stale")
        return 1 if stale else 0
    written = write_library(args.out)
    print(f"wrote {len(written)} scenarios to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
