"""Slow clients on the real process: 200 connections sending a byte a second do not delay a normal push,
and the idle and body timeouts cut them off."""

from __future__ import annotations

import resource
import socket
import statistics
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import orjson
import pytest

from tests.process import running_server
from tests.rawhttp import request_bytes
from tests.support import post, rows, sample

SLOW_CONNECTIONS = 200
IDLE_TIMEOUT = 2.0
BODY_TIMEOUT = 2.0


class Trickler(threading.Thread):
    """Sends the next byte of each connection's request once a second until stopped."""

    def __init__(self, sockets: list[socket.socket], requests: list[bytes]) -> None:
        super().__init__(daemon=True)
        self.sockets, self.requests = sockets, requests
        self.sent = [0] * len(sockets)
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            for index, sock in enumerate(self.sockets):
                request = self.requests[index]
                if self.sent[index] < len(request):
                    try:
                        sock.send(request[self.sent[index] : self.sent[index] + 1])
                        self.sent[index] += 1
                    except OSError:
                        self.sent[index] = len(request)  # the server has closed it
            self.stopped.wait(1.0)


def answer_or_close(sock: socket.socket, deadline: float) -> bytes | None:
    """The answer's head, b"" if the server closed without one, None if it did neither by ``deadline``."""
    sock.settimeout(max(0.01, deadline - time.monotonic()))
    data = b""
    try:
        while chunk := sock.recv(4096):
            data += chunk
            if b"\r\n\r\n" in data:
                break
    except ConnectionResetError:
        pass
    except TimeoutError:
        return None
    return data


@pytest.fixture
def open_files() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, 4096)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


@pytest.mark.usefixtures("open_files")
def test_slow_clients_neither_delay_pushes_nor_stay(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db_path = tmp_path / "pushes.sqlite3"
    config = tmp_path / "slow.toml"
    config.write_text(f"idle_timeout = {IDLE_TIMEOUT}\nbody_timeout = {BODY_TIMEOUT}\n")
    with running_server(tmp_path, db_path, "--config", str(config)) as server:
        with ExitStack() as stack:
            sockets = [
                stack.enter_context(socket.create_connection(("127.0.0.1", server.port), timeout=5))
                for _ in range(SLOW_CONNECTIONS)
            ]
            opened = time.monotonic()
            # Even connections trickle a whole request from its first byte; odd ones send a head that
            # announces 1,000 bytes, then trickle the body.
            slow_bytes = []
            for n, sock in enumerate(sockets):
                if n % 2:
                    sock.sendall(request_bytes("POST", "/push", b"", {"Content-Length": "1000"}, length=False))
                    slow_bytes.append(b"{" * 1000)
                else:
                    slow_bytes.append(request_bytes("POST", "/push", b"{}"))
            trickler = Trickler(sockets, slow_bytes)
            trickler.start()
            stack.callback(trickler.join, 5)  # callbacks run last first: stop, join, then close the sockets
            stack.callback(trickler.stopped.set)
            time.sleep(0.3)

            latencies = []
            for n in range(5):
                started = time.monotonic()
                status, _ = post(f"{server.url}/push", orjson.dumps(sample(call_id=f"during-slow-{n}")), timeout=5)
                latencies.append(time.monotonic() - started)
                assert status == 200
                time.sleep(0.2)
            pushed_by = time.monotonic() - opened

            deadline = opened + IDLE_TIMEOUT + BODY_TIMEOUT + 2
            answers = [answer_or_close(sock, deadline) for sock in sockets]
            cut_off_after = time.monotonic() - opened
        closed_idle = sum(answer == b"" for n, answer in enumerate(answers) if n % 2 == 0)
        timed_out_body = sum((answer or b"").startswith(b"HTTP/1.1 408") for n, answer in enumerate(answers) if n % 2)
        assert server.stop() == 0

    with capsys.disabled():
        print(
            f"\nslow clients: {SLOW_CONNECTIONS} connections at 1 byte/s; normal pushes answered in "
            f"max {max(latencies) * 1000:.1f} ms, median {statistics.median(latencies) * 1000:.1f} ms "
            f"(within {pushed_by:.1f}s of opening them); {closed_idle} closed by idle_timeout, "
            f"{timed_out_body} answered 408 by body_timeout, all within {cut_off_after:.1f}s"
        )
    assert max(latencies) < 1.0
    assert closed_idle == SLOW_CONNECTIONS // 2
    assert timed_out_body == SLOW_CONNECTIONS // 2
    assert rows(db_path, "SELECT count(*) FROM pushes")[0][0] == 5
    assert rows(db_path, "SELECT count(*) FROM rejects WHERE reason = 'body_timeout'")[0][0] == SLOW_CONNECTIONS // 2
