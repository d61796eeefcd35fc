"""Every receiver's committed pushes, told through PostgreSQL's NOTIFY, for this receiver's event stream."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from storage.link import LinkHealth, backoff
from storage.postgres.connection import CONNECT_SECONDS, PG_ERRORS, PUSHES_CHANNEL, connect, described

log = logging.getLogger("airudder_receiver.storage")


class PushListener:
    """Hands every receiver's NOTIFY of committed pushes to ``deliver``, on a connection of its own that it
    opens again whenever it is lost (waiting longer after each failed attempt, storage/link.py); pushes
    committed while it is away are not told, and a stream's client catches up through /api/pushes as after
    any gap."""

    def __init__(self, url: str, deliver: Callable[[bytes], None], health: LinkHealth) -> None:
        self._url = url
        self._deliver = deliver
        self._health = health
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Listen before returning, so that no push committed after the start goes untold."""
        listening = asyncio.Event()
        self._task = asyncio.create_task(self._run(listening), name="airudder-receiver-push-listener")
        # The database was just reached for the migrations; should it be gone again, the task keeps trying.
        waiter = asyncio.ensure_future(listening.wait())
        try:
            await asyncio.wait({waiter, self._task}, timeout=CONNECT_SECONDS, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()

    def _received(self, conn: object, pid: int, channel: str, payload: object) -> None:
        self._deliver(str(payload).encode())

    async def _run(self, listening: asyncio.Event) -> None:
        failures = 0
        while True:
            try:
                conn = await connect(self._url, CONNECT_SECONDS)
            except PG_ERRORS as exc:
                failures += 1
                self._health.failed_connects += 1
                wait = backoff(failures)
                log.warning("cannot listen for pushes (%s); trying again in %.1fs", described(exc), wait)
                await asyncio.sleep(wait)
                continue
            failures = 0
            lost = asyncio.Event()
            conn.add_termination_listener(lambda _, lost=lost: lost.set())
            try:
                await conn.add_listener(PUSHES_CHANNEL, self._received)
                listening.set()
                await lost.wait()
                log.warning("the connection listening for pushes was lost; opening a new one")
            except PG_ERRORS as exc:
                log.warning("listening for pushes stopped (%s); trying again", described(exc))
            finally:
                conn.terminate()
            await asyncio.sleep(backoff(1))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
