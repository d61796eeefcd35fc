"""Configuration: built-in defaults, overridden by a TOML file, then by flags and environment."""

from __future__ import annotations

import dataclasses
import os
import re
import stat
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from plumbing.addresses import LOOPBACK_HOSTS, is_loopback_host, parse_networks
from plumbing.destinations import Destination, DestinationError, parse_destinations

PUSH_TOKEN_ENV = "AIRUDDER_RECEIVER_PUSH_TOKEN"
API_TOKEN_ENV = "AIRUDDER_RECEIVER_API_TOKEN"
# A postgresql:// URL that overrides db_path, so that its password stays out of files and the process list.
DATABASE_URL_ENV = "AIRUDDER_RECEIVER_DATABASE_URL"

ACK_MODES = ("committed", "queued")
SYNCHRONOUS_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")
LOG_FORMATS = ("auto", "text", "json")
LOG_LEVELS = ("debug", "info", "warning", "error")

# A stopping receiver exits within this many seconds of SIGTERM; every other stop time derives from it.
EXIT_SECONDS = 10.0
# The queue's drain ends this long before the exit: time to cancel a writer waiting on another process's
# lock (one short attempt), to close the file, and for a loaded machine.
CLOSE_SECONDS = 2.0
# From the signal to the end of the drain.
DRAIN_SECONDS = EXIT_SECONDS - CLOSE_SECONDS
# Deliveries to forwarding destinations still in flight at the stop get this long (out of the drain's time);
# the rest are cancelled and stay pending in the file.
FORWARD_STOP_SECONDS = 1.0
# aiohttp's wait for requests in flight comes out of the drain's time; the drain keeps at least a second.
MAX_SHUTDOWN_TIMEOUT = DRAIN_SECONDS - 1


# Secrets: their values never appear in an error, and only characters a URL carries as they are.
SECRET_KEYS = ("push_token", "api_token")
SECRET_ENVS = (PUSH_TOKEN_ENV, API_TOKEN_ENV)
_TOKEN = re.compile(r"[A-Za-z0-9._~-]*")
# A token is a password that anyone who reaches the port may guess at: 16 characters of hex are 64 bits.
MIN_TOKEN_LENGTH = 16
# Files named in settings; a relative one is taken from the folder of the config file that names it.
PATH_KEYS = ("db_path", "tls_cert", "tls_key")


class ConfigError(Exception):
    """A configuration problem, worded as one sentence for the operator."""


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    db_path: str = "./data/pushes.sqlite3"
    push_path: str = "/push"
    push_token: str = ""
    api_token: str = ""
    # Serve on an address other machines reach without push_token and api_token, knowingly.
    allow_unauthenticated: bool = False
    api_readers: int = 4
    max_body_bytes: int = 1024 * 1024
    # Bytes of bodies one /api answer holds at most (about); the page stops there and says so.
    max_answer_bytes: int = 8 * 1024 * 1024
    ack: str = "committed"
    ack_timeout: float = 5.0
    queue_max: int = 10_000
    queue_max_bytes: int = 256 * 1024 * 1024
    max_batch: int = 256
    synchronous: str = "FULL"
    busy_timeout_ms: int = 3_000
    retry_after: int = 5
    shutdown_timeout: float = 6.0
    log_format: str = "auto"
    log_level: str = "info"
    inspector: bool = True
    log_pushes: bool = False
    log_requests_per_second: int = 50
    allow_ips: tuple[str, ...] = ()
    trusted_proxies: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    idle_timeout: float = 15.0
    body_timeout: float = 10.0
    tls_cert: str = ""
    tls_key: str = ""
    backup_keep: int = 7
    # The [[forward]] tables: where stored pushes are handed on (plumbing/destinations.py).
    forward: tuple[Destination, ...] = ()

    def validate(self) -> Settings:
        _require(1 <= self.port <= 65535, f"port must be between 1 and 65535, not {self.port}")
        _require(bool(self.db_path), "db_path must not be empty")
        _require(
            self.push_path.startswith("/") and not self.push_path.endswith("/") and len(self.push_path) > 1,
            f"push_path must start with '/' and not end with one, not {self.push_path!r}",
        )
        for name in SECRET_KEYS:
            token = getattr(self, name)
            _require(
                _TOKEN.fullmatch(token) is not None,
                f"{name} may contain only letters, digits and the characters . _ ~ -",
            )
            _require(
                not token or len(token) >= MIN_TOKEN_LENGTH,
                f"{name} must be at least {MIN_TOKEN_LENGTH} characters long (openssl rand -hex 32 makes a good one)",
            )
        _require(1 <= self.api_readers <= 32, "api_readers must be between 1 and 32")
        _require(self.max_body_bytes >= 1024, "max_body_bytes must be at least 1024")
        _require(self.max_answer_bytes >= 64 * 1024, "max_answer_bytes must be at least 65536")
        _require(self.ack in ACK_MODES, f"ack must be one of {', '.join(ACK_MODES)}, not {self.ack!r}")
        _require(0 < self.ack_timeout <= 9, "ack_timeout must be more than 0 and at most 9 seconds")
        _require(self.queue_max >= 1, "queue_max must be at least 1")
        _require(
            self.queue_max_bytes >= self.max_body_bytes,
            "queue_max_bytes must be at least max_body_bytes, so that the largest push fits in an empty queue",
        )
        _require(1 <= self.max_batch <= 1000, "max_batch must be between 1 and 1000")
        _require(
            self.synchronous in SYNCHRONOUS_MODES,
            f"synchronous must be one of {', '.join(SYNCHRONOUS_MODES)}, not {self.synchronous!r}",
        )
        _require(self.busy_timeout_ms >= 0, "busy_timeout_ms must not be negative")
        _require(self.retry_after >= 1, "retry_after must be at least 1 second")
        _require(
            0 < self.shutdown_timeout <= MAX_SHUTDOWN_TIMEOUT,
            f"shutdown_timeout must be more than 0 and at most {MAX_SHUTDOWN_TIMEOUT:g} seconds",
        )
        formats = ", ".join(LOG_FORMATS)
        _require(self.log_format in LOG_FORMATS, f"log_format must be one of {formats}, not {self.log_format!r}")
        _require(self.log_level in LOG_LEVELS, f"log_level must be one of {', '.join(LOG_LEVELS)}")
        _require(self.log_requests_per_second >= 0, "log_requests_per_second must not be negative")
        for name in ("allow_ips", "trusted_proxies"):
            try:
                parse_networks(getattr(self, name))
            except ValueError as exc:
                raise ConfigError(f"{name} has {exc}") from None
        _require(
            not self.trusted_proxies or bool(self.api_token),
            "trusted_proxies needs api_token, because a request that a proxy on this host passes on looks local",
        )
        _require(0 < self.idle_timeout <= 3600, "idle_timeout must be more than 0 and at most 3600 seconds")
        _require(0 < self.body_timeout <= 300, "body_timeout must be more than 0 and at most 300 seconds")
        _require(bool(self.tls_cert) == bool(self.tls_key), "tls_cert and tls_key must be set together, or neither")
        _require(self.backup_keep >= 1, "backup_keep must be at least 1")
        return self


def require_guarded(settings: Settings) -> None:
    """``serve`` only: a listener that other machines reach needs both tokens, unless the operator says
    otherwise with ``allow_unauthenticated``.

    Not part of ``validate``: the commands read the service's config.toml without its environment, where
    the tokens are.
    """
    if settings.allow_unauthenticated or is_loopback_host(settings.host):
        return
    missing = [(name, env) for name, env in zip(SECRET_KEYS, SECRET_ENVS, strict=True) if not getattr(settings, name)]
    if missing:
        names = " and no ".join(name for name, _ in missing)
        envs = " and ".join(env for _, env in missing)
        raise ConfigError(
            f"host {settings.host!r} is reachable from other machines, but no {names} is set: set {envs}"
            " (or the setting), or allow_unauthenticated = true to serve without"
        )


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


_FIELDS = {f.name: f for f in fields(Settings)}
_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false", tuple: "a list of strings"}


def _coerce(name: str, value: Any) -> Any:
    """Check a TOML value against the type of its default; ints are fine where floats are expected.

    Lists become tuples so that the settings stay immutable.
    """
    expected = type(_FIELDS[name].default)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is tuple and isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    if type(value) is not expected:
        shown = "" if name in SECRET_KEYS else f", not {value!r}"
        raise ConfigError(f"{name} must be {_TYPE_NAMES[expected]}{shown}")
    return value


def _destinations(raw: Any) -> tuple[Destination, ...]:
    try:
        return parse_destinations(raw)
    except DestinationError as exc:
        raise ConfigError(str(exc)) from None


def _absolute(base: Path, value: str) -> str:
    """A file setting as an absolute path from ``base``; empty (not set) and URLs stay as they are."""
    return value if not value or "://" in value else os.path.abspath(base / value)


# What --dev means, in settings: a developer watching pushes arrive on this machine.
DEV_SETTINGS = {"log_format": "text", "log_pushes": True, "inspector": True}


def load(path: str | None, overrides: dict[str, Any] | None = None, *, dev: bool = False) -> Settings:
    """Defaults, then the file (``path``, or ./config.toml when present), then overrides, then env.

    ``dev`` (the --dev flag) is expanded here, into DEV_SETTINGS and a loopback-only host; nothing after
    this reads it.
    """
    values: dict[str, Any] = {}
    file = Path(path) if path else Path("config.toml")
    # Where relative paths in the file (and the defaults) start: the file's folder, not the current one.
    base = Path.cwd()
    if path or file.exists():
        try:
            text = file.read_text(encoding="utf-8")
            mode = file.stat().st_mode
        except FileNotFoundError:
            raise ConfigError(f"config file {file} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {file} cannot be read: {exc}") from None
        if mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise ConfigError(
                f"config file {file} may be changed by other users (mode {stat.S_IMODE(mode):04o}), and it says"
                f" where to store the calls and who may read them: chmod go-w {file}"
            )
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {file} is not valid TOML: {exc}") from None
        base = file.absolute().parent
        for name, value in raw.items():
            if name == "forward":
                values[name] = _destinations(value)
                continue
            if name not in _FIELDS:
                raise ConfigError(f"config file {file} has an unknown key {name!r}")
            values[name] = _coerce(name, value)
    for name in PATH_KEYS:
        values[name] = _absolute(base, values.get(name, getattr(Settings, name)))
    for name, value in (overrides or {}).items():
        if value is not None:
            values[name] = _coerce(name, value)
            if name in PATH_KEYS:  # a flag's path is the shell's: from the current folder
                values[name] = _absolute(Path.cwd(), values[name])
    for name, env in zip(SECRET_KEYS, SECRET_ENVS, strict=True):
        # An empty variable (a blank line in an env file, `VAR= cmd`) never clears a token set in the file.
        if token := os.environ.get(env):
            values[name] = token
    if database_url := os.environ.get(DATABASE_URL_ENV):
        values["db_path"] = database_url
    if dev:
        host = values.get("host", Settings.host)
        if host not in LOOPBACK_HOSTS:
            raise ConfigError(f"dev mode listens on loopback only (127.0.0.1, ::1, localhost), not on host {host!r}")
        values.update(DEV_SETTINGS)
    return dataclasses.replace(Settings(), **values).validate()
