"""Lenient reading of FHIR R4 JSON as it arrives in real CDS Hooks traffic.

Resources are validated with the `fhir.resources.R4B` models (the package's default models are
R5 and reject R4 shapes). Known defects of real clients are repaired first: the CDS Hooks
sandbox sends MedicationRequest.category as an object and leaves out `intent`; published
examples write `doseAndRate` as an object. A resource that still fails validation is skipped
and logged by type and error location only, never by content.
"""

from __future__ import annotations

import copy
import gc
import hashlib
import json
import logging
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator
from datetime import date, datetime
from typing import Any

import orjson
import pydantic
from fhir.resources.R4B import get_fhir_model_class
from fhir_core.fhirabstractmodel import FHIRAbstractModel

log = logging.getLogger(__name__)

# Resource types the service reads; anything else (e.g. DSTU2 MedicationOrder) is ignored.
KNOWN_TYPES = frozenset(
    {
        "Patient",
        "Condition",
        "MedicationRequest",
        "MedicationStatement",
        "Medication",
        "ServiceRequest",
        "Procedure",
        "Observation",
        "DeviceRequest",
        "NutritionOrder",
        "VisionPrescription",
    }
)

# Elements that R4 defines as lists but that real clients send as a single object.
_LIST_ELEMENTS: dict[str, tuple[str, ...]] = {
    "MedicationRequest": ("category", "reasonCode", "dosageInstruction", "note"),
    "ServiceRequest": ("category", "reasonCode", "orderDetail", "bodySite", "note"),
    "Condition": ("category", "bodySite", "note"),
    "Observation": ("category", "performer", "note"),
    "Procedure": ("reasonCode", "bodySite", "note"),
}


class NumberOutOfRange(json.JSONDecodeError):
    """A JSON number no 64-bit floating-point value can hold (1e400, a 5,000-digit integer, a
    nonzero 1e-400 that would read as 0), or NaN / Infinity, which JSON does not have."""

    def __init__(self) -> None:
        super().__init__("a number is out of the range this service can hold", "", 0)


def _checked_float(literal: str) -> float:
    value = float(literal)  # a literal beyond the range reads as inf, never raises
    if math.isinf(value):
        raise NumberOutOfRange()
    if value == 0.0 and _NONZERO_MANTISSA.match(literal):
        raise NumberOutOfRange()  # so small it would read as zero
    return value


def _checked_int(literal: str) -> int | float:
    # Integers beyond 64 bits read as floats, as orjson reads them; one beyond the range of a
    # float is refused (and never reaches int(), whose digit limit raises a plain ValueError).
    if len(literal) <= 19:
        return int(literal)
    return _checked_float(literal)


def _refuse_constant(_name: str) -> float:
    raise NumberOutOfRange()


_NONZERO_MANTISSA = re.compile(r"-?0*\.?0*[1-9]")
# A literal can read as zero though it is not only with an exponent of -100 or less, or a long
# run of zeros after the point. Each regex starts with a literal, so it scans at memchr speed
# (a mixed-case class would scan ten times slower); together about 1 ms per MB, under a tenth
# of orjson's parse of the same document.
_SMALL_EXPONENTS = (re.compile(rb"e-0*[1-9][0-9]{2}"), re.compile(rb"E-0*[1-9][0-9]{2}"))
_LONG_ZERO_FRACTION = b"." + b"0" * 250
_MANTISSA_BYTES = frozenset(b"0123456789.")
_BEFORE_A_NUMBER = frozenset(b":,[ \t\r\n")


def _is_number_literal(raw: bytes, exponent_at: int) -> bool:
    """Whether the exponent at `exponent_at` ends a JSON number (not, say, a UUID in a string
    such as "…-a94e-1234-…"): its mantissa follows a delimiter."""
    index = exponent_at - 1
    while index >= 0 and raw[index] in _MANTISSA_BYTES:
        index -= 1
    if index >= 0 and raw[index] == ord("-"):
        index -= 1
    return index < 0 or raw[index] in _BEFORE_A_NUMBER


def _may_underflow(raw: bytes) -> bool:
    """Whether the document may hold a nonzero literal that reads as 0.0 (then parsed again,
    slowly, to decide); a literal inside a string can only cost that second parse."""
    for pattern in _SMALL_EXPONENTS:
        for match in pattern.finditer(raw):
            if _is_number_literal(raw, match.start()):
                return True
    return _LONG_ZERO_FRACTION in raw


def _parse_checked(raw: bytes | str) -> Any:
    """`json.loads` with every number checked; also reads the encodings orjson does not."""
    return json.loads(
        raw, parse_float=_checked_float, parse_int=_checked_int, parse_constant=_refuse_constant
    )


def loads_json(raw: bytes | str) -> Any:
    """Parse JSON as `json.loads` does, fast, with the garbage collector paused; every number
    must fit a 64-bit float.

    orjson parses UTF-8 JSON several times faster; what it refuses (other encodings, a number
    beyond the range of a float) goes to `json.loads` with checked numbers. Refused, with a
    JSONDecodeError: a number no float can hold (NumberOutOfRange: 1e400, a 5,000-digit
    integer, 1e-400, which would silently read as 0), NaN and Infinity (not JSON), and a string
    holding half of a UTF-16 surrogate pair (`"\\ud800"`), which no text can hold: it could
    not be logged, stored or sent on. Integers beyond 64 bits read as floats.

    Parsing a large FHIR document allocates hundreds of thousands of dicts and lists and
    creates no reference cycles, yet the allocations alone set off collections that walk the
    growing document again and again: pausing them halves the parse of a 2,000-resource record.
    """
    paused = gc.isenabled()
    if paused:
        gc.disable()
    try:
        try:
            document = orjson.loads(raw)
        except orjson.JSONDecodeError:
            document = _parse_checked(raw)
        else:
            candidate = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
            if _may_underflow(candidate):
                _parse_checked(raw)  # orjson read it as 0.0; refused if the literal was not 0
            return document
        try:
            json.dumps(document, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise json.JSONDecodeError("a string holds a lone surrogate", "", 0) from None
        return document
    finally:
        if paused:
            gc.enable()


def is_operation_outcome(value: Any) -> bool:
    return isinstance(value, dict) and value.get("resourceType") == "OperationOutcome"


def bundle_entries(bundle: Any) -> Iterator[dict[str, Any]]:
    """Resources of a Bundle, leaving out OperationOutcomes and malformed entries."""
    if not isinstance(bundle, dict):
        return
    entries = bundle.get("entry")
    if not isinstance(entries, list):
        return
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        resource = entry.get("resource")
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            continue
        search = entry.get("search")
        if isinstance(search, dict) and search.get("mode") == "outcome":
            continue
        if is_operation_outcome(resource):
            continue
        yield resource


def is_failed_result(value: Any) -> bool:
    """An OperationOutcome, or a Bundle that carries only OperationOutcomes: the query failed."""
    if is_operation_outcome(value):
        return True
    if isinstance(value, dict) and value.get("resourceType") == "Bundle":
        entries = value.get("entry")
        if isinstance(entries, list) and entries:
            # Stops at the first real resource: a long search result is not walked to the end.
            return all(
                is_operation_outcome(e.get("resource")) for e in entries if isinstance(e, dict)
            )
    return False


def next_page_link(value: Any) -> str | None:
    """The `next` link of a search Bundle (more results on the server), if it has one."""
    if not isinstance(value, dict) or value.get("resourceType") != "Bundle":
        return None
    links = value.get("link")
    if not isinstance(links, list):
        return None
    for link in links:
        if isinstance(link, dict) and link.get("relation") == "next":
            url = link.get("url")
            if isinstance(url, str) and url.strip():
                return url.strip()
    return None


def resources_of(value: Any) -> list[dict[str, Any]]:
    """Flatten a prefetch or search result (a resource or a Bundle) into its resources."""
    if not isinstance(value, dict):
        return []
    if value.get("resourceType") == "Bundle":
        return list(bundle_entries(value))
    if is_operation_outcome(value) or not isinstance(value.get("resourceType"), str):
        return []
    return [value]


def _repair(raw: dict[str, Any], resource_type: str) -> dict[str, Any]:
    repaired = raw
    for element in _LIST_ELEMENTS.get(resource_type, ()):
        if isinstance(repaired.get(element), dict):
            if repaired is raw:
                repaired = dict(raw)
            repaired[element] = [repaired[element]]
    if resource_type == "MedicationRequest":
        dosages = repaired.get("dosageInstruction")
        if isinstance(dosages, list) and any(
            isinstance(d, dict) and isinstance(d.get("doseAndRate"), dict) for d in dosages
        ):
            if repaired is raw:
                repaired = dict(raw)
            repaired["dosageInstruction"] = [
                {**d, "doseAndRate": [d["doseAndRate"]]}
                if isinstance(d, dict) and isinstance(d.get("doseAndRate"), dict)
                else d
                for d in dosages
            ]
    return repaired


def _fill_required(
    raw: dict[str, Any], resource_type: str, patient_ref: str | None
) -> dict[str, Any]:
    """Supply required elements draft orders often lack, from what the hook context says."""
    if resource_type not in {"MedicationRequest", "ServiceRequest", "DeviceRequest"}:
        return raw
    filled = dict(raw)
    filled.setdefault("status", "draft")
    filled.setdefault("intent", "proposal")
    if patient_ref and "subject" not in filled:
        filled["subject"] = {"reference": patient_ref}
    return filled


def _drop_paths(raw: dict[str, Any], paths: list[tuple[Any, ...]]) -> dict[str, Any]:
    cleaned = copy.deepcopy(raw)
    for path in paths:
        node: Any = cleaned
        for step in path[:-1]:
            try:
                node = node[step]
            except (KeyError, IndexError, TypeError):
                node = None
                break
        if isinstance(node, dict):
            node.pop(path[-1], None)
    return cleaned


def _validate(
    raw: dict[str, Any], draft_patient_ref: str | None
) -> tuple[FHIRAbstractModel | None, tuple[dict[str, str], ...]]:
    """The validated model, or None and where validation failed (locations, never values)."""
    resource_type = raw.get("resourceType")
    if resource_type not in KNOWN_TYPES:
        return None, ()
    model_class = get_fhir_model_class(resource_type)
    candidate = _repair(raw, resource_type)
    if draft_patient_ref is not None:
        candidate = _fill_required(candidate, resource_type, draft_patient_ref)
    model, problems = _model_or_problems(model_class, candidate)
    # Members this FHIR version does not define (vendor additions, R5 leftovers) are dropped.
    unknown = [tuple(p["loc"]) for p in problems if p["type"] == "extra_forbidden"]
    if unknown and len(unknown) == len(problems):
        model, problems = _model_or_problems(model_class, _drop_paths(candidate, unknown))
    if model is not None:
        return model, ()
    return None, tuple(
        {"at": ".".join(str(s) for s in p["loc"]), "type": p["type"]} for p in problems[:5]
    )


def _model_or_problems(
    model_class: type[FHIRAbstractModel], candidate: dict[str, Any]
) -> tuple[FHIRAbstractModel | None, list[Any]]:
    try:
        return model_class.model_validate(candidate), []
    except pydantic.ValidationError as error:
        return None, error.errors()
    except (KeyError, TypeError, ValueError) as error:
        # fhir.resources resolves a contained resource's type outside pydantic's error
        # handling: an unknown or non-string resourceType there fails with a plain error.
        return None, [{"loc": ("contained",), "type": f"invalid_{type(error).__name__}"}]


def _log_skipped(resource_type: Any, problems: tuple[dict[str, str], ...]) -> None:
    log.warning(
        "skipped malformed resource",
        extra={
            "event": "resource_skipped",
            "resource_type": resource_type,
            "problems": list(problems),
        },
    )


def validate_resource(
    raw: dict[str, Any], *, draft_patient_ref: str | None = None
) -> FHIRAbstractModel | None:
    """Validate one R4 resource leniently; None (and a log line) when it cannot be read.

    `draft_patient_ref` marks a draft order from the hook context: missing status, intent and
    subject are then filled in, because the context already says whose draft it is.
    """
    model, problems = _validate(raw, draft_patient_ref)
    if model is None and raw.get("resourceType") in KNOWN_TYPES:
        _log_skipped(raw.get("resourceType"), problems)
    return model


class _VerdictCache:
    """Per-worker memory of which resource contents validate, keyed by a digest of the content.

    Whether a resource is valid FHIR depends on its content alone, and EHRs send the same
    resources again and again: order-select fires on every edit of an order, order-sign follows
    with the same record. Remembering the verdict (not the model) spares the costly validation
    of content already seen, with exactly the same outcome.
    """

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._verdicts: OrderedDict[bytes, tuple[dict[str, str], ...] | None] = OrderedDict()
        self._lock = threading.Lock()

    def readable(self, raw: dict[str, Any], draft_patient_ref: str | None) -> bool:
        if raw.get("resourceType") not in KNOWN_TYPES:
            return False
        try:
            canonical = orjson.dumps([draft_patient_ref, raw], option=orjson.OPT_SORT_KEYS)
        except (TypeError, ValueError):  # not JSON content: validate without remembering
            return validate_resource(raw, draft_patient_ref=draft_patient_ref) is not None
        key = hashlib.blake2b(canonical, digest_size=16).digest()
        with self._lock:
            known = key in self._verdicts
            if known:
                self._verdicts.move_to_end(key)
                problems = self._verdicts[key]
        if not known:
            model, found = _validate(raw, draft_patient_ref)
            problems = None if model is not None else found
            with self._lock:
                self._verdicts[key] = problems
                if len(self._verdicts) > self._capacity:
                    self._verdicts.popitem(last=False)
        if problems is None:
            return True
        _log_skipped(raw.get("resourceType"), problems)  # logged on every request it is skipped in
        return False


_VERDICTS = _VerdictCache(capacity=20_000)


def readable(raw: dict[str, Any], *, draft_patient_ref: str | None = None) -> bool:
    """Whether a resource is valid FHIR R4 (after the lenient repairs); logs it when not."""
    return _VERDICTS.readable(raw, draft_patient_ref)


def to_date(value: Any) -> date | None:
    """A FHIR date/dateTime (full or partial, as parsed or raw) as a calendar date."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            if len(text) == 4:
                return date(int(text), 1, 1)
            if len(text) == 7:
                return date(int(text[:4]), int(text[5:7]), 1)
            return date.fromisoformat(text[:10])
        except ValueError:
            return None
    return None
