"""The benchmark's knobs, from the environment; the defaults are the published run."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from bench.servers import Options

ROOT = Path(__file__).parent
# Feed pages are read by a few clients at a time, as many as the receiver's default pool of read connections.
FEED_CONNECTIONS = 4
FEED_LIMIT = 100


@dataclass(frozen=True)
class Plan:
    load: Options
    rounds: int
    rows: int  # pushes stored before the growth runs; 0 skips them
    flood_seconds: int  # one long run of the receiver for its memory; 0 skips it
    results: Path
    workdir: Path

    @property
    def changed(self) -> dict[str, str]:
        """The BENCH_* variables that were set, to print with the command."""
        return {name: os.environ[name] for name in sorted(_DEFAULTS) if name in os.environ}


_DEFAULTS = {
    "BENCH_SECONDS": "10",
    "BENCH_ROUNDS": "3",
    "BENCH_CONNECTIONS": "64",
    "BENCH_THREADS": "2",
    "BENCH_DUPLICATES": "0",
    "BENCH_ROWS": "1000000",
    "BENCH_FLOOD_SECONDS": "60",
    "BENCH_RESULTS": str(ROOT / "RESULTS.md"),
    "BENCH_WORKDIR": str(ROOT / "out"),
}


def _get(name: str) -> str:
    return os.environ.get(name, _DEFAULTS[name])


def plan_from_environment() -> Plan:
    duplicates = float(_get("BENCH_DUPLICATES"))
    if not 0 <= duplicates < 1:
        raise SystemExit("BENCH_DUPLICATES must be at least 0 and less than 1")
    return Plan(
        load=Options(
            seconds=int(_get("BENCH_SECONDS")),
            connections=int(_get("BENCH_CONNECTIONS")),
            threads=int(_get("BENCH_THREADS")),
            duplicates=duplicates,
        ),
        rounds=int(_get("BENCH_ROUNDS")),
        rows=int(_get("BENCH_ROWS")),
        flood_seconds=int(_get("BENCH_FLOOD_SECONDS")),
        results=Path(_get("BENCH_RESULTS")).resolve(),
        workdir=Path(_get("BENCH_WORKDIR")).resolve(),
    )
