"""How every command line stops on a problem: one sentence on stderr and exit status 2."""

from __future__ import annotations

import sys

PROGRAM = "airudder-receiver"
FAILED = 2
# 128 + SIGINT, what a shell reports for a command stopped with Ctrl-C.
INTERRUPTED = 130


class CommandFailed(Exception):
    """A command cannot go on; the message is one sentence for the operator."""


def fail(message: str) -> int:
    """Print ``message`` for the operator and return the exit status to end with."""
    print(f"{PROGRAM}: {message}", file=sys.stderr)
    return FAILED
