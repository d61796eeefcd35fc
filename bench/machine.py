"""What the figures were measured on: hardware, software versions, and how busy the machine was."""

from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGES = ("aiohttp", "orjson", "aiosqlite", "uvloop")


def _first(path: str, prefix: str) -> str:
    for line in Path(path).read_text().splitlines():
        if line.startswith(prefix):
            return line.split(":", 1)[1].strip()
    return "unknown"


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _os_name() -> str:
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return "unknown"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _wrk_version() -> str:
    # wrk prints its version on -v and exits 1.
    done = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=10, check=False)
    return (done.stdout or done.stderr).split("Copyright")[0].strip()


def describe() -> list[str]:
    memory_kb = int(_first("/proc/meminfo", "MemTotal").split()[0])
    packages = ", ".join(f"{name} {_version(name)}" for name in PACKAGES)
    return [
        f"CPU: {_first('/proc/cpuinfo', 'model name')}, {os.cpu_count()} cores; memory {memory_kb / 1024**2:.0f} GiB",
        f"System: {_os_name()}, Linux {platform.release()}",
        f"Python {platform.python_version()}; {packages}; SQLite {sqlite3.sqlite_version}; {_wrk_version()}",
    ]
