"""send-sample: the installed command posts the shipped sample to the real server, retrying like the sender."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from commands.send_sample import default_url
from plumbing.settings import Settings
from tests.process import console_script, running_server, send_sample
from tests.support import SAMPLE_BYTES, free_port, rows


def test_sends_the_shipped_sample_then_a_fresh_call(tmp_path: Path) -> None:
    db_path = tmp_path / "pushes.sqlite3"
    with running_server(tmp_path, db_path) as server:
        first = send_sample(tmp_path, "--url", f"{server.url}/push")
        again = send_sample(tmp_path, "--url", f"{server.url}/push")
        fresh = send_sample(tmp_path, "--url", f"{server.url}/push", "--fresh-call-id")
    for result in (first, again, fresh):
        assert result.returncode == 0, result.stdout + result.stderr
        assert "attempt 1/6: HTTP 200" in result.stdout
    assert f"posting {len(SAMPLE_BYTES)} bytes (the vendor sample)" in first.stdout
    stored = rows(db_path, "SELECT call_id, deliveries, body FROM pushes ORDER BY seq")
    sample_call_id = orjson.loads(SAMPLE_BYTES)["call"]["call_id"]
    assert len(stored) == 2
    assert (stored[0]["call_id"], stored[0]["deliveries"]) == (sample_call_id, 2)
    assert stored[0]["body"] == SAMPLE_BYTES.decode()
    assert stored[1]["call_id"] != sample_call_id


def test_gives_up_after_the_retries_and_says_so(tmp_path: Path) -> None:
    result = send_sample(tmp_path, "--url", f"http://127.0.0.1:{free_port()}/push", "--retries", "2", "--interval", "0")
    assert result.returncode == 1
    assert [line.split(":")[0] for line in result.stdout.splitlines() if line.startswith("attempt")] == [
        "attempt 1/3",
        "attempt 2/3",
        "attempt 3/3",
    ]
    assert "no answer" in result.stdout
    assert "gave up after 3 attempts" in result.stdout


def test_retries_a_503_until_the_database_frees_up(
    tmp_path: Path, hold_lock: Callable[[], sqlite3.Connection], db_path: Path
) -> None:
    config = tmp_path / "c.toml"
    config.write_text("ack_timeout = 0.5\nbusy_timeout_ms = 5000\n")
    with running_server(tmp_path, db_path, "--config", str(config)) as server:
        lock = hold_lock()
        proc = subprocess.Popen(
            [console_script(), "send-sample", "--url", f"{server.url}/push", "--interval", "1"],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            assert proc.stdout is not None
            lines = [proc.stdout.readline() for _ in range(3)]  # posting..., attempt 1, retrying
            assert "attempt 1/6: HTTP 503" in lines[1]
            assert "commit_timeout" in lines[1]
            assert "Retry-After: 5" in lines[1]
            lock.rollback()
            rest, _ = proc.communicate(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0
    assert "attempt 2/6: HTTP 200" in rest
    assert rows(db_path, "SELECT count(*) FROM pushes")[0][0] == 1


def test_without_a_push_token_it_says_so(tmp_path: Path) -> None:
    with running_server(tmp_path, tmp_path / "pushes.sqlite3") as server:
        (tmp_path / "c.toml").write_text(f"port = {server.port}\n")
        result = send_sample(tmp_path, "--config", str(tmp_path / "c.toml"), "--retries", "0")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[0] == (
        "no push token is loaded (push_token, or AIRUDDER_RECEIVER_PUSH_TOKEN in the environment): posting without one"
    )


def test_ctrl_c_while_waiting_to_retry_stops_quietly(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/push"
    proc = subprocess.Popen(
        [console_script(), "send-sample", "--url", url, "--interval", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        assert "retrying in 60 s" in [proc.stdout.readline() for _ in range(3)][2]
        proc.send_signal(signal.SIGINT)
        _, errors = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    assert errors.strip() == ""


def test_file_option_and_bad_files(tmp_path: Path) -> None:
    missing = send_sample(tmp_path, "--file", str(tmp_path / "nope.json"), "--url", "http://127.0.0.1:9/push")
    assert missing.returncode == 2
    assert "cannot prepare the push" in missing.stderr
    not_a_push = tmp_path / "list.json"
    not_a_push.write_text("[1, 2]")
    result = send_sample(tmp_path, "--file", str(not_a_push), "--fresh-call-id", "--url", "http://127.0.0.1:9/push")
    assert result.returncode == 2
    assert "no call object" in result.stderr


@pytest.mark.parametrize(
    ("settings", "url"),
    [
        (Settings(), "http://127.0.0.1:8080/push"),
        (
            Settings(host="0.0.0.0", port=9000, push_token="s3cret-0123456789"),
            "http://127.0.0.1:9000/push/s3cret-0123456789",
        ),
        (Settings(host="::", push_path="/in"), "http://[::1]:8080/in"),
        (Settings(tls_cert="c.pem", tls_key="k.pem"), "https://127.0.0.1:8080/push"),
    ],
)
def test_default_url_follows_the_configuration(settings: Settings, url: str) -> None:
    assert default_url(settings) == url


def test_push_token_is_used_but_not_printed(tmp_path: Path) -> None:
    token = "tok-send-sample-123456"
    db_path = tmp_path / "pushes.sqlite3"
    env = {"AIRUDDER_RECEIVER_PUSH_TOKEN": token}
    with running_server(tmp_path, db_path, env=env) as server:
        port = server.url.rsplit(":", 1)[1]
        config = tmp_path / "c.toml"
        config.write_text(f"port = {port}\n")
        result = send_sample(tmp_path, "--config", str(config), "--retries", "0", env=env)
    assert result.returncode == 0, result.stdout
    assert token not in result.stdout
    assert result.stdout.splitlines()[0].endswith(f"127.0.0.1:{port}/push/***")
    assert rows(db_path, "SELECT count(*) FROM pushes")[0][0] == 1


def test_a_certificate_that_cannot_be_loaded_is_one_sentence_on_stderr(tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_text("not a certificate\n")
    (tmp_path / "key.pem").write_text("not a key\n")
    (tmp_path / "config.toml").write_text('tls_cert = "cert.pem"\ntls_key = "key.pem"\n')
    result = send_sample(tmp_path, "--retries", "0")
    assert result.returncode == 2
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"airudder-receiver: send-sample: cannot load tls_cert {tmp_path / 'cert.pem'}: "), line
