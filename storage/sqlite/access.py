"""Whether this user may use the SQLite file, said before SQLite says "unable to open database file".

SQLite reports a file it may not open, or one it may open but not read, as a damaged or missing database;
the operator then looks for the wrong problem. The file (and, to write, its folder, where SQLite keeps the
-wal and -shm files) is checked first, and a refusal names the user, the owner and the mode.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from storage.backend import DatabaseUnavailable


def require_access(path: str, *, write: bool) -> None:
    """DatabaseUnavailable, in one sentence, when this process may not read (or ``write``) ``path``."""
    file = Path(path)
    needed = os.R_OK | os.W_OK if write else os.R_OK
    if file.exists() and not os.access(file, needed):
        raise DatabaseUnavailable(
            f"cannot open the database {path}: {_user()} may not {'read and write' if write else 'read'} it"
            f" ({_described(file)}); run as its owner, or give this user access"
        )
    folder = file.parent
    if write and folder.is_dir() and not os.access(folder, os.W_OK | os.X_OK):
        raise DatabaseUnavailable(
            f"cannot open the database {path}: {_user()} may not create files in its folder {folder}"
            f" ({_described(folder)}), where SQLite keeps the -wal and -shm files beside it"
        )


def _user() -> str:
    return f"this user (uid {os.geteuid()})"


def _described(path: Path) -> str:
    info = path.stat()
    return f"owner uid {info.st_uid}, mode {stat.S_IMODE(info.st_mode):04o}"
