"""Generated payloads: whatever the body, the answer is 200 exactly when the identity is valid, never a
5xx, and the database agrees (a row for a 200, a reject for anything else)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.support import ClientFactory, both_backends, rows

# JSON values of any shape, small.
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=8,
)
# What an identity field may hold, valid or not: texts around the 512-character limit, blank ones,
# integers in and out of what a 64-bit integer holds, and every other type.
plausible_ids = st.text(min_size=1, max_size=8) | st.integers(0, 10**6)
identity_values = st.one_of(
    plausible_ids,
    plausible_ids,
    plausible_ids,
    st.sampled_from(["", " ", "\t\n", "0", "-1", "1e5", "null"]),
    st.sampled_from(["i" * 512, "i" * 513, " " * 512 + "i"]),
    st.integers(-(2**63), 2**64 - 1),
    st.sampled_from([2**64, -(2**63) - 1, 10**30]),
    json_values,
)
MISSING = object()


def valid_identity(value: Any) -> bool:
    """The documented rule: a non-blank string of at most 512 characters, or an integer."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return -(2**63) <= value < 2**64  # beyond that JSON numbers are read as floats
    return isinstance(value, str) and bool(value.strip()) and len(value) <= 512


@st.composite
def payloads(draw: st.DrawFn) -> dict[str, Any]:
    """Half with plausible identities (mostly valid), half with anything, missing fields included."""
    objects = st.dictionaries(st.text(max_size=6), json_values, max_size=3)
    plausible = draw(st.booleans())
    ids = plausible_ids if plausible else identity_values | st.just(MISSING)
    push: dict[str, Any] = draw(objects)
    call = draw(objects if plausible else objects | json_values | st.just(MISSING))
    for container, name in ((push, "workflow_id"), (push, "node_id"), (call, "call_id")):
        value = draw(ids)
        if isinstance(container, dict) and value is not MISSING:
            container[name] = value
    if call is not MISSING:
        push["call"] = call
    return push


def expected_key(push: dict[str, Any]) -> tuple[str, str, str] | None:
    call = push.get("call")
    values = [push.get("workflow_id", MISSING), push.get("node_id", MISSING)]
    values.append(call.get("call_id", MISSING) if isinstance(call, dict) else MISSING)
    if not all(valid_identity(value) for value in values):
        return None
    return (str(values[0]), str(values[1]), str(values[2]))


@both_backends
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=st.one_of(payloads(), json_values, st.binary(max_size=40)))
async def test_generated_payloads_are_answered_and_recorded(
    make_client: ClientFactory, db_path: Path, payload: dict[str, Any] | bytes | Any
) -> None:
    client = await make_client()
    try:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        rejects_before = rows(db_path, "SELECT count(*) FROM rejects")[0][0]
        response = await client.post("/push", data=body)
        assert response.status in (200, 400, 413, 422)
        event(f"{type(payload).__name__} answered {response.status}")  # shown by --hypothesis-show-statistics
        if isinstance(payload, dict):
            key = expected_key(payload)
            assert (response.status == 200) == (key is not None), (response.status, await response.read())
            if key is not None:
                where = "workflow_id = ? AND node_id = ? AND call_id = ?"
                assert rows(db_path, f"SELECT count(*) FROM pushes WHERE {where}", key)[0][0] == 1
        elif not isinstance(payload, bytes):
            assert response.status == 400  # JSON, but not an object
        if response.status != 200:
            answer = orjson.loads(await response.read())
            assert set(answer) == {"error", "detail"}
            reasons = [row[0] for row in rows(db_path, "SELECT reason FROM rejects ORDER BY id")]
            assert len(reasons) == rejects_before + 1
            assert reasons[-1] == answer["error"]
    finally:
        await client.close()  # its aiosqlite threads must not outlive a failed example
