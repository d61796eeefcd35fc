"""GET /api/openapi.json: the read API described as OpenAPI 3.1, built from the same names the handlers use."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from handlers.access import read_access
from handlers.api import (
    DEFAULT_LIMIT,
    DELIVERY_PARAMS,
    MAX_LIMIT,
    PUSH_PARAMS,
    REJECT_PARAMS,
    json_response,
    query_params,
)
from handlers.keys import SETTINGS
from storage.filters import EXACT_FILTERS, MAX_SEQ, ORDERS
from storage.outbox import ATTEMPT_COLUMNS, JOB_COLUMNS, STATES
from storage.queries import PUSH_COLUMNS, REJECT_COLUMNS

_TEXT = {"type": "string"}
_NULLABLE_TEXT = {"type": ["string", "null"]}
_INT = {"type": "integer"}

# A date, or a date and time with an optional offset, that the time filters take: each string this matches
# is a real moment (days checked against their month; 29 February is left out). The filters take more
# (29 February, a space for the T, week dates), which the description says.
_YEAR = r"(?:[1-9][0-9]{3}|0[1-9][0-9]{2}|00[1-9][0-9]|000[1-9])"
_MONTH_DAY = (
    r"(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
    r"|02-(?:0[1-9]|1[0-9]|2[0-8]))"
)
_CLOCK = (
    r"(?:T(?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\.[0-9]{1,6})?)?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])?)?"
)
TIME_PATTERN = f"^{_YEAR}-{_MONTH_DAY}{_CLOCK}$"
_TIME = {"type": "string", "pattern": TIME_PATTERN}
_NAME = {"type": "string", "minLength": 1}
_PARAMETER_DOCS = {
    **{name: (f"only pushes whose {name} is exactly this (not empty)", _NAME) for name in EXACT_FILTERS},
    "since": ("received at or after this time (ISO 8601, e.g. 2026-11-24 or 2026-11-24T19:47:09Z; UTC unless "
              "an offset is given, written %2B02:00 in a URL)", _TIME),
    "until": ("received before this time (ISO 8601, as since); an until at or before since matches nothing", _TIME),
    "after": ("cursor: only items after this seq (pushes) or id (rejects, deliveries); 0 starts at the beginning",
              {**_INT, "minimum": 0, "maximum": MAX_SEQ}),
    "before": ("only pushes with a seq below this (with order=newest: pass the page's next_before)",
               {**_INT, "minimum": 1, "maximum": MAX_SEQ}),
    "order": ("oldest (default) or newest first; a newest page carries only next_before, an oldest page only "
              "next_after", {"type": "string", "enum": list(ORDERS)}),
    "limit": (f"page size, default {DEFAULT_LIMIT}", {**_INT, "minimum": 1, "maximum": MAX_LIMIT}),
    "reason": ("only rejects with this reason, e.g. invalid_json", _TEXT),
    "destination": ("only deliveries to this forwarding destination (its name in config.toml)", _NAME),
    "state": ("only deliveries in this state", {"type": "string", "enum": list(STATES)}),
}  # fmt: skip


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
    "403": _json("without api_token: the Host header does not name this machine or one of allowed_hosts", _ERROR),
    "503": _json("no read connection came free in time (readers_busy); retry after Retry-After", _ERROR),
}
_INT_COLUMNS = {"seq", "deliveries", "id", "reprocessed_seq", "version", "attempts"}


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


def _page(item: str, cursors: tuple[str, ...]) -> dict[str, Any]:
    """A page: its items and exactly one cursor (``next_after``, or ``next_before`` for a newest-first page)."""
    items = {"type": "array", "items": {"$ref": f"#/components/schemas/{item}"}}
    descriptions = {
        "next_after": "cursor of the last item, to pass as after; null if none",
        "next_before": "seq of the last (oldest) item, to pass as before; null if none (order=newest only)",
    }
    return {
        "oneOf": [
            {
                "type": "object",
                "properties": {
                    "items": items,
                    cursor: {"type": ["integer", "null"], "description": descriptions[cursor]},
                },
                "required": ["items", cursor],
                "additionalProperties": False,
            }
            for cursor in cursors
        ]
    }


def document(api_token: bool) -> dict[str, Any]:
    """The document for a server with or without an ``api_token``: the security it declares is the one that
    server applies (a bearer token, or none for clients on loopback)."""
    security: list[dict[str, list[str]]] = [{"bearer": []}] if api_token else [{}]
    return {**_DOCUMENT, "security": security}


_DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "airudder-receiver read API",
        "version": "1",
        "description": "With api_token set, every request needs Authorization: Bearer <api_token>. Without one, "
        "only clients on loopback may read, and no token is asked for.",
    },
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
                            "forwarding": {
                                "type": "array",
                                "items": {"$ref": "#/components/schemas/DeliveryWithAttempts"},
                            },
                        },
                    },
                ]
            },
            "Delivery": {
                **_columns(JOB_COLUMNS),
                "description": "one push body (version 0: as first stored; n: its n-th differing body) for one"
                " forwarding destination; state pending (next_attempt_at set), delivered or dead",
            },
            "DeliveryWithAttempts": {
                "allOf": [
                    {"$ref": "#/components/schemas/Delivery"},
                    {
                        "type": "object",
                        "properties": {
                            "history": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "properties": dict(
                                        zip(
                                            ATTEMPT_COLUMNS,
                                            (_TEXT, {"type": ["integer", "null"]}, {"type": "number"}, _NULLABLE_TEXT),
                                            strict=True,
                                        )
                                    ),
                                    "description": "status: the HTTP status or exit code, null without an answer;"
                                    " seconds: how long the attempt took",
                                },
                            }
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
    "paths": {
        "/api/pushes": {
            "get": {
                "summary": "pushes in arrival order (typed columns), one keyset page",
                "parameters": _query(PUSH_PARAMS),
                "responses": {"200": _json("a page", _page("Push", ("next_after", "next_before"))), **_ERRORS},
            }
        },
        "/api/pushes/{workflow_id}/{node_id}/{call_id}": {
            "get": {
                "summary": "one call: typed columns, the body as received (null once purged), versions, deliveries",
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
                "responses": {"200": _json("a page", _page("Reject", ("next_after",))), **_ERRORS},
            }
        },
        "/api/deliveries": {
            "get": {
                "summary": "deliveries to forwarding destinations in the order they were created, one keyset page",
                "parameters": _query(DELIVERY_PARAMS),
                "responses": {"200": _json("a page", _page("Delivery", ("next_after",))), **_ERRORS},
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


_DOCUMENTS = {with_token: document(with_token) for with_token in (True, False)}


@read_access
async def openapi(request: web.Request) -> web.Response:
    query_params(request, ())
    return json_response(_DOCUMENTS[bool(request.app[SETTINGS].api_token)])
