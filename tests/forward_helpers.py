"""What the forwarding tests share: config files with [[forward]] tables, waiting on the file, secrets."""

from __future__ import annotations

import asyncio
import base64
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from tests.support import rows


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def forward_config(path: Path, *destinations: dict[str, Any], extra: str = "") -> Path:
    """A config file with one [[forward]] table per mapping (values written as JSON, which TOML reads alike)."""
    lines = [extra]
    for destination in destinations:
        lines.append("[[forward]]")
        for key, value in destination.items():
            if isinstance(value, dict):
                inner = ", ".join(f"{k} = {orjson.dumps(v).decode()}" for k, v in value.items())
                lines.append(f"{key} = {{ {inner} }}")
            else:
                lines.append(f"{key} = {orjson.dumps(value).decode()}")
    path.write_text("\n".join(lines) + "\n")
    return path


def job_states(db_path: Path | str, destination: str | None = None) -> dict[str, int]:
    sql = "SELECT state, count(*) FROM forward_jobs"
    params: tuple[Any, ...] = ()
    if destination is not None:
        sql += " WHERE destination = ?"
        params = (destination,)
    return {row[0]: row[1] for row in rows(db_path, sql + " GROUP BY state", params)}


async def until(check: Callable[[], bool], seconds: float, what: str) -> None:
    """Poll ``check`` (it may read the file) until true; a wait past ``seconds`` fails the test."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {seconds:g}s: {what}")
        await asyncio.sleep(0.1)


def all_delivered(db_path: Path | str, expected: int) -> Callable[[], bool]:
    def check() -> bool:
        return job_states(db_path) == {"delivered": expected}

    return check
