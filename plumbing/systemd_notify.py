"""systemd's notification protocol: one datagram per state change to the socket in ``$NOTIFY_SOCKET``.

Written by hand because the protocol is a single ``sendto`` of ``KEY=VALUE`` lines on an AF_UNIX
datagram socket, which is less code than a dependency.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Mapping

log = logging.getLogger("airudder_receiver.systemd")


class Notifier:
    """Sends READY=1, STOPPING=1, STATUS= and WATCHDOG=1; does nothing when not started by systemd."""

    def __init__(self, address: str | None, watchdog_seconds: float | None) -> None:
        self._address = address
        self.watchdog_seconds = watchdog_seconds
        self._warned = False

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> Notifier:
        address = environ.get("NOTIFY_SOCKET") or None
        if address and address.startswith("@"):
            address = "\0" + address[1:]  # Linux abstract namespace
        return cls(address, _watchdog_seconds(environ))

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def send(self, *lines: str) -> None:
        if self._address is None:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto("\n".join(lines).encode(), self._address)
        except OSError as exc:
            # systemd may be gone during shutdown; the server must keep working without it.
            if not self._warned:
                log.warning("cannot notify systemd at %r: %s", self._address, exc)
                self._warned = True

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}")

    def stopping(self, status: str) -> None:
        self.send("STOPPING=1", f"STATUS={status}")

    async def watchdog(self, healthy: Callable[[], bool]) -> None:
        """Ping at half the watchdog interval while ``healthy()``; a stuck server gets restarted."""
        if self.watchdog_seconds is None:
            return
        interval = self.watchdog_seconds / 2
        while True:
            if healthy():
                self.send("WATCHDOG=1")
            await asyncio.sleep(interval)


def _watchdog_seconds(environ: Mapping[str, str]) -> float | None:
    """The interval systemd expects pings in, when it is meant for this process."""
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    pid = environ.get("WATCHDOG_PID")
    if usec <= 0 or (pid and pid != str(os.getpid())):
        return None
    return usec / 1_000_000
