"""The server's event loop: uvloop, part of the default install where it builds (not on Windows), else asyncio's.

uvloop's sockets and scheduling take less CPU per request than asyncio's selector loop, and the event loop
is where the receiver spends most of its time (see bench/RESULTS.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on ``new_event_loop()``."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(main)
