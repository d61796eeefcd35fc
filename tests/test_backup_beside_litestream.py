"""backup --from-replica while Litestream replicates and pushes pour in: no 503, p99 within twice before.

A copy of the live file beside Litestream holds one read for the whole copy, and Litestream's forced
(RESTART) checkpoints wait for that read while holding off the receiver's commits; the copy from the
replica reads nothing of the live file but its newest push.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
from pathlib import Path

import pytest

from tests.bulk import add_pushes
from tests.litestream_run import config_for, generation_count, replicating, wait_for
from tests.load import Answer, Tally, background_load
from tests.process import ROOT, running_server
from tests.support import free_port, migrated, report, rows
from tests.tools import litestream

ROWS = 450_000
# Pushes for this long before the backup; the first second (connections opening, the writer warming up)
# is left out of the comparison.
BEFORE_SECONDS = 4.0
WARM_UP_SECONDS = 1.0
CONCURRENCY = 32
# The backup unit's Nice=, as it runs there.
BACKUP_NICE = int(
    re.findall(r"^Nice=(\d+)$", (ROOT / "deploy" / "airudder-receiver-backup.service").read_text(), re.M)[0]
)


def p99(answers: list[Answer]) -> float:
    seconds = sorted(a.seconds for a in answers)
    return seconds[int(0.99 * (len(seconds) - 1))]


@pytest.mark.serial
@pytest.mark.timeout(120)
async def test_backup_from_the_replica_under_load_keeps_p99_within_twice_and_refuses_nothing(tmp_path: Path) -> None:
    db = await asyncio.to_thread(migrated, tmp_path / "live" / "pushes.sqlite3")
    await asyncio.to_thread(add_pushes, db, ROWS)
    replica = tmp_path / "replica"
    config = config_for(tmp_path, db, replica, free_port())
    receiver_config = tmp_path / "receiver.toml"
    receiver_config.write_text("busy_timeout_ms = 5000\n")
    log = tmp_path / "litestream.log"
    dest = tmp_path / "copy.sqlite3"
    tally = Tally()
    with running_server(tmp_path, db, "--config", str(receiver_config)) as server, replicating(config, log):
        await asyncio.to_thread(wait_for, "no snapshot", lambda: generation_count(replica) == 1, 30, log)
        async with background_load(f"{server.url}/push", tally, prefix="load", concurrency=CONCURRENCY):
            load_began = time.monotonic()
            await asyncio.sleep(BEFORE_SECONDS)
            started = time.monotonic()
            done = await asyncio.create_subprocess_exec(
                sys.executable, str(ROOT / "server.py"), "backup", "--db", str(db), "--from-replica",
                "--litestream", str(litestream()), "--litestream-config", str(config), str(dest),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=tmp_path,
                preexec_fn=lambda: os.nice(BACKUP_NICE),
            )  # fmt: skip
            out, err = await asyncio.wait_for(done.communicate(), 60)
            finished = time.monotonic()
        assert server.stop() == 0
    assert (done.returncode, err) == (0, b""), err
    before = [a for a in tally.answers if load_began + WARM_UP_SECONDS < a.started and a.started + a.seconds < started]
    during = [a for a in tally.answers if a.started < finished and a.started + a.seconds > started]
    report(
        "backup --from-replica beside Litestream under load",
        said=out.decode().strip(),
        seconds=f"{finished - started:.2f}",
        p99_before=f"{1000 * p99(before):.1f} ms over {len(before)} pushes",
        p99_during=f"{1000 * p99(during):.1f} ms over {len(during)} pushes",
        slowest_during=f"{1000 * max(a.seconds for a in during):.0f} ms",
    )
    assert {a.kind for a in during} == {"200"}, tally.kinds
    assert p99(during) <= 2 * p99(before)
    assert rows(dest, "SELECT count(*) FROM pushes WHERE call_id LIKE 'bulk%'")[0][0] == ROWS
