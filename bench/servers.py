"""The servers under test, and one measured run of one of them."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from bench.wrk import Load, drive
from tests.process import ROOT, running_server
from tests.support import free_port, rows, sqlite_file


@dataclass(frozen=True)
class Server:
    label: str
    title: str
    module: str | None = None  # a baseline module under bench/; None runs the receiver, server.py
    settings: dict[str, str | int] = field(default_factory=dict)  # receiver settings, written as its config file
    forwards: bool = False  # one [[forward]] destination: the sink (bench/sink.py), which answers 200
    postgres: bool = False  # the receiver on a fresh database of a local PostgreSQL server, not a file

    @property
    def stores(self) -> bool:
        return self.module != "bench.ceiling"

    def command(self) -> tuple[str, ...]:
        if self.module is None:
            return (sys.executable, str(ROOT / "server.py"))
        return (sys.executable, "-m", self.module)

    def arguments(self, workdir: Path, sink_url: str = "") -> tuple[str, ...]:
        if self.module is not None:
            return ()
        config = workdir / f"{self.label}.toml"
        # Text log lines whatever the environment, so that the refusals can be counted from them.
        settings: dict[str, str | int] = {"log_format": "text", **self.settings}
        # A JSON string or number is written the same way in TOML.
        text = "".join(f"{key} = {orjson.dumps(value).decode()}\n" for key, value in settings.items())
        if self.forwards:
            text += f'[[forward]]\nname = "sink"\nurl = "{sink_url}"\nsecret = "{SINK_SECRET}"\nconcurrency = 16\n'
        config.write_text(text)
        return ("--config", str(config))


CEILING = Server("a", "ceiling: aiohttp + orjson, parse and answer, store nothing", "bench.ceiling")
NAIVE = Server("b", "naive: stdlib sqlite3, INSERT + commit per request", "bench.naive")
COMMITTED = Server("c", "receiver, ack = committed, synchronous = FULL", settings={"synchronous": "FULL"})
COMMITTED_NORMAL = Server("d", "receiver, ack = committed, synchronous = NORMAL", settings={"synchronous": "NORMAL"})
QUEUED = Server("e", "receiver, ack = queued, synchronous = FULL", settings={"ack": "queued"})
FORWARDING = Server(
    "f", "receiver as (c), forwarding each push to a local server that answers 200", settings=COMMITTED.settings,
    forwards=True,
)  # fmt: skip
SINK_SECRET = "whsec_" + "QmVuY2htYXJrIHNpbmsgc2VjcmV0IGtleSAzMiBieXRlcw=="
POSTGRES = Server("g", "receiver on PostgreSQL (local, fsync on), ack = committed", postgres=True)
SIDE_BY_SIDE = (CEILING, NAIVE, COMMITTED, COMMITTED_NORMAL, QUEUED, FORWARDING, POSTGRES)
# Two receivers as (g) on one database, wrk driving each with half the connections.
POSTGRES_PAIR = Server("h", "two receivers as (g) on one PostgreSQL, half the connections on each", postgres=True)
# The second load shape, a new TCP connection per push: the ceiling, the naive server and the default.
NEW_CONNECTIONS = (CEILING, NAIVE, COMMITTED)


@dataclass(frozen=True)
class Options:
    seconds: int
    connections: int
    threads: int
    duplicates: float


@dataclass(frozen=True)
class Run:
    server: Server
    load: Load
    peak_rss_mb: float
    exit_code: int
    stored: int | None  # deliveries counted in the file after the server stopped; None for the ceiling
    refusals: Counter[str]  # error codes in the receiver's log lines (the baselines log nothing)
    cpu_seconds: float  # the server process's user + system time while wrk ran, all its threads
    disk_bytes_per_push: float | None  # the file (and any WAL left) over the pushes in it, after the stop
    forwarded: Forwarded | None = None  # for a receiver that forwards

    @property
    def cpu_us_per_request(self) -> float:
        return self.cpu_seconds / max(1, self.load.requests) * 1e6


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system time of a process so far, all threads, from /proc/<pid>/stat."""
    # The command name (field 2) may hold spaces; utime and stime are fields 14 and 15.
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def peak_rss_mb(pid: int) -> float:
    """The process's high-water mark of resident memory (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


# The receiver's text log line for a refused request carries "error=<code>".
ERROR_FIELD = re.compile(r"\berror=(\w+)")


# A SQLite file, or a PostgreSQL database's URL (a fresh database per run: nothing to remove).
Database = Path | str


def remove_database(db_path: Database) -> None:
    """The file and its -wal and -shm companions."""
    if isinstance(db_path, Path):
        for path in db_path.parent.glob(db_path.name + "*"):
            path.unlink()


def last_seq(db_path: Database) -> int:
    if isinstance(db_path, Path) and not db_path.exists():
        return 0
    if isinstance(db_path, str) and rows(db_path, "SELECT to_regclass('pushes')")[0][0] is None:
        return 0  # a new database: the receiver creates the schema when it starts
    return int(rows(db_path, "SELECT coalesce(max(seq), 0) FROM pushes")[0][0])


def disk_bytes_per_push(db_path: Database) -> float | None:
    """Bytes on disk (the file and its companions) per stored push, once the server has closed the file."""
    if not isinstance(db_path, Path) or not db_path.exists():
        return None
    with sqlite_file(db_path) as conn:
        pushes = int(conn.execute("SELECT count(*) FROM pushes").fetchone()[0])
    size = sum(path.stat().st_size for path in db_path.parent.glob(db_path.name + "*"))
    return size / pushes if pushes else None


def deliveries_since(db_path: Database, seq: int) -> int:
    """Deliveries counted on rows after ``seq``: a run's ids are its own, so its duplicates land there too."""
    return int(rows(db_path, "SELECT coalesce(sum(deliveries), 0) FROM pushes WHERE seq > ?", (seq,))[0][0])


@dataclass(frozen=True)
class Forwarded:
    """What the dispatcher did in one run, read from the file after the stop."""

    jobs: int
    delivered: int
    p50_ms: float  # from receipt to the first delivery attempt
    p99_ms: float


def forwarded(db_path: Path) -> Forwarded:
    with sqlite_file(db_path) as conn:
        jobs, delivered = conn.execute(
            "SELECT count(*), coalesce(sum(state = 'delivered'), 0) FROM forward_jobs"
        ).fetchone()
        latencies = sorted(
            row[0]
            for row in conn.execute(
                "SELECT (julianday(min(a.attempted_at)) - julianday(j.created_at)) * 86400000 FROM forward_jobs AS j"
                " JOIN forward_attempts AS a ON a.job_id = j.id GROUP BY j.id"
            )
        )
    if not latencies:
        return Forwarded(jobs, delivered, 0.0, 0.0)
    return Forwarded(
        jobs, delivered, latencies[len(latencies) // 2], latencies[min(len(latencies) - 1, len(latencies) * 99 // 100)]
    )


@contextmanager
def running_sink() -> Iterator[str]:
    """The forwarding destination for the runs that forward; its URL."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bench.sink", str(port)], cwd=ROOT)
    try:
        wait_for_port(port, proc)
        yield f"http://127.0.0.1:{port}/in"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def wait_for_port(port: int, proc: subprocess.Popen[bytes], seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the sink exited early with code {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"the sink did not listen on port {port} within {seconds:g}s")


def drive_with(url: str, options: Options, arguments: Sequence[str]) -> Load:
    """wrk against ``url`` for as long and with as many connections as ``options`` say."""
    return drive(
        url, seconds=options.seconds, connections=options.connections, threads=options.threads, arguments=arguments
    )


def measure(
    server: Server,
    db_path: Database,
    workdir: Path,
    options: Options,
    arguments: Sequence[str],
    *,
    writes: bool = True,
    sink_url: str = "",
) -> Run:
    """Start ``server`` on ``db_path``, load it with wrk, stop it with SIGTERM, count what it stored."""
    count = writes and server.stores
    seq_before = last_seq(db_path) if count else 0
    with running_server(
        workdir, db_path, *server.arguments(workdir, sink_url), command=server.command(), env={"PYTHONPATH": str(ROOT)}
    ) as process:
        cpu_before = cpu_seconds(process.proc.pid)
        load = drive_with(process.url, options, arguments)
        rss = peak_rss_mb(process.proc.pid)
        cpu = cpu_seconds(process.proc.pid) - cpu_before
        exit_code = process.stop()
        refusals = Counter(ERROR_FIELD.findall(process.log()))
    process.log_path.unlink()  # a flood's log runs to tens of MB; a failed start keeps its log
    stored = deliveries_since(db_path, seq_before) if count else None
    # Only on a file the run started from empty: a grown file's size says nothing about this run.
    disk = disk_bytes_per_push(db_path) if count and seq_before == 0 else None
    forwards = forwarded(db_path) if server.forwards and isinstance(db_path, Path) else None
    return Run(server, load, rss, exit_code, stored, refusals, cpu, disk, forwards)


def _together(loads: Sequence[Load]) -> Load:
    """Two wrk runs side by side as one: requests and errors added; p50, p99 and max the worse of the two."""
    return Load(
        requests=sum(load.requests for load in loads),
        seconds=max(load.seconds for load in loads),
        non_2xx=sum(load.non_2xx for load in loads),
        socket_errors=sum(load.socket_errors for load in loads),
        p50_ms=max(load.p50_ms for load in loads),
        p99_ms=max(load.p99_ms for load in loads),
        max_ms=max(load.max_ms for load in loads),
    )


def measure_pair(server: Server, url: str, workdir: Path, options: Options, arguments: Sequence[str]) -> Run:
    """Two receivers on the database at ``url``, each loaded by its own wrk with half the connections and
    threads at once, stopped with SIGTERM; CPU is both processes' and RSS the larger."""
    seq_before = last_seq(url)
    half = Options(options.seconds, max(1, options.connections // 2), max(1, options.threads // 2), options.duplicates)
    with ExitStack() as stack:
        processes = [
            stack.enter_context(
                running_server(
                    workdir, url, *server.arguments(workdir), command=server.command(), env={"PYTHONPATH": str(ROOT)}
                )
            )
            for _ in range(2)
        ]
        cpu_before = sum(cpu_seconds(process.proc.pid) for process in processes)
        with ThreadPoolExecutor(len(processes)) as pool:
            loads = list(pool.map(lambda process: drive_with(process.url, half, arguments), processes))
        rss = max(peak_rss_mb(process.proc.pid) for process in processes)
        cpu = sum(cpu_seconds(process.proc.pid) for process in processes) - cpu_before
        exits = [process.stop() for process in processes]
        refusals = sum((Counter(ERROR_FIELD.findall(process.log())) for process in processes), Counter[str]())
    for process in processes:
        process.log_path.unlink()
    exit_code = next((code for code in exits if code != 0), 0)
    return Run(server, _together(loads), rss, exit_code, deliveries_since(url, seq_before), refusals, cpu, None)
