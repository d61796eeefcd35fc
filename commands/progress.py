"""The progress line of a long command: rows done, rows per second and time left, on a terminal only.

The line is redrawn in place (``\\r``) a few times a second and ended with a newline, so that whatever
the command prints next starts on a line of its own. When stderr is not a terminal (a pipe, a file,
cron) nothing is written at all, and the caller need not even count the rows.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import TextIO

# Redraw at most this often: often enough to look alive, rarely enough to cost nothing.
REDRAW_SECONDS = 0.25


def on_terminal(stream: TextIO | None = None) -> bool:
    """Whether a progress line would be shown: callers skip counting the rows when not."""
    stream = stream or sys.stderr
    try:
        return stream.isatty()
    except ValueError:  # a closed stream
        return False


class Progress:
    def __init__(self, label: str, total: int, stream: TextIO, unit: str = "rows") -> None:
        self.label = label
        self.total = total
        self.unit = unit
        self.done = 0
        self._stream = stream
        self._started = time.monotonic()
        # The first line waits as long as a redraw: a rate taken over the first few rows says little.
        self._drawn_at = self._started

    def advance(self, rows: int) -> None:
        self.done += rows
        now = time.monotonic()
        if now - self._drawn_at >= REDRAW_SECONDS:
            self._draw(now)

    def line(self, now: float) -> str:
        elapsed = max(now - self._started, 1e-6)
        rate = self.done / elapsed
        shown = f"{self.label}: {self.done:,} of {self.total:,} {self.unit}"
        if self.total:
            shown += f" ({min(self.done / self.total, 1.0):.0%})"
        shown += f", {rate:,.0f} {self.unit}/s"
        left = max(self.total - self.done, 0)
        if left and rate > 0:
            shown += f", {timedelta(seconds=round(left / rate))} left"
        elif not left:
            shown += f", done in {timedelta(seconds=round(elapsed))}"
        return shown

    def _draw(self, now: float) -> None:
        # \x1b[K clears what a longer earlier line left to the right.
        self._stream.write(f"\r{self.line(now)}\x1b[K")
        self._stream.flush()
        self._drawn_at = now

    def finish(self) -> None:
        self._draw(time.monotonic())
        self._stream.write("\n")
        self._stream.flush()


class _Silent(Progress):
    def advance(self, rows: int) -> None:
        self.done += rows

    def finish(self) -> None:
        pass


@contextmanager
def progress(label: str, total: int | None, stream: TextIO | None = None, unit: str = "rows") -> Iterator[Progress]:
    """A progress line for ``total`` rows (or other ``unit``), or a silent stand-in when ``total`` is None
    (not a terminal).

    The line is finished however the block ends, so an error sentence does not land on the same line.
    """
    stream = stream or sys.stderr
    shown: Progress = Progress(label, total, stream, unit) if total is not None else _Silent(label, 0, stream)
    try:
        yield shown
    finally:
        shown.finish()
