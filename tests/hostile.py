"""A corpus of hostile requests, as data: what goes on the wire and how the server must answer.

Every entry carries ``User-Agent: hostile/<name>`` so that its row in ``rejects`` can be found.
The server that takes them runs with ``body_timeout = 1`` and the default ``max_body_bytes`` (1 MiB).
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from typing import Any

import orjson

from tests.rawhttp import Part, request_bytes
from tests.support import SAMPLE_BYTES, sample

LIMIT = 1024 * 1024
BODY_TIMEOUT = 1.0

STORED = "stored"  # answered 200 {} and in pushes
# Refused by aiohttp's HTTP parser before the application sees a request: a plain-text 400 and a closed
# connection. Such bytes are not an HTTP request, so there is no push to keep.
HTTP_PARSER = "http_parser"


@dataclass(frozen=True)
class Hostile:
    name: str
    kind: str
    parts: tuple[Part, ...]
    status: int
    answer: str  # STORED, HTTP_PARSER, or the JSON error code
    kept: bool = False  # must be in rejects
    call_id: str | None = None  # for STORED: the call_id the row must have

    @property
    def user_agent(self) -> str:
        return f"hostile/{self.name}"


def wire(
    name: str, body: bytes = b"", headers: dict[str, str] | None = None, method: str = "POST", path: str = "/push"
) -> bytes:
    """The request as sent, marked with the entry's name; framing headers in ``headers`` replace the true length."""
    headers = {"User-Agent": f"hostile/{name}", **(headers or {})}
    framed = "Content-Length" in headers or "Transfer-Encoding" in headers
    return request_bytes(method, path, body, headers, length=not framed)


def rejected(
    name: str, kind: str, body: bytes, status: int, code: str, headers: dict[str, str] | None = None
) -> Hostile:
    """A POST /push the application refuses and keeps in rejects."""
    return Hostile(name, kind, (wire(name, body, headers),), status, code, kept=True)


def stored(name: str, kind: str, body: bytes, call_id: str, headers: dict[str, str] | None = None) -> Hostile:
    return Hostile(name, kind, (wire(name, body, headers),), 200, STORED, call_id=call_id)


def refused(name: str, kind: str, raw: bytes, status: int, code: str) -> Hostile:
    """Refused before the push handler (router or HTTP parser): answered, not kept."""
    return Hostile(name, kind, (raw,), status, code)


def push(name: str, **call: Any) -> dict[str, Any]:
    """The sample push under a call_id of its own, with ``call`` fields replaced."""
    return sample(**{"call_id": f"hostile-{name}", **call})


def with_top(name: str, **top: Any) -> bytes:
    return orjson.dumps({**push(name), **top})


def chunked(data: bytes, size: int, end: bool = True) -> bytes:
    pieces = (data[i : i + size] for i in range(0, len(data), size))
    return b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces) + (b"0\r\n\r\n" if end else b"")


def trickled(raw: bytes, pieces: int, pause: float) -> tuple[Part, ...]:
    size = -(-len(raw) // pieces)
    parts: list[Part] = []
    for start in range(0, len(raw), size):
        parts += [raw[start : start + size], pause]
    return tuple(parts[:-1])


def deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def padded(body: bytes, size: int) -> bytes:
    return body + b" " * (size - len(body))


CHUNKED = {"Transfer-Encoding": "chunked"}


SQL = "'); DROP TABLE pushes; --"

CORPUS: list[Hostile] = [
    # Truncated or otherwise broken JSON.
    rejected("truncated-half", "truncated-json", SAMPLE_BYTES[: len(SAMPLE_BYTES) // 2], 400, "invalid_json"),
    rejected("truncated-brace", "truncated-json", b"{", 400, "invalid_json"),
    rejected("truncated-in-string", "truncated-json", b'{"workflow_id": "w', 400, "invalid_json"),
    rejected("truncated-after-colon", "truncated-json", b'{"workflow_id":', 400, "invalid_json"),
    rejected("trailing-brace", "truncated-json", SAMPLE_BYTES + b"}", 400, "invalid_json"),
    rejected("trailing-comma", "truncated-json", b'{"workflow_id": "w",}', 400, "invalid_json"),
    rejected("single-quotes", "truncated-json", b"{'workflow_id': 'w'}", 400, "invalid_json"),
    rejected("comment", "truncated-json", b"// a push\n" + SAMPLE_BYTES, 400, "invalid_json"),
    rejected("byte-order-mark", "truncated-json", b"\xef\xbb\xbf" + SAMPLE_BYTES, 400, "invalid_json"),
    # Bytes that are not UTF-8, or escapes that do not make text.
    rejected("invalid-utf8-byte", "encoding", b'{"workflow_id": "\xff", "node_id": "n"}', 400, "invalid_json"),
    rejected("overlong-utf8", "encoding", b'{"workflow_id": "\xc0\xaf"}', 400, "invalid_json"),
    rejected("utf16-body", "encoding", SAMPLE_BYTES.decode().encode("utf-16"), 400, "invalid_json"),
    rejected("latin1-body", "encoding", '{"workflow_id": "café"}'.encode("latin-1"), 400, "invalid_json"),
    rejected("surrogate-bytes", "encoding", b'{"workflow_id": "\xed\xa0\x80"}', 400, "invalid_json"),
    rejected("lone-surrogate-escape", "encoding", b'{"workflow_id": "\\ud800"}', 400, "invalid_json"),
    rejected("raw-nul-in-string", "encoding", b'{"workflow_id": "a\x00b"}', 400, "invalid_json"),
    stored("escaped-nul-in-id", "encoding", orjson.dumps(push("x", call_id="nul\u0000id")), "nul\x00id"),
    stored("unicode-id", "encoding", orjson.dumps(push("x", call_id="☎️‮عربي")), "☎️‮عربي"),
    # NaN, Infinity and numbers no double holds.
    rejected("nan", "numbers", b'{"workflow_id": NaN, "node_id": "n", "call": {"call_id": "c"}}', 400, "invalid_json"),
    rejected("infinity", "numbers", b'{"workflow_id": "w", "node_id": Infinity}', 400, "invalid_json"),
    rejected("minus-infinity", "numbers", b'{"workflow_id": -Infinity}', 400, "invalid_json"),
    rejected(
        "huge-exponent",
        "numbers",
        b'{"workflow_id": "w", "node_id": "n", "call": {"call_id": 1e999}}',
        400,
        "invalid_json",
    ),
    rejected("400-digit-number", "numbers", b'{"workflow_id": ' + b"9" * 400 + b"}", 400, "invalid_json"),
    rejected(
        "u64-overflow-id",
        "numbers",
        with_top("x", workflow_id=0).replace(b'"workflow_id":0', b'"workflow_id":18446744073709551616'),
        422,
        "invalid_field",
    ),
    rejected("float-id", "numbers", orjson.dumps(push("x", call_id=1.0)), 422, "invalid_field"),
    stored("negative-int-id", "numbers", orjson.dumps(push("x", call_id=-5)), "-5"),
    stored("int64-max-id", "numbers", orjson.dumps(push("x", call_id=2**63 - 1)), str(2**63 - 1)),
    stored("numeric-string-id", "numbers", orjson.dumps(push("x", call_id="00123")), "00123"),
    stored("exponent-string-id", "numbers", orjson.dumps(push("x", call_id="1e5")), "1e5"),
    # Nesting.
    rejected("deep-array-10000", "nesting", deep(10_000), 400, "invalid_json"),
    rejected("deep-object-10000", "nesting", b'{"a":' * 10_000 + b"1" + b"}" * 10_000, 400, "invalid_json"),
    rejected(
        "deep-in-push-10000",
        "nesting",
        with_top("deep10000")[:-1] + b',"deep":' + deep(10_000) + b"}",
        400,
        "invalid_json",
    ),
    stored(
        "deep-in-push-1000",
        "nesting",
        with_top("deep-1000")[:-1] + b',"deep":' + deep(1000) + b"}",
        "hostile-deep-1000",
    ),
    stored("wide-object", "nesting", with_top("wide", wide={f"k{i}": i for i in range(20_000)}), "hostile-wide"),
    # Valid JSON that is not an object.
    rejected("array", "not-an-object", b"[" + SAMPLE_BYTES + b"]", 400, "not_an_object"),
    rejected("empty-array", "not-an-object", b"[]", 400, "not_an_object"),
    rejected("string", "not-an-object", b'"workflow_id"', 400, "not_an_object"),
    rejected("number", "not-an-object", b"42", 400, "not_an_object"),
    rejected("null", "not-an-object", b"null", 400, "not_an_object"),
    rejected("true", "not-an-object", b"true", 400, "not_an_object"),
    # Identity fields that are missing, null, of the wrong type or numeric-looking.
    rejected("empty-object", "identity", b"{}", 422, "missing_field"),
    rejected("workflow-id-null", "identity", with_top("x", workflow_id=None), 422, "invalid_field"),
    rejected("workflow-id-bool", "identity", with_top("x", workflow_id=False), 422, "invalid_field"),
    rejected("workflow-id-list", "identity", with_top("x", workflow_id=["w"]), 422, "invalid_field"),
    rejected("workflow-id-object", "identity", with_top("x", workflow_id={"id": "w"}), 422, "invalid_field"),
    rejected("workflow-id-empty", "identity", with_top("x", workflow_id=""), 422, "invalid_field"),
    rejected("workflow-id-blank", "identity", with_top("x", workflow_id=" \t\n"), 422, "invalid_field"),
    rejected("workflow-id-513-chars", "identity", with_top("x", workflow_id="w" * 513), 422, "invalid_field"),
    rejected(
        "node-id-missing",
        "identity",
        orjson.dumps({k: v for k, v in push("x").items() if k != "node_id"}),
        422,
        "missing_field",
    ),
    rejected("node-id-null", "identity", with_top("x", node_id=None), 422, "invalid_field"),
    rejected("call-null", "identity", with_top("x", call=None), 422, "invalid_field"),
    rejected("call-string", "identity", with_top("x", call="c-1"), 422, "invalid_field"),
    rejected("call-list", "identity", with_top("x", call=[{"call_id": "c"}]), 422, "invalid_field"),
    rejected("call-id-missing", "identity", with_top("x", call={"task_id": "t"}), 422, "missing_field"),
    rejected("call-id-null", "identity", orjson.dumps(push("x", call_id=None)), 422, "invalid_field"),
    rejected("call-id-object", "identity", orjson.dumps(push("x", call_id={"$gt": ""})), 422, "invalid_field"),
    stored("workflow-id-integer", "identity", with_top("int-wf", workflow_id=7), "hostile-int-wf"),
    stored("sql-in-id", "identity", orjson.dumps(push("x", call_id=SQL)), SQL),
    rejected(
        "duplicate-key",
        "identity",
        b'{"workflow_id": "w", "node_id": "n", "call": {"call_id": null, "call_id": "hostile-dup"}}',
        422,
        "duplicate_key",
    ),
    # Every other field of the wrong type: stored, with warnings.
    stored(
        "all-fields-wrong-type",
        "wrong-types",
        orjson.dumps(
            {
                "workflow_id": "w",
                "node_id": "n",
                "workflow_name": 1,
                "node_name": [],
                "callee": "callee",
                "custom_attribute": 3.5,
                "call": {
                    "call_id": "hostile-wrong-types",
                    **{
                        name: {"x": [1, None]}
                        for name in ("task_id", "robot_id", "call_times", "ring_type", "hangup_type", "asr_result")
                    },
                },
            }
        ),
        "hostile-wrong-types",
    ),
    stored("callee-list", "wrong-types", with_top("callee-list", callee=[1, 2]), "hostile-callee-list"),
    stored(
        "call-fields-null",
        "wrong-types",
        orjson.dumps({**push("nulls"), "call": dict.fromkeys(sample()["call"]) | {"call_id": "hostile-nulls"}}),
        "hostile-nulls",
    ),
    # Sizes.
    rejected("body-2mib", "size", b"{" + b" " * (2 * LIMIT) + b"}", 413, "body_too_large"),
    rejected("chunked-2mib-no-length", "size", chunked(b" " * (2 * LIMIT), 65536), 413, "body_too_large", CHUNKED),
    rejected("claims-a-terabyte", "size", b"{}", 413, "body_too_large", {"Content-Length": "1000000000000"}),
    rejected(
        "gzip-bomb", "size", gzip.compress(b" " * (3 * LIMIT)), 413, "body_too_large", {"Content-Encoding": "gzip"}
    ),
    rejected("one-byte-over", "size", padded(orjson.dumps(push("over")), LIMIT + 1), 413, "body_too_large"),
    stored("exactly-at-limit", "size", padded(orjson.dumps(push("at-limit")), LIMIT), "hostile-at-limit"),
    # How the body is framed and encoded.
    stored("chunked-valid", "framing", chunked(orjson.dumps(push("chunked")), 100), "hostile-chunked", CHUNKED),
    refused(
        "chunked-bad-size", "framing", wire("chunked-bad-size", b"zz\r\nabc\r\n0\r\n\r\n", CHUNKED), 400, HTTP_PARSER
    ),
    refused(
        "chunked-bad-end", "framing", wire("chunked-bad-end", b"3\r\nabcXX\r\n0\r\n\r\n", CHUNKED), 400, HTTP_PARSER
    ),
    refused(
        "length-and-chunked",
        "framing",
        wire("length-and-chunked", chunked(b"{}", 2), {**CHUNKED, "Content-Length": "7"}),
        400,
        HTTP_PARSER,
    ),
    refused("negative-length", "framing", wire("negative-length", b"{}", {"Content-Length": "-2"}), 400, HTTP_PARSER),
    refused(
        "two-lengths",
        "framing",
        wire("two-lengths", b"{}", {"Content-Length": "2\r\nContent-Length: 3"}),
        400,
        HTTP_PARSER,
    ),
    rejected("gzip-not-gzip", "framing", b"plain text", 400, "invalid_body", {"Content-Encoding": "gzip"}),
    rejected("deflate-not-deflate", "framing", b"plain text", 400, "invalid_body", {"Content-Encoding": "deflate"}),
    stored(
        "gzip-valid", "framing", gzip.compress(orjson.dumps(push("gzip"))), "hostile-gzip", {"Content-Encoding": "gzip"}
    ),
    stored(
        "deflate-valid",
        "framing",
        zlib.compress(orjson.dumps(push("deflate"))),
        "hostile-deflate",
        {"Content-Encoding": "deflate"},
    ),
    rejected("brotli-unsupported", "framing", b"xxxx", 415, "unsupported_encoding", {"Content-Encoding": "br"}),
    rejected("zstd-unsupported", "framing", b"xxxx", 415, "unsupported_encoding", {"Content-Encoding": "zstd"}),
    rejected(
        "unknown-coding",
        "framing",
        orjson.dumps(push("coding")),
        415,
        "unsupported_encoding",
        {"Content-Encoding": "compress"},
    ),
    # Content types: ignored, since senders mislabel; only the body decides.
    stored("text-plain", "content-type", orjson.dumps(push("text")), "hostile-text", {"Content-Type": "text/plain"}),
    stored("no-content-type", "content-type", orjson.dumps(push("no-ct")), "hostile-no-ct"),
    stored(
        "json-utf16-label",
        "content-type",
        orjson.dumps(push("u16")),
        "hostile-u16",
        {"Content-Type": "application/json; charset=utf-16"},
    ),
    rejected(
        "form-urlencoded",
        "content-type",
        b"workflow_id=w&node_id=n&call_id=c",
        400,
        "invalid_json",
        {"Content-Type": "application/x-www-form-urlencoded"},
    ),
    rejected(
        "multipart",
        "content-type",
        b'--b\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n--b--\r\n',
        400,
        "invalid_json",
        {"Content-Type": "multipart/form-data; boundary=b"},
    ),
    rejected(
        "xml",
        "content-type",
        b"<push><workflow_id>w</workflow_id></push>",
        400,
        "invalid_json",
        {"Content-Type": "application/xml"},
    ),
    rejected("empty-body", "content-type", b"", 400, "invalid_json", {"Content-Type": "application/json"}),
    rejected("whitespace-body", "content-type", b" \r\n\t ", 400, "invalid_json"),
    # Methods and paths that are not the push path.
    refused("get-push", "method-path", wire("get-push", method="GET"), 405, "method_not_allowed"),
    refused("put-push", "method-path", wire("put-push", SAMPLE_BYTES, method="PUT"), 405, "method_not_allowed"),
    refused("delete-push", "method-path", wire("delete-push", method="DELETE"), 405, "method_not_allowed"),
    refused("push-subpath", "method-path", wire("push-subpath", SAMPLE_BYTES, path="/push/extra"), 404, "not_found"),
    refused(
        "dot-dot-path", "method-path", wire("dot-dot-path", b"{}", path="/push/../../etc/passwd"), 404, "not_found"
    ),
    Hostile(
        "query-string",
        "method-path",
        (wire("query-string", path="/push?workflow_id=w&node_id=n"),),
        400,
        "invalid_json",
        kept=True,
    ),
    # Not HTTP at all, or HTTP beyond the parser's limits.
    refused("header-100k", "http-parser", wire("header-100k", b"{}", {"X-Big": "a" * 100_000}), 400, HTTP_PARSER),
    refused(
        "500-headers", "http-parser", wire("500-headers", b"{}", {f"X-H{i}": "v" for i in range(500)}), 400, HTTP_PARSER
    ),
    refused(
        "tls-on-plain-port",
        "http-parser",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(64),
        400,
        HTTP_PARSER,
    ),
    refused("http2-preface", "http-parser", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400, HTTP_PARSER),
    refused("lowercase-method", "http-parser", wire("lowercase-method", SAMPLE_BYTES, method="post"), 400, HTTP_PARSER),
    refused("binary-garbage", "http-parser", bytes(range(256)) * 4, 400, HTTP_PARSER),
    # Slow senders: slow but within body_timeout is served; a stalled body is cut off with 408.
    Hostile(
        "slow-request",
        "slow",
        trickled(wire("slow-request", orjson.dumps(push("slow"))), 10, 0.05),
        200,
        STORED,
        call_id="hostile-slow",
    ),
    Hostile(
        "stalled-body",
        "slow",
        (wire("stalled-body", b'{"workflow_id": ', {"Content-Length": "500"}),),
        408,
        "body_timeout",
        kept=True,
    ),
    Hostile(
        "stalled-chunks",
        "slow",
        (wire("stalled-chunks", chunked(b"{ ", 2, end=False), CHUNKED),),
        408,
        "body_timeout",
        kept=True,
    ),
]
