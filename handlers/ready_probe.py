"""The last readiness write probe, reused for a moment so that frequent checks do not each write."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable

# /readyz needs no token: without reuse, anyone could make the server write and sync the file at will.
REUSE_SECONDS = 1.0


class ReadyProbe:
    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._checked_at = -math.inf
        self._problem: str | None = None

    async def problem(self, probe: Callable[[], Awaitable[str | None]]) -> str | None:
        """The problem ``probe`` found (None when there is none), run at most once per REUSE_SECONDS.

        Checks that arrive while a probe runs wait for it and share its answer.
        """
        async with self._lock:
            if time.monotonic() - self._checked_at >= REUSE_SECONDS:
                self._problem = await probe()
                self._checked_at = time.monotonic()
            return self._problem
