"""Shared HTTP helpers of the tools: base URLs, headers and readable error bodies."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import requests

_MAX_MESSAGE = 300


class UsageError(ValueError):
    """A command-line value the tool cannot work with."""


def base_url(url: str, strip_suffix: str = "") -> str:
    """An http(s) base URL without a trailing slash (and without `strip_suffix`)."""
    cleaned = url.strip().rstrip("/")
    if strip_suffix and cleaned.endswith(strip_suffix):
        cleaned = cleaned[: -len(strip_suffix)].rstrip("/")
    parts = urlsplit(cleaned)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise UsageError(f"not an http(s) URL: {url!r}")
    return cleaned


def parse_headers(values: Iterable[str]) -> dict[str, str]:
    """`Name: value` pairs from the command line."""
    headers: dict[str, str] = {}
    for value in values:
        name, sep, content = value.partition(":")
        if not sep or not name.strip():
            raise UsageError(f"a header must look like 'Name: value', got {value!r}")
        headers[name.strip()] = content.strip()
    return headers


def _outcome_text(body: Any) -> str | None:
    if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
        return None
    texts = []
    for issue in body.get("issue") or []:
        if isinstance(issue, dict):
            text = issue.get("diagnostics") or (issue.get("details") or {}).get("text")
            if text:
                texts.append(str(text))
    return "; ".join(texts) or None


def error_summary(response: requests.Response) -> str:
    """`HTTP 412: <what the body says>` in one line, shortened."""
    try:
        body = response.json()
    except (ValueError, json.JSONDecodeError):
        body = None
    text = _outcome_text(body)
    if text is None:
        text = " ".join(response.text.split()) if response.text else response.reason or ""
    if len(text) > _MAX_MESSAGE:
        text = text[: _MAX_MESSAGE - 3] + "..."
    return f"HTTP {response.status_code}: {text}".rstrip(": ")


def connection_problem(error: requests.RequestException, url: str) -> str:
    if isinstance(error, requests.Timeout):
        return f"no answer from {url} in time"
    if isinstance(error, requests.ConnectionError):
        return f"cannot connect to {url}"
    return f"request to {url} failed: {type(error).__name__}"
