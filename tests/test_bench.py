"""The benchmark's baselines do what their names say, and its wrk output is read correctly."""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from bench import ceiling, naive
from bench.__main__ import write_template
from bench.backup import Backup, BackupRun
from bench.options import Plan
from bench.report import HAND_WRITTEN, backup_section, write_results
from bench.servers import Options, cpu_seconds
from bench.writer_alone import writer_alone
from bench.wrk import Load, parse
from tests.support import SAMPLE_BYTES, rows


def files_in(folder: Path) -> list[str]:
    return [path.name for path in folder.iterdir()]


async def test_ceiling_parses_and_answers_without_storing(aiohttp_client: Any, db_path: Path) -> None:
    client = await aiohttp_client(ceiling.make_app(str(db_path)))
    response = await client.post("/push", data=SAMPLE_BYTES)
    assert (response.status, await response.read()) == (200, b"{}")
    assert files_in(db_path.parent) == []


async def test_naive_receiver_commits_each_push_and_counts_duplicates(aiohttp_client: Any, db_path: Path) -> None:
    client = await aiohttp_client(naive.make_app(str(db_path)))
    for _ in range(2):
        response = await client.post("/push", data=SAMPLE_BYTES)
        assert (response.status, await response.read()) == (200, b"{}")
    assert [tuple(row) for row in rows(db_path, "SELECT call_id, deliveries FROM pushes")] == [
        ("817377d194xxxxxxxxc8ad463bc81d996a", 2)
    ]
    bad = await client.post("/push", data=b"{")
    assert bad.status == 400
    assert (await bad.json())["error"] == "invalid_json"


def test_wrk_figures_are_read_from_the_marker_line() -> None:
    output = (
        "Running 10s test @ http://127.0.0.1:1/push\n"
        'BENCH-JSON {"requests":5000,"duration_us":10000000,"status_errors":3,"connect":0,"read":1,'
        '"write":0,"timeout":2,"p50_us":1500,"p99_us":12000,"max_us":30000}\n'
    )
    load = parse(output)
    assert load.rate == 500
    assert load.acknowledged == 4997
    assert load.socket_errors == 3
    assert (load.p50_ms, load.p99_ms) == (1.5, 12.0)
    with pytest.raises(RuntimeError, match="no BENCH-JSON line"):
        parse("wrk crashed\n")


def testbackup_section_sets_the_p99_with_and_without_side_by_side(tmp_path: Path) -> None:
    def load(p99_ms: float, non_2xx: int = 0) -> Load:
        return Load(20_000, 10.0, non_2xx, 0, 5.0, p99_ms, 90.0)

    run = BackupRun(
        idle=Backup(1_000_000, "copy: 1000000 pushes, 0 rejects, 10 bytes, 19.5 s", 20.0),
        loaded=Backup(1_000_500, "copy: 1000600 pushes, 0 rejects, 10 bytes, 24.5 s", 25.0),
        quiet=load(22.5),
        during=load(31.25),
        complete=True,
        refusals=Counter(),
        exit_code=0,
    )
    plan = Plan(Options(10, 64, 2, 0.0), 1, 1_000_000, 0, tmp_path / "RESULTS.md", tmp_path)
    text = "\n".join(backup_section(run, plan))
    assert "| idle | 1,000,000 | 20.0 | 50,000 | `copy: 1000000 pushes" in text
    assert "| under load | 1,000,500 | 25.0 | 40,020 |" in text
    assert "| without a backup | 2,000 | 5.00 | 22.50 | 90.0 | 0 | 0 |" in text
    assert "| while `backup` ran | 2,000 | 5.00 | 31.25 | 90.0 | 0 | 0 |" in text
    assert "in the copy: yes" in text


def test_a_new_run_keeps_the_hand_written_part_of_the_results(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    write_results(results, "# first run")
    assert results.read_text() == f"# first run\n{HAND_WRITTEN}\n"
    results.write_text(results.read_text() + "## Notes\n\nBy hand.\n")
    write_results(results, "# second run")
    assert results.read_text() == f"# second run\n{HAND_WRITTEN}\n## Notes\n\nBy hand.\n"


def test_cpu_time_is_read_for_a_process() -> None:
    started = cpu_seconds(os.getpid())
    deadline = time.process_time() + 0.05
    while time.process_time() < deadline:
        pass
    assert cpu_seconds(os.getpid()) - started >= 0.03  # clock ticks are 10 ms


def test_the_writer_alone_stores_pushes_and_leaves_no_file(tmp_path: Path) -> None:
    template = write_template(tmp_path)
    run = writer_alone(tmp_path, template, seconds=0.3, in_flight=4)
    assert run.rows > 0
    assert run.cpu_seconds > 0
    assert not list(tmp_path.glob("writer-alone*"))
