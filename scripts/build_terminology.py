#!/usr/bin/env python3
"""Regenerate the packaged terminology data of the back-pain CDS service.

Developers run this by hand; the service never does. It reads the read-only source material in
``shared/terminology`` (FHIR ValueSet JSON with expansions, plus ``index.json``) and the curated
data in ``scripts/terminology/`` (value set definitions, hand-verified code rows with their
provenance, filters, concepts with text patterns, orderables; format in its README.md), and
writes:

* ``cds_service/terminology/data/valuesets/<id>.json`` - one compact file per value set
* ``cds_service/terminology/data/concepts.json``       - concept -> value sets + text patterns
* ``cds_service/terminology/data/orderables.json``     - coded parts of suggested orders
* ``cds_service/terminology/README.md``                - tables generated from the same data

Output is deterministic: the same shared files give byte-identical output.

Usage::

    python scripts/build_terminology.py [--shared ../shared/terminology] [--check]

``--check`` rebuilds in memory and exits non-zero if a packaged file would change.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tomllib
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from terminology_kit import (  # noqa: E402
    Context,
    DataError,
    Shared,
    ValueSet,
    compiled,
    copied,
    expand,
    products,
    split,
    word_alternation,
)

from cds_service.terminology.concepts import Concept  # noqa: E402
from cds_service.terminology.index import (  # noqa: E402
    Coded,
    Terminology,
    build_terminology,
    canonical_system,
)

CURATED = REPO / "scripts" / "terminology"
DATA_DIR = REPO / "cds_service" / "terminology" / "data"
README = REPO / "cds_service" / "terminology" / "README.md"
README_TABLES = "<!-- generated tables: value sets, concepts, orderables -->"


def load(name: str) -> dict[str, Any]:
    path = CURATED / name
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise DataError(f"{path.relative_to(REPO)}: {error}") from None


def value_set_entries() -> list[tuple[str, dict[str, Any]]]:
    """Every `[[value_set]]` and `[[split]]` of valuesets/*.toml, with where it is written."""
    entries = []
    for path in sorted((CURATED / "valuesets").glob("*.toml")):
        data = load(f"valuesets/{path.name}")
        for kind in ("value_set", "split"):
            for entry in data.pop(kind, []):
                entries.append((f"valuesets/{path.name} {entry.get('id', kind)}", entry))
        if data:
            raise DataError(f"valuesets/{path.name}: unknown tables {sorted(data)}")
    return entries


# What a value set entry holds besides id, title and description, by the key that says its kind:
# (builder, required keys, optional keys).
KINDS: dict[str, tuple[Callable[[Context, dict[str, Any], str], ValueSet], set[str], set[str]]] = {
    "copy_of": (copied, set(), {"shared_file_compiled", "extra", "filter"}),
    "codes": (compiled, {"source", "method"}, {"system", "verified", "row_note"}),
    "products_of": (products, {"classify"}, {"extra"}),
}
ROW_KEYS = {"system", "code", "display", "verified"}


def _check_keys(entry: dict[str, Any], required: set[str], optional: set[str], where: str) -> None:
    unknown, missing = set(entry) - required - optional, required - set(entry)
    if unknown or missing:
        raise DataError(f"{where}: unknown keys {sorted(unknown)}, missing {sorted(missing)}")


def build_value_sets(ctx: Context, fragments: dict[str, str]) -> list[ValueSet]:
    entries = value_set_entries()
    sets: list[ValueSet] = []
    for where, entry in entries:
        if "part" in entry:
            _check_keys(entry, {"of", "part_name", "part"}, set(), where)
            for part in entry["part"]:
                _check_keys(part, {"id", "title", "description", "display_pattern"}, set(), where)
            continue
        kinds = [k for k in KINDS if k in entry]
        if len(kinds) != 1:
            raise DataError(f"{where}: a value set has exactly one of {', '.join(KINDS)}")
        build, required, optional = KINDS[kinds[0]]
        _check_keys(entry, {"id", "title", "description", kinds[0], *required}, optional, where)
        for row in entry.get("extra", []):
            _check_keys(row, ROW_KEYS, set(), f"{where} extra {row.get('code')}")
        for row in entry.get("codes", []):
            _check_keys(row, {"code", "display"}, ROW_KEYS, f"{where} code {row.get('code')}")
        sets.append(build(ctx, entry, where))
    for where, entry in entries:
        if "part" in entry:
            sets += split(sets, entry, fragments, where)
    return sets


def resolve_fragments(fragments: dict[str, Any], lists: dict[str, list[str]]) -> dict[str, str]:
    """Each fragment of concepts.toml as a plain regular expression."""
    resolved: dict[str, str] = {}
    for name, value in fragments.items():
        if isinstance(value, dict) and "any_of" in value:
            resolved[name] = "(?:" + "|".join(value["any_of"]) + ")"
        elif isinstance(value, dict) and "words" in value:
            resolved[name] = word_alternation(w for key in value["words"] for w in lists[key])
        else:
            resolved[name] = value
    return {
        name: expand(value, resolved, where=f"concepts.toml fragment {name}")
        for name, value in resolved.items()
    }


def build_concepts(data: dict[str, Any], fragments: dict[str, str], version: str) -> dict[str, Any]:
    definitions = data["concepts"]
    if set(definitions) != {c.value for c in Concept}:
        names = {c.value for c in Concept}
        raise DataError(
            f"concepts.toml: missing {sorted(names - set(definitions))}, "
            f"unknown {sorted(set(definitions) - names)} (the names of concepts.py)"
        )
    concepts = {}
    for concept in Concept:
        definition = definitions[concept.value]
        where = f"concepts.toml {concept.value}"
        patterns = [expand(p, fragments, where=where) for p in definition.get("text_patterns", [])]
        for pattern in patterns:
            try:
                re.compile(pattern, re.IGNORECASE)
            except re.error as error:
                raise DataError(f"{where}: {error} in {pattern!r}") from None
        concepts[concept.value] = {
            "description": definition["description"],
            "valueSets": definition["value_sets"],
            "textPatterns": patterns,
        }
    return {"version": version, "concepts": concepts}


def check_partitions(terminology: Terminology, partitions: dict[str, list[str]]) -> None:
    """Every code of a partitioned concept means exactly one of its parts (and the reverse)."""
    for whole_name, part_names in partitions.items():
        whole, parts = Concept(whole_name), {Concept(p) for p in part_names}
        for coded in terminology.concept_codes[whole]:
            found = terminology.concepts_for_code(coded.system, coded.code) & parts
            if len(found) != 1:
                raise DataError(f"{whole} {coded.code}: parts {sorted(found)}")
        for part in parts:
            for coded in terminology.concept_codes[part]:
                if whole not in terminology.concepts_for_code(coded.system, coded.code):
                    raise DataError(f"{part} {coded.code} is not {whole}")


def check_orderables(terminology: Terminology, specs: dict[str, Any]) -> None:
    for name, spec in specs.items():
        required = {Concept(c) for c in spec.get("recognised_as", [])}
        any_of = {Concept(c) for c in spec.get("recognised_as_one_of", [])}
        found = terminology.concepts_for_codeable(spec["resource"]["code"])
        if not required <= found or (any_of and not any_of & found):
            wanted = sorted(required | any_of)
            raise DataError(f"orderable {name!r} is recognised as {sorted(found)}, not {wanted}")


def dump_value_set(vs: ValueSet) -> str:
    """Compact JSON: metadata indented, one code object per line."""
    head = {k: v for k, v in asdict(vs).items() if k != "codes"}
    text = json.dumps(head, indent=2, ensure_ascii=False)
    lines = ",\n".join(
        "    " + json.dumps(c, ensure_ascii=False, separators=(", ", ": ")) for c in vs.codes
    )
    body = f'  "codes": [\n{lines}\n  ]' if vs.codes else '  "codes": []'
    return text[:-2] + ",\n" + body + "\n}\n"


def dump_json(doc: Any) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_readme(
    template: str,
    system_names: dict[str, str],
    sets: list[ValueSet],
    concepts: dict[str, Any],
    orderables: dict[str, Any],
) -> str:
    """package-readme.md with the generated tables where its marker line stands."""
    intro, gaps = template.split(README_TABLES)
    out = [
        intro.strip(),
        "",
        "## Value sets",
        "",
        "| id | purpose in this service | codes | systems | provenance (source; method) "
        "| licence |",
        "|---|---|---:|---|---|---|",
    ]
    for vs in sets:
        prov = vs.provenance
        source = prov["source"]
        if prov.get("upstreamVersion"):
            source += f" ({prov['upstreamVersion']})"
        systems = ", ".join(sorted({system_names.get(c["system"], c["system"]) for c in vs.codes}))
        out.append(
            f"| `{vs.id}` | {_cell(vs.description)} | {len(vs.codes)} | {systems} | "
            f"{_cell(source)}; *{_cell(prov['method'])}* | {_cell(prov['license'])} |"
        )
    total = sum(len(vs.codes) for vs in sets)
    out += [
        "",
        f"{len(sets)} value sets, {total} code rows in all.",
        "",
        "## Concepts",
        "",
        "| concept | meaning | value sets | text fallback |",
        "|---|---|---|---|",
    ]
    for name, definition in concepts["concepts"].items():
        sets_cell = ", ".join(f"`{s}`" for s in definition["valueSets"]) or "(none - text only)"
        text_cell = "yes" if definition["textPatterns"] else "no"
        out.append(f"| `{name}` | {_cell(definition['description'])} | {sets_cell} | {text_cell} |")
    out += ["", "## Orderables", "", "| name | resource | code | text |", "|---|---|---|---|"]
    for name, spec in orderables["orderables"].items():
        coding = spec["code"]["coding"][0]
        system = system_names.get(coding["system"], coding["system"])
        code = f"{system} {coding['code']} {coding['display']}"
        out.append(f"| `{name}` | {spec['resourceType']} | {code} | {spec['code']['text']} |")
    out += ["", gaps.strip(), ""]
    return "\n".join(out)


def icd_rows() -> list[tuple[str, str]]:
    """Every ICD-10-CM row written by hand in valuesets/*.toml: compiled codes and extras."""
    rows = []
    for _, entry in value_set_entries():
        default = entry.get("system")
        for row in [*entry.get("codes", []), *entry.get("extra", [])]:
            if row.get("system", default) == "ICD-10-CM":
                rows.append((row["code"], row["display"]))
    return rows


def verify_icd() -> None:
    """Re-check every hand-written ICD-10-CM row against simple-icd-10-cm (optional)."""
    import simple_icd_10_cm as icd  # type: ignore[import-not-found]

    for code, display in icd_rows():
        if not icd.is_valid_item(code) or icd.get_description(code) != display:
            raise SystemExit(f"ICD-10-CM row does not verify: {code} {display!r}")
    print("ICD-10-CM tables verified", file=sys.stderr)


def build(shared_root: Path) -> dict[Path, str]:
    sources, lists, concept_data = load("sources.toml"), load("lists.toml"), load("concepts.toml")
    for name, uri in sources["systems"].items():
        if canonical_system(uri) != uri:
            raise DataError(f"sources.toml: {name} is {canonical_system(uri)}, not {uri}")
    system_names = {uri: name for name, uri in sources["systems"].items()}
    ctx = Context(
        Shared.load(shared_root),
        sources["systems"],
        sources["compiled_licence"],
        lists,
        sources["verified"],
    )
    fragments = resolve_fragments(concept_data["fragments"], lists)
    sets = build_value_sets(ctx, fragments)
    concepts = build_concepts(concept_data, fragments, sources["data_version"])
    empty = [vs.id for vs in sets if not vs.codes]
    if empty:
        raise DataError(f"empty value sets: {empty}")
    ids = [vs.id for vs in sets]
    if len(ids) != len(set(ids)):
        raise DataError("duplicate value set ids")
    used = {s for d in concepts["concepts"].values() for s in d["valueSets"]}
    if used - set(ids) or set(ids) - used:
        raise DataError(
            f"value sets unused {sorted(set(ids) - used)} / missing {sorted(used - set(ids))}"
        )
    orderable_specs = load("orderables.toml")
    orderables = {"orderables": {name: s["resource"] for name, s in orderable_specs.items()}}
    value_sets = {
        vs.id: [Coded(c["system"], c["code"], c.get("display", "")) for c in vs.codes]
        for vs in sets
    }
    terminology = build_terminology(concepts, value_sets, orderables)
    check_orderables(terminology, orderable_specs)
    check_partitions(terminology, concept_data.get("partitions", {}))
    sets.sort(key=lambda vs: vs.id)
    files = {DATA_DIR / "valuesets" / f"{vs.id}.json": dump_value_set(vs) for vs in sets}
    files[DATA_DIR / "concepts.json"] = dump_json(concepts)
    files[DATA_DIR / "orderables.json"] = dump_json(orderables)
    template = (CURATED / "package-readme.md").read_text(encoding="utf-8")
    files[README] = render_readme(template, system_names, sets, concepts, orderables)
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--shared",
        type=Path,
        default=REPO.parent / "shared" / "terminology",
        help="folder with the shared ValueSet files (default: ../shared/terminology)",
    )
    parser.add_argument("--check", action="store_true", help="report stale files, write nothing")
    parser.add_argument(
        "--verify-icd",
        action="store_true",
        help="re-check compiled ICD-10-CM rows with simple-icd-10-cm (must be installed)",
    )
    args = parser.parse_args(argv)
    if args.verify_icd:
        verify_icd()
    files = build(args.shared)
    stale_dir = DATA_DIR / "valuesets"
    extra = (
        sorted(p for p in stale_dir.glob("*.json") if p not in files) if stale_dir.exists() else []
    )
    if args.check:
        changed = [
            p
            for p, text in files.items()
            if not p.exists() or p.read_text(encoding="utf-8") != text
        ]
        for path in changed + extra:
            print(f"stale: {path.relative_to(REPO)}")
        return 1 if changed or extra else 0
    stale_dir.mkdir(parents=True, exist_ok=True)
    for path in extra:
        path.unlink()
    for path, text in files.items():
        path.write_text(text, encoding="utf-8")
    size = sum(len(t.encode()) for p, t in files.items() if p != README)
    print(f"wrote {len(files)} files ({size / 1e6:.2f} MB of data)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
