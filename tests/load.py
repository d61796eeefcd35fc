"""A bounded load client for the real server: concurrent pushes, every answer tallied.

Failure tests use it to check the promise from the sender's side: each call id answered 200 must be in
the database afterwards, whatever happened to the server in between.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import aiohttp
import orjson

from tests.support import sample

# Longer than any answer the server may take (ack_timeout is at most 9 s): a request cut off by this
# is a hang, and it is tallied as such.
REQUEST_TIMEOUT = 10.0


def push_body(call_id: str) -> bytes:
    return orjson.dumps(sample(call_id=call_id))


@dataclass
class Answer:
    call_id: str
    status: int | str  # an HTTP status, or the name of the client-side error
    started: float  # time.monotonic()
    seconds: float
    retry_after: str | None
    error: str | None  # the "error" code of a JSON error body

    @property
    def kind(self) -> str:
        """The status with its error code, e.g. "200", "503 commit_timeout", "ServerDisconnectedError"."""
        return f"{self.status} {self.error}" if self.error else str(self.status)


@dataclass
class Tally:
    """Every answer the client saw, and the call ids acknowledged with 200."""

    answers: list[Answer] = field(default_factory=list)

    @property
    def acknowledged(self) -> set[str]:
        return {a.call_id for a in self.answers if a.status == 200}

    @property
    def statuses(self) -> Counter[int | str]:
        return Counter(a.status for a in self.answers)

    @property
    def kinds(self) -> dict[str, int]:
        return dict(sorted(Counter(a.kind for a in self.answers).items()))

    def slowest(self) -> float:
        return max((a.seconds for a in self.answers), default=0.0)


def error_code(content: bytes) -> str:
    """The ``error`` of a JSON error body; a body of another shape (a proxy's page, plain text) is named as such."""
    try:
        answer = orjson.loads(content)
    except orjson.JSONDecodeError:
        return "not_json"
    return str(answer.get("error")) if isinstance(answer, dict) else "not_an_error_object"


async def post_push(session: aiohttp.ClientSession, url: str, call_id: str, body: bytes, tally: Tally) -> Answer:
    started = time.monotonic()
    retry_after = error = None
    status: int | str
    try:
        async with session.post(url, data=body, timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)) as response:
            content = await response.read()
            status = response.status
            retry_after = response.headers.get("Retry-After")
            if status != 200:
                error = error_code(content)
    except (aiohttp.ClientError, TimeoutError) as exc:
        status = type(exc).__name__
    answer = Answer(call_id, status, started, time.monotonic() - started, retry_after, error)
    tally.answers.append(answer)
    return answer


async def unique_pushes(url: str, tally: Tally, stop: asyncio.Event, *, prefix: str, concurrency: int = 16) -> None:
    """Post pushes with fresh call ids from ``concurrency`` workers until ``stop`` is set."""

    async def worker(session: aiohttp.ClientSession, number: int) -> None:
        sent = 0
        while not stop.is_set():
            call_id = f"{prefix}-{number}-{sent}"
            sent += 1
            answer = await post_push(session, url, call_id, push_body(call_id), tally)
            if not isinstance(answer.status, int):
                await asyncio.sleep(0.02)  # the server is down: do not spin

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(worker(session, n) for n in range(concurrency)))


async def deliver_all(url: str, call_ids: Iterable[str], tally: Tally, *, concurrency: int = 32) -> None:
    """Post one push per call id in the given order (repeats allowed), ``concurrency`` at a time."""
    pending = list(call_ids)
    bodies = {call_id: push_body(call_id) for call_id in set(pending)}
    queue = iter(pending)

    async def worker(session: aiohttp.ClientSession) -> None:
        for call_id in queue:
            await post_push(session, url, call_id, bodies[call_id], tally)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))


@asynccontextmanager
async def background_load(url: str, tally: Tally, *, prefix: str, concurrency: int = 16) -> AsyncIterator[None]:
    """Unique pushes to ``url`` while the body of the ``async with`` runs; stopped and awaited on exit."""
    stop = asyncio.Event()
    task = asyncio.create_task(unique_pushes(url, tally, stop, prefix=prefix, concurrency=concurrency))
    try:
        yield
    finally:
        stop.set()
        async with asyncio.timeout(REQUEST_TIMEOUT + 5):
            await task
