"""Start the real server process on a free port and talk to it over loopback."""

from __future__ import annotations

import os
import pty
import re
import select
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from plumbing.settings import DATABASE_URL_ENV
from tests.support import free_port

ROOT = Path(__file__).parent.parent


def documented_python(doc: str, marker: str) -> str:
    """The Python block a doc page marks with ``<!-- marker -->``, as a test runs it."""
    text = (ROOT / "docs" / doc).read_text(encoding="utf-8")
    match = re.search(rf"<!-- {marker} -->\n```python\n(.*?)```", text, re.DOTALL)
    assert match, f"docs/{doc} lost its {marker}"
    return match.group(1)


def console_script() -> str:
    """The installed ``airudder-receiver`` command next to this Python, as a user would run it."""
    script = shutil.which("airudder-receiver", path=str(Path(sys.executable).parent))
    if script is None:
        raise AssertionError("the airudder-receiver console script is not installed next to this Python")
    return script


@dataclass
class ServerProcess:
    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Send ``sig`` and wait for the exit code; a process that outlives ``timeout`` is a failure."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"server did not exit within {timeout}s of signal {sig}") from None


def send_sample(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The installed ``airudder-receiver send-sample ARGS``, run in ``cwd`` (so it reads the config there)."""
    return subprocess.run(
        [console_script(), "send-sample", *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=cwd,
        env={**os.environ, **(env or {})},
    )


def wait_until_up(
    url: str, proc: subprocess.Popen[bytes], seconds: float = 15.0, tls: ssl.SSLContext | None = None
) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited early with code {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1, context=tls) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"server at {url} did not answer within {seconds}s")


def run_server_to_exit(
    workdir: Path, *args: str, env: dict[str, str] | None = None, permissions_hold: bool = False
) -> subprocess.CompletedProcess[str]:
    """``python server.py ARGS`` for a run that is expected to stop by itself (a refused start, a command).

    With ``permissions_hold``, file permissions apply to it even when the tests run as root: root then
    gives up the capabilities that let it read and write any file."""
    command = [sys.executable, str(ROOT / "server.py"), *args]
    if permissions_hold and os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            raise AssertionError("setpriv (util-linux) is missing")
        command = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", *command]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=20,
        cwd=workdir,
        env={**os.environ, **(env or {})},
    )


@contextmanager
def running_server(
    workdir: Path,
    db_path: Path | str,
    *extra_args: str,
    env: dict[str, str] | None = None,
    command: Sequence[str] = (sys.executable, str(ROOT / "server.py")),
    tls: ssl.SSLContext | None = None,
) -> Iterator[ServerProcess]:
    """``python server.py`` on a free port, in ``workdir``; killed at the end if still running.

    With ``tls`` (a client context that trusts the server's certificate) the server is reached over HTTPS.
    """
    port = free_port()
    log_path = workdir / f"server-{port}.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [*command, "--port", str(port), "--db", str(db_path), *extra_args],
            cwd=workdir,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
    server = ServerProcess(proc, f"{'https' if tls else 'http'}://127.0.0.1:{port}", log_path)
    try:
        wait_until_up(server.url, proc, tls=tls)
        yield server
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def run_on_a_terminal(cwd: Path, args: list[str], seconds: float = 60.0) -> tuple[int, str, str]:
    """Run the command with a pseudo-terminal as stderr: exit code, what stdout and the terminal got."""
    controller, terminal = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "server.py"), *args],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=terminal,
        )
    finally:
        os.close(terminal)
    screen = b""
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 0.5)
            if not ready:
                continue
            try:
                data = os.read(controller, 65536)
            except OSError:  # EIO: the command closed its end of the terminal
                break
            if not data:
                break
            screen += data
        assert proc.stdout is not None
        stdout = proc.stdout.read().decode()
        proc.stdout.close()
        return proc.wait(timeout=seconds), stdout, screen.decode()
    finally:
        os.close(controller)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@contextmanager
def two_receivers(workdir: Path, url: str, *extra_args: str) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Two receiver processes on ``url``: the first is given it with --db, the second through the environment
    (over a --db that names nothing, which the variable overrides)."""
    with ExitStack() as stack:
        first = stack.enter_context(running_server(workdir, url, *extra_args))
        second = stack.enter_context(
            running_server(workdir, "postgresql://nobody@127.0.0.1:1/none", *extra_args, env={DATABASE_URL_ENV: url})
        )
        yield first, second
