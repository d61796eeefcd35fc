"""Forwarding destinations: the ``[[forward]]`` tables of config.toml, checked into frozen values.

Each table names one place every matching stored push is handed on to: an HTTP endpoint (``url``) or a
program (``command``) that gets the push on stdin. Problems are one sentence naming the destination.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

SECRET_PREFIX = "whsec_"
# The keys of a destination's optional filter: a push matches when each given key matches one of its values.
FILTER_KEYS = ("workflow_id", "node_id", "intention")
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")
_KEYS = {
    "name",
    "url",
    "command",
    "secret",
    "secret_env",
    "timeout",
    "max_attempts",
    "concurrency",
    "backoff_base",
    "backoff_cap",
    "filter",
    "env",
    "max_4xx_attempts",
    "order",
    "breaker_ratio",
    "breaker_min_requests",
    "breaker_window",
    "probe_cap",
}
ORDERS = ("parallel", "per_call")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class DestinationError(ValueError):
    """One sentence for the operator; plumbing.settings turns it into a ConfigError."""


@dataclass(frozen=True)
class Destination:
    name: str
    url: str = ""
    command: tuple[str, ...] = ()
    # The signing key's bytes (decoded from whsec_<base64>); never logged, never shown.
    secret: bytes = field(default=b"", repr=False)
    timeout: float = 10.0
    # 21 attempts on the default schedule span at least a day and a quarter (docs/forwarding.md).
    max_attempts: int = 21
    concurrency: int = 4
    backoff_base: float = 5.0
    backoff_cap: float = 6 * 3600.0
    filter: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # Environment variables a command gets besides PATH and LANG: the receiver's own (its API token, the
    # signing secrets) stay out unless named here.
    env: tuple[str, ...] = ()
    # A 4xx that says this body is refused (not 408/409/425/429) makes the delivery dead from this attempt on.
    max_4xx_attempts: int = 3
    # "parallel": any order; "per_call": a call's later version waits until its earlier one is settled.
    order: str = "parallel"
    # The destination is down when at least breaker_ratio of at least breaker_min_requests attempts in the
    # last breaker_window seconds failed for want of it (forwarding/breaker.py).
    breaker_ratio: float = 0.7
    breaker_min_requests: int = 5
    breaker_window: float = 60.0
    # Probes of a destination that is down double from backoff_base up to this: it bounds how long a
    # destination that is back waits for its deliveries.
    probe_cap: float = 60.0

    def matches(self, values: dict[str, str | None]) -> bool:
        return all(values.get(key) in allowed for key, allowed in self.filter)


def parse_destinations(raw: Any) -> tuple[Destination, ...]:
    if not isinstance(raw, list) or not all(isinstance(table, dict) for table in raw):
        raise DestinationError("forward must be written as [[forward]] tables")
    destinations = tuple(_parse(index, table) for index, table in enumerate(raw, 1))
    names = [d.name for d in destinations]
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise DestinationError(f"forward destination names must differ; {duplicated[0]!r} is used twice")
    return destinations


def _parse(index: int, table: dict[str, Any]) -> Destination:
    name = table.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise DestinationError(
            f"forward table {index} needs a name of 1 to 40 lower-case letters, digits, _ and -, such as 'crm'"
        )
    where = f"forward destination {name!r}"
    unknown = sorted(set(table) - _KEYS)
    if unknown:
        raise DestinationError(f"{where} has an unknown key {unknown[0]!r}")
    url = _typed(table, "url", str, "", where)
    command = _typed(table, "command", list, [], where)
    if bool(url) == bool(command):
        raise DestinationError(f"{where} needs exactly one of url and command")
    if url:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise DestinationError(f"{where} url must be an http:// or https:// address, not {url!r}")
    if command and not all(isinstance(arg, str) and arg for arg in command):
        raise DestinationError(f"{where} command must be a list of non-empty strings, the program first")
    secret = _secret(table, where)
    if url and not secret:
        raise DestinationError(f"{where} needs a secret (or secret_env) to sign its deliveries")
    destination = Destination(
        name=name,
        url=url,
        command=tuple(command),
        secret=secret,
        timeout=_number(table, "timeout", Destination.timeout, where),
        max_attempts=_typed(table, "max_attempts", int, Destination.max_attempts, where),
        concurrency=_typed(table, "concurrency", int, Destination.concurrency, where),
        backoff_base=_number(table, "backoff_base", Destination.backoff_base, where),
        backoff_cap=_number(table, "backoff_cap", Destination.backoff_cap, where),
        filter=_filter(table.get("filter", {}), where),
        env=_env(table, bool(command), where),
        max_4xx_attempts=_typed(table, "max_4xx_attempts", int, Destination.max_4xx_attempts, where),
        order=_typed(table, "order", str, Destination.order, where),
        breaker_ratio=_number(table, "breaker_ratio", Destination.breaker_ratio, where, "a number"),
        breaker_min_requests=_typed(table, "breaker_min_requests", int, Destination.breaker_min_requests, where),
        breaker_window=_number(table, "breaker_window", Destination.breaker_window, where),
        probe_cap=_number(table, "probe_cap", Destination.probe_cap, where),
    )
    _check_ranges(destination, where)
    return destination


def _check_ranges(d: Destination, where: str) -> None:
    checks = (
        (0 < d.timeout <= 300, "timeout must be more than 0 and at most 300 seconds"),
        (1 <= d.max_attempts <= 100, "max_attempts must be between 1 and 100"),
        (1 <= d.concurrency <= 64, "concurrency must be between 1 and 64"),
        (0 < d.backoff_base <= d.backoff_cap, "backoff_base must be more than 0 and at most backoff_cap"),
        (d.backoff_cap <= 7 * 86400, "backoff_cap must be at most a week (604800 seconds)"),
        (1 <= d.max_4xx_attempts <= 100, "max_4xx_attempts must be between 1 and 100"),
        (d.order in ORDERS, f"order must be one of {', '.join(ORDERS)}"),
        (0 < d.breaker_ratio <= 1, "breaker_ratio must be more than 0 and at most 1"),
        (1 <= d.breaker_min_requests <= 10000, "breaker_min_requests must be between 1 and 10000"),
        (1 <= d.breaker_window <= 3600, "breaker_window must be between 1 and 3600 seconds"),
        (d.backoff_base <= d.probe_cap <= 3600, "probe_cap must be at least backoff_base and at most 3600 seconds"),
    )
    for ok, message in checks:
        if not ok:
            raise DestinationError(f"{where} {message}")


def _typed(table: dict[str, Any], key: str, kind: type, default: Any, where: str) -> Any:
    value = table.get(key, default)
    if type(value) is not kind:
        names = {str: "a string", int: "an integer", list: "a list of strings"}
        raise DestinationError(f"{where} {key} must be {names[kind]}")
    return value


def _number(table: dict[str, Any], key: str, default: float, where: str, kind: str = "a number of seconds") -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DestinationError(f"{where} {key} must be {kind}")
    return float(value)


def _env(table: dict[str, Any], command: bool, where: str) -> tuple[str, ...]:
    names = _typed(table, "env", list, [], where)
    if names and not command:
        raise DestinationError(f"{where} env applies to a command destination only")
    for name in names:
        if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
            raise DestinationError(f"{where} env must list environment variable names such as 'HOME', not {name!r}")
    return tuple(names)


def _secret(table: dict[str, Any], where: str) -> bytes:
    """``whsec_`` and base64, as the Standard Webhooks spec writes secrets; from the file or an environment variable."""
    if "secret" in table and "secret_env" in table:
        raise DestinationError(f"{where} takes secret or secret_env, not both")
    if "secret_env" in table:
        env = _typed(table, "secret_env", str, "", where)
        text = os.environ.get(env)
        if not text:
            raise DestinationError(f"{where} secret_env names {env!r}, which is not set in the environment")
        source = f"the environment variable {env}"
    else:
        text = _typed(table, "secret", str, "", where)
        if not text:
            return b""
        source = "secret"
    encoded = text.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if not 24 <= len(key) <= 64:
        raise DestinationError(
            f"{where} {source} must be {SECRET_PREFIX} followed by the base64 of 24 to 64 random bytes"
        )
    return key


def _filter(raw: Any, where: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    if not isinstance(raw, dict):
        raise DestinationError(f'{where} filter must be a table such as {{ intention = ["A", "B"] }}')
    rules = []
    for key, value in raw.items():
        if key not in FILTER_KEYS:
            raise DestinationError(f"{where} filter may name {', '.join(FILTER_KEYS)}, not {key!r}")
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
            raise DestinationError(f"{where} filter {key} must be a string or a non-empty list of strings")
        rules.append((key, tuple(values)))
    return tuple(rules)
