"""Building blocks for `build_terminology.py`: the shared ValueSet files, the kinds of value set
that `scripts/terminology/valuesets/*.toml` define (a copy of a shared file, codes compiled by
hand, products classified by display, a split by display) with their filters, and the `{name}`
placeholders of provenance notes. The format is described in `scripts/terminology/README.md`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cds_service.terminology.index import ICD10CM, SNOMED, canonical_system, normalise_code

PLACEHOLDER = re.compile(r"\{([a-z][a-z0-9 _-]*)\}")
Keep = Callable[[dict[str, Any]], bool]
Row = dict[str, Any]


class DataError(SystemExit):
    """A terminology data file that cannot be used: the message says which entry and why."""


def expand(text: str, *names: Mapping[str, Any], where: str, depth: int = 0) -> str:
    """`text` with each `{name}` replaced by the first of `names` that defines it (a list is
    joined with ", "); replacements are expanded in turn."""

    def replace(match: re.Match[str]) -> str:
        for namespace in names:
            if match.group(1) in namespace:
                value = namespace[match.group(1)]
                value = ", ".join(value) if isinstance(value, list) else str(value)
                if depth > 5:
                    raise DataError(f"{where}: placeholders nest too deep at {match.group(0)}")
                return expand(value, *names, where=where, depth=depth + 1)
        raise DataError(f"{where}: unknown placeholder {match.group(0)}")

    return PLACEHOLDER.sub(replace, text)


def word_alternation(words: Iterable[str]) -> str:
    """`a|b|c`, longest first, so that a regex tries "escitalopram" before "citalopram"."""
    return "|".join(sorted(words, key=lambda w: (-len(w), w)))


def has_word(text: str, words: Iterable[str]) -> bool:
    return re.search(rf"\b(?:{word_alternation(words)})\b", text, re.IGNORECASE) is not None


def has_phrase(text: str, phrases: Iterable[str]) -> bool:
    lowered = text.lower()
    return any(p in lowered for p in phrases)


def _key(system: str, code: str) -> tuple[str, str]:
    canonical = canonical_system(system)
    return canonical, normalise_code(canonical, code)


@dataclass
class Shared:
    """The shared terminology folder: ValueSet documents and the provenance index."""

    root: Path
    docs: dict[str, dict[str, Any]] = field(default_factory=dict)
    index: dict[str, dict[str, Any]] = field(default_factory=dict)
    displays: dict[tuple[str, str], str] = field(default_factory=dict)

    @classmethod
    def load(cls, root: Path) -> Shared:
        shared = cls(root)
        for entry in json.loads((root / "index.json").read_text(encoding="utf-8")):
            shared.index[entry["file"].removesuffix(".json")] = entry
        for path in sorted(root.glob("*.json")):
            doc = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(doc, dict) or doc.get("resourceType") != "ValueSet":
                continue
            shared.docs[path.stem] = doc
            for item in doc.get("expansion", {}).get("contains", []):
                key = _key(item["system"], item["code"])
                if item.get("display") and key not in shared.displays:
                    shared.displays[key] = item["display"]
        return shared

    def contains(self, name: str) -> list[dict[str, Any]]:
        if name not in self.docs:
            raise DataError(f"no shared ValueSet {name!r} in {self.root}")
        return list(self.docs[name]["expansion"]["contains"])


@dataclass
class ValueSet:
    id: str
    title: str
    description: str
    provenance: dict[str, str]
    codes: list[dict[str, str]]


def clean_codes(
    items: Iterable[dict[str, Any]], shared: Shared, fill: bool = True
) -> tuple[list[dict[str, str]], int]:
    """Canonical systems, trimmed codes, de-duplicated, sorted; blank displays filled if known."""
    seen: dict[tuple[str, str], dict[str, str]] = {}
    filled = 0
    for item in items:
        system = canonical_system(item["system"])
        code = item["code"].strip()
        key = (system, normalise_code(system, code))
        if key in seen:
            continue
        display = (item.get("display") or "").strip()
        if not display and fill and key in shared.displays:
            display = shared.displays[key]
            filled += 1
        entry = {"system": system, "code": code}
        if display:
            entry["display"] = display
        seen[key] = entry
    codes = sorted(seen.values(), key=lambda c: (c["system"], c["code"]))
    return codes, filled


def provenance_of(shared: Shared, name: str, default_licence: str) -> dict[str, str]:
    doc = shared.docs[name]
    entry = shared.index.get(name, {})
    upstream = entry.get("source", "")
    if upstream.startswith("compiled"):
        upstream = f", itself {upstream}"
    elif upstream:
        upstream = f", itself from {upstream}"
    prov = {"source": f"shared/terminology/{name}.json{upstream}"}
    url = doc.get("url", "")
    if url and "example.org" not in url:
        prov["upstreamUrl"] = url
    version = doc.get("version")
    stamp = doc.get("expansion", {}).get("timestamp")
    parts = []
    if version:
        parts.append(f"version {version}")
    if stamp and "example.org" not in url:
        parts.append(f"expansion {stamp}")
    if parts:
        prov["upstreamVersion"] = ", ".join(parts)
    prov["license"] = entry.get("license", default_licence)
    return prov


# --- filters of copied value sets: each a test that keeps an item, with its parameters ----------


def _display(item: dict[str, Any]) -> str:
    return str(item.get("display") or "")


def _drop_display_pattern(p: dict[str, Any], item: dict[str, Any]) -> bool:
    if item["code"] in p["except_codes"]:
        return True
    return not any(re.search(x, _display(item), re.IGNORECASE) for x in p["patterns"])


def _trunk_trauma(p: dict[str, Any], item: dict[str, Any]) -> bool:
    system, code, display = canonical_system(item["system"]), item["code"], _display(item)
    if system == ICD10CM:
        sequela = len(code.replace(".", "")) == 7 and code.endswith("S")
        return (
            code[:3] in p["icd10cm_categories"]
            and not sequela
            and not has_word(display, p["icd10cm_drop_words"])
        )
    if system != SNOMED or not display or has_word(display, p["snomed_drop_words"]):
        return False
    return has_phrase(display, p["snomed_alone_phrases"]) or (
        has_word(display, p["snomed_injury_words"]) and has_word(display, p["snomed_site_words"])
    )


TRUNK_TRAUMA_PARAMS = {
    "icd10cm_categories", "icd10cm_drop_words", "snomed_injury_words", "snomed_site_words",
    "snomed_alone_phrases", "snomed_drop_words",
}  # fmt: skip
FILTERS: dict[str, tuple[set[str], Callable[[dict[str, Any], dict[str, Any]], bool]]] = {
    "drop-codes": ({"codes"}, lambda p, item: item["code"] not in p["codes"]),
    "keep-codes": ({"codes"}, lambda p, item: item["code"] in p["codes"]),
    "drop-code-pattern": (
        {"pattern"},
        lambda p, item: not re.fullmatch(p["pattern"], item["code"]),
    ),
    "drop-display-pattern": ({"patterns", "except_codes"}, _drop_display_pattern),
    "drop-display-words": (
        {"words", "unless_words"},
        lambda p, item: (
            not has_word(_display(item), p["words"]) or has_word(_display(item), p["unless_words"])
        ),
    ),
    "trunk-trauma": (TRUNK_TRAUMA_PARAMS, _trunk_trauma),
}


def make_filter(spec: dict[str, Any], where: str) -> Keep:
    if spec.get("kind") not in FILTERS:
        raise DataError(f"{where}: filter kind must be one of {sorted(FILTERS)}")
    params, test = FILTERS[spec["kind"]]
    given = set(spec) - {"kind", "note"}
    if given != params or "note" not in spec:
        raise DataError(f"{where}: a {spec['kind']} filter has note and {sorted(params)}")
    if spec["kind"] == "drop-codes":
        unnamed = [c for c in spec["codes"] if c not in spec["note"]]
        if unnamed:
            raise DataError(f"{where}: the filter note must say why {unnamed} are dropped")
    return lambda item: test(spec, item)


# --- the kinds of value set ---------------------------------------------------------------------


@dataclass
class Context:
    """What every value set entry may use: the shared files, code system names, the licence of
    compiled lists, the named lists of lists.toml and the shared verification notes."""

    shared: Shared
    systems: dict[str, str]  # name -> canonical URI
    licence: str
    lists: Mapping[str, list[str]]
    verified: Mapping[str, str]

    def resolve(self, params: Mapping[str, Any], where: str) -> dict[str, Any]:
        """A filter's or classification's parameters, a list named by a string looked up in
        lists.toml (`kind`, `note`, `rule` and `pattern` are text)."""
        resolved = dict(params)
        for key, value in params.items():
            if isinstance(value, str) and key not in {"kind", "note", "rule", "pattern"}:
                if value not in self.lists:
                    raise DataError(f"{where}: {key} names no list of lists.toml: {value!r}")
                resolved[key] = list(self.lists[value])
        return resolved

    def system(self, name: str, where: str) -> str:
        if name not in self.systems:
            raise DataError(f"{where}: unknown code system {name!r} (see sources.toml)")
        return self.systems[name]

    def expand(self, text: str, where: str, *local: Mapping[str, Any]) -> str:
        return expand(text, *local, self.lists, self.verified, where=where)

    def items(self, rows: list[Row], where: str) -> list[dict[str, str]]:
        """Hand-written rows as expansion items, systems by their canonical URI."""
        return [
            {"system": self.system(r["system"], where), "code": r["code"], "display": r["display"]}
            for r in rows
        ]


def copied(ctx: Context, entry: dict[str, Any], where: str) -> ValueSet:
    """A value set copied from one shared file, optionally filtered; `extra` rows are added by
    hand and must pass the filter too."""
    name = entry["copy_of"]
    items = ctx.shared.contains(name)
    spec = ctx.resolve(entry["filter"], where) if "filter" in entry else None
    keep = make_filter(spec, where) if spec else None
    kept = [item for item in items if keep is None or keep(item)]
    extra = entry.get("extra", [])
    added = ctx.items(extra, where)
    rejected = [item["code"] for item in added if keep is not None and not keep(item)]
    if rejected:
        raise DataError(f"{where}: hand-added codes fail the filter: {rejected}")
    codes, filled = clean_codes(kept + added, ctx.shared)
    prov = provenance_of(ctx.shared, name, ctx.licence)
    if spec is None:
        method = "verbatim copy of the shared expansion (codes and displays)"
    else:
        note = ctx.expand(spec["note"], where, spec)
        method = f"filtered subset: {note} ({len(items) - len(kept)} of {len(items)} codes dropped)"
    if entry.get("shared_file_compiled"):
        method += "; the shared file is itself compiled from verified facts (per-code notes there)"
    if filled:
        method += f"; {filled} blank displays filled from the same code in other shared files"
    if extra:
        method += "; added by hand: " + "; ".join(
            f"{r['system']} {r['code']} {r['display']} ({ctx.expand(r['verified'], where)})"
            for r in extra
        )
    prov["method"] = method
    return ValueSet(entry["id"], entry["title"], entry["description"], prov, codes)


def compiled(ctx: Context, entry: dict[str, Any], where: str) -> ValueSet:
    """A value set compiled by hand: every row a code fact with its verification, its own or the
    entry's `verified`; `{row notes}` in `source` lists the rows that have their own."""
    rows = []
    for row in entry["codes"]:
        verified = row.get("verified", entry.get("verified"))
        if not verified or not row.get("display"):
            raise DataError(f"{where}: {row.get('code')} needs a display and a verification")
        system = ctx.system(row.get("system", entry.get("system", "")), where)
        rows.append({"system": system, "code": row["code"], "display": row["display"]})
    codes, _ = clean_codes(rows, ctx.shared, fill=False)
    row_note = entry.get("row_note", "{code} ({verified})")
    notes = "; ".join(
        row_note.format(
            code=r["code"], display=r["display"], verified=ctx.expand(r["verified"], where)
        )
        for r in entry["codes"]
        if "verified" in r
    )
    local = {"verified": entry.get("verified", ""), "row notes": notes}
    prov = {
        "source": ctx.expand(entry["source"], where, local),
        "license": ctx.licence,
        "method": ctx.expand(entry["method"], where, local),
    }
    return ValueSet(entry["id"], entry["title"], entry["description"], prov, codes)


def products(ctx: Context, entry: dict[str, Any], where: str) -> ValueSet:
    """Products picked from shared RxNorm expansions by the words of their displays: all of
    `words` (whole words) and `phrases` (anywhere), none of `no_words` and `no_phrases`."""
    rule = ctx.resolve(entry["classify"], where)
    if set(rule) - {"words", "no_words", "phrases", "no_phrases", "rule"}:
        raise DataError(f"{where}: unknown classify keys {sorted(rule)}")

    def keep(display: str) -> bool:
        no_words, phrases = rule.get("no_words", []), rule.get("phrases", [])
        return (
            has_word(display, rule["words"])
            and not (no_words and has_word(display, no_words))
            and (not phrases or has_phrase(display, phrases))
            and not has_phrase(display, rule.get("no_phrases", []))
        )

    names = entry["products_of"]
    items = []
    for name in names:
        for item in ctx.shared.contains(name):
            display = item.get("display") or ctx.shared.displays.get(
                _key(item["system"], item["code"]), ""
            )
            if display and keep(display):
                items.append({**item, "display": display})
    extra = entry.get("extra", [])
    items += ctx.items(extra, where)
    codes, _ = clean_codes(items, ctx.shared, fill=False)
    licences = sorted({ctx.shared.index[n]["license"] for n in names if n in ctx.shared.index})
    method = (
        f"filtered subset by display words: {ctx.expand(rule['rule'], where)}; products without "
        "a display cannot be classified and are left out"
    )
    if extra:
        method += "; added by hand: " + "; ".join(
            f"{r['code']} ({ctx.expand(r['verified'], where)})" for r in extra
        )
    prov = {
        "source": ", ".join(f"shared/terminology/{n}.json" for n in names),
        "license": " | ".join(licences),
        "method": method,
    }
    return ValueSet(entry["id"], entry["title"], entry["description"], prov, codes)


def split(
    sets: list[ValueSet], entry: dict[str, Any], patterns: Mapping[str, str], where: str
) -> list[ValueSet]:
    """One subset of the `of` value sets per part, picked by display: every code of the sources
    must match exactly one part's `display_pattern` (a regex; `{name}` is a concepts.toml
    fragment)."""
    by_id = {vs.id: vs for vs in sets}
    sources = [by_id[vs_id] for vs_id in entry["of"]]
    parts = [
        (part, expand(part["display_pattern"], patterns, where=where)) for part in entry["part"]
    ]
    picked: dict[str, list[dict[str, str]]] = {part["id"]: [] for part, _ in parts}
    for source in sources:
        for coded in source.codes:
            found = [
                part["id"]
                for part, pattern in parts
                if re.search(rf"\b{pattern}\b", coded.get("display", ""), re.IGNORECASE)
            ]
            if len(found) != 1:
                raise DataError(f"{source.id} {coded['code']}: {entry['part_name']} {found}")
            picked[found[0]].append(coded)
    licences = " | ".join(dict.fromkeys(vs.provenance["license"] for vs in sources))
    out = []
    for part, pattern in parts:
        prov = {
            "source": "this package's value sets "
            + ", ".join(entry["of"])
            + " (their provenance applies to each code)",
            "license": licences,
            "method": f"subset by display words: the display matches the regular expression "
            f"{pattern} (case-insensitive, whole words); each code of the sources lands in "
            f"exactly one {entry['part_name']}",
        }
        codes = sorted(picked[part["id"]], key=lambda c: (c["system"], c["code"]))
        out.append(ValueSet(part["id"], part["title"], part["description"], prov, codes))
    return out
