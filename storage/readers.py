"""A small pool of read-only connections shared by the /api requests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, nullcontext

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

    Reads whose answer carries bodies (up to max_answer_bytes each) run one at a time besides: building
    one takes the event loop and the interpreter lock for milliseconds, so the pool's memory stays
    bounded and pushes keep their pace while a call with a hundred 1 MiB versions is read by several
    clients at once.
    """

    def __init__(self, open: Callable[[], Awaitable[Reader]], size: int) -> None:
        self._open = open
        self._slots = asyncio.Semaphore(size)
        self._body_slot = asyncio.Semaphore(1)
        self._slot_wait = SLOT_WAIT_SECONDS
        self._idle: list[Reader] = []
        self._closed = False

    @asynccontextmanager
    async def connection(self, *, bodies: bool = False) -> AsyncIterator[Reader]:
        """Borrow a connection (for a read that returns ``bodies``, once no other such read runs); one that
        saw an error is closed instead of being reused."""
        async with self._slot(self._body_slot) if bodies else nullcontext(), self._slot(self._slots):
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
    async def _slot(self, slots: asyncio.Semaphore) -> AsyncIterator[None]:
        try:
            async with asyncio.timeout(self._slot_wait):
                await slots.acquire()
        except TimeoutError:
            raise ReadersBusy(f"every read connection stayed busy for {self._slot_wait:g}s") from None
        try:
            yield
        finally:
            slots.release()

    async def close(self) -> None:
        self._closed = True
        while self._idle:
            await self._idle.pop().close()
