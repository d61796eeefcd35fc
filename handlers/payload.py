"""Turning a push body into a record: identity checks that reject, documented-shape checks that warn.

Only the identity (``workflow_id``, ``node_id``, ``call.call_id``) can reject a push. Everything else
the vendor documents is checked too, but a deviation is recorded on the row as a warning: the sender
cannot fix it, and dropping the call would lose data.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import orjson

from storage.records import PushRecord

MAX_IDENTITY_LENGTH = 512


class InvalidPush(Exception):
    """A body that cannot be stored as a push: ``code`` names the problem, ``detail`` says it to the sender."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


# A JSON value's type is its exact Python class here (orjson builds nothing else), which lets a check be one
# comparison of classes.
STR, INT, OBJ, ARR = str, int, dict, list
_TYPE_NAMES: dict[type, str] = {STR: "a string", INT: "an integer", OBJ: "an object", ARR: "an array"}

# (field, expected type, required) as the vendor's page documents them, per object.
TOP_FIELDS = (("workflow_name", STR, True), ("node_name", STR, True), ("callee", OBJ, True),
              ("custom_attribute", OBJ, True))  # fmt: skip
CALLEE_FIELDS = (
    *((name, STR, True) for name in ("case_id", "callee_name", "callee_gender", "callee_number",
                                     "platform_name", "extra_a", "extra_b", "extra_c", "comments")),
    ("extra", ARR, True), ("extend", OBJ, True),
    *((name, STR, False) for name in ("borrowed_date", "due_date", "borrowed_amount",
                                      "total_owing_amount", "currency_unit")),
)  # fmt: skip
CALL_FIELDS = (
    *((name, STR, True) for name in ("task_id", "robot_id", "callee_number", "call_start_time",
                                     "call_end_time", "intention", "asr_ptp", "slots",
                                     "intention_description")),
    *((name, INT, True) for name in ("call_times", "talk_round", "ring_time")),
    ("multi_label", OBJ, True), ("ner_slots", OBJ, True), ("asr_result", ARR, True),
    ("redial_call", ARR, False), ("question_answer", ARR, False), ("caller_number", STR, False),
)  # fmt: skip
RING_TYPES = frozenset(
    {"busy", "cantuse", "hold", "line", "switchoff", "outofarea", "unregister", "wrongnum",
     "notmatch", "normal", "null"}
)  # fmt: skip
HANGUP_TYPES = frozenset({"ByCallee", "ByRobot", "Canceled"})


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    for python_type, name in _TYPE_NAMES.items():
        if isinstance(value, python_type):
            return name
    return "a number"


_ABSENT = object()


def decode(body: bytes) -> dict[str, Any]:
    """Parse the body; anything but a JSON object is a 400."""
    if not body.strip():
        raise InvalidPush("invalid_json", "the body is empty; a push is a JSON object")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidPush("invalid_json", f"the body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidPush("not_an_object", f"the body is {_type_name(data)}, but a push is a JSON object")
    if _may_repeat_a_key(body, data):
        _refuse_repeated_keys(body)
    return data


def _may_repeat_a_key(body: bytes, data: dict[str, Any]) -> bool:
    """False when no object in ``body`` holds a key twice; a few microseconds for a usual push.

    orjson keeps the last of a repeated key's values, while SQLite's json_extract (and so the views) reads
    the first: a body with a repeated key would tell each reader something else. Outside strings, a colon
    follows each key once. Written out again, the parsed document has one colon per key it kept, and every
    colon its strings hold; the body has one per key it names, and every colon of every string it holds,
    the dropped entries' included. So the two counts are equal only when no key was dropped, unless a
    string wrote a colon as the escape \\u003a, which the body's count misses.
    """
    try:
        kept = orjson.dumps(data).count(b":")
    except orjson.JSONEncodeError:  # nested deeper than orjson writes (255 levels), which it reads (1,024)
        kept = _colons(data)
    # Most bodies hold no backslash at all, which one memchr tells faster than a search for the escape.
    return (b"\\" in body and b"\\u003" in body) or body.count(b":") != kept


def _colons(document: Any) -> int:
    """The colons ``document`` would have written out as JSON: one per key, and those in its strings."""
    count = 0
    stack = [document]
    while stack:  # a loop, not recursion: the document may be nested a thousand levels deep
        value = stack.pop()
        if value.__class__ is OBJ:
            count += len(value) + sum(key.count(":") for key in value)
            stack.extend(value.values())
        elif value.__class__ is ARR:
            stack.extend(value)
        elif value.__class__ is STR:
            count += value.count(":")
    return count


def _refuse_repeated_keys(body: bytes) -> None:
    """Parse again, slowly, keeping every entry of every object; InvalidPush on a key named twice."""

    def check(pairs: list[tuple[str, Any]]) -> None:
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                shown = key if len(key) <= 80 else key[:80] + "..."
                raise InvalidPush(
                    "duplicate_key",
                    f"the key {shown!r} appears more than once in one object; each key may appear once",
                )
            seen.add(key)

    try:
        json.loads(body, object_pairs_hook=check)
    except RecursionError:  # Python's parser stops short of orjson's 1,024 levels
        raise InvalidPush("invalid_json", "the body is nested too deeply to check it for repeated keys") from None


def _identity(container: dict[str, Any], name: str, path: str) -> str:
    if name not in container:
        raise InvalidPush("missing_field", f"{path} is missing")
    value = container[name]
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise InvalidPush("invalid_field", f"{path} must be a string or an integer, not {_type_name(value)}")
    if not value.strip():
        raise InvalidPush("invalid_field", f"{path} is empty")
    if len(value) > MAX_IDENTITY_LENGTH:
        raise InvalidPush("invalid_field", f"{path} is longer than {MAX_IDENTITY_LENGTH} characters")
    return value


def _check(obj: dict[str, Any], spec: tuple[tuple[str, type, bool], ...], prefix: str, out: list[str]) -> None:
    # Runs for some forty fields per push, so a field as documented costs one look-up and one comparison.
    for name, expected, required in spec:
        value = obj.get(name, _ABSENT)
        if value.__class__ is expected:
            continue
        if value is _ABSENT:
            if required:
                out.append(f"{prefix}{name} is missing")
        elif value.__class__ is bool or not isinstance(value, expected):  # JSON true/false are not integers
            out.append(f"{prefix}{name} should be {_TYPE_NAMES[expected]}, not {_type_name(value)}")


def _text(obj: dict[str, Any], name: str) -> str | None:
    value = obj.get(name)
    return value if isinstance(value, str) else None


def _enum(obj: dict[str, Any], name: str, allowed: frozenset[str], nullable: bool, out: list[str]) -> str | None:
    path = f"call.{name}"
    if name not in obj:
        out.append(f"{path} is missing")
        return None
    value = obj[name]
    if value is None and nullable:
        return None
    if not isinstance(value, str):
        out.append(f"{path} should be {_TYPE_NAMES[STR]}, not {_type_name(value)}")
        return None
    if value not in allowed:
        out.append(f"{path} has an undocumented value {value!r}")
    return value


def to_record(body: bytes, data: dict[str, Any], received_at: str) -> PushRecord:
    """Build the stored record; raises InvalidPush only for a bad identity."""
    workflow_id = _identity(data, "workflow_id", "workflow_id")
    node_id = _identity(data, "node_id", "node_id")
    if "call" not in data:
        raise InvalidPush("missing_field", "call is missing (call.call_id identifies the call)")
    call = data["call"]
    if not isinstance(call, dict):
        raise InvalidPush("invalid_field", f"call must be an object, not {_type_name(call)}")
    call_id = _identity(call, "call_id", "call.call_id")

    warnings: list[str] = []
    _check(data, TOP_FIELDS, "", warnings)
    callee = data.get("callee")
    if not isinstance(callee, dict):
        callee = {}
    else:
        _check(callee, CALLEE_FIELDS, "callee.", warnings)
    _check(call, CALL_FIELDS, "call.", warnings)
    # The page says ring_type starts out as null, so null is not a deviation there.
    ring_type = _enum(call, "ring_type", RING_TYPES, True, warnings)
    hangup_type = _enum(call, "hangup_type", HANGUP_TYPES, False, warnings)

    return PushRecord(
        workflow_id=workflow_id,
        node_id=node_id,
        call_id=call_id,
        workflow_name=_text(data, "workflow_name"),
        node_name=_text(data, "node_name"),
        case_id=_text(callee, "case_id"),
        # The list's number identifies the customer; the call's is only the last one dialled.
        callee_number=_text(callee, "callee_number") or _text(call, "callee_number"),
        task_id=_text(call, "task_id"),
        robot_id=_text(call, "robot_id"),
        call_start_time=_text(call, "call_start_time"),
        call_end_time=_text(call, "call_end_time"),
        intention=_text(call, "intention"),
        hangup_type=hangup_type,
        ring_type=ring_type,
        received_at=received_at,
        warnings=orjson.dumps(warnings).decode() if warnings else None,
        body_hash=hashlib.blake2b(body, digest_size=16).digest(),
        body=body.decode("utf-8"),
    )
