"""What the sub-commands share: finding the database file and saying clearly when something fails."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from settings import Settings
from storage.migrations import SchemaTooNew
from storage.writer import WriteFailed, WriterUnavailable


class NoDatabase(Exception):
    """The configured file does not exist; the message says where it was looked for."""


# What a command that writes may run into; each is reported as one sentence and exit code 2.
DATABASE_ERRORS = (OSError, sqlite3.Error, SchemaTooNew, WriteFailed, WriterUnavailable)


def existing_database(settings: Settings) -> str:
    """The database path, which must exist: a command that only reads or tidies must not create one."""
    if not Path(settings.db_path).is_file():
        raise NoDatabase(f"there is no database at {settings.db_path} (set --db or db_path)")
    return settings.db_path
