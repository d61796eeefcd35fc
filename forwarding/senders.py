"""One delivery attempt: an HTTP POST, or a program run with the push on its stdin.

Both send the body exactly as it was received, with the Standard Webhooks headers (as environment
variables for a program), and report what happened; neither raises for a failed delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from dataclasses import dataclass

import aiohttp

from forwarding.schedule import parse_retry_after
from forwarding.signing import webhook_headers
from plumbing.destinations import Destination
from storage.outbox import Job

# Statuses that say the destination as a whole is down or overloaded, not that this one push was refused.
UNAVAILABLE_STATUSES = frozenset({408, 429, 502, 503, 504})
# Errors are kept in the file and shown by the API: long ones are cut.
MAX_ERROR_CHARS = 300


@dataclass(frozen=True, slots=True)
class Result:
    status: int | None  # HTTP status or exit code; None when there was no answer at all
    error: str | None  # None means delivered
    retry_after: float | None = None
    # The destination looks down or overloaded: its other deliveries wait too (forwarding.dispatcher).
    unavailable: bool = False

    @property
    def delivered(self) -> bool:
        return self.error is None


def short(text: str) -> str:
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "..."


def _headers(destination: Destination, job: Job, body: bytes) -> dict[str, str]:
    headers = webhook_headers(destination.secret, job.idempotency_key, int(time.time()), body)
    headers["idempotency-key"] = job.idempotency_key
    # 0 for the body a call was first stored with; n for its n-th differing body.
    headers["x-airudder-version"] = str(job.version)
    return headers


async def post(session: aiohttp.ClientSession, destination: Destination, job: Job, body: bytes) -> Result:
    headers = {"content-type": "application/json", **_headers(destination, job, body)}
    try:
        async with session.post(
            destination.url,
            data=body,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=destination.timeout),
            allow_redirects=False,
        ) as response:
            status = response.status
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
    except TimeoutError:
        return Result(None, f"no answer within {destination.timeout:g}s", unavailable=True)
    except aiohttp.ClientError as exc:
        return Result(None, short(f"{type(exc).__name__}: {exc}"), unavailable=True)
    if 200 <= status < 300:
        return Result(status, None)
    unavailable = status in UNAVAILABLE_STATUSES or retry_after is not None
    return Result(status, f"HTTP {status}", retry_after, unavailable)


async def run_command(destination: Destination, job: Job, body: bytes) -> Result:
    """Exit code 0 means delivered. A program still running after ``timeout`` is killed, with its children."""
    env = {
        **os.environ,
        **{name.upper().replace("-", "_"): value for name, value in _headers(destination, job, body).items()},
    }
    try:
        proc = await asyncio.create_subprocess_exec(
            *destination.command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            start_new_session=True,  # its own process group, so that a kill reaches what it started
        )
    except OSError as exc:
        return Result(None, short(f"cannot start {destination.command[0]}: {exc}"), unavailable=True)
    assert proc.stdin is not None
    assert proc.stderr is not None
    errors = asyncio.create_task(proc.stderr.read())
    try:
        async with asyncio.timeout(destination.timeout):
            try:
                proc.stdin.write(body)
                await proc.stdin.drain()
            except (OSError, RuntimeError):
                pass  # it exited without reading the whole push; its exit code says the rest
            proc.stdin.close()
            stderr = await errors
            await proc.wait()
    except BaseException as exc:  # the timeout, or the dispatcher stopping
        errors.cancel()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        if isinstance(exc, TimeoutError):
            return Result(None, f"still running after {destination.timeout:g}s; killed")
        raise
    if proc.returncode == 0:
        return Result(0, None)
    lines = stderr.decode("utf-8", "replace").strip().splitlines()
    return Result(proc.returncode, short(f"exit {proc.returncode}" + (f": {lines[-1]}" if lines else "")))
