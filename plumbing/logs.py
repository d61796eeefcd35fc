"""Log set-up: text or JSON lines, with any push token masked in every line."""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

# Control characters (C0, DEL, C1) and the Unicode line separators: each could start what reads as a
# new log line, or move a terminal's cursor. Clients choose paths and push fields, so none reach the log raw.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_one(match: re.Match[str]) -> str:
    char = match.group()
    return _NAMED.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")


def escape(text: str) -> str:
    """``text`` on one line: control characters written as escapes such as ``\\n`` and ``\\x1b``."""
    # Every character _UNSAFE matches is non-printable, so a printable text (most of them) skips the regex.
    return text if text.isprintable() else _UNSAFE.sub(_escape_one, text)


# The characters a token may hold (plumbing.settings): the token is masked where it stands whole between others.
_TOKEN_CHARACTERS = "A-Za-z0-9._~-"


class _Masking(logging.Formatter):
    """Masks the path segment after the push path, and the token itself wherever it stands as a whole word
    (never the same letters inside other text, which a short token would turn to stars everywhere)."""

    def __init__(self, push_path: str, token: str) -> None:
        super().__init__()
        self._segment = re.compile(re.escape(push_path) + r"/[^\s\"'?&#]+")
        self._replacement = push_path + "/***"
        self._segment_start = push_path + "/"
        self._token = token
        self._whole_token = re.compile(f"(?<![{_TOKEN_CHARACTERS}]){re.escape(token)}(?![{_TOKEN_CHARACTERS}])")
        self._second = -1
        self._second_text = ""

    def mask(self, text: str) -> str:
        # The regex needs the push path and a slash; most lines have neither, and a substring test is cheaper.
        if self._segment_start in text:
            text = self._segment.sub(self._replacement, text)
        if self._token and self._token in text:
            text = self._whole_token.sub("***", text)
        return text

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """The default format, with the date and time worked out once per second rather than per line."""
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        if second != self._second:
            self._second_text = time.strftime(self.default_time_format, self.converter(record.created))
            self._second = second
        return f"{self._second_text},{int(record.msecs):03d}"

    def _fields(self, record: logging.LogRecord) -> dict[str, Any]:
        fields = getattr(record, "fields", None)
        return fields if isinstance(fields, dict) else {}


class TextFormatter(_Masking):
    def format(self, record: logging.LogRecord) -> str:
        line = f"{self.formatTime(record)} {record.levelname} {escape(record.getMessage())}"
        extra = " ".join(f"{key}={escape(str(value))}" for key, value in self._fields(record).items())
        if extra:
            line = f"{line} {extra}"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return self.mask(line)


class JsonFormatter(_Masking):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **self._fields(record),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return self.mask(orjson.dumps(entry, default=str).decode())


# systemd sets these for the services it starts; journald then keeps stdout, where JSON lines are easier to query.
SYSTEMD_MARKERS = ("INVOCATION_ID", "JOURNAL_STREAM", "NOTIFY_SOCKET")


def resolve_format(log_format: str, environ: Mapping[str, str] = os.environ) -> str:
    """``auto`` means JSON under systemd and text otherwise."""
    if log_format != "auto":
        return log_format
    return "json" if any(environ.get(name) for name in SYSTEMD_MARKERS) else "text"


class ClientFaults(logging.Filter):
    """aiohttp logs a request that is not valid HTTP, or a body that does not decode, as an error with a
    traceback quoting the client's bytes. Anyone can send those, so each becomes one warning line without
    the bytes: a stranger cannot fill the log with tracebacks or write their own text into it."""

    def filter(self, record: logging.LogRecord) -> bool:
        fault = record.exc_info[1] if record.exc_info else None
        if isinstance(fault, HttpProcessingError):
            # aiohttp's wording comes first; the quoted bytes follow a colon or start on the next line.
            summary = fault.message.strip().partition("\n")[0].partition(":")[0][:200]
            record.msg, record.args = "%s: %s", (record.getMessage(), summary)
        elif isinstance(fault, RequestPayloadError):
            # Raised again when aiohttp drains the rest of a body the push handler already answered 400.
            record.msg, record.args = "closed a connection whose body does not decode", ()
        else:
            return True
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info = record.exc_text = None
        return True


def configure(log_format: str, level: str, push_path: str, token: str) -> None:
    # No formatter here reads the caller's file and line, thread or process: the logging module's own
    # switches spare looking them up for every record.
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    formatter_class = JsonFormatter if log_format == "json" else TextFormatter
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter_class(push_path, token))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    server_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(existing, ClientFaults) for existing in server_log.filters):
        server_log.addFilter(ClientFaults())
