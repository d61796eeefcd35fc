"""Which version of the program runs, as installed (pip reads it from pyproject.toml)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

DISTRIBUTION = "airudder-receiver"


def installed_version() -> str:
    """The installed distribution's version; a checkout run without ``pip install`` has none to report."""
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "unknown (not installed)"


VERSION = installed_version()
