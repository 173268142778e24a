"""Check CDS Hooks 2.0 documents and the FHIR R4 resources inside them, problem by problem.

A document is a service request, a response, a discovery response or a feedback body; which
one is told by its members (or by the caller). Each problem has a severity, the JSON path of
the place it concerns and a message. Errors break the CDS Hooks 2.0 or FHIR R4 rules (or
this service's own requirements); warnings are legal but will not work as hoped.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cds_service.fhir.conformance import FhirProblem, resource_problems
from cds_service.protocol.request import json_path, schema_problems
from cds_service.vocabulary import DataCategory

KINDS = ("request", "response", "discovery", "feedback")
_KIND_NAMES = {
    "request": "CDS Hooks request",
    "response": "CDS Hooks response",
    "discovery": "CDS Hooks discovery response",
    "feedback": "CDS Hooks feedback",
}
# The hooks this service answers; other hooks are legal CDS Hooks but get no cards here.
SERVICE_HOOKS = ("order-sign", "order-select", "patient-view")
_PREFETCH_KEYS = frozenset(category.value for category in DataCategory)
# CDS Hooks 2.0 prefetch tokens: first-level context fields and the user identity tokens.
_PREFETCH_TOKEN = re.compile(r"{{\s*([^}]*?)\s*}}")
_ALLOWED_TOKEN = re.compile(
    r"^(?:context\.[A-Za-z0-9_]+|userPractitionerId|userPractitionerRoleId|userPatientId|"
    r"userRelatedPersonId)$"
)


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class Problem:
    severity: Severity
    path: str
    message: str

    def as_json(self) -> dict[str, str]:
        return {"severity": self.severity.value, "path": self.path, "message": self.message}


@dataclass
class Report:
    source: str
    kind: str | None
    problems: list[Problem] = field(default_factory=list)
    detail: str = ""  # e.g. the hook of a request

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity is Severity.ERROR]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity is Severity.WARNING]

    def as_json(self) -> dict[str, Any]:
        return {
            "file": self.source,
            "kind": self.kind,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "problems": [p.as_json() for p in self.problems],
        }


def detect_kind(document: Any) -> str | None:
    if not isinstance(document, dict):
        return None
    if {"hook", "hookInstance", "context"} & document.keys():
        return "request"
    if {"cards", "systemActions"} & document.keys():
        return "response"
    if "services" in document:
        return "discovery"
    if "feedback" in document:
        return "feedback"
    return None


def _error(path: str, message: str) -> Problem:
    return Problem(Severity.ERROR, path, message)


def _warning(path: str, message: str) -> Problem:
    return Problem(Severity.WARNING, path, message)


def _fhir(base: str, problems: Iterable[FhirProblem]) -> Iterator[Problem]:
    for problem in problems:
        path = base + json_path(problem.path)[1:]
        yield _error(path, f"{path}: {problem.message}")


def _is_uuid(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return len(value) == 36


def _entries(bundle: Any) -> Iterator[tuple[int, dict[str, Any]]]:
    if isinstance(bundle, dict) and isinstance(bundle.get("entry"), list):
        for index, entry in enumerate(bundle["entry"]):
            if isinstance(entry, dict) and isinstance(entry.get("resource"), dict):
                yield index, entry["resource"]


# --- requests ----------------------------------------------------------------------------------


def _request_problems(document: dict[str, Any]) -> Iterator[Problem]:
    hook = document.get("hook")
    if isinstance(hook, str) and hook not in SERVICE_HOOKS:
        yield _warning("$.hook", f"$.hook: this service answers {', '.join(SERVICE_HOOKS)} only")
    instance = document.get("hookInstance")
    if isinstance(instance, str) and not _is_uuid(instance):
        yield _warning("$.hookInstance", "$.hookInstance: should be a UUID (CDS Hooks 2.0)")
    server = document.get("fhirServer")
    if isinstance(server, str):
        parts = urlsplit(server)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            yield _error("$.fhirServer", "$.fhirServer: must be an absolute http(s) URL")
    context = document.get("context")
    if isinstance(context, dict):
        yield from _context_problems(context)
    prefetch = document.get("prefetch")
    if isinstance(prefetch, dict):
        yield from _prefetch_problems(prefetch, context if isinstance(context, dict) else {})


def _context_problems(context: dict[str, Any]) -> Iterator[Problem]:
    drafts = context.get("draftOrders")
    known: set[str] = set()
    if isinstance(drafts, dict):
        yield from _fhir("$.context.draftOrders", resource_problems(drafts))
        for index, resource in _entries(drafts):
            path = f"$.context.draftOrders.entry[{index}].resource"
            if resource.get("resourceType") == "Medication":
                continue  # a drafted drug next to its order
            rid = resource.get("id")
            if not isinstance(rid, str) or not rid:
                yield _warning(
                    f"{path}.id",
                    f"{path}.id: a draft order without an id cannot be selected, nor removed "
                    "by a suggestion",
                )
            else:
                known.add(f"{resource.get('resourceType')}/{rid}")
            status = resource.get("status")
            if isinstance(status, str) and status != "draft":
                yield _warning(f"{path}.status", f"{path}.status: a draft order is 'draft'")
    selections = context.get("selections")
    if isinstance(selections, list) and isinstance(drafts, dict):
        for index, selection in enumerate(selections):
            if isinstance(selection, str) and selection not in known:
                path = f"$.context.selections[{index}]"
                yield _error(path, f"{path}: names no order in context.draftOrders")


def _prefetch_problems(prefetch: dict[str, Any], context: dict[str, Any]) -> Iterator[Problem]:
    for key, value in prefetch.items():
        path = f"$.prefetch.{key}"
        if key not in _PREFETCH_KEYS:
            yield _warning(
                path,
                f"{path}: not a prefetch key of this service ({', '.join(sorted(_PREFETCH_KEYS))})"
                "; it is ignored",
            )
        if not isinstance(value, dict):
            continue  # null: asked, nothing found; other shapes are schema errors
        if value.get("resourceType") == "OperationOutcome":
            yield _warning(
                path,
                f"{path}: an OperationOutcome says the client's query failed; the service will "
                "fetch this data itself or answer 412",
            )
            continue
        yield from _fhir(path, resource_problems(value))
    patient = prefetch.get("patient")
    patient_id = context.get("patientId")
    is_patient = isinstance(patient, dict) and patient.get("resourceType") == "Patient"
    if (
        isinstance(patient, dict)
        and is_patient
        and isinstance(patient_id, str)
        and patient.get("id") not in (None, patient_id)
    ):
        yield _warning(
            "$.prefetch.patient.id", "$.prefetch.patient.id: differs from context.patientId"
        )


# --- responses ---------------------------------------------------------------------------------


def _response_problems(document: dict[str, Any]) -> Iterator[Problem]:
    seen_uuids: dict[str, str] = {}
    cards = document.get("cards")
    for card_index, card in enumerate(cards if isinstance(cards, list) else []):
        if not isinstance(card, dict):
            continue
        card_path = f"$.cards[{card_index}]"
        yield from _uuid_problems(card, card_path, "card", seen_uuids)
        suggestions = card.get("suggestions")
        for s_index, suggestion in enumerate(suggestions if isinstance(suggestions, list) else []):
            if not isinstance(suggestion, dict):
                continue
            s_path = f"{card_path}.suggestions[{s_index}]"
            yield from _uuid_problems(suggestion, s_path, "suggestion", seen_uuids)
            actions = suggestion.get("actions")
            for a_index, action in enumerate(actions if isinstance(actions, list) else []):
                if isinstance(action, dict):
                    yield from _action_problems(action, f"{s_path}.actions[{a_index}]")
    actions = document.get("systemActions")
    for index, action in enumerate(actions if isinstance(actions, list) else []):
        if isinstance(action, dict):
            yield from _action_problems(action, f"$.systemActions[{index}]")


def _uuid_problems(
    item: dict[str, Any], path: str, what: str, seen: dict[str, str]
) -> Iterator[Problem]:
    value = item.get("uuid")
    if value is None:
        yield _warning(
            f"{path}.uuid",
            f"{path}.uuid: without a uuid the EHR cannot send feedback about this {what}",
        )
        return
    if not isinstance(value, str):
        return
    if value in seen:
        yield _error(f"{path}.uuid", f"{path}.uuid: the same uuid is used at {seen[value]}")
    else:
        seen[value] = f"{path}.uuid"


def _action_problems(action: dict[str, Any], path: str) -> Iterator[Problem]:
    kind = action.get("type")
    resource = action.get("resource")
    if kind == "delete" and "resourceId" not in action:
        yield _warning(
            f"{path}.resourceId",
            f"{path}.resourceId: a delete should name its target as ResourceType/id",
        )
    if isinstance(resource, dict) and kind in {"create", "update"}:
        yield from _fhir(f"{path}.resource", resource_problems(resource))


# --- discovery and feedback --------------------------------------------------------------------


def _discovery_problems(document: dict[str, Any]) -> Iterator[Problem]:
    services = document.get("services")
    seen: dict[str, str] = {}
    for index, service in enumerate(services if isinstance(services, list) else []):
        if not isinstance(service, dict):
            continue
        path = f"$.services[{index}]"
        service_id = service.get("id")
        if isinstance(service_id, str):
            if service_id in seen:
                yield _error(f"{path}.id", f"{path}.id: the same id is used at {seen[service_id]}")
            seen.setdefault(service_id, f"{path}.id")
        prefetch = service.get("prefetch")
        for key, template in prefetch.items() if isinstance(prefetch, dict) else []:
            if not isinstance(template, str):
                continue
            for token in _PREFETCH_TOKEN.findall(template):
                if not _ALLOWED_TOKEN.match(token):
                    yield _warning(
                        f"{path}.prefetch.{key}",
                        f"{path}.prefetch.{key}: CDS Hooks 2.0 prefetch tokens are first-level "
                        "context fields or user identity tokens only",
                    )


def _feedback_problems(document: dict[str, Any]) -> Iterator[Problem]:
    items = document.get("feedback")
    for index, item in enumerate(items if isinstance(items, list) else []):
        if not isinstance(item, dict):
            continue
        path = f"$.feedback[{index}]"
        if isinstance(item.get("card"), str) and not _is_uuid(item["card"]):
            yield _warning(f"{path}.card", f"{path}.card: should be the uuid of a card")
        stamp = item.get("outcomeTimestamp")
        if isinstance(stamp, str) and not _is_timestamp(stamp):
            yield _error(
                f"{path}.outcomeTimestamp",
                f"{path}.outcomeTimestamp: must be an ISO 8601 date and time with a time zone",
            )
        accepted = item.get("acceptedSuggestions")
        for s_index, suggestion in enumerate(accepted if isinstance(accepted, list) else []):
            identifier = suggestion.get("id") if isinstance(suggestion, dict) else None
            if isinstance(identifier, str) and not _is_uuid(identifier):
                s_path = f"{path}.acceptedSuggestions[{s_index}].id"
                yield _warning(s_path, f"{s_path}: should be the uuid of a suggestion")


def _is_timestamp(text: str) -> bool:
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return False
    return "T" in text and parsed.tzinfo is not None


_RULES = {
    "request": _request_problems,
    "response": _response_problems,
    "discovery": _discovery_problems,
    "feedback": _feedback_problems,
}


# --- entry points ------------------------------------------------------------------------------


def check_document(document: Any, kind: str | None = None, source: str = "") -> Report:
    kind = kind or detect_kind(document)
    report = Report(source, kind)
    if kind is None:
        report.problems.append(
            _error(
                "$",
                "$: not recognised as a CDS Hooks request (hook, context), response (cards), "
                "discovery response (services) or feedback (feedback); name it with --kind",
            )
        )
        return report
    schema = [_error(path, message) for path, message in schema_problems(kind, document)]
    flagged = {p.path for p in schema}
    rules = [p for p in _RULES[kind](document) if p.path not in flagged or p.severity == "warning"]
    report.problems = _ordered([*schema, *rules])
    if kind == "request" and isinstance(document, dict) and isinstance(document.get("hook"), str):
        report.detail = document["hook"]
    return report


def _ordered(problems: list[Problem]) -> list[Problem]:
    unique = list(dict.fromkeys(problems))
    return sorted(unique, key=lambda p: (p.severity is not Severity.ERROR, p.path))


def check_text(text: str, kind: str | None = None, source: str = "") -> Report:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        report = Report(source, kind)
        report.problems.append(
            _error("$", f"$: not valid JSON (line {error.lineno}, column {error.colno})")
        )
        return report
    return check_document(document, kind, source)


def check_file(path: Path, kind: str | None = None) -> Report:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        report = Report(str(path), kind)
        report.problems.append(_error("$", f"$: cannot read the file ({error.__class__.__name__})"))
        return report
    return check_text(text, kind, str(path))


def describe(report: Report) -> str:
    """`file: CDS Hooks request (order-sign): 2 errors, 1 warning` and one line per problem."""
    what = _KIND_NAMES.get(report.kind or "", "document")
    if report.detail:
        what += f" ({report.detail})"
    errors, warnings = len(report.errors), len(report.warnings)
    if not report.problems:
        verdict = "valid"
    else:
        verdict = f"{errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}"
    lines = [f"{report.source}: {what}: {verdict}"]
    for problem in report.problems:
        message = problem.message.removeprefix(problem.path + ": ")
        lines.append(f"  {problem.severity.value:<8} {problem.path}  {message}")
    return "\n".join(lines)
