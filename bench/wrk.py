"""Driving one server with wrk and reading back its figures."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

SCRIPT = Path(__file__).with_name("load.lua")
MARKER = "BENCH-JSON "


@dataclass(frozen=True)
class Load:
    """What wrk saw in one run; wrk counts a status of 400 or more as an error (nothing here sends 1xx/3xx)."""

    requests: int
    seconds: float
    non_2xx: int
    socket_errors: int
    p50_ms: float
    p99_ms: float
    max_ms: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    @property
    def acknowledged(self) -> int:
        return self.requests - self.non_2xx


def parse(output: str) -> Load:
    line = next((line for line in output.splitlines() if line.startswith(MARKER)), None)
    if line is None:
        raise RuntimeError(f"wrk printed no {MARKER.strip()} line:\n{output}")
    figures = orjson.loads(line[len(MARKER) :])
    return Load(
        requests=figures["requests"],
        seconds=figures["duration_us"] / 1e6,
        non_2xx=figures["status_errors"],
        socket_errors=sum(figures[kind] for kind in ("connect", "read", "write", "timeout")),
        p50_ms=figures["p50_us"] / 1000,
        p99_ms=figures["p99_us"] / 1000,
        max_ms=figures["max_us"] / 1000,
    )


def push_arguments(template: Path, duplicates: float, tag: str, *, new_connections: bool = False) -> list[str]:
    """POST /push with a fresh call id each time, bar a share of ``duplicates``; ``tag`` keeps runs apart.

    With ``new_connections`` every push comes on a TCP connection of its own (``Connection: close``)."""
    return ["push", str(template), str(duplicates), tag, *(["close"] if new_connections else [])]


def feed_arguments(last_seq: int, limit: int) -> list[str]:
    """GET /api/pushes pages of ``limit`` after a random seq up to ``last_seq``."""
    return ["feed", str(last_seq), str(limit)]


def drive(url: str, *, seconds: int, connections: int, threads: int, arguments: Sequence[str]) -> Load:
    """Load the server at ``url`` for ``seconds`` with what load.lua makes of ``arguments``."""
    command = [
        "wrk", f"--threads={threads}", f"--connections={connections}", f"--duration={seconds}s",
        "--timeout=10s", f"--script={SCRIPT}", url, "--", *arguments,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"wrk exited with {done.returncode}: {done.stderr.strip()}")
    return parse(done.stdout)
