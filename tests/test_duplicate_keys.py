"""A key named twice in one object: refused 422 duplicate_key and kept, since readers disagree on its value
(orjson and the typed columns take the last, SQLite's json_extract and the views the first)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from handlers.payload import InvalidPush, decode
from storage.queries import raw_body
from tests.hostile import deep
from tests.support import ClientFactory, rows, sample

# The sample, whose call_id is last among its fields, with one more field written in raw JSON before it.
_SAMPLE = orjson.dumps(sample(call_id="dup"))
_AT = _SAMPLE.index(b'"call_id"')


def with_call_field(raw: bytes) -> bytes:
    return _SAMPLE[:_AT] + raw + b"," + _SAMPLE[_AT:]


REPEATED = {
    "top level": b'{"workflow_id":"w","node_id":"n","call":{"call_id":"c"},"node_id":"m"}',
    "in call": with_call_field(b'"intention":"Z"'),
    "nested deeper": with_call_field(b'"labels":{"a":"1","a":"2"}'),
    "same value": with_call_field(b'"intention":"E"'),
    # The colon the dropped entry costs, put back as an escape in a string that is kept.
    "escaped colon": with_call_field(b'"intention":"Z","note":"x\\u003a"'),
}
# Not repeated, but the quick count cannot tell: the slow parse lets them through.
DISTINCT = {
    "escaped colon": with_call_field(b'"note":"a\\u003ab"'),
    "escaped upper-case colon": with_call_field(b'"note":"a\\u003Ab"'),
    "colons in strings and spaces": b'{ "workflow_id" : "w:1" , "node_id":"n::" ,"call" :{"call_id": "c:" } }',
    "same key in sibling objects": with_call_field(b'"labels":{"a":{"k":1},"b":{"k":2}}'),
}


@pytest.mark.parametrize("name", REPEATED)
def test_a_repeated_key_is_refused(name: str) -> None:
    with pytest.raises(InvalidPush) as refused:
        decode(REPEATED[name])
    assert refused.value.code == "duplicate_key"
    assert "appears more than once in one object" in refused.value.detail


@pytest.mark.parametrize("name", DISTINCT)
def test_keys_named_once_pass(name: str) -> None:
    assert decode(DISTINCT[name]) == orjson.loads(DISTINCT[name])


def test_deeper_than_orjson_writes_is_checked_too() -> None:
    assert decode(b'{"workflow_id":"w","deep":' + deep(1000) + b"}")["workflow_id"] == "w"
    with pytest.raises(InvalidPush, match="the key 'x' appears more than once"):
        decode(b'{"x":' + deep(300) + b',"x":1}')


def test_too_deep_for_the_slow_parse_is_a_400_not_a_crash() -> None:
    body = b'{"workflow_id":"\\u003a","x":' + deep(1000) + b"}"
    with pytest.raises(InvalidPush) as refused:
        decode(body)
    assert (refused.value.code, refused.value.detail) == (
        "invalid_json",
        "the body is nested too deeply to check it for repeated keys",
    )


async def test_a_push_with_a_repeated_key_is_422_and_kept(make_client: ClientFactory, db_path: Path) -> None:
    client = await make_client()
    body = REPEATED["in call"]
    response = await client.post("/push", data=body)
    assert response.status == 422
    assert (await response.json())["detail"] == (
        "the key 'intention' appears more than once in one object; each key may appear once"
    )
    (reject,) = rows(db_path, "SELECT reason, body FROM rejects")
    assert (reject["reason"], raw_body(reject["body"])) == ("duplicate_key", body)
    assert rows(db_path, "SELECT count(*) FROM pushes")[0][0] == 0
    assert (await client.post("/push", data=DISTINCT["escaped colon"])).status == 200
