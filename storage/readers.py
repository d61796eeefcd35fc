"""A small pool of read-only connections shared by the /api requests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from storage.sql import Reader

# How long a request waits for a free connection before it is refused (the client may try again).
SLOT_WAIT_SECONDS = 5.0


class ReadersBusy(Exception):
    """No connection came free in time."""


class ReaderPool:
    """Up to ``size`` read-only connections, opened on first use and kept for the next request.

    ``size`` is also how many reads run at once (each aiosqlite connection runs its queries on its own
    thread; each PostgreSQL connection is one server process); further requests wait for a free
    connection. Opening a connection per request costs a thread start and a file open (or a login)
    each time, which a pool avoids. ``open`` makes a new connection.
    """

    def __init__(self, open: Callable[[], Awaitable[Reader]], size: int) -> None:
        self._open = open
        self._slots = asyncio.Semaphore(size)
        self._slot_wait = SLOT_WAIT_SECONDS
        self._idle: list[Reader] = []
        self._closed = False

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Reader]:
        """Borrow a connection; one that saw an error is closed instead of being reused."""
        async with self._slot():
            conn = self._idle.pop() if self._idle else await self._open()
            try:
                yield conn
            except BaseException:
                await conn.close()
                raise
            if self._closed:
                await conn.close()
            else:
                self._idle.append(conn)

    @asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        try:
            async with asyncio.timeout(self._slot_wait):
                await self._slots.acquire()
        except TimeoutError:
            raise ReadersBusy(f"every read connection stayed busy for {self._slot_wait:g}s") from None
        try:
            yield
        finally:
            self._slots.release()

    async def close(self) -> None:
        self._closed = True
        while self._idle:
            await self._idle.pop().close()
