"""Strict FHIR R4 checks for tools: what exactly is wrong with a resource, and where.

The service itself reads leniently: it checks only the elements its rules read (`checks.py`) and
skips, with a log line, a resource it cannot read. Integrators checking their EHR's output want
the opposite: every problem, located by its path inside the resource. Validation uses the
`fhir.resources.R4B` models; a Bundle is checked entry by entry so that one bad entry does not
hide the others, and so that a resource type the models do not know is reported rather than
crashing the check.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pydantic
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.resource import Resource

PathPart = str | int

_VALUE_KINDS = {
    "DateTime": "dateTime",
    "Date": "date",
    "Instant": "instant",
    "Time": "time",
    "Decimal": "decimal",
    "Integer": "integer",
    "Uri": "uri",
}


_CHOICES = re.compile(r"\[(.*?)\]")
_ABSTRACT_TYPES = frozenset({"Resource", "DomainResource"})
_BASIC_TYPES = {
    "int_parsing": "an integer",
    "int_type": "an integer",
    "int_from_float": "an integer",
    "bool_parsing": "true or false",
    "bool_type": "true or false",
    "string_type": "a string",
    "float_parsing": "a number",
    "float_type": "a number",
    "decimal_parsing": "a number",
}


@dataclass(frozen=True)
class FhirProblem:
    path: tuple[PathPart, ...]  # inside the checked resource
    message: str


def model_class(resource_type: str) -> Any | None:
    """The R4B model of a resource type, or None when FHIR R4 has no such type."""
    if resource_type in _ABSTRACT_TYPES:
        return None
    try:
        model = get_fhir_model_class(resource_type)
    except (KeyError, ValueError, AttributeError):
        return None
    return model if isinstance(model, type) and issubclass(model, Resource) else None


def _message(problem: dict[str, Any], resource_type: str) -> str:
    kind = problem.get("type", "")
    text = str(problem.get("msg", "")).removeprefix("Value error, ")
    if kind == "extra_forbidden":
        return f"is not an element of FHIR R4 {resource_type}"
    if kind in {"missing", "model_field_validation.missing"}:
        return "is required by FHIR R4 but missing"
    if kind == "list_type":
        return "must be an array (a repeating element in FHIR R4)"
    if kind in {"dict_type", "model_type"}:
        return "must be an object"
    if kind in _BASIC_TYPES:
        return f"must be {_BASIC_TYPES[kind]}"
    choices = _CHOICES.search(text)
    if choices and text.startswith("Expect any of field value"):
        return f"needs one of {choices.group(1).replace(chr(39), '')}"
    if choices and text.startswith("Any of one field value is expected"):
        return f"must have only one of {choices.group(1).replace(chr(39), '')}"
    if kind == "string_pattern_mismatch":
        return "is not in the form FHIR R4 requires for this element"
    for model_name, fhir_name in _VALUE_KINDS.items():
        if text.startswith(f"{model_name} value"):
            return f"is not a valid FHIR {fhir_name}"
    return text.rstrip(".") or kind


def _loc(problem: dict[str, Any]) -> tuple[PathPart, ...]:
    return tuple(part for part in problem.get("loc", ()) if isinstance(part, str | int))


def resource_problems(resource: Any) -> list[FhirProblem]:
    """Every FHIR R4 problem of one resource (a Bundle's entries included), with its path."""
    if not isinstance(resource, dict):
        return [FhirProblem((), "must be a FHIR resource (a JSON object)")]
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str) or not resource_type:
        return [FhirProblem(("resourceType",), "is missing: every FHIR resource names its type")]
    model = model_class(resource_type)
    if model is None:
        return [FhirProblem(("resourceType",), f"{resource_type} is not a FHIR R4 resource type")]

    problems: list[FhirProblem] = []
    shell = resource
    if resource_type == "Bundle" and isinstance(resource.get("entry"), list):
        shell = copy.deepcopy(resource)
        for index, entry in enumerate(resource["entry"]):
            if isinstance(entry, dict) and "resource" in entry:
                inner = resource_problems(entry["resource"])
                problems += [_prefixed(("entry", index, "resource"), p) for p in inner]
                del shell["entry"][index]["resource"]
    contained = resource.get("contained")
    if isinstance(contained, list) and contained:
        # Checked one by one, each against its own type; the parent is checked without them.
        for index, item in enumerate(contained):
            inner = resource_problems(item)
            problems += [_prefixed(("contained", index), p) for p in inner]
        if shell is resource:
            shell = copy.deepcopy(resource)
        del shell["contained"]
    try:
        model.model_validate(shell)
    except pydantic.ValidationError as error:
        problems += [
            FhirProblem(_loc(p), _message(p, resource_type))  # type: ignore[arg-type]
            for p in error.errors()
        ]
    except (KeyError, TypeError, ValueError) as error:
        problems.append(FhirProblem((), f"cannot be read as FHIR R4 ({type(error).__name__})"))
    problems += _element_rules(model, resource)
    return list(dict.fromkeys(problems))


def _element_rules(model: Any, resource: dict[str, Any]) -> list[FhirProblem]:
    """Required and code-bound elements of the resource itself.

    The models check these only once every field is otherwise valid, and never check that a
    code is one of its required value set's codes (e.g. MedicationRequest.status).
    """
    problems = []
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        key = info.alias or name
        value = resource.get(key)
        if extra.get("element_required") and value is None and f"_{key}" not in resource:
            problems.append(FhirProblem((key,), "is required by FHIR R4 but missing"))
        allowed = extra.get("enum_values")
        if isinstance(allowed, list) and isinstance(value, str) and value not in allowed:
            problems.append(
                FhirProblem((key,), f"must be one of the FHIR R4 codes: {', '.join(allowed)}")
            )
    return problems


def _prefixed(prefix: Sequence[PathPart], problem: FhirProblem) -> FhirProblem:
    return FhirProblem((*prefix, *problem.path), problem.message)
