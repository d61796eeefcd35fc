"""What the sub-commands share: finding the database file and saying clearly when it is not there."""

from __future__ import annotations

from pathlib import Path

from settings import Settings


class NoDatabase(Exception):
    """The configured file does not exist; the message says where it was looked for."""


def existing_database(settings: Settings) -> str:
    """The database path, which must exist: a command that only reads or tidies must not create one."""
    if not Path(settings.db_path).is_file():
        raise NoDatabase(f"there is no database at {settings.db_path} (set --db or db_path)")
    return settings.db_path
