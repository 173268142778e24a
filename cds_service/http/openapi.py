"""GET /openapi.json: the OpenAPI 3.1 description of this service.

The document is data (`openapi.json` beside this module). The CDS Hooks 2.0 JSON Schemas the
service validates with are filled in where it says `x-cds-hooks-schema`, so the description and
the validation never drift apart; the version comes from the package. Each schema's `$defs`
become components of their own (`<Name>_<def>`), so that every OpenAPI tool resolves the
references, not only those that honour `$id`.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from importlib import resources
from typing import Any

from flask import Blueprint, Response, jsonify

from cds_service import __version__

blueprint = Blueprint("openapi", __name__)

_MARKER = "x-cds-hooks-schema"


def _packaged_json(package: str, *parts: str) -> dict[str, Any]:
    node = resources.files(package)
    for part in parts:
        node = node / part
    document: dict[str, Any] = json.loads(node.read_text(encoding="utf-8"))
    return document


@cache
def openapi_document() -> dict[str, Any]:
    document = _packaged_json("cds_service.http", "openapi.json")
    document["info"]["version"] = __version__
    schemas = document["components"]["schemas"]
    for name, schema in list(schemas.items()):
        if _MARKER in schema:
            source = _packaged_json(
                "cds_service.protocol", "schemas", f"{schema[_MARKER]}.schema.json"
            )
            schemas.update(_as_components(name, source))
    return document


def _as_components(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    definitions = schema.pop("$defs", {})
    for keyword in ("$id", "$schema"):
        schema.pop(keyword, None)
    components = {name: schema, **{f"{name}_{key}": value for key, value in definitions.items()}}
    return {key: _rewrite_refs(value, name) for key, value in components.items()}


def _rewrite_refs(node: Any, name: str) -> Any:
    if isinstance(node, dict):
        return {
            key: (
                value.replace("#/$defs/", f"#/components/schemas/{name}_")
                if key == "$ref" and isinstance(value, str)
                else _rewrite_refs(value, name)
            )
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_rewrite_refs(item, name) for item in node]
    return node


@blueprint.get("/openapi.json")
def openapi() -> Response:
    return jsonify(copy.deepcopy(openapi_document()))
