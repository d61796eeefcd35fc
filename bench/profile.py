"""``python -m bench.profile``: sample the receiver with py-spy while wrk loads it, and list where time goes.

Writes py-spy's collapsed stacks to bench/out/profile.txt (any flame graph tool reads them) and prints
the functions holding the most samples, by their own time and including what they call.
BENCH_SECONDS sets the length (default 15).
"""

from __future__ import annotations

import collections
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

from bench.__main__ import write_template
from bench.options import ROOT as BENCH
from bench.servers import COMMITTED, remove_database
from bench.wrk import drive, push_arguments
from tests.process import ROOT, running_server

TOP = 25


def top_functions(collapsed: Path) -> tuple[collections.Counter[str], collections.Counter[str], int]:
    """Own and inclusive sample counts per function from py-spy's collapsed ("raw") stacks."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        total += int(count)
        own[frames[-1]] += int(count)
        for frame in set(frames):
            inclusive[frame] += int(count)
    return own, inclusive, total


def main() -> int:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    seconds = int(os.environ.get("BENCH_SECONDS", "15"))
    workdir = BENCH / "out"
    workdir.mkdir(parents=True, exist_ok=True)
    template = write_template(workdir)
    db_path = workdir / "profile.sqlite3"
    remove_database(db_path)
    collapsed = workdir / "profile.txt"
    with running_server(workdir, db_path, *COMMITTED.arguments(workdir)) as server:
        load = threading.Thread(
            target=drive,
            args=(server.url,),
            kwargs={
                "seconds": seconds, "connections": 64, "threads": 2,
                "arguments": push_arguments(template, 0, "profile"),
            },
        )  # fmt: skip
        load.start()
        # Skip the first and last seconds, when wrk is still connecting or already stopping.
        record = [py_spy, "record", "--pid", str(server.proc.pid), "--duration", str(max(1, seconds - 3))]
        subprocess.run([*record, "--format", "raw", "--output", str(collapsed)], check=True, timeout=seconds + 30)
        load.join(timeout=seconds + 60)
    remove_database(db_path)
    own, inclusive, total = top_functions(collapsed)
    print(f"{total} samples of {ROOT / 'server.py'} under wrk; stacks in {collapsed}")
    for title, counts in (("own time", own), ("including callees", inclusive)):
        print(f"\n{title}:")
        for name, count in counts.most_common(TOP):
            print(f"  {count / total:6.1%}  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
