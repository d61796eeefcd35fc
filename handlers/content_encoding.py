"""A push body's Content-Encoding, undone here rather than by aiohttp.

aiohttp answers a coding it cannot decode (``br`` or ``zstd`` without their modules) with a plain-text 400
before any handler runs, and passes one it does not know (``compress``, a typo) through as if the body
were plain. Here every coding is either decoded (gzip, deflate) or refused 415 in the JSON shape, kept in
``rejects`` and counted, and the size limit is applied to what decompression gives.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

from handlers.errors import ApiError

# What create_app gives aiohttp, so that bodies reach the handler as they were sent.
RAW_BODIES = {"auto_decompress": False}
_GZIP = 16 + zlib.MAX_WBITS
_WBITS = {"gzip": _GZIP, "x-gzip": _GZIP, "deflate": zlib.MAX_WBITS}
SUPPORTED = "gzip, deflate"


def decode_content(body: bytes, headers: Iterable[str], limit: int) -> bytes:
    """``body`` with the codings of its Content-Encoding headers undone, in reverse of the order applied.

    Raises 415 for a coding other than gzip, deflate and identity, 413 past ``limit`` bytes decoded, and 400
    for a body that does not decode.
    """
    codings = [coding.strip().lower() for header in headers for coding in header.split(",")]
    for coding in reversed(codings):
        if coding in ("", "identity") or not body:
            continue
        wbits = _WBITS.get(coding)
        if wbits is None:
            shown = coding[:40].encode("ascii", "backslashreplace").decode()
            raise ApiError(
                415,
                "unsupported_encoding",
                f"Content-Encoding {shown!r} is not supported; send the body as it is, or with {SUPPORTED}",
                headers={"Accept-Encoding": SUPPORTED},
            )
        body = _inflate(body, wbits, coding, limit)
    return body


def _inflate(body: bytes, wbits: int, coding: str, limit: int) -> bytes:
    if wbits == zlib.MAX_WBITS and body[0] & 0x0F != 8:
        wbits = -zlib.MAX_WBITS  # deflate without its zlib header, as some senders write it
    parts: list[bytes] = []
    size = 0
    try:
        while True:
            inflater = zlib.decompressobj(wbits)
            # At most one byte past the limit, however much the body claims to hold (a gzip bomb).
            part = inflater.decompress(body, limit + 1 - size)
            size += len(part)
            if size > limit:
                raise ApiError(413, "body_too_large", f"the body is more than {limit} bytes once decompressed")
            parts.append(part)
            if not inflater.eof:
                raise zlib.error("the compressed data ends early")
            body = inflater.unused_data
            # gzip allows several members one after another; anything after a deflate stream is garbage.
            if not body or wbits != _GZIP:
                break
    except zlib.error:
        raise ApiError(400, "invalid_body", f"the body does not decode as {coding}") from None
    if body:
        raise ApiError(400, "invalid_body", f"the body has bytes after its {coding} data")
    return parts[0] if len(parts) == 1 else b"".join(parts)
