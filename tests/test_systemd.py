"""systemd: the unit file passes systemd's own checks, and the real process speaks the notify protocol."""

from __future__ import annotations

import asyncio
import configparser
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from plumbing.settings import EXIT_SECONDS, load
from plumbing.systemd_notify import Notifier
from tests.process import ROOT, console_script, run_server_to_exit, running_server
from tests.support import SAMPLE_BYTES, free_port, post, rows

DEPLOY = ROOT / "deploy"
UNIT = DEPLOY / "airudder-receiver.service"
UNIT_NAME = UNIT.name
BACKUP = DEPLOY / "airudder-receiver-backup.service"
# Every unit shipped: the receiver, its nightly backup and timer, Litestream beside it.
UNITS = sorted(path.name for path in DEPLOY.iterdir() if path.suffix in (".service", ".timer"))
SERVICES = [name for name in UNITS if name.endswith(".service")]
CONFIG = DEPLOY / "config.toml"
DEPLOYED_CONFIG = "/etc/airudder-receiver/config.toml"


def _unit(path: Path = UNIT) -> configparser.ConfigParser:
    # strict=False: systemd allows repeated keys (SystemCallFilter=), which add up.
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(path)
    return parser


@pytest.fixture
def system_root(tmp_path: Path) -> Path:
    """A root with these units, systemd's own units, and each program where its unit expects it."""
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is missing; make test installs the systemd package")
    root = tmp_path / "root"
    (root / "etc/systemd/system").mkdir(parents=True)
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    for name in UNITS:
        shutil.copy(DEPLOY / name, root / "etc/systemd/system" / name)
    for name in SERVICES:
        executable = Path(_unit(DEPLOY / name)["Service"]["ExecStart"].split()[0])
        installed = root / executable.relative_to("/")
        installed.parent.mkdir(parents=True, exist_ok=True)
        # The receiver's own program; for Litestream any executable does, verify only looks for the file.
        shutil.copy(console_script() if executable.name == "airudder-receiver" else "/bin/true", installed)
    return root


def _analyze(root: Path, *args: str, unit: str = UNIT_NAME) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", *args, f"--root={root}", unit], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("unit", UNITS)
def test_unit_passes_systemd_analyze_verify(system_root: Path, unit: str) -> None:
    result = _analyze(system_root, "verify", unit=unit)
    # verify exits 0 on unknown keys and bad values too; it only prints them.
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


@pytest.mark.parametrize("unit", SERVICES)
def test_unit_exposure_stays_low(system_root: Path, unit: str) -> None:
    # systemd rates a unit's exposure from 0 (locked down) to 10; the threshold is in tenths.
    result = _analyze(system_root, "security", "--offline=yes", "--threshold=20", unit=unit)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Overall exposure level" in result.stdout


def test_backup_units_copy_the_receivers_file_nightly_as_its_user() -> None:
    receiver = _unit()["Service"]
    backup = _unit(BACKUP)["Service"]
    assert backup["Type"] == "oneshot"
    # The same dynamic user as the receiver (its default name is the unit's) and the same state folder.
    assert (backup["DynamicUser"], backup["User"]) == ("yes", UNIT.stem)
    assert receiver["StateDirectory"] in backup["StateDirectory"].split()
    # The same settings file as the receiver, so the same database (its db_path).
    command = backup["ExecStart"].split()
    assert command[1:4] == ["backup", "--config", DEPLOYED_CONFIG]
    assert command[4] == f"%S/{receiver['StateDirectory']}/backups"
    assert "airudder-receiver/backups" in backup["StateDirectory"].split()
    timer = _unit(DEPLOY / "airudder-receiver-backup.timer")["Timer"]
    assert timer["OnCalendar"] == "*-*-* 03:15:00"
    assert timer["Persistent"] == "true"


def test_drill_units_restore_the_replica_as_the_receivers_user_on_a_timer() -> None:
    receiver = _unit()["Service"]
    litestream = _unit(DEPLOY / "airudder-receiver-litestream.service")["Service"]
    drill = _unit(DEPLOY / "airudder-receiver-drill.service")["Service"]
    assert drill["Type"] == "oneshot"
    assert (drill["DynamicUser"], drill["User"]) == ("yes", UNIT.stem)
    # The database folder (the restored copy, the result for /metrics) and the replica folder.
    assert drill["StateDirectory"].split() == litestream["StateDirectory"].split()
    assert receiver["StateDirectory"] in drill["StateDirectory"].split()
    command = drill["ExecStart"].split()
    assert command[1:4] == ["drill", "--config", DEPLOYED_CONFIG]
    # The binary that Litestream's own unit runs, with its settings and S3 keys.
    assert command[command.index("--litestream") + 1] == litestream["ExecStart"].split()[0]
    config = litestream["ExecStart"].split()[litestream["ExecStart"].split().index("-config") + 1]
    assert command[command.index("--litestream-config") + 1] == config
    assert drill["EnvironmentFile"] == litestream["EnvironmentFile"]
    timer = _unit(DEPLOY / "airudder-receiver-drill.timer")["Timer"]
    assert timer["OnCalendar"] == "00/6:45"
    assert timer["Persistent"] == "true"


def test_the_documented_backup_from_the_replica_override_passes_systemd_analyze_verify(system_root: Path) -> None:
    docs = (ROOT / "docs" / "operations.md").read_text()
    block = re.search(r"sudo systemctl edit airudder-receiver-backup .*?\n((?:# .*\n)+)```", docs)
    assert block, "docs/operations.md shows no override for the backup unit"
    override = "".join(line[2:] + "\n" for line in block[1].splitlines())
    assert "--from-replica" in override
    folder = system_root / "etc/systemd/system" / f"{BACKUP.name}.d"
    folder.mkdir()
    (folder / "override.conf").write_text(override)
    result = _analyze(system_root, "verify", unit=BACKUP.name)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    result = _analyze(system_root, "security", "--offline=yes", "--threshold=20", unit=BACKUP.name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_unit_declares_the_service_contract() -> None:
    service = _unit()["Service"]
    assert service["Type"] == "notify"
    assert service["Restart"] == "on-failure"
    assert service["DynamicUser"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert service["StateDirectory"] == "airudder-receiver"
    assert service["ExecStart"].split()[1:] == ["serve", "--config", DEPLOYED_CONFIG]
    assert service["EnvironmentFile"].startswith("-/etc/airudder-receiver/")
    # systemd must not kill the server while it drains: the stop timeout outlasts the exit budget.
    assert float(service["TimeoutStopSec"].removesuffix("s")) == 2 * EXIT_SECONDS


def test_deployed_config_keeps_the_database_where_the_unit_lets_it_write() -> None:
    service = _unit()["Service"]
    assert DEPLOYED_CONFIG.startswith(f"/etc/{service['ConfigurationDirectory']}/")
    settings = load(str(CONFIG))
    assert Path(settings.db_path).parent == Path("/var/lib") / service["StateDirectory"]
    assert settings.host == "0.0.0.0"


def test_commands_find_the_services_database_from_its_config(tmp_path: Path) -> None:
    # deploy/config.toml as installed, with the state directory moved under tmp_path.
    state = tmp_path / "var-lib"
    state.mkdir()
    config = tmp_path / "config.toml"
    config.write_text(CONFIG.read_text().replace("/var/lib/airudder-receiver", str(state)), encoding="utf-8")
    db_path = Path(load(str(config)).db_path)
    assert db_path.parent == state
    # On every interface, so with the two tokens of the service's env file.
    push_token = "push-0123456789abcdef"
    env = {"AIRUDDER_RECEIVER_PUSH_TOKEN": push_token, "AIRUDDER_RECEIVER_API_TOKEN": "read-0123456789abcdef"}
    with running_server(tmp_path, db_path, "--config", str(config), env=env) as server:
        assert post(f"{server.url}/push/{push_token}", SAMPLE_BYTES)[0] == 200
        assert server.stop() == 0
    # No --db: the command reads db_path from the file the service read, from any folder.
    stats = subprocess.run(
        [console_script(), "stats", "--json", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd="/",
    )
    assert stats.returncode == 0, stats.stderr
    assert orjson.loads(stats.stdout)["pushes"] == 1


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket standing where systemd's would; short path, as AF_UNIX paths are limited."""
    folder = tempfile.mkdtemp(prefix="notify-", dir="/tmp")
    path = os.path.join(folder, "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(15)
    try:
        yield sock, path
    finally:
        sock.close()
        shutil.rmtree(folder)


def _receive_until(sock: socket.socket, wanted: str, seconds: float = 15.0) -> list[str]:
    """Datagrams until one holds the line ``wanted``; all of them, in order."""
    seen: list[str] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            message = sock.recv(4096).decode()
        except TimeoutError:
            break
        seen.append(message)
        if wanted in message.splitlines():
            return seen
    raise AssertionError(f"no {wanted!r} within {seconds}s; got {seen}")


def test_real_process_notifies_ready_watchdog_and_stopping(
    tmp_path: Path, notify_socket: tuple[socket.socket, str]
) -> None:
    sock, path = notify_socket
    db_path = tmp_path / "pushes.sqlite3"
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"}  # ping every 0.1 s
    with running_server(tmp_path, db_path, env=env) as server:
        (ready,) = _receive_until(sock, "READY=1")
        assert "STATUS=listening on 127.0.0.1:" in ready
        # After READY the schema is in place and the port answers.
        assert rows(db_path, "PRAGMA user_version")[0][0] >= 1
        assert post(f"{server.url}/push", SAMPLE_BYTES)[0] == 200
        started = time.monotonic()
        pings = [m for m in _receive_until(sock, "WATCHDOG=1") if m == "WATCHDOG=1"]
        pings += [m for m in _receive_until(sock, "WATCHDOG=1") if m == "WATCHDOG=1"]
        assert len(pings) == 2
        # Pings keep coming, far more often than the 30 s watchdog of the unit; the bound leaves room for a
        # loaded machine.
        assert time.monotonic() - started < 5
        server.proc.send_signal(signal.SIGTERM)
        messages = _receive_until(sock, "STOPPING=1")
        assert server.stop() == 0
    assert all(m == "WATCHDOG=1" for m in messages[:-1])
    assert rows(db_path, "SELECT count(*) FROM pushes")[0][0] == 1


def test_no_ready_when_the_port_is_taken(tmp_path: Path, notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        result = run_server_to_exit(
            tmp_path, "--port", str(port), "--db", str(tmp_path / "p.sqlite3"), env={"NOTIFY_SOCKET": path}
        )
    assert result.returncode == 2
    assert "cannot listen" in result.stderr
    sock.settimeout(0.2)
    messages = []
    while True:
        try:
            messages.append(sock.recv(4096).decode())
        except TimeoutError:
            break
    assert not any("READY=1" in m.splitlines() for m in messages), messages


def test_no_ready_when_the_database_cannot_open(tmp_path: Path, notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = run_server_to_exit(
        tmp_path, "--db", str(blocker / "p.sqlite3"), "--port", str(free_port()), env={"NOTIFY_SOCKET": path}
    )
    assert result.returncode == 2
    sock.settimeout(0.2)
    with pytest.raises(TimeoutError):
        sock.recv(4096)


def test_abstract_socket_address_and_foreign_watchdog_pid() -> None:
    name = f"airudder-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        notifier = Notifier.from_environment({"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "1000000"})
        assert notifier.watchdog_seconds == 1.0
        notifier.ready("up")
        assert sock.recv(100) == b"READY=1\nSTATUS=up"
    # A watchdog meant for another process (WATCHDOG_PID) is not ours to feed.
    other = Notifier.from_environment({"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"})
    assert other.watchdog_seconds is None
    assert not Notifier.from_environment({}).enabled


async def test_watchdog_pings_only_while_healthy() -> None:
    name = f"airudder-watchdog-{os.getpid()}-{time.monotonic_ns()}"
    healthy = [True]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.setblocking(False)
        notifier = Notifier.from_environment({"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "100000"})
        task = asyncio.create_task(notifier.watchdog(lambda: healthy[0]))
        try:
            await asyncio.sleep(0.32)  # pings at 0, 0.05, 0.1, ... s
            assert len(_drain(sock)) >= 4
            healthy[0] = False  # e.g. the writer task died: systemd should restart us
            await asyncio.sleep(0.06)
            _drain(sock)  # a ping already on its way
            await asyncio.sleep(0.3)
            assert _drain(sock) == []
        finally:
            task.cancel()


def _drain(sock: socket.socket) -> list[bytes]:
    messages = []
    while True:
        try:
            messages.append(sock.recv(100))
        except BlockingIOError:
            return messages
