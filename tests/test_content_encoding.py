"""A push body's Content-Encoding on the real app: gzip and deflate decoded within the size limit, any other
coding refused 415 in the JSON shape, kept in rejects and counted."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import orjson
import pytest

from handlers.keys import METRICS
from storage.queries import raw_body
from tests.support import ClientFactory, rows, sample

LIMIT = 64 * 1024


def body(call_id: str) -> bytes:
    return orjson.dumps(sample(call_id=call_id))


@pytest.mark.parametrize("coding", ["br", "zstd", "compress", "gzip, br", "made-up"])
async def test_a_coding_not_handled_is_415_kept_and_counted(
    make_client: ClientFactory, db_path: Path, coding: str
) -> None:
    client = await make_client()
    sent = body("encoded") if coding != "gzip, br" else b"\x0b\x02\x80{}\x03"
    response = await client.post("/push", data=sent, headers={"Content-Encoding": coding})
    assert response.status == 415
    assert response.headers["Accept-Encoding"] == "gzip, deflate"
    answer = await response.json()
    assert answer["error"] == "unsupported_encoding"
    assert "is not supported; send the body as it is, or with gzip, deflate" in answer["detail"]
    (reject,) = rows(db_path, "SELECT reason, headers, body FROM rejects")
    assert reject["reason"] == "unsupported_encoding"
    assert orjson.loads(reject["headers"])["Content-Encoding"] == coding
    assert raw_body(reject["body"]) == sent  # as it arrived, for whoever can decode it
    assert rows(db_path, "SELECT count(*) FROM pushes")[0][0] == 0
    counted = client.server.app[METRICS].registry.get_sample_value(
        "airudder_receiver_pushes_rejected_total", {"reason": "unsupported_encoding"}
    )
    assert counted == 1


async def test_gzip_and_deflate_are_decoded(make_client: ClientFactory, db_path: Path) -> None:
    client = await make_client()
    raw_deflate = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    sent = {
        "gzip": (gzip.compress(body("gz")), "gzip"),
        "x-gzip": (gzip.compress(body("xgz")), "X-GZIP"),
        "two-members": (gzip.compress(body("members")[:10]) + gzip.compress(body("members")[10:]), "gzip"),
        "twice": (gzip.compress(gzip.compress(body("twice"))), "gzip, gzip"),
        "deflate": (zlib.compress(body("zl")), "deflate"),
        "raw-deflate": (raw_deflate.compress(body("raw")) + raw_deflate.flush(), "deflate"),
        "identity": (body("plain"), "identity"),
    }
    for name, (data, coding) in sent.items():
        response = await client.post("/push", data=data, headers={"Content-Encoding": coding})
        assert response.status == 200, (name, await response.text())
    assert len(rows(db_path, "SELECT call_id FROM pushes")) == len(sent)


async def test_decoding_keeps_the_size_limit_and_refuses_what_does_not_decode(
    make_client: ClientFactory, db_path: Path
) -> None:
    client = await make_client(max_body_bytes=LIMIT, queue_max_bytes=LIMIT)
    bomb = gzip.compress(b" " * (LIMIT * 64))  # 64 KiB limit, a body of 4 MiB in a few KiB
    at_limit = body("at-limit")
    at_limit += b" " * (LIMIT - len(at_limit))
    cases = [
        (bomb, "gzip", 413, "body_too_large"),
        (gzip.compress(at_limit), "gzip", 200, None),
        (gzip.compress(at_limit + b" "), "gzip", 413, "body_too_large"),
        (gzip.compress(body("cut"))[:-12], "gzip", 400, "invalid_body"),
        (zlib.compress(body("tail")) + b"trailing", "deflate", 400, "invalid_body"),
        (b"plain text", "gzip", 400, "invalid_body"),
    ]
    for data, coding, status, code in cases:
        response = await client.post("/push", data=data, headers={"Content-Encoding": coding})
        assert response.status == status, (code, await response.text())
        if code:
            assert (await response.json())["error"] == code
    kept = rows(db_path, "SELECT reason, body IS NULL FROM rejects ORDER BY id")
    # A body past the limit is kept without its body, as an uncompressed one is.
    assert [tuple(row) for row in kept] == [
        ("body_too_large", 1), ("body_too_large", 1), ("invalid_body", 0), ("invalid_body", 0), ("invalid_body", 0)
    ]  # fmt: skip
