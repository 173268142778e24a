"""Reading FHIR R4 JSON as it arrives in real CDS Hooks traffic: Bundles, failed results,
dates. (Parsing JSON text is `cds_service/json_text.py`; what the service reads of each resource
is checked in `checks.py`.)"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime
from typing import Any


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
