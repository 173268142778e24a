"""Fast checks of the FHIR R4 elements the service reads, on the raw JSON.

The record builder reads a handful of elements of each resource: its id, status, codes, dates,
quantities and references. Validating the whole resource against the FHIR models costs
50-150 µs a resource (most of a call on content never seen before), and judges elements no
rule ever looks at. These checks hold exactly the elements the service reads to the rules of
FHIR R4: their JSON types, the formats of ids, codes and dates (a real calendar date; a time
only with its time zone), non-empty strings, and the elements R4 requires among them. A
resource that fails is skipped and logged by type and location, never by value, as before.

Lenient where real clients are known to err, as the service always was: the repeating
elements the CDS Hooks sandbox and published examples send as a single object
(`reasonCode`, `dosageInstruction`) are read as a list of one.

`fhir.resources` stays where a whole valid resource matters: the suggested orders on the cards
and the `validate` command.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

log = logging.getLogger(__name__)

# R4 primitive formats (https://hl7.org/fhir/R4/datatypes.html). An id longer than R4's 64
# characters is accepted, as the FHIR models the service used before accepted it.
_ID = re.compile(r"[A-Za-z0-9\-.]+").fullmatch
_CODE = re.compile(r"[^\s]+(?:\s[^\s]+)*").fullmatch
_DATE_PART = r"([0-9]{4})(?:-(0[1-9]|1[0-2])(?:-(0[1-9]|[12][0-9]|3[01])"
_TIME_PART = r"T(?:[01][0-9]|2[0-3]):[0-5][0-9]:(?:[0-5][0-9]|60)(?:\.[0-9]+)?"
_ZONE = r"(?:Z|[+-](?:(?:0[0-9]|1[0-3]):[0-5][0-9]|14:00))"
_DATE = re.compile(_DATE_PART + r")?)?").fullmatch
_DATE_TIME = re.compile(_DATE_PART + rf"(?:{_TIME_PART}{_ZONE})?)?)?").fullmatch
_INSTANT = re.compile(_DATE_PART + rf"{_TIME_PART}{_ZONE}))").fullmatch


@dataclass(frozen=True)
class Problem:
    """Where a resource breaks the rules of R4, and how: never the value itself."""

    at: str
    kind: str

    def as_log(self) -> dict[str, str]:
        return {"at": self.at, "type": self.kind}


class _Malformed(Exception):
    """A broken element; the steps to it are added as the checks unwind (so that a
    well-formed resource, the common case, never pays for formatting a path)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.steps: list[str] = []  # innermost first

    def at(self, step: str) -> _Malformed:
        self.steps.append(step)
        return self

    def problem(self) -> Problem:
        return Problem("".join(reversed(self.steps)).removeprefix("."), self.kind)


_Check = Callable[[Any], None]


def _calendar(match: re.Match[str] | None, kind: str) -> None:
    if match is None:
        raise _Malformed(f"not a FHIR {kind}")
    day = match.group(3)
    if day is not None and day > "28":  # the one part a pattern cannot tell: does it exist?
        try:
            date(int(match.group(1)), int(match.group(2)), int(day))
        except ValueError:
            raise _Malformed(f"not a FHIR {kind}") from None
    elif match.group(1) == "0000":
        raise _Malformed(f"not a FHIR {kind}")


def _string(value: Any) -> None:
    if type(value) is not str or not value:
        raise _Malformed("not a string")


def _code(value: Any) -> None:
    if type(value) is not str or not _CODE(value):
        raise _Malformed("not a FHIR code")


def _id(value: Any) -> None:
    if type(value) is not str or not _ID(value):
        raise _Malformed("not a FHIR id")


def _date(value: Any) -> None:
    _calendar(_DATE(value) if type(value) is str else None, "date")


def _date_time(value: Any) -> None:
    _calendar(_DATE_TIME(value) if type(value) is str else None, "dateTime")


def _instant(value: Any) -> None:
    _calendar(_INSTANT(value) if type(value) is str else None, "instant")


def _number(value: Any) -> None:
    if type(value) is not int and type(value) is not float:
        raise _Malformed("not a number")


def _datatype(*members: tuple[str, _Check]) -> _Check:
    """The check of a complex datatype: a JSON object whose members read are checked."""
    steps = {name: f".{name}" for name, _ in members}

    def check(value: Any) -> None:
        if type(value) is not dict:
            raise _Malformed("not an object")
        for name, check_member in members:
            member = value.get(name)
            if member is not None:
                try:
                    check_member(member)
                except _Malformed as malformed:
                    raise malformed.at(steps[name]) from None

    return check


def _array_of(check: _Check) -> _Check:
    def each(value: Any) -> None:
        if type(value) is not list:
            raise _Malformed("not an array")
        for index, item in enumerate(value):
            try:
                check(item)
            except _Malformed as malformed:
                raise malformed.at(f"[{index}]") from None

    return each


def _repeating(check: _Check) -> _Check:
    """A repeating element: an array, or (as real clients send it) a single object."""
    each = _array_of(check)

    def one_or_more(value: Any) -> None:
        if type(value) is list:
            each(value)
        else:
            check(value)

    return one_or_more


def _coding(value: Any) -> None:
    # Written out rather than built by _datatype: codings are most of what is checked.
    if type(value) is not dict:
        raise _Malformed("not an object")
    system, code, display = value.get("system"), value.get("code"), value.get("display")
    if system is not None and (type(system) is not str or not system):
        raise _Malformed("not a string").at(".system")
    if code is not None and (type(code) is not str or not _CODE(code)):
        raise _Malformed("not a FHIR code").at(".code")
    if display is not None and (type(display) is not str or not display):
        raise _Malformed("not a string").at(".display")


def _codeable(value: Any) -> None:
    if type(value) is not dict:
        raise _Malformed("not an object")
    codings, text = value.get("coding"), value.get("text")
    if codings is not None:
        if type(codings) is not list:
            raise _Malformed("not an array").at(".coding")
        for index, coding in enumerate(codings):
            try:
                _coding(coding)
            except _Malformed as malformed:
                raise malformed.at(f"[{index}]").at(".coding") from None
    if text is not None and (type(text) is not str or not text):
        raise _Malformed("not a string").at(".text")


_reference = _datatype(("reference", _string), ("display", _string))
_period = _datatype(("start", _date_time), ("end", _date_time))
_quantity = _datatype(("value", _number), ("unit", _string), ("system", _string), ("code", _code))
_dosage = _datatype(("route", _codeable))

# Per resource type: the elements the record builder reads, and which of them R4 requires.
_ELEMENTS: dict[str, tuple[tuple[str, _Check], ...]] = {
    "Patient": (("id", _id), ("birthDate", _date)),
    "Condition": (
        ("id", _id),
        ("code", _codeable),
        ("clinicalStatus", _codeable),
        ("verificationStatus", _codeable),
        ("onsetDateTime", _date_time),
        ("onsetPeriod", _period),
        ("recordedDate", _date_time),
        ("subject", _reference),
    ),
    "MedicationRequest": (
        ("id", _id),
        ("status", _code),
        ("intent", _code),
        ("medicationCodeableConcept", _codeable),
        ("medicationReference", _reference),
        ("authoredOn", _date_time),
        ("reasonCode", _repeating(_codeable)),
        ("dosageInstruction", _repeating(_dosage)),
        ("subject", _reference),
    ),
    "ServiceRequest": (
        ("id", _id),
        ("status", _code),
        ("intent", _code),
        ("code", _codeable),
        ("authoredOn", _date_time),
        ("reasonCode", _repeating(_codeable)),
        ("subject", _reference),
    ),
    "Procedure": (
        ("id", _id),
        ("status", _code),
        ("code", _codeable),
        ("performedDateTime", _date_time),
        ("performedPeriod", _period),
        ("subject", _reference),
    ),
    "Observation": (
        ("id", _id),
        ("status", _code),
        ("code", _codeable),
        ("valueQuantity", _quantity),
        ("effectiveDateTime", _date_time),
        ("effectiveInstant", _instant),
        ("effectivePeriod", _period),
        ("issued", _instant),
        ("subject", _reference),
    ),
    "Medication": (("id", _id), ("code", _codeable), ("form", _codeable)),
}
# Choice elements ([x]) the builder reads: R4 allows one of each group.
CHOICES: dict[str, tuple[str, ...]] = {
    "Condition": ("onsetDateTime", "onsetPeriod"),
    "MedicationRequest": ("medicationCodeableConcept", "medicationReference"),
    "Procedure": ("performedDateTime", "performedPeriod"),
    "Observation": ("effectiveDateTime", "effectiveInstant", "effectivePeriod"),
}
_REQUIRED: dict[str, tuple[str, ...]] = {
    "Observation": ("status", "code"),
    "Procedure": ("status",),
    "MedicationRequest": ("status",),
    "ServiceRequest": ("status",),
}


def _contained(raw: dict[str, Any]) -> None:
    contained = raw.get("contained")
    if contained is None:
        return
    if type(contained) is not list:
        raise _Malformed("not an array").at(".contained")
    for index, resource in enumerate(contained):
        if type(resource) is not dict or type(resource.get("resourceType")) is not str:
            raise _Malformed("not a resource").at(f".contained[{index}]")
    target = raw.get("medicationReference")
    reference = target.get("reference") if type(target) is dict else None
    if type(reference) is str and reference.startswith("#"):
        for index, resource in enumerate(contained):
            if resource.get("id") == reference[1:]:
                if resource["resourceType"] != "Medication":
                    raise _Malformed("not a Medication").at(f".contained[{index}]")
                try:
                    _elements(resource, "Medication", ())
                except _Malformed as malformed:
                    raise malformed.at(f".contained[{index}]") from None


def _elements(raw: dict[str, Any], resource_type: str, required: tuple[str, ...]) -> None:
    for name in required:
        if raw.get(name) is None:
            raise _Malformed("missing").at(f".{name}")
    for name, check in _ELEMENTS[resource_type]:
        value = raw.get(name)
        if value is not None:
            try:
                check(value)
            except _Malformed as malformed:
                raise malformed.at(f".{name}") from None


def problem_of(raw: dict[str, Any], *, draft: bool = False) -> Problem | None:
    """The first problem among the elements the service reads of `raw`, or None.

    `draft`: a draft order from the hook context, whose status may be left out (the context
    says it is a draft).
    """
    resource_type = raw.get("resourceType")
    if type(resource_type) is not str or resource_type not in _ELEMENTS:
        return Problem("resourceType", "not a resource type the service reads")
    required = () if draft else _REQUIRED.get(resource_type, ())
    try:
        _elements(raw, resource_type, required)
        choices = [name for name in CHOICES.get(resource_type, ()) if name in raw]
        if len(choices) > 1:
            raise _Malformed("a second value of a choice element").at(choices[1])
        if resource_type == "MedicationRequest":
            _contained(raw)
    except _Malformed as malformed:
        return malformed.problem()
    return None


def well_formed(raw: dict[str, Any], *, draft: bool = False) -> bool:
    """Whether the service may read `raw`; logs a resource it skips (type and location only)."""
    problem = problem_of(raw, draft=draft)
    if problem is None:
        return True
    log.warning(
        "skipped malformed resource",
        extra={
            "event": "resource_skipped",
            "resource_type": raw.get("resourceType"),
            "problems": [problem.as_log()],
        },
    )
    return False
