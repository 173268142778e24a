"""Read and check a CDS Hooks 2.0 service request.

The JSON Schema covers the envelope and the three hook contexts; what a schema cannot say
(the hook matches the service, selections name draft orders, fhirServer is an http(s) URL) is
checked here. Error messages name the place of a problem, never the value found there.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

import jsonschema

from cds_service.fhir.parsing import bundle_entries
from cds_service.json_text import NumberOutOfRange, loads_json
from cds_service.protocol.catalog import ServiceDefinition
from cds_service.protocol.errors import CdsError, bad_request

_MAX_REPORTED_PROBLEMS = 5


@cache
def schema_validator(name: str) -> jsonschema.protocols.Validator:
    """A compiled validator for one of the packaged CDS Hooks 2.0 schemas."""
    text = (resources.files("cds_service.protocol") / "schemas" / f"{name}.schema.json").read_text(
        encoding="utf-8"
    )
    schema = json.loads(text)
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    return validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)


_SHAPES = {
    "request": "CDS Hooks 2.0 request",
    "response": "CDS Hooks 2.0 response",
    "discovery": "CDS Hooks 2.0 discovery response",
    "feedback": "CDS Hooks 2.0 feedback",
}


def json_path(parts: Iterable[Any]) -> str:
    """`$.context.draftOrders.entry[0]` from a sequence of member names and indexes."""
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts)


def _expected_form(pattern_or_format: str) -> str:
    if "[A-Za-z]+/" in pattern_or_format:
        return "must be a relative reference like ResourceType/id"
    if pattern_or_format == r"^[^/\s]+$":
        return "must be a FHIR id (no '/' and no whitespace)"
    if pattern_or_format == "uuid" or "{8}-" in pattern_or_format:
        return "must be a UUID"
    if pattern_or_format in {"uri", "date-time"} or "://" in pattern_or_format:
        return f"must be an absolute {'URL' if pattern_or_format != 'date-time' else 'date-time'}"
    return "is not in the expected form"


def _describe(error: jsonschema.ValidationError, shape: str) -> tuple[str, str]:
    """(JSON path, message) for one schema violation, without quoting the offending value.

    Member names may be named (they are the document's structure, not its data).
    """
    path = json_path(error.absolute_path)
    validator = error.validator
    # The stubs type these as unions that include "unset"; here they are always set.
    expected: Any = error.validator_value
    instance: Any = error.instance
    if validator == "required":
        missing = [name for name in expected if name not in (instance or {})]
        names = ", ".join(missing) or "a required member"
        return path, f"{path}: missing required member {names}"
    if validator == "dependentRequired":
        present = [name for name in expected if isinstance(instance, dict) and name in instance]
        needs = sorted({n for name in present for n in expected[name] if n not in instance})
        return path, f"{path}: {', '.join(present)} requires {', '.join(needs)}"
    if validator == "additionalProperties" and isinstance(instance, dict):
        schema: Any = error.schema
        allowed = set((schema or {}).get("properties", {}))
        unknown = sorted(name for name in instance if name not in allowed)
        return path, f"{path}: unknown member {', '.join(unknown)} (not in the {shape})"
    if validator == "type":
        return path, f"{path}: must be of type {expected}"
    if validator in {"minLength", "minItems", "minProperties"}:
        return path, f"{path}: must not be empty"
    if validator == "maxLength":
        return path, f"{path}: must be at most {expected} characters"
    if validator in {"pattern", "format"}:
        return path, f"{path}: {_expected_form(str(expected))}"
    if validator in {"enum", "const"}:
        allowed_values = expected if isinstance(expected, list) else [expected]
        shown = ", ".join(str(v) for v in allowed_values)
        return path, f"{path}: is not one of the allowed values ({shown})"
    if validator == "not" and path.endswith(".suggestions"):
        return path, (
            f"{path}: with selectionBehavior at-most-one, at most one suggestion may be recommended"
        )
    return path, f"{path}: does not match the {shape} shape ({validator})"


_FHIR_ID = re.compile(r"^[^/\s]+$")
_REFERENCE = re.compile(r"^[A-Za-z]+/[^/\s]+$")
_BEARER = re.compile(r"^[Bb][Ee][Aa][Rr][Ee][Rr]$")
_CONTEXT_REQUIREMENTS = {
    "patient-view": (),
    "order-sign": ("draftOrders",),
    "order-select": ("draftOrders", "selections"),
}


def _text(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def _optional(mapping: dict[str, Any], key: str, check: Any) -> bool:
    return key not in mapping or check(mapping[key])


def _plainly_valid_request(document: Any) -> bool:
    """True only for requests request.schema.json certainly accepts, decided in plain Python.

    A shortcut for the common case: jsonschema's generic evaluation of the envelope costs more
    than the rest of the request's checks together. It may answer False for a valid request
    (jsonschema then decides) but never True for an invalid one; a test holds it to that.
    """
    if not isinstance(document, dict):
        return False
    hook, context = document.get("hook"), document.get("context")
    if not (_text(hook) and _text(document.get("hookInstance")) and isinstance(context, dict)):
        return False
    if not _optional(document, "fhirServer", _text):
        return False
    if not _optional(document, "extension", lambda v: isinstance(v, dict)):
        return False
    authorization = document.get("fhirAuthorization")
    if "fhirAuthorization" in document:
        if not isinstance(authorization, dict) or "fhirServer" not in document:
            return False
        if not (
            _text(authorization.get("access_token"))
            and isinstance(authorization.get("token_type"), str)
            and _BEARER.search(authorization["token_type"])
            and _optional(authorization, "expires_in", lambda v: type(v) is int)
            and all(
                _optional(authorization, k, lambda v: isinstance(v, str))
                for k in ("scope", "subject", "patient")
            )
        ):
            return False
    prefetch = document.get("prefetch")
    if "prefetch" in document:
        if not isinstance(prefetch, dict):
            return False
        for value in prefetch.values():
            if value is not None and not (
                isinstance(value, dict) and _text(value.get("resourceType"))
            ):
                return False
    if hook not in _CONTEXT_REQUIREMENTS:
        return True  # other hooks: the schema checks the envelope only
    if not (isinstance(context.get("patientId"), str) and _FHIR_ID.search(context["patientId"])):
        return False
    if not _optional(context, "encounterId", lambda v: isinstance(v, str) and _FHIR_ID.search(v)):
        return False
    if not _optional(context, "userId", lambda v: isinstance(v, str) and _REFERENCE.search(v)):
        return False
    required = _CONTEXT_REQUIREMENTS[hook]
    if "draftOrders" in required:
        bundle = context.get("draftOrders")
        if not (isinstance(bundle, dict) and bundle.get("resourceType") == "Bundle"):
            return False
        if not _optional(
            bundle, "entry", lambda v: isinstance(v, list) and all(isinstance(e, dict) for e in v)
        ):
            return False
    if "selections" in required:
        selections = context.get("selections")
        if not (isinstance(selections, list) and selections):
            return False
        if not all(isinstance(s, str) and _REFERENCE.search(s) for s in selections):
            return False
    return True


def _leaves(errors: Iterable[jsonschema.ValidationError]) -> Iterator[jsonschema.ValidationError]:
    """oneOf/anyOf wrap the real problems (at any depth); yield the inner ones."""
    for error in errors:
        if error.validator in {"oneOf", "anyOf"} and error.context:
            yield from _leaves(error.context)
        else:
            yield error


def schema_problems(name: str, document: Any) -> list[tuple[str, str]]:
    """Every violation of a packaged schema, deepest first, as (path, message)."""
    # The hand-written check answers for the plainly valid requests nearly every EHR sends:
    # 2.3 µs a fixture request against 490 µs for the schema (tests/test_fast_paths.py proves
    # it never accepts what the schema refuses). Everything else the schema decides.
    if name == "request" and _plainly_valid_request(document):
        return []
    validator = schema_validator(name)
    if validator.is_valid(document):
        return []
    shape = _SHAPES.get(name, name)
    errors = sorted(
        validator.iter_errors(document),
        key=lambda e: (-len(e.absolute_path), list(map(str, e.absolute_path))),
    )
    seen: dict[str, tuple[str, str]] = {}
    for error in _leaves(errors):
        path, message = _describe(error, shape)
        seen.setdefault(message, (path, message))
    return list(seen.values())


@dataclass(frozen=True)
class HookRequest:
    service: ServiceDefinition
    hook: str
    hook_instance: str
    patient_id: str
    encounter_id: str | None
    user_id: str | None
    draft_orders: tuple[dict[str, Any], ...]
    selections: frozenset[str] | None  # None: the hook reviews every draft (order-sign)
    prefetch: Mapping[str, Any]
    context: Mapping[str, Any]  # the whole hook context, e.g. to fill prefetch templates
    fhir_server: str | None
    access_token: str | None = field(default=None, repr=False)  # never logged


def parse_json_object(raw: bytes) -> dict[str, Any]:
    if not raw:
        raise bad_request("The request body is empty; a CDS Hooks request is a JSON object.")
    try:
        document = loads_json(raw)
    except NumberOutOfRange:
        raise bad_request(
            "The request body holds a number this service cannot hold: every JSON number must "
            "fit a 64-bit floating-point value (NaN and Infinity are not JSON)."
        ) from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise bad_request("The request body is not valid JSON.") from None
    if not isinstance(document, dict):
        raise bad_request("The request body must be a JSON object.")
    return document


def _check_fhir_server(url: Any) -> str | None:
    if url is None:
        return None
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed IPv6 bracket: "http://["
        parts = None
    if parts is None or parts.scheme not in {"http", "https"} or not parts.netloc:
        raise bad_request("fhirServer must be an absolute http(s) URL.", ["$.fhirServer"])
    return str(url).rstrip("/")


def check_schema(name: str, document: Any) -> None:
    """Raise a 400 naming the JSON paths of the first few violations of a packaged schema."""
    problems = schema_problems(name, document)
    if problems:
        shown = problems[:_MAX_REPORTED_PROBLEMS]
        raise bad_request(
            f"The {name} does not match the {_SHAPES.get(name, name)} shape: "
            + "; ".join(message for _, message in shown),
            [path for path, _ in shown],
        )


def parse_hook_request(document: dict[str, Any], service: ServiceDefinition) -> HookRequest:
    check_schema("request", document)
    hook = document["hook"]
    if hook != service.hook:
        raise bad_request(
            f"Service '{service.id}' answers the '{service.hook}' hook; this request is for "
            "a different hook.",
            ["$.hook"],
        )
    context = document["context"]
    draft_orders: tuple[dict[str, Any], ...] = ()
    selections: frozenset[str] | None = None
    if hook in {"order-sign", "order-select"}:
        draft_orders = tuple(bundle_entries(context["draftOrders"]))
    if hook == "order-select":
        selections = frozenset(context["selections"])
        known = {
            f"{r['resourceType']}/{r['id']}" for r in draft_orders if isinstance(r.get("id"), str)
        }
        if not selections <= known:
            raise CdsError(
                400,
                "Every entry of context.selections must name an order in context.draftOrders "
                "(ResourceType/id).",
                "invalid",
                ("$.context.selections",),
            )
    authorization = document.get("fhirAuthorization") or {}
    return HookRequest(
        service=service,
        hook=hook,
        hook_instance=document["hookInstance"],
        patient_id=context["patientId"],
        encounter_id=context.get("encounterId"),
        user_id=context.get("userId"),
        draft_orders=draft_orders,
        selections=selections,
        prefetch=document.get("prefetch") or {},
        context=context,
        fhir_server=_check_fhir_server(document.get("fhirServer")),
        access_token=authorization.get("access_token"),
    )
