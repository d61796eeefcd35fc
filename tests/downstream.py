"""A team's own system, as the forwarding tests need it: a real HTTP server on loopback that records every
request and misbehaves on demand (fails the first attempts, answers 429 with Retry-After, hangs, is down).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field

from aiohttp import web

from tests.support import free_port


@dataclass
class Behaviour:
    """What one path answers. Failures come first for each webhook-id, then ``status``."""

    fail_first: int = 0  # attempts of each delivery answered ``fail_status``
    fail_status: int = 500
    retry_after: str | None = None  # sent with the failures
    hang_first: float = 0.0  # the first attempt of each delivery sleeps this long before answering
    delay: float = 0.0  # every answer waits this long
    jitter: float = 0.0  # and a random part of this long more
    status: int = 200


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.time()


@dataclass
class Downstream:
    port: int = field(default_factory=free_port)
    behaviours: dict[str, Behaviour] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)  # in the order they came in
    taken: list[Received] = field(default_factory=list)  # those answered 2xx, in the order they were answered
    _attempts: Counter[tuple[str, str]] = field(default_factory=Counter)
    _runner: web.AppRunner | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def start(self) -> None:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_post("/{path:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def stop(self) -> None:
        """Down: the port refuses connections until ``start`` again."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        path = request.path
        arrived = Received(path, dict(request.headers), body, time.time())
        self.received.append(arrived)
        behaviour = self.behaviours.get(path, Behaviour())
        key = (path, request.headers.get("webhook-id", ""))
        self._attempts[key] += 1
        attempt = self._attempts[key]
        if attempt == 1 and behaviour.hang_first:
            await asyncio.sleep(behaviour.hang_first)
        if behaviour.delay or behaviour.jitter:
            await asyncio.sleep(behaviour.delay + random.uniform(0, behaviour.jitter))
        if attempt <= behaviour.fail_first:
            headers = {"Retry-After": behaviour.retry_after} if behaviour.retry_after else {}
            return web.Response(status=behaviour.fail_status, headers=headers)
        if behaviour.status < 300:
            self.taken.append(arrived)
        return web.Response(status=behaviour.status)

    def on(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    def ids(self, path: str) -> Counter[str]:
        """How often each webhook-id reached ``path``."""
        return Counter(r.headers["webhook-id"] for r in self.on(path))

    def accepted(self, path: str) -> set[str]:
        """webhook-ids that got a 2xx on ``path`` (answers follow the behaviour: the last attempts succeed)."""
        behaviour = self.behaviours.get(path, Behaviour())
        if behaviour.status >= 300:
            return set()
        return {key for key, count in self.ids(path).items() if count > behaviour.fail_first}
