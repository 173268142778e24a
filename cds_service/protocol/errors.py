"""Errors a CDS client can act on, answered as OperationOutcome-shaped JSON.

CDS Hooks 3.0 asks for an OperationOutcome body on every non-2xx answer; 2.0 clients simply
see a JSON body with a clear message. Messages never echo request values (they may be PHI).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class CdsError(Exception):
    status: int
    message: str
    issue_code: str = "invalid"
    expressions: Sequence[str] = field(default_factory=tuple)

    def __str__(self) -> str:
        return self.message


def bad_request(message: str, expressions: Sequence[str] = ()) -> CdsError:
    return CdsError(400, message, "invalid", tuple(expressions))


def not_found(message: str) -> CdsError:
    return CdsError(404, message, "not-found")


def precondition_failed(message: str, missing: Sequence[str] = ()) -> CdsError:
    return CdsError(412, message, "incomplete", tuple(missing))


def operation_outcome(
    message: str,
    *,
    issue_code: str = "invalid",
    severity: str = "error",
    expressions: Sequence[str] = (),
) -> dict[str, Any]:
    issue: dict[str, Any] = {
        "severity": severity,
        "code": issue_code,
        "details": {"text": message},
        "diagnostics": message,
    }
    if expressions:
        issue["expression"] = list(expressions)
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def error_body(error: CdsError) -> dict[str, Any]:
    return operation_outcome(
        error.message, issue_code=error.issue_code, expressions=error.expressions
    )
