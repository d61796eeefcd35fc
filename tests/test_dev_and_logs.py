"""--dev on a laptop (loopback, a readable line per push) and the log format under systemd."""

from __future__ import annotations

import logging
import re
import subprocess
import tomllib
import unicodedata
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import pytest

from plumbing.logs import JsonFormatter, TextFormatter, escape, resolve_format
from plumbing.settings import ConfigError, load
from plumbing.version import VERSION
from storage.postgres.schema import PG_MIGRATIONS
from storage.sqlite.schema import SCHEMA_VERSION
from tests.process import ROOT, console_script, run_server_to_exit, running_server
from tests.support import SAMPLE_BYTES, free_port, get, post, rows, sample, send


def test_dev_prints_one_readable_line_per_push(tmp_path: Path) -> None:
    db_path = tmp_path / "pushes.sqlite3"
    # Even under a systemd-like environment, --dev reads as text.
    with running_server(tmp_path, db_path, "--dev", env={"INVOCATION_ID": "0123"}) as server:
        assert post(f"{server.url}/push", SAMPLE_BYTES)[0] == 200
        assert post(f"{server.url}/push", SAMPLE_BYTES)[0] == 200
        other = sample(call_id="dev-2", intention="A")
        other["callee"]["callee_number"] = "+8613800000000"
        assert post(f"{server.url}/push", orjson.dumps(other))[0] == 200
        assert post(f"{server.url}/push", b"not json")[0] == 400
        assert server.stop() == 0
    log = server.log()
    push_lines = [line.split(" INFO ", 1)[1] for line in log.splitlines() if " INFO push " in line]
    assert push_lines == [
        "push new        test_api_action6 / API2  callee +861xxxxxxxx5721  intention E",
        "push duplicate  test_api_action6 / API2  callee +861xxxxxxxx5721  intention E",
        "push new        test_api_action6 / API2  callee +8613800000000  intention A",
    ]
    assert f"inspector on {server.url}/" in log
    assert "error=invalid_json" in log
    assert not log.lstrip().startswith("{")


def test_dev_refuses_to_listen_beyond_loopback(tmp_path: Path) -> None:
    result = run_server_to_exit(tmp_path, "serve", "--dev", "--host", "0.0.0.0", "--port", str(free_port()))
    assert result.returncode == 2
    assert "dev mode listens on loopback only" in result.stderr


def test_logs_are_json_lines_under_systemd(tmp_path: Path) -> None:
    db_path = tmp_path / "pushes.sqlite3"
    with running_server(tmp_path, db_path, env={"INVOCATION_ID": "0123", "JOURNAL_STREAM": "8:1234"}) as server:
        assert post(f"{server.url}/push", SAMPLE_BYTES)[0] == 200
        assert server.stop() == 0
    entries = [orjson.loads(line) for line in server.log().splitlines()]
    messages = [e["message"] for e in entries]
    assert any(m.startswith(f"airudder-receiver {VERSION} listening on http://127.0.0.1:") for m in messages)
    assert "writer drained and database closed" in messages
    (push,) = [e for e in entries if e.get("key")]
    assert (push["outcome"], push["status"], push["level"]) == ("new", 200, "info")


@pytest.mark.parametrize(
    ("setting", "environ", "expected"),
    [
        ("auto", {}, "text"),
        ("auto", {"INVOCATION_ID": "x"}, "json"),
        ("auto", {"JOURNAL_STREAM": "8:1"}, "json"),
        ("auto", {"NOTIFY_SOCKET": "/run/systemd/notify"}, "json"),
        ("text", {"INVOCATION_ID": "x"}, "text"),  # configured wins
        ("json", {}, "json"),
    ],
)
def test_log_format_resolution(setting: str, environ: dict[str, str], expected: str) -> None:
    assert resolve_format(setting, environ) == expected


def test_dev_is_expanded_at_load_into_concrete_settings(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('log_format = "json"\n', encoding="utf-8")
    settings = load(str(config), dev=True)
    assert (settings.log_format, settings.log_pushes, settings.inspector) == ("text", True, True)
    assert not hasattr(settings, "dev")
    with pytest.raises(ConfigError, match="dev mode listens on loopback only"):
        load(str(config), {"host": "0.0.0.0"}, dev=True)


def test_client_text_cannot_forge_log_lines(tmp_path: Path) -> None:
    forged = "2026-01-01 00:00:00,000 INFO POST /push forged"
    db_path = tmp_path / "pushes.sqlite3"
    with running_server(tmp_path, db_path, "--log-format", "text") as server:
        assert get(f"{server.url}/x%0A{quote(forged)}%0D%1B[2J%C2%85")[0] == 404
        assert post(f"{server.url}/push", orjson.dumps(sample(call_id="c1\n" + forged)))[0] == 200
        assert server.stop() == 0
    # Exactly one line each, written by the server (its own time and level first), the client's text escaped.
    lines = [line for line in server.log().splitlines() if "forged" in line]
    assert [line.split(" ", 2)[2][:16] for line in lines] == ["INFO GET /x\\n202", "INFO POST /push "]
    assert "\\r\\x1b[2J\\x85 error=not_found status=404" in lines[0]
    assert "/c1\\n2026-01-01 00:00:00,000 INFO POST /push forged outcome=new" in lines[1]


def test_json_lines_stay_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    formatter = JsonFormatter("/push", "")
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "GET %s", ("/x\n\r\x1b\u2028y",), None)
    record.fields = {"key": "a\nb"}
    line = formatter.format(record)
    assert not set(line) & set("\n\r\x1b")
    assert orjson.loads(line)["message"] == "GET /x\n\r\x1b\u2028y"


def test_escape_changes_exactly_the_unsafe_characters() -> None:
    # Every control character and line separator is escaped; every other character, printable or not
    # (a no-break space, a zero-width space, an unassigned code point), passes unchanged.
    for code in range(0x3000):
        char = chr(code)
        unsafe = unicodedata.category(char) == "Cc" or char in "\u2028\u2029"
        escaped = escape(f"a{char}b")
        assert (escaped != f"a{char}b") == unsafe, hex(code)
        if unsafe:
            assert escaped.startswith("a\\"), hex(code)
            assert escaped.isprintable(), hex(code)


def test_text_lines_mask_tokens_and_keep_the_default_time() -> None:
    formatter = TextFormatter("/push", "s3cret")
    default = logging.Formatter()

    def line(message: str, created: float) -> str:
        record = logging.LogRecord("t", logging.INFO, __file__, 1, message, (), None)
        record.created, record.msecs = created, (created - int(created)) * 1000
        record.fields = {"query": "key=s3cret"}
        text = formatter.format(record)
        assert text.startswith(default.formatTime(record) + " INFO ")
        return text.split(" ", 2)[2]

    # Within one second, across a second and across a day, the time matches the logging module's own.
    assert line("POST /push/abc?x=1", 1_790_000_000.001) == "INFO POST /push/***?x=1 query=key=***"
    assert line("GET /s3cret/y", 1_790_000_000.999) == "INFO GET /***/y query=key=***"
    assert line("GET /pushes", 1_790_000_001.5) == "INFO GET /pushes query=key=***"
    assert line("GET /push", 1_790_086_400.25) == "INFO GET /push query=key=***"


def test_version_is_the_installed_one_from_pyproject() -> None:
    expected = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert expected == VERSION
    for args in (["--version"], ["serve", "--version"]):
        result = subprocess.run([console_script(), *args], capture_output=True, text=True, timeout=20)
        assert (result.returncode, result.stdout) == (0, f"airudder-receiver {expected}\n"), args


def test_start_up_line_names_version_schema_and_where_to_look(tmp_path: Path) -> None:
    with running_server(tmp_path, tmp_path / "pushes.sqlite3") as server:
        assert server.stop() == 0
    assert (
        f"INFO airudder-receiver {VERSION} listening on {server.url}/push, database {tmp_path / 'pushes.sqlite3'} "
        f"(schema version {SCHEMA_VERSION}), ack=committed, inspector on {server.url}/\n"
    ) in server.log()
    # The manual shows the same line: the same words, version and schema version (its port, path and time
    # are an example's).
    real = _start_up_shape(next(line for line in server.log().splitlines() if " listening on " in line))
    shown = [
        (doc.name, _start_up_shape(line))
        for doc in (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
        for line in doc.read_text().splitlines()
        if "INFO airudder-receiver" in line and " listening on " in line
    ]
    assert shown
    assert all(shape == real for _, shape in shown), [name for name, shape in shown if shape != real]


def test_start_up_line_on_postgresql_names_the_schema_version_it_holds(tmp_path: Path, pg_cluster: Any) -> None:
    url = pg_cluster.new_database()
    with running_server(tmp_path, url) as server:
        assert server.stop() == 0
    held = rows(url, "SELECT max(version) FROM schema_migrations")[0][0]
    assert held == len(PG_MIGRATIONS)
    assert f"(schema version {held}), ack=committed" in server.log()


def _start_up_shape(line: str) -> str:
    """A start-up line without what differs between two starts: the time, the port and the database's path."""
    line = line[line.index("INFO ") :]
    line = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", line)
    return re.sub(r"database \S+ \(", "database DB (", line)


POLLED = ("/healthz", "/readyz", "/metrics", "/", "/inspector/inspector.js", "/inspector/inspector.css", "/favicon.ico")


def test_polled_routes_are_not_logged_at_info_but_their_errors_are(tmp_path: Path) -> None:
    with running_server(tmp_path, tmp_path / "pushes.sqlite3") as server:
        for path in POLLED:
            status = get(f"{server.url}{path}")[0]
            assert status == (204 if path == "/favicon.ico" else 200), path
        assert get(f"{server.url}/inspector/nope.js")[0] == 404
        foreign = urllib.request.Request(f"{server.url}/metrics", headers={"Host": "evil.example"})
        assert send(foreign, 10)[0] == 403
        assert post(f"{server.url}/push", SAMPLE_BYTES)[0] == 200
        assert server.stop() == 0
    requests = [line.split(" INFO ", 1)[1] for line in server.log().splitlines() if " INFO GET " in line]
    assert [line.split(" status=")[0] for line in requests] == [
        "GET /inspector/nope.js error=not_found",
        "GET /metrics error=forbidden_host",
    ]
    assert " INFO POST /push key=" in server.log()


def test_debug_level_shows_the_polled_routes(tmp_path: Path) -> None:
    config = tmp_path / "debug.toml"
    config.write_text('log_level = "debug"\n', encoding="utf-8")
    with running_server(tmp_path, tmp_path / "pushes.sqlite3", "--config", str(config)) as server:
        for path in POLLED:
            get(f"{server.url}{path}")
        assert server.stop() == 0
    logged = [line.split(" DEBUG ", 1)[1].split(" ")[1] for line in server.log().splitlines() if " DEBUG GET " in line]
    # The start-up waits on /healthz before the test's own requests.
    assert [path for path in logged if path != "/healthz"] == [path for path in POLLED if path != "/healthz"]


def test_push_lines_stay_when_the_rest_is_quieter(tmp_path: Path) -> None:
    config = tmp_path / "quiet.toml"
    config.write_text('log_level = "warning"\nlog_pushes = true\n', encoding="utf-8")
    with running_server(tmp_path, tmp_path / "pushes.sqlite3", "--config", str(config)) as server:
        assert post(f"{server.url}/push", SAMPLE_BYTES)[0] == 200
        assert get(f"{server.url}/api/stats")[0] == 200
        assert server.stop() == 0
    lines = server.log().splitlines()
    assert [line.split(" ", 2)[2] for line in lines] == [
        "INFO push new        test_api_action6 / API2  callee +861xxxxxxxx5721  intention E"
    ]
