"""A throwaway PostgreSQL cluster for the tests: Debian's server binaries, a temporary folder, a free port.

PostgreSQL refuses to run as root, so under root the cluster belongs to an unprivileged system user made
for it. It listens on 127.0.0.1 only, with its socket in its own folder, and asks for a password over TCP
(so the tests also see that the password never reaches a log line).
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import itertools
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg

from storage.postgres.connection import FEED_LOCK
from tests.support import free_port

OS_USER = "airudder-pgtest"
DB_USER = "receiver"
PASSWORD = "pg-secret-4f9a"  # never printed by the receiver: tests search the logs for it
START_SECONDS = 30.0
STOP_SECONDS = 15


def server_binaries() -> Path | None:
    """The newest installed server's bin folder (Debian: /usr/lib/postgresql/<major>/bin)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parent.parent.name))
    return Path(found[-1]).parent if found else None


def _unprivileged_user() -> pwd.struct_passwd | None:
    """None when the tests already run as an ordinary user; under root, the system user the cluster runs as."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(OS_USER)
    except KeyError:
        # Two test workers may both find the user missing: the one that loses the race finds it made.
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", OS_USER],
            check=False,
            capture_output=True,
            timeout=30,
        )
        return pwd.getpwnam(OS_USER)


class PgCluster:
    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.user = _unprivileged_user()
        # Not under pytest's tmp folder: that one is private to root, and the server user must reach it.
        self.root = Path(tempfile.mkdtemp(prefix="airudder-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root / "socket"
        self.port = free_port()
        self._names = itertools.count(1)

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        ids: dict[str, Any] = {"user": self.user.pw_uid, "group": self.user.pw_gid} if self.user else {}
        return subprocess.run(
            [str(self.bin_dir / args[0]), *args[1:]],
            check=True,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.root,
            **ids,
        )

    def init(self) -> None:
        self.socket_dir.mkdir()
        password_file = self.root / "password"
        password_file.write_text(PASSWORD)
        if self.user:
            for path in (self.root, self.socket_dir, password_file):
                os.chown(path, self.user.pw_uid, self.user.pw_gid)
        self._run(
            "initdb",
            "--pgdata",
            str(self.data),
            "--username",
            DB_USER,
            "--pwfile",
            str(password_file),
            "--auth-local",
            "trust",
            "--auth-host",
            "scram-sha-256",
            "--encoding",
            "UTF8",
            "--no-sync",
        )
        password_file.unlink()

    def start(self, *, fsync: bool = False) -> None:
        """Only the receiver's durability is under test, not the disk's: without fsync the suite stays quick.
        The benchmark turns it on, to compare with SQLite's synchronous = FULL."""
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.socket_dir} -c max_connections=200"
        if not fsync:
            options += " -c fsync=off"
        self._run(
            "pg_ctl", "start", "--pgdata", str(self.data), "--log", str(self.root / "server.log"), "--wait",
            f"--timeout={int(START_SECONDS)}", "-o", options, timeout=START_SECONDS + 10,
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._run(
            "pg_ctl", "stop", "--pgdata", str(self.data), "--mode", mode, "--wait", f"--timeout={STOP_SECONDS}",
            timeout=STOP_SECONDS + 10,
        )  # fmt: skip

    def _server_pids(self) -> list[int]:
        """The postmaster and its children (backends and helpers)."""
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        children = subprocess.run(["pgrep", "-P", str(postmaster)], capture_output=True, text=True, timeout=10)
        return [postmaster, *(int(pid) for pid in children.stdout.split())]

    def freeze(self) -> None:
        """Stop every server process (SIGSTOP): connections stay open and new ones are accepted by the kernel,
        but nothing answers, as with a server that hangs or a network that drops everything."""
        for pid in self._server_pids():
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in self._server_pids():
            os.kill(pid, signal.SIGCONT)

    def remove(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError):  # not running: the folder goes either way
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{DB_USER}:{PASSWORD}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database for one test; its URL."""
        name = f"t{os.getpid()}_{next(self._names)}"
        run_sync(self.url(), f"CREATE DATABASE {name}")
        return self.url(name)

    def wait_until_accepting(self, seconds: float = 30.0) -> None:
        deadline = time.monotonic() + seconds
        while True:
            try:
                run_sync(self.url(), "SELECT 1")
                return
            except (OSError, asyncpg.PostgresError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


# A quoted string (left as it is) or a placeholder.
_PLACEHOLDER = re.compile(r"'(?:[^']|'')*'|\?")


def numbered(sql: str) -> str:
    """A test's SQL, written once with ``?`` for both databases, with PostgreSQL's ``$1, $2, ...`` instead."""
    count = iter(range(1, 100_000))
    return _PLACEHOLDER.sub(lambda m: m[0] if m[0] != "?" else f"${next(count)}", sql)


async def _fetch(url: str, sql: str, params: tuple[Any, ...]) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        return list(await conn.fetch(numbered(sql), *params, timeout=30))
    finally:
        await conn.close()


def run_sync(url: str, sql: str, params: tuple[Any, ...] = ()) -> list[asyncpg.Record]:
    """``sql`` (with ``?`` placeholders) on a connection of its own, from sync code or from inside a test's
    event loop alike: it runs in a loop of its own, on a thread."""
    if not _has_running_loop():
        return asyncio.run(_fetch(url, sql, params))
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, _fetch(url, sql, params)).result(timeout=60)


def _has_running_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class HeldFeedLock:
    """Another session holding the receivers' write lock (storage.pg.FEED_LOCK), as a psql process, until
    ``rollback``: PostgreSQL's counterpart of a SQLite connection inside BEGIN EXCLUSIVE."""

    def __init__(self, url: str) -> None:
        self._proc = subprocess.Popen(
            ["psql", "--no-psqlrc", "--quiet", "--tuples-only", url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdin is not None
        assert self._proc.stdout is not None
        self._proc.stdin.write(f"SELECT pg_advisory_lock({FEED_LOCK});\n\\echo locked\n")
        self._proc.stdin.flush()
        while self._proc.stdout.readline().strip() != "locked":
            if self._proc.poll() is not None:
                raise AssertionError("psql could not take the lock")

    def rollback(self) -> None:
        """Release the lock: the session ends."""
        if self._proc.poll() is None:
            self._proc.terminate()
        self._proc.wait(timeout=10)
        for pipe in (self._proc.stdin, self._proc.stdout):
            if pipe is not None:
                pipe.close()
