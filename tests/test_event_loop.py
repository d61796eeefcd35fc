"""The server runs on uvloop, part of the default install."""

from __future__ import annotations

import asyncio

from plumbing import event_loop


def test_the_server_loop_is_uvloop_when_installed() -> None:
    loop = event_loop.new_event_loop()
    try:
        assert type(loop).__module__.startswith("uvloop")
    finally:
        loop.close()


def test_run_returns_what_the_coroutine_returns() -> None:
    async def answer() -> int:
        await asyncio.sleep(0)
        return 42

    assert event_loop.run(answer()) == 42
