"""Log set-up: text or JSON lines, with any push token masked in every line."""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Mapping
from typing import Any

import orjson


class _Masking(logging.Formatter):
    """Masks the path segment after the push path, and the token itself wherever it appears."""

    def __init__(self, push_path: str, token: str) -> None:
        super().__init__()
        self._segment = re.compile(re.escape(push_path) + r"/[^\s\"'?&#]+")
        self._replacement = push_path + "/***"
        self._token = token

    def mask(self, text: str) -> str:
        text = self._segment.sub(self._replacement, text)
        if self._token:
            text = text.replace(self._token, "***")
        return text

    def _fields(self, record: logging.LogRecord) -> dict[str, Any]:
        fields = getattr(record, "fields", None)
        return fields if isinstance(fields, dict) else {}


class TextFormatter(_Masking):
    def format(self, record: logging.LogRecord) -> str:
        line = f"{self.formatTime(record)} {record.levelname} {record.getMessage()}"
        extra = " ".join(f"{key}={value}" for key, value in self._fields(record).items())
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


def resolve_format(log_format: str, dev: bool, environ: Mapping[str, str] = os.environ) -> str:
    """``auto`` means JSON under systemd and text otherwise; development always reads text."""
    if dev:
        return "text"
    if log_format != "auto":
        return log_format
    return "json" if any(environ.get(name) for name in SYSTEMD_MARKERS) else "text"


def configure(log_format: str, level: str, push_path: str, token: str) -> None:
    formatter_class = JsonFormatter if log_format == "json" else TextFormatter
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter_class(push_path, token))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
