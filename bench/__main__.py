"""``python -m bench``: side by side, growth, backup and flood runs, written to bench/RESULTS.md."""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import orjson

from bench.backup import backup_under_load
from bench.machine import describe, load_average
from bench.options import FEED_CONNECTIONS, FEED_LIMIT, Plan, plan_from_environment
from bench.prefill import prefill
from bench.report import Growth, Measurement, render, write_results
from bench.servers import (
    COMMITTED,
    NEW_CONNECTIONS,
    POSTGRES_PAIR,
    QUEUED,
    SIDE_BY_SIDE,
    Database,
    Run,
    Server,
    last_seq,
    measure,
    measure_pair,
    remove_database,
    running_sink,
)
from bench.writer_alone import WriterRun, writer_alone
from bench.wrk import feed_arguments, push_arguments
from tests.pg_cluster import PgCluster, server_binaries
from tests.support import SAMPLE_BYTES


def write_template(workdir: Path) -> Path:
    """The vendor's sample push with its call id replaced by the marker that load.lua fills in."""
    push = orjson.loads(SAMPLE_BYTES)
    push["call"]["call_id"] = "@CALL_ID@"
    template = workdir / "push-template.json"
    template.write_bytes(orjson.dumps(push))
    return template


def _report(tag: str, run: Run) -> Run:
    print(
        f"  {tag:<12} ({run.server.label}) {run.load.rate:8.0f} req/s  p50 {run.load.p50_ms:6.2f} ms"
        f"  p99 {run.load.p99_ms:6.2f} ms  max {run.load.max_ms:6.1f} ms  non-2xx {run.load.non_2xx}"
        f"  rss {run.peak_rss_mb:.0f} MB  cpu {run.cpu_us_per_request:.0f} us/req"
        + (
            f"  forwarded {run.forwarded.delivered}/{run.forwarded.jobs}, latency p50 {run.forwarded.p50_ms:.0f} ms"
            f" p99 {run.forwarded.p99_ms:.0f} ms"
            if run.forwarded
            else ""
        ),
        flush=True,
    )
    return run


def _once(
    plan: Plan,
    server: Server,
    db_path: Database,
    template: Path,
    tag: str,
    seconds: int | None = None,
    *,
    new_connections: bool = False,
    sink_url: str = "",
) -> Run:
    load = plan.load if seconds is None else dataclasses.replace(plan.load, seconds=seconds)
    arguments = push_arguments(template, load.duplicates, tag, new_connections=new_connections)
    return _report(tag, measure(server, db_path, plan.workdir, load, arguments, sink_url=sink_url))


def feed(plan: Plan, db_path: Path) -> Run:
    """Pages of the read API at random places in the grown file, on an idle receiver."""
    load = dataclasses.replace(plan.load, connections=FEED_CONNECTIONS, threads=1)
    arguments = feed_arguments(last_seq(db_path), FEED_LIMIT)
    return _report("feed", measure(COMMITTED, db_path, plan.workdir, load, arguments, writes=False))


def side_by_side(
    plan: Plan,
    template: Path,
    servers: Sequence[Server],
    *,
    new_connections: bool = False,
    sink_url: str = "",
    postgres: PgCluster | None = None,
) -> dict[str, list[Run]]:
    runs: dict[str, list[Run]] = {server.label: [] for server in servers}
    shape = "n" if new_connections else "r"
    for number in range(plan.rounds):
        # Alternate the order so that no server always runs first, or right after the heaviest one.
        order = tuple(servers) if number % 2 == 0 else tuple(reversed(servers))
        print(f"round {number + 1} of {plan.rounds}: {' '.join(s.label for s in order)}", flush=True)
        for server in order:
            db_path: Database = plan.workdir / f"{server.label}.sqlite3"
            if server.postgres:
                assert postgres is not None, "a PostgreSQL server needs the bench's cluster"
                db_path = postgres.new_database()
            remove_database(db_path)
            tag = f"{shape}{number}{server.label}"
            runs[server.label].append(
                _once(plan, server, db_path, template, tag, new_connections=new_connections, sink_url=sink_url)
            )
            remove_database(db_path)
    return runs


@contextmanager
def running_postgres() -> Iterator[PgCluster]:
    """A PostgreSQL cluster for the run of (g): the tests' throwaway kind, but with fsync on, as SQLite's
    synchronous = FULL has it."""
    bin_dir = server_binaries()
    if bin_dir is None:
        raise SystemExit("PostgreSQL is not installed: apt-get install -y postgresql (make test installs it)")
    cluster = PgCluster(bin_dir)
    try:
        cluster.init()
        cluster.start(fsync=True)
        yield cluster
    finally:
        cluster.remove()


def pair_runs(plan: Plan, template: Path, postgres: PgCluster) -> list[Run]:
    """(h): two receivers on one fresh database per round."""
    runs = []
    for number in range(plan.rounds):
        tag = f"r{number}{POSTGRES_PAIR.label}"
        arguments = push_arguments(template, plan.load.duplicates, tag)
        runs.append(
            _report(tag, measure_pair(POSTGRES_PAIR, postgres.new_database(), plan.workdir, plan.load, arguments))
        )
    return runs


def writer_runs(plan: Plan, template: Path) -> list[WriterRun]:
    runs = []
    for number in range(plan.rounds):
        run = writer_alone(plan.workdir, template, plan.load.seconds, plan.load.connections)
        print(f"  writer {number}: {run.rate:8.0f} rows/s  cpu {run.cpu_us_per_row:.0f} us/row", flush=True)
        runs.append(run)
    return runs


def growth(plan: Plan, template: Path, grown: Path) -> Growth:
    started = time.monotonic()
    prefill(grown, template.read_text(), plan.rows)
    print(f"pre-filled {plan.rows} rows in {time.monotonic() - started:.0f}s", flush=True)
    empty_runs: list[Run] = []
    grown_runs: list[Run] = []
    rows_before: list[int] = []
    for number in range(plan.rounds):
        for which in ("empty", "grown") if number % 2 == 0 else ("grown", "empty"):
            if which == "grown":
                rows_before.append(last_seq(grown))
                grown_runs.append(_once(plan, COMMITTED, grown, template, f"g{number}grown"))
            else:
                empty = plan.workdir / "empty.sqlite3"
                remove_database(empty)
                empty_runs.append(_once(plan, COMMITTED, empty, template, f"g{number}empty"))
                remove_database(empty)
    feed_run = feed(plan, grown)
    return Growth(empty=empty_runs, grown=grown_runs, rows_before=rows_before, feed=feed_run)


def flood(plan: Plan, template: Path, server: Server) -> Run:
    db_path = plan.workdir / "flood.sqlite3"
    remove_database(db_path)
    print(f"flood of ({server.label}): {plan.flood_seconds}s", flush=True)
    run = _once(plan, server, db_path, template, f"flood{server.label}", seconds=plan.flood_seconds)
    remove_database(db_path)
    return run


def main() -> int:
    plan = plan_from_environment()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk (bench/setup.sh does it)")
    plan.workdir.mkdir(parents=True, exist_ok=True)
    template = write_template(plan.workdir)
    started, load_before = datetime.now(UTC), load_average()
    # The destination of (f)'s forwards, and the database of (g).
    with running_sink() as sink_url, running_postgres() as postgres:
        side = side_by_side(plan, template, SIDE_BY_SIDE, sink_url=sink_url, postgres=postgres)
        print("two receivers on one PostgreSQL", flush=True)
        pair = pair_runs(plan, template, postgres)
    measurement = Measurement(
        plan=plan,
        started=started,
        machine=describe(),
        load_before=load_before,
        body_bytes=len(template.read_bytes()),
        side=side,
        pair=pair,
    )
    print("each push on a new connection", flush=True)
    measurement.new_connections = side_by_side(plan, template, NEW_CONNECTIONS, new_connections=True)
    print("the writer alone", flush=True)
    measurement.writer = writer_runs(plan, template)
    if plan.rows:
        grown = plan.workdir / "grown.sqlite3"
        measurement.growth = growth(plan, template, grown)
        measurement.backup = backup_under_load(plan, grown, template)
        remove_database(grown)
    if plan.flood_seconds:
        measurement.flood = flood(plan, template, COMMITTED)
        measurement.queued_flood = flood(plan, template, QUEUED)
    measurement.load_after = load_average()
    write_results(plan.results, render(measurement))
    print(f"wrote {plan.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
