"""The hostile corpus against the real server process: never a 5xx, always up, every refusal kept."""

from __future__ import annotations

import socket
import time
from collections import Counter, defaultdict
from pathlib import Path

import orjson
import pytest

from tests.hostile import BODY_TIMEOUT, CORPUS, HTTP_PARSER, STORED, Hostile, wire
from tests.process import running_server
from tests.rawhttp import RawResponse, exchange, request_bytes
from tests.support import rows

HEALTHZ = request_bytes("GET", "/healthz")


def observed(response: RawResponse) -> str:
    """How the server answered, in the corpus's terms."""
    if response.body == b"{}":
        return STORED
    if response.headers.get("content-type", "").startswith("application/json"):
        return str(orjson.loads(response.body).get("error"))
    return HTTP_PARSER


def mismatch(entry: Hostile, response: RawResponse) -> str | None:
    """What is wrong with the answer to ``entry``, or None."""
    if response.status != entry.status:
        return f"status {response.status}, expected {entry.status}: {response.body[:200]!r}"
    content_type = response.headers.get("content-type", "")
    if entry.answer == HTTP_PARSER:
        return None if content_type.startswith("text/plain") else f"content type {content_type}"
    if entry.answer == STORED:
        return None if response.body == b"{}" else f"body {response.body[:200]!r}"
    if not content_type.startswith("application/json"):
        return f"content type {content_type}, expected JSON"
    answer = orjson.loads(response.body)
    if set(answer) != {"error", "detail"} or answer["error"] != entry.answer or not answer["detail"]:
        return f"answer {answer}, expected error {entry.answer!r}"
    return None


def test_hostile_corpus_is_answered_and_kept(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db_path = tmp_path / "pushes.sqlite3"
    config = tmp_path / "hostile.toml"
    config.write_text(f"body_timeout = {BODY_TIMEOUT}\n")
    problems: list[str] = []
    classes: dict[str, Counter[str]] = defaultdict(Counter)
    with running_server(tmp_path, db_path, "--config", str(config)) as server:
        for entry in CORPUS:
            response = exchange(server.url, entry.parts, timeout=10)
            classes[entry.kind][f"{response.status} {observed(response)}"] += 1
            if response.status >= 500:
                problems.append(f"{entry.name}: a server error, {response.status} {response.body[:200]!r}")
            elif (problem := mismatch(entry, response)) is not None:
                problems.append(f"{entry.name}: {problem}")
            if exchange(server.url, (HEALTHZ,), timeout=5).status != 200:
                problems.append(f"{entry.name}: /healthz failed afterwards")
        assert server.stop() == 0
    log = server.log()

    with capsys.disabled():
        print(f"\nhostile corpus: {len(CORPUS)} requests")
        for kind, answers in classes.items():
            print(f"  {kind:15} " + ", ".join(f"{answer} x{count}" for answer, count in sorted(answers.items())))
    assert not problems, "\n".join(problems)
    # Malformed requests are the client's fault: one warning line each, no traceback, none of their bytes.
    assert "Traceback" not in log
    assert "ERROR" not in log
    assert "aaaaaaaa" not in log  # from the 100 kB header

    kept: dict[str, list[str]] = defaultdict(list)
    for reject in rows(db_path, "SELECT reason, headers, body FROM rejects"):
        user_agent = orjson.loads(reject["headers"]).get("User-Agent", "")
        kept[user_agent].append(reject["reason"])
        if reject["reason"] in ("invalid_json", "not_an_object", "missing_field", "invalid_field"):
            assert reject["body"] is not None, user_agent
    for entry in CORPUS:
        assert kept.pop(entry.user_agent, []) == ([entry.answer] if entry.kept else []), entry.name
    assert not kept, f"rejects nobody expected: {kept}"

    stored = [entry for entry in CORPUS if entry.answer == STORED]
    for entry in stored:
        assert rows(db_path, "SELECT count(*) FROM pushes WHERE call_id = ?", (entry.call_id,))[0][0] == 1, entry.name
    assert rows(db_path, "SELECT count(*) FROM pushes")[0][0] == len(stored)


def test_sender_hanging_up_mid_body_is_kept_without_an_error(tmp_path: Path) -> None:
    db_path = tmp_path / "pushes.sqlite3"
    with running_server(tmp_path, db_path) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(wire("hang-up", b'{"workflow_id": ', {"Content-Length": "500"}))
            time.sleep(0.2)
        deadline = time.monotonic() + 5
        while not rows(db_path, "SELECT reason FROM rejects") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.stop() == 0
    assert [tuple(row) for row in rows(db_path, "SELECT reason, remote FROM rejects")] == [
        ("body_incomplete", "127.0.0.1")
    ]
    assert "ERROR" not in server.log()
