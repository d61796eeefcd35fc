"""GET /api/openapi.json: the read API described as OpenAPI 3.1, built from the same names the handlers use."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from handlers.access import read_access
from handlers.api import DEFAULT_LIMIT, MAX_LIMIT, PUSH_PARAMS, REJECT_PARAMS, json_response, query_params
from storage.filters import EXACT_FILTERS
from storage.queries import PUSH_COLUMNS, REJECT_COLUMNS

_TEXT = {"type": "string"}
_NULLABLE_TEXT = {"type": ["string", "null"]}
_INT = {"type": "integer"}
_PARAMETER_DOCS = {
    **{name: (f"only pushes whose {name} is exactly this", _TEXT) for name in EXACT_FILTERS},
    "since": ("received at or after this time (ISO 8601; UTC unless an offset is given)", _TEXT),
    "until": ("received before this time (ISO 8601; UTC unless an offset is given)", _TEXT),
    "after": ("cursor: only items after this seq (pushes) or id (rejects); 0 starts at the beginning", _INT),
    "before": ("only pushes with a seq below this (with order=newest: pass the page's next_before)", _INT),
    "order": ("oldest (default) or newest first; newest pages answer next_before instead of next_after", _TEXT),
    "limit": (f"page size, 1 to {MAX_LIMIT}, default {DEFAULT_LIMIT}", _INT),
    "reason": ("only rejects with this reason, e.g. invalid_json", _TEXT),
}


def _query(names: tuple[str, ...]) -> list[dict[str, Any]]:
    return [
        {"name": name, "in": "query", "required": False, "description": doc, "schema": schema}
        for name in names
        for doc, schema in [_PARAMETER_DOCS[name]]
    ]


def _path(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": _TEXT}


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERROR = {"$ref": "#/components/schemas/Error"}
_ERRORS = {
    "400": _json("a parameter is unknown, repeated or malformed", _ERROR),
    "401": _json("no valid bearer token (or, without api_token, not from loopback)", _ERROR),
}
_INT_COLUMNS = {"seq", "deliveries", "id", "reprocessed_seq"}


def _columns(names: tuple[str, ...]) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    for name in names:
        if name in _INT_COLUMNS:
            properties[name] = {"type": ["integer", "null"]} if name == "reprocessed_seq" else _INT
        elif name == "warnings":
            properties[name] = {"type": ["array", "null"], "items": _TEXT}
        elif name == "headers":
            properties[name] = {"type": "object", "additionalProperties": _TEXT}
        else:
            properties[name] = _NULLABLE_TEXT
    return {"type": "object", "properties": properties}


def _page(item: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": {"$ref": f"#/components/schemas/{item}"}},
            "next_after": {"type": ["integer", "null"], "description": "cursor of the last item; null if none"},
            "next_before": {"type": ["integer", "null"], "description": "instead of next_after, with order=newest"},
        },
    }


OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "airudder-receiver read API", "version": "1"},
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Error": {
                "type": "object",
                "properties": {"error": _TEXT, "detail": _TEXT},
                "required": ["error", "detail"],
            },
            "Push": _columns(PUSH_COLUMNS),
            "PushDetail": {
                "allOf": [
                    {"$ref": "#/components/schemas/Push"},
                    {
                        "type": "object",
                        "properties": {
                            "body": {"description": "the push as received; null once purge dropped it"},
                            "versions": {
                                "type": "array",
                                "items": {"type": "object", "properties": {"received_at": _TEXT, "body": {}}},
                            },
                        },
                    },
                ]
            },
            "Reject": {
                **_columns(REJECT_COLUMNS),
                "description": "body: the raw body as text (invalid UTF-8 replaced); body_bytes: its size",
            },
        },
    },
    "security": [{"bearer": []}],
    "paths": {
        "/api/pushes": {
            "get": {
                "summary": "pushes in arrival order (typed columns), one keyset page",
                "parameters": _query(PUSH_PARAMS),
                "responses": {"200": _json("a page", _page("Push")), **_ERRORS},
            }
        },
        "/api/pushes/{workflow_id}/{node_id}/{call_id}": {
            "get": {
                "summary": "one call: typed columns, the body as received (null once purged), versions",
                "parameters": [_path("workflow_id"), _path("node_id"), _path("call_id")],
                "responses": {
                    "200": _json("the push", {"$ref": "#/components/schemas/PushDetail"}),
                    "404": _json("no such call", _ERROR),
                    **_ERRORS,
                },
            }
        },
        "/api/stats": {
            "get": {
                "summary": "totals, duplicates, rejects by reason, counts by workflow, node and intention",
                "parameters": [],
                "responses": {"200": _json("the figures", {"type": "object"}), **_ERRORS},
            }
        },
        "/api/rejects": {
            "get": {
                "summary": "refused requests in arrival order, one keyset page",
                "parameters": _query(REJECT_PARAMS),
                "responses": {"200": _json("a page", _page("Reject")), **_ERRORS},
            }
        },
        "/api/events": {
            "get": {
                "summary": "server-sent events: one 'pushes' event per commit, listing each push's key and outcome",
                "parameters": [],
                "responses": {
                    "200": {
                        "description": "an endless text/event-stream; data is a JSON array of "
                        "{outcome, workflow_id, node_id, call_id, received_at}",
                        "content": {"text/event-stream": {"schema": _TEXT}},
                    },
                    **_ERRORS,
                },
            }
        },
        "/api/openapi.json": {
            "get": {
                "summary": "this document",
                "parameters": [],
                "responses": {"200": _json("OpenAPI 3.1", {"type": "object"}), **_ERRORS},
            }
        },
    },
}


@read_access
async def openapi(request: web.Request) -> web.Response:
    query_params(request, ())
    return json_response(OPENAPI)
