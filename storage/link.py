"""A connection to a database server that may be away: opened again when lost, with capped, jittered waits
between attempts, and what the metrics show (whether the server is reachable, how many connects failed).

Without the waits, every batch of a receiver whose database restarts would try to connect at once: about
150 connections a second each. With them, a receiver tries after 0.1 s, then waits about twice as long
after each failure, at most ``CAP_SECONDS``, each wait drawn between half and all of that so that
receivers restarted together do not knock in step.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

C = TypeVar("C")

BASE_SECONDS = 0.1
CAP_SECONDS = 1.0


class DatabaseAway(Exception):
    """The database server could not be reached lately; the next attempt waits for its turn."""


@dataclass
class LinkHealth:
    """What /metrics shows of a backend's connections: one for all of them."""

    reachable: bool = True
    failed_connects: int = 0


def backoff(failures: int) -> float:
    """Seconds to wait after ``failures`` failed attempts in a row (at least one)."""
    ceiling = min(CAP_SECONDS, BASE_SECONDS * 2 ** (failures - 1))
    return random.uniform(ceiling / 2, ceiling)


class Link(Generic[C]):
    """One connection, opened on first use and again after ``lost``; between failed opens, ``get`` raises
    DatabaseAway at once instead of trying."""

    def __init__(self, open: Callable[[], Awaitable[C]], errors: tuple[type[BaseException], ...], health: LinkHealth):
        self._open = open
        self._errors = errors
        self._health = health
        self._conn: C | None = None
        self._failures = 0
        self._next_try = 0.0

    @property
    def current(self) -> C | None:
        return self._conn

    async def get(self) -> C:
        if self._conn is not None:
            return self._conn
        now = time.monotonic()
        if now < self._next_try:
            raise DatabaseAway(f"the database was unreachable; next attempt in {self._next_try - now:.1f}s")
        try:
            self._conn = await self._open()
        except self._errors:
            self._failures += 1
            self._next_try = time.monotonic() + backoff(self._failures)
            self._health.reachable = False
            self._health.failed_connects += 1
            raise
        self._failures = 0
        self._health.reachable = True
        return self._conn

    def lost(self) -> C | None:
        """Forget the connection (the caller closes what is returned); the next ``get`` opens a new one."""
        conn, self._conn = self._conn, None
        return conn
