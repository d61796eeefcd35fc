"""Liveness and readiness for load balancers and systemd."""

from __future__ import annotations

from aiohttp import web

from handlers.errors import http_error
from handlers.keys import READY_PROBE, RECENT_STORES, WRITER
from handlers.push import store
from storage.records import WriteProbe, utc_now
from storage.writer import STORE_ERRORS


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def probe_write(request: web.Request) -> str | None:
    try:
        await store(request, WriteProbe(utc_now()), 0, wait=True)
    except STORE_ERRORS as exc:
        error = http_error(exc, 0)
        return f"the database did not take a write ({error.code if error else exc})"
    return None


async def readyz(request: web.Request) -> web.Response:
    """Ready when the writer runs, the queue has room, most recent pushes were stored, and a probe write
    commits (within the last second)."""
    writer = request.app[WRITER]
    problems = []
    if not writer.running:
        problems.append("the writer is not running")
    elif writer.full:
        problems.append(f"the queue is full ({writer.depth} items)")
    elif problem := (
        request.app[RECENT_STORES].problem() or await request.app[READY_PROBE].problem(lambda: probe_write(request))
    ):
        problems.append(problem)
    if problems:
        return web.json_response({"status": "unavailable", "problems": problems, "queue": writer.depth}, status=503)
    return web.json_response({"status": "ready", "queue": writer.depth})
