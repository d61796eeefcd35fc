"""Turning the runs into bench/RESULTS.md: medians per server, ratios, and the targets they are held to."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from bench.backup import BackupRun
from bench.options import FEED_CONNECTIONS, FEED_LIMIT, Plan
from bench.servers import SIDE_BY_SIDE, Run


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
    growth: Growth | None = None
    backup: BackupRun | None = None
    flood: Run | None = None
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
    return (
        f"| {name} | {_rate(runs):,.0f} | {statistics.median(r.load.p50_ms for r in runs):.2f} "
        f"| {statistics.median(r.load.p99_ms for r in runs):.2f} | {non_2xx} "
        f"| {sum(r.load.socket_errors for r in runs)} | {max(r.peak_rss_mb for r in runs):.0f} | {kept} "
        f"| {', '.join(str(r.exit_code) for r in runs)} |"
    )


_HEADER = (
    "| server | req/s | p50 ms | p99 ms | non-2xx | socket errors | peak RSS MB | stored / acknowledged | exit |\n"
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
)


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
        '"Stored" counts deliveries in the file after the server stopped (it may exceed what wrk saw',
        'acknowledged: wrk stops with requests in flight); "exit" is each run\'s exit code after SIGTERM.',
        "",
        "## Side by side",
        "",
        _HEADER,
        *(_row(f"({s.label}) {s.title}", m.side[s.label]) for s in SIDE_BY_SIDE),
        "",
    ]
    ceiling, naive, committed = _rate(m.side["a"]), _rate(m.side["b"]), _rate(m.side["c"])
    p99 = statistics.median(r.load.p99_ms for r in m.side["c"])
    targets = [
        f"| (c) / (a) | {committed / ceiling:.2f} | >= 0.70 | {_verdict(committed / ceiling >= 0.70)} |",
        f"| (c) / (b) | {committed / naive:.2f} | >= 4 | {_verdict(committed / naive >= 4)} |",
        f"| p99 of (c), {plan.load.connections} connections | {p99:.2f} ms | <= 20 ms | {_verdict(p99 <= 20)} |",
    ]
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
    if m.flood:
        out += [
            "## Flood",
            "",
            f"Receiver (c) for {m.flood.load.seconds:.0f} s.",
            "",
            _HEADER,
            _row("(c) flood", [m.flood]),
            "",
        ]
        rss = m.flood.peak_rss_mb
        targets.append(f"| peak RSS of (c) in the flood | {rss:.0f} MB | <= 150 MB | {_verdict(rss <= 150)} |")
    out += [
        "## Targets",
        "",
        "| what | measured | target | |",
        "| --- | ---: | ---: | --- |",
        *targets,
        "",
        "## Every run (req/s, in the order run)",
        "",
        *(f"- ({s.label}): {', '.join(f'{r.load.rate:,.0f}' for r in m.side[s.label])}" for s in SIDE_BY_SIDE),
        "",
    ]
    return "\n".join(out)
