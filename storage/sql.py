"""What a read query needs from either database: placeholders in its style, and a read connection.

Shared SQL is written once with ``Params``: each value added returns the placeholder that stands for it
(``?`` on SQLite, ``$1, $2, ...`` on PostgreSQL), so a statement is built in its database's own style and
never rewritten afterwards.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

# A row as both drivers return it: by position (``row[0]``), by name (``row["seq"]``) and ``dict(row)``.
Row = Any


class Params:
    """The values of one statement, in order, and their placeholders."""

    def __init__(self, placeholder: Callable[[int], str]) -> None:
        self._placeholder = placeholder
        self.values: list[Any] = []

    def __call__(self, value: Any) -> str:
        """Add ``value``; the placeholder to write where it goes."""
        self.values.append(value)
        return self._placeholder(len(self.values))

    def many(self, values: Sequence[Any]) -> str:
        """Each of ``values`` added, their placeholders separated by commas (for ``IN (...)``)."""
        return ",".join(self(value) for value in values)


class Reader(Protocol):
    """A read-only connection of either database."""

    def params(self) -> Params: ...

    async def fetch(self, sql: str, params: Params | None = None) -> list[Row]: ...

    def iterate(self, sql: str, params: Params | None = None) -> AsyncGenerator[Row, None]:
        """The rows one at a time, fetched in small chunks: memory stays flat however many match."""
        ...

    def snapshot(self) -> AbstractAsyncContextManager[None]:
        """Every statement inside sees the same commit."""
        ...

    async def close(self) -> None: ...


def values_of(params: Params | None) -> list[Any]:
    return [] if params is None else params.values


def where(params: Params, conditions: Iterable[tuple[str, object]]) -> str:
    """The clauses whose value is given, joined with AND (TRUE for none); each clause's ``{}`` is its value's
    placeholder."""
    return " AND ".join(clause.format(params(value)) for clause, value in conditions if value is not None) or "TRUE"
