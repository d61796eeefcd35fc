"""Turning the runs into bench/RESULTS.md: medians per server, ratios, and the targets they are held to."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from bench.backup import BackupRun
from bench.options import FEED_CONNECTIONS, FEED_LIMIT, Plan
from bench.servers import NEW_CONNECTIONS, POSTGRES_PAIR, SIDE_BY_SIDE, Run, Server
from bench.writer_alone import WriterRun

# RESULTS.md holds the generated report above this line and hand-written notes below it; a new run
# rewrites only what is above.
HAND_WRITTEN = "<!-- Above: written by make bench. Below: written by hand, kept by every run. -->"


@dataclass
class Growth:
    empty: list[Run]
    grown: list[Run]
    rows_before: list[int]
    feed: Run


@dataclass
class Measurement:
    plan: Plan
    started: datetime
    machine: list[str]
    load_before: str
    side: dict[str, list[Run]]
    pair: list[Run] = field(default_factory=list)
    body_bytes: int = 0
    new_connections: dict[str, list[Run]] = field(default_factory=dict)
    writer: list[WriterRun] = field(default_factory=list)
    growth: Growth | None = None
    backup: BackupRun | None = None
    flood: Run | None = None
    queued_flood: Run | None = None
    load_after: str = ""


def _rate(runs: Sequence[Run]) -> float:
    return statistics.median(run.load.rate for run in runs)


def _row(name: str, runs: Sequence[Run]) -> str:
    acknowledged = sum(run.load.acknowledged for run in runs)
    stored = [run.stored for run in runs]
    kept = "-" if None in stored else f"{sum(s for s in stored if s is not None)} / {acknowledged}"
    refusals = sum((run.refusals for run in runs), Counter[str]())
    non_2xx = f"{sum(r.load.non_2xx for r in runs)}"
    if refusals:
        non_2xx += " (" + ", ".join(f"{code} {count}" for code, count in refusals.most_common()) + ")"
    disk = [r.disk_bytes_per_push for r in runs if r.disk_bytes_per_push is not None]
    return (
        f"| {name} | {_rate(runs):,.0f} | {statistics.median(r.load.p50_ms for r in runs):.2f} "
        f"| {statistics.median(r.load.p99_ms for r in runs):.2f} "
        f"| {statistics.median(r.cpu_us_per_request for r in runs):.0f} "
        f"| {f'{statistics.median(disk):,.0f}' if disk else '-'} | {non_2xx} "
        f"| {sum(r.load.socket_errors for r in runs)} | {max(r.peak_rss_mb for r in runs):.0f} | {kept} "
        f"| {', '.join(str(r.exit_code) for r in runs)} |"
    )


_HEADER = (
    "| server | req/s | p50 ms | p99 ms | CPU µs/req | disk B/push | non-2xx | socket errors | peak RSS MB "
    "| stored / acknowledged | exit |\n"
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
)


def _all_stored(runs: Sequence[Run]) -> bool:
    return all(run.stored is None or run.stored >= run.load.acknowledged for run in runs)


def _every_run(servers: Sequence[Server], runs: dict[str, list[Run]]) -> list[str]:
    return [f"- ({s.label}): {', '.join(f'{r.load.rate:,.0f}' for r in runs[s.label])}" for s in servers]


def _verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def backup_section(b: BackupRun, plan: Plan) -> list[str]:
    refusals = ", ".join(f"{code} {count}" for code, count in b.refusals.most_common()) or "none"
    return [
        "## Backup under load",
        "",
        "`airudder-receiver backup` of the grown file, first with nothing else running, then while wrk pushes",
        f"to receiver (c) at {plan.load.connections} connections: wrk starts with the backup and runs"
        f" {b.during.seconds:.0f} s of its {b.loaded.seconds:.0f} s.",
        "The row without is the same receiver just before. Each backup checks its copy with integrity_check",
        "before it renames it; seconds are the command's from start to exit.",
        "",
        "| backup | pushes in the file | seconds | pushes/s | what it printed |",
        "| --- | ---: | ---: | ---: | --- |",
        f"| idle | {b.idle.rows:,} | {b.idle.seconds:.1f} | {b.idle.rate:,.0f} | `{b.idle.said}` |",
        f"| under load | {b.loaded.rows:,} | {b.loaded.seconds:.1f} | {b.loaded.rate:,.0f} | `{b.loaded.said}` |",
        "",
        "| pushes | req/s | p50 ms | p99 ms | max ms | non-2xx | socket errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        *(
            f"| {name} | {load.rate:,.0f} | {load.p50_ms:.2f} | {load.p99_ms:.2f} | {load.max_ms:.1f}"
            f" | {load.non_2xx} | {load.socket_errors} |"
            for name, load in (("without a backup", b.quiet), ("while `backup` ran", b.during))
        ),
        "",
        f"Every push acknowledged before the backup began is in the copy: {'yes' if b.complete else '**no**'}."
        f" Error codes in the receiver's log: {refusals}; its exit after SIGTERM: {b.exit_code}.",
        "",
    ]


def render(m: Measurement) -> str:
    plan = m.plan
    settings = " ".join(f"{name}={value}" for name, value in plan.changed.items())
    out = [
        "# Benchmark results",
        "",
        f"Measured {m.started:%Y-%m-%d %H:%M} UTC with `{(settings + ' ') if settings else ''}make bench`: "
        f"{plan.rounds} rounds of {plan.load.seconds} s per server, wrk with {plan.load.connections} connections "
        f"on {plan.load.threads} threads, {plan.load.duplicates:.0%} duplicates, all on one machine over loopback.",
        "",
        *(f"- {line}" for line in m.machine),
        f"- Load average (1, 5, 15 min) before: {m.load_before}; after: {m.load_after}",
        "",
        "Figures are medians over the rounds (non-2xx, socket errors and stored pushes are totals, RSS the",
        "largest). Non-2xx are as wrk counted them, with the receiver's error codes from its log in brackets.",
        "CPU is the server process's user + system time (all threads) while wrk ran, per request answered.",
        f"Disk: the file after the stop over the pushes in it; a push body is about {m.body_bytes:,} bytes.",
        '"Stored" counts deliveries in the file after the server stopped (it may exceed what wrk saw',
        'acknowledged: wrk stops with requests in flight); "exit" is each run\'s exit code after SIGTERM.',
        "",
        "## Side by side",
        "",
        _HEADER,
        *(_row(f"({s.label}) {s.title}", m.side[s.label]) for s in SIDE_BY_SIDE),
        *([_row(f"({POSTGRES_PAIR.label}) {POSTGRES_PAIR.title}", m.pair)] if m.pair else []),
        "",
    ]
    if m.pair:
        out += [
            "Row (h) runs two receiver processes on one fresh PostgreSQL database per round, each driven by its",
            "own wrk with half the connections and threads at the same time: req/s and errors are the two added,",
            "p50 and p99 the worse of the two, CPU both processes', RSS the larger.",
            "",
        ]
    forwarding = [run.forwarded for run in m.side["f"] if run.forwarded]
    if forwarding:
        forward_p50 = statistics.median(f.p50_ms for f in forwarding)
        forward_p99 = statistics.median(f.p99_ms for f in forwarding)
        out += [
            "Receiver (f) forwards each stored push to a local server that answers 200 at once (one [[forward]]",
            "destination, concurrency 16, on the same two cores); while pushes wait for the writer, deliveries",
            "wait for them. Deliveries made by the stop, of those created, per run:",
            ", ".join(f"{f.delivered:,} / {f.jobs:,}" for f in forwarding) + ". From receipt to the first delivery",
            f"attempt, median over the runs: p50 {forward_p50:.0f} ms, p99 {forward_p99:.0f} ms.",
            "",
        ]
    ceiling, naive, committed = _rate(m.side["a"]), _rate(m.side["b"]), _rate(m.side["c"])
    p50 = statistics.median(r.load.p50_ms for r in m.side["c"])
    p99 = statistics.median(r.load.p99_ms for r in m.side["c"])
    targets = [
        f"| (c) / (a) | {committed / ceiling:.2f} | >= 0.50 | {_verdict(committed / ceiling >= 0.50)} |",
        f"| p99 / p50 of (c), {plan.load.connections} connections | {p99:.1f} / {p50:.1f} ms = {p99 / p50:.2f} "
        f"| <= 2 | {_verdict(p99 <= 2 * p50)} |",
        f"| (c) / (b) | {committed / naive:.2f} | reported, no target | |",
        f"| (f) / (c), forwarding on / off | {_rate(m.side['f']) / committed:.2f} | reported, no target | |",
        f"| (g) / (c), PostgreSQL / SQLite | {_rate(m.side['g']) / committed:.2f} | >= 0.60 "
        f"| {_verdict(_rate(m.side['g']) >= 0.60 * committed)} |",
    ]
    if m.pair:
        targets.append(
            f"| (h) / (g), two receivers / one | {_rate(m.pair) / _rate(m.side['g']):.2f} | reported, no target | |"
        )
    every_run = [*_every_run(SIDE_BY_SIDE, m.side)]
    if m.pair:
        every_run.append(f"- ({POSTGRES_PAIR.label}): {', '.join(f'{r.load.rate:,.0f}' for r in m.pair)}")
    if m.new_connections:
        out += [
            "## A new connection per push",
            "",
            "The same load, but every request says `Connection: close`, so each push opens its own TCP",
            "connection, as many webhook senders do.",
            "",
            _HEADER,
            *(_row(f"({s.label}) {s.title}", m.new_connections[s.label]) for s in NEW_CONNECTIONS),
            "",
        ]
        ratio = _rate(m.new_connections["c"]) / _rate(m.new_connections["a"])
        targets.append(f"| (c) / (a), a new connection per push | {ratio:.2f} | reported, no target | |")
        every_run += [f"- new connections {line[2:]}" for line in _every_run(NEW_CONNECTIONS, m.new_connections)]
    if m.writer:
        rate = statistics.median(run.rate for run in m.writer)
        cpu = statistics.median(run.cpu_us_per_row for run in m.writer)
        out += [
            "## The writer alone",
            "",
            f"No HTTP: {plan.load.connections} tasks each hand the sample push (under a fresh call id) to the",
            "receiver's `Writer` and wait for its commit, `synchronous = FULL`, on a new file, "
            f"{plan.load.seconds} s per round.",
            "",
            "| rows/s | CPU µs/row | every round (rows/s) |",
            "| ---: | ---: | --- |",
            f"| {rate:,.0f} | {cpu:.0f} | {', '.join(f'{run.rate:,.0f}' for run in m.writer)} |",
            "",
        ]
        targets.append(f"| the writer alone / (c) | {rate / committed:.2f} | reported, no target | |")
    if m.growth:
        g = m.growth
        grown_ratio = _rate(g.grown) / _rate(g.empty)
        out += [
            "## Growth",
            "",
            f"Receiver (c) on a new file against one pre-filled with {plan.rows:,} pushes (rows before each",
            f"run: {', '.join(f'{n:,}' for n in g.rows_before)}), alternating.",
            "",
            _HEADER,
            _row("(c) empty file", g.empty),
            _row(f"(c) {plan.rows:,} rows stored", g.grown),
            "",
            f"Read API at {g.rows_before[-1]:,}+ rows: `GET /api/pushes?after=<random seq>&limit={FEED_LIMIT}`, "
            f"{g.feed.load.seconds:.0f} s at {FEED_CONNECTIONS} connections, nothing else running.",
            "",
            _HEADER,
            _row("(c) feed page", [g.feed]),
            "",
        ]
        targets.append(
            f"| (c) at {plan.rows:,} rows / (c) empty | {grown_ratio:.2f} | >= 0.90 | {_verdict(grown_ratio >= 0.9)} |"
        )
    if m.backup:
        out += backup_section(m.backup, plan)
        refused = m.backup.during.non_2xx + m.backup.during.socket_errors
        targets += [
            f"| pushes refused while `backup` ran | {refused} | 0 | {_verdict(refused == 0)} |",
            f"| pushes acknowledged before `backup`, in the copy | {'all' if m.backup.complete else '**not all**'}"
            f" | all | {_verdict(m.backup.complete)} |",
        ]
    floods = [run for run in (m.flood, m.queued_flood) if run is not None]
    if floods:
        out += [
            "## Flood",
            "",
            f"The receiver for {plan.flood_seconds} s at {plan.load.connections} connections, in each ack mode.",
            "",
            _HEADER,
            *(_row(f"({run.server.label}) {run.server.title}", [run]) for run in floods),
            "",
        ]
        rss = max(run.peak_rss_mb for run in floods)
        targets.append(f"| peak RSS in the flood | {rss:.0f} MB | <= 150 MB | {_verdict(rss <= 150)} |")
    queued = [m.queued_flood] if m.queued_flood else m.side["e"]
    queue_full = sum(run.refusals["queue_full"] for run in queued)
    seconds = sum(run.load.seconds for run in queued)
    targets.append(f"| queue_full of (e) over {seconds:.0f} s | {queue_full} | 0 | {_verdict(queue_full == 0)} |")
    runs = [run for group in (m.side, m.new_connections) for server_runs in group.values() for run in server_runs]
    runs += floods + ([*m.growth.empty, *m.growth.grown] if m.growth else [])
    stored = _all_stored(runs)
    targets.append(
        f"| every acknowledged push in the file after SIGTERM | {'yes' if stored else 'no'} | every run "
        f"| {_verdict(stored)} |"
    )
    out += [
        "## Targets",
        "",
        "| what | measured | target | |",
        "| --- | ---: | ---: | --- |",
        *targets,
        "",
        "## Every run (req/s, in the order run)",
        "",
        *every_run,
        "",
    ]
    return "\n".join(out)


def write_results(path: Path, generated: str) -> None:
    """Write the generated report to ``path``, keeping the hand-written part of the file already there."""
    kept = ""
    if path.exists():
        _, marker, below = path.read_text().partition(HAND_WRITTEN)
        kept = below if marker else ""
    path.write_text(f"{generated}\n{HAND_WRITTEN}{kept}" if kept else f"{generated}\n{HAND_WRITTEN}\n")
