"""Sub-commands of ``airudder-receiver`` besides ``serve``; each module offers ``add_arguments`` and ``run``.

To add one: write a module here with ``NAME``, ``HELP``, ``add_arguments(parser)`` and
``run(args, settings) -> int`` (its exit code), and list it in ``COMMANDS``.
"""

from __future__ import annotations

import argparse
from typing import Protocol

from commands import export, purge, reprocess_rejects, send_sample, stats
from settings import Settings


class Command(Protocol):
    NAME: str
    HELP: str

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace, settings: Settings) -> int: ...


# Modules match the protocol (mypy checks each one).
COMMANDS: tuple[Command, ...] = (export, stats, purge, reprocess_rejects, send_sample)
