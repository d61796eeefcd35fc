"""HTTP over a raw socket: send exactly the bytes given (broken framing included) and read one answer."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

# Bytes are sent as they are; a number is a pause of that many seconds, to send a request slowly.
Part = bytes | float


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes


def request_bytes(
    method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None, *, length: bool = True
) -> bytes:
    """A request head and body; ``length=False`` leaves out Content-Length (for hand-made framing)."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    if length:
        lines.append(f"Content-Length: {len(body)}")
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _read_response(sock: socket.socket, deadline: float) -> RawResponse:
    data = b""
    while True:
        while b"\r\n\r\n" not in data:
            chunk = _recv(sock, deadline)
            if not chunk:
                raise ConnectionError(f"the connection closed before a response head; got {data[:200]!r}")
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 1"):
            break
        data = body  # an interim answer such as 100 Continue; the real one follows
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    expected = int(headers.get("content-length", -1))
    while expected < 0 or len(body) < expected:
        chunk = _recv(sock, deadline)
        if not chunk:
            break
        body += chunk
    return RawResponse(int(status_line.split()[1]), headers, body)


def _recv(sock: socket.socket, deadline: float) -> bytes:
    sock.settimeout(max(0.01, deadline - time.monotonic()))
    try:
        return sock.recv(65536)
    except ConnectionResetError:
        return b""


def exchange(url: str, parts: Sequence[Part], timeout: float = 10.0, tls: ssl.SSLContext | None = None) -> RawResponse:
    """Send ``parts`` to the server at ``url`` and read its answer, all within ``timeout`` seconds.

    The server may answer before everything is sent (a 413 does not wait for the body): sending then
    stops and the answer is read.
    """
    deadline = time.monotonic() + timeout
    address = urlsplit(url)
    assert address.hostname is not None
    assert address.port is not None
    with socket.create_connection((address.hostname, address.port), timeout=timeout) as plain:
        sock = tls.wrap_socket(plain, server_hostname=address.hostname) if tls else plain
        try:
            for part in parts:
                if isinstance(part, float):
                    time.sleep(part)
                else:
                    sock.sendall(part)
        except (BrokenPipeError, ConnectionResetError):
            pass
        return _read_response(sock, deadline)
