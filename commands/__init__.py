"""Sub-commands of ``airudder-receiver`` besides ``serve``; each module offers ``add_arguments`` and ``run``.

To add one: write a module here with ``NAME``, ``HELP``, ``add_arguments(parser)`` and
``run(args, settings) -> int`` (its exit code), and list it in ``COMMANDS``. A command raises what it
cannot get past; ``run_command`` says it in one sentence and exits 2.
"""

from __future__ import annotations

import argparse
import sys
from typing import Protocol

from commands import backup, drill, export, forward, purge, reprocess_rejects, restore, send_sample, stats
from plumbing.exits import INTERRUPTED, CommandFailed, fail
from plumbing.settings import Settings
from storage.backend import CopyDamaged, DatabaseUnavailable
from storage.database import DATABASE_ERRORS, failed
from storage.filters import FilterError
from storage.schema import SchemaTooNew
from storage.writer import STORE_ERRORS


class Command(Protocol):
    NAME: str
    HELP: str

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace, settings: Settings) -> int: ...


# Modules match the protocol (mypy checks each one).
COMMANDS: tuple[Command, ...] = (export, stats, purge, reprocess_rejects, send_sample, backup, restore, drill, forward)

# What a command may run into that is the operator's to fix, not a bug.
COMMAND_ERRORS = (CommandFailed, CopyDamaged, DatabaseUnavailable, FilterError, SchemaTooNew, OSError, *STORE_ERRORS)


def run_command(command: Command, args: argparse.Namespace, settings: Settings) -> int:
    try:
        return command.run(args, settings)
    except KeyboardInterrupt:
        # Ctrl-C is the operator's own doing: no traceback, the shell's usual status for it. A command
        # cleans up what it leaves half-done on its way out (backup removes its partial copy).
        print(file=sys.stderr)
        return INTERRUPTED
    except COMMAND_ERRORS as exc:
        return fail(f"{command.NAME}: {exc}")
    except DATABASE_ERRORS as exc:
        return fail(f"{command.NAME}: {failed(settings, exc)}")
