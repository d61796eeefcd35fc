"""Forwarding when things go wrong: dead deliveries and retry-dead, kill -9 mid-delivery, a destination
down while pushes keep arriving. Each test prints its figures (``pytest -s`` shows them)."""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest

from tests.downstream import Behaviour, Downstream
from tests.forward_helpers import all_delivered, forward_config, job_states, new_secret, until
from tests.load import Tally, deliver_all
from tests.process import ROOT, run_on_a_terminal, running_server
from tests.support import get, report, rows, sample

pytestmark = pytest.mark.failure

FAST = {"backoff_base": 0.05, "backoff_cap": 0.5}
# How long the outage test keeps its destination down. The minute (FORWARD_OUTAGE_SECONDS=60) was
# run and passed (docs/forwarding.md has its figures); make test uses 20 s to keep the whole suite near
# five minutes. The pushes all arrive in the first seconds either way.
OUTAGE_SECONDS = float(os.environ.get("FORWARD_OUTAGE_SECONDS", "20"))


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "server.py"), *args], capture_output=True, text=True, timeout=30, cwd=cwd
    )


async def test_dead_after_max_attempts_then_retry_dead_delivers(tmp_path: Path) -> None:
    downstream = Downstream(behaviours={"/in": Behaviour(status=500)})
    await downstream.start()
    config = forward_config(
        tmp_path / "forward.toml",
        {"name": "crm", "url": downstream.url("/in"), "secret": new_secret(), "max_attempts": 3, **FAST},
    )
    db_path = tmp_path / "pushes.sqlite3"
    try:
        with running_server(tmp_path, db_path, "--config", str(config)) as server:
            tally = Tally()
            await deliver_all(f"{server.url}/push", [f"d-{n}" for n in range(10)], tally)
            await until(lambda: job_states(db_path) == {"dead": 10}, 30, "every delivery dead")
            assert set(downstream.ids("/in").values()) == {3}  # exactly max_attempts each
            status, body = get(f"{server.url}/api/deliveries?state=dead&limit=4")
            page = orjson.loads(body)
            assert status == 200
            assert [item["attempts"] for item in page["items"]] == [3] * 4
            assert page["items"][0]["last_error"] == "HTTP 500"
            await until(lambda: 'airudder_receiver_forward_dead{destination="crm"} 10.0' in metrics(server.url), 15,
                        "the dead gauge")  # fmt: skip
            shown = await asyncio.to_thread(cli, "forward", "status", "--config", str(config), "--db", str(db_path),
                                            cwd=tmp_path)  # fmt: skip
            assert shown.returncode == 0, shown.stderr
            assert "crm" in shown.stdout
            assert "last error: HTTP 500" in shown.stdout

            downstream.behaviours["/in"] = Behaviour(status=200)
            code, out, screen = await asyncio.to_thread(
                run_on_a_terminal, tmp_path, ["forward", "retry-dead", "--db", str(db_path)]
            )
            assert code == 0, screen
            assert "put 10 deliveries back in line" in out
            assert "replay: 10 of 10 deliveries (100%)" in screen  # the progress line, on a terminal only
            await until(all_delivered(db_path, 10), 15, "every dead delivery delivered after retry-dead")
            one = f"{server.url}/api/pushes/{sample()['workflow_id']}/{sample()['node_id']}/d-0"
            (job,) = orjson.loads(get(one)[1])["forwarding"]
            assert [a["status"] for a in job["history"]] == [500, 500, 500, 200]
            assert server.stop() == 0
    finally:
        await downstream.stop()
    assert set(downstream.ids("/in").values()) == {4}


def metrics(url: str) -> str:
    return get(f"{url}/metrics")[1].decode()


async def test_kill_9_mid_delivery_loses_no_pending_delivery(tmp_path: Path) -> None:
    downstream = Downstream(behaviours={"/in": Behaviour(delay=0.05)})
    await downstream.start()
    concurrency = 4
    config = forward_config(
        tmp_path / "forward.toml",
        {"name": "crm", "url": downstream.url("/in"), "secret": new_secret(), "concurrency": concurrency},
    )
    db_path = tmp_path / "pushes.sqlite3"
    first, second = [f"k-{n}" for n in range(400)], [f"later-{n}" for n in range(200)]
    tally = Tally()
    try:
        with running_server(tmp_path, db_path, "--config", str(config)) as server:
            await deliver_all(f"{server.url}/push", first, tally)
            # More pushes arriving while deliveries run: their jobs must survive the kill with them.
            load = asyncio.create_task(deliver_all(f"{server.url}/push", second, tally, concurrency=4))
            await until(lambda: len(downstream.received) >= 100, 30, "deliveries under way")
            received_at_kill = len(downstream.received)
            assert await asyncio.to_thread(server.stop, signal.SIGKILL) == -signal.SIGKILL
            await load
        acknowledged = tally.acknowledged
        stored = {row[0] for row in rows(db_path, "SELECT call_id FROM pushes")}
        assert acknowledged <= stored
        with running_server(tmp_path, db_path, "--config", str(config)) as server:
            await until(all_delivered(db_path, len(stored)), 60, "every stored push delivered after the restart")
            assert server.stop() == 0
    finally:
        await downstream.stop()
    by_call = Counter(orjson.loads(r.body)["call"]["call_id"] for r in downstream.received)
    assert set(by_call) == stored
    repeats = sum(count - 1 for count in by_call.values())
    report(
        "forward kill -9",
        stored=len(stored),
        delivered_before_kill=received_at_kill,
        deliveries=len(downstream.received),
        repeated=repeats,
        in_flight_limit=concurrency,
    )
    # Only the deliveries in flight at the kill can repeat: those being sent (at most the concurrency) and
    # those answered whose outcome was not yet committed (a send here takes 50 ms, the writer commits every
    # few: at most one more round of the concurrency).
    assert repeats <= 2 * concurrency


def rate(tally: Tally) -> float:
    answers = tally.answers
    return len(answers) / (max(a.started + a.seconds for a in answers) - min(a.started for a in answers))


def p99(tally: Tally) -> float:
    return statistics.quantiles([a.seconds for a in tally.answers], n=100)[98]


# The outage itself, then seconds for the rest (4,000 pushes, the catching up).
@pytest.mark.serial
@pytest.mark.timeout(OUTAGE_SECONDS + 120)
async def test_a_dead_destination_slows_no_push_and_gets_everything_when_back(tmp_path: Path) -> None:
    downstream = Downstream()  # not started: the port refuses connections
    db_path_off, db_path_on = tmp_path / "off.sqlite3", tmp_path / "on.sqlite3"
    config = forward_config(
        tmp_path / "forward.toml",
        {
            "name": "crm",
            "url": downstream.url("/in"),
            "secret": new_secret(),
            "backoff_base": 0.2,
            "backoff_cap": 2,
            "probe_cap": 2,
        },
    )
    count, rounds = 2000, 10
    tallies: dict[str, list[Tally]] = {"off": [], "on": []}
    # Both receivers run side by side and take turns, a round each, so that the machine's other work
    # falls on both alike.
    with (
        running_server(tmp_path, db_path_off) as off,
        running_server(tmp_path, db_path_on, "--config", str(config)) as on,
    ):
        outage_started = time.monotonic()
        for round_number in range(rounds):
            for name, server in (("off", off), ("on", on)):
                tally = Tally()
                ids = [f"{name}-{round_number}-{n}" for n in range(count // rounds)]
                await deliver_all(f"{server.url}/push", ids, tally)
                assert tally.statuses == {200: count // rounds}
                tallies[name].append(tally)
        assert job_states(db_path_on) == {"pending": count}
        await asyncio.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - outage_started)))
        assert job_states(db_path_on) == {"pending": count}
        came_back = time.monotonic()
        await downstream.start()
        try:
            await until(all_delivered(db_path_on, count), 60, "every push delivered once the destination is back")
            caught_up = time.monotonic() - came_back
            attempts_while_down = rows(db_path_on, "SELECT count(*) FROM forward_attempts WHERE status IS NULL")[0][0]
            assert on.stop() == 0
            assert off.stop() == 0
        finally:
            await downstream.stop()
    assert len(downstream.ids("/in")) == count
    # Each round's "on" rate against the "off" round just before it: pairs close in time cancel the drift.
    ratio = statistics.median(rate(on) / rate(off) for off, on in zip(tallies["off"], tallies["on"], strict=True))
    # Like the rate, the p99 is taken per round and the rounds' median compared, so that one busy moment of
    # the machine during one round does not decide it; a destination that held answers would slow them all.
    off_p99, on_p99 = (statistics.median(p99(t) for t in tallies[name]) for name in ("off", "on"))
    report(
        "dead destination",
        outage_seconds=OUTAGE_SECONDS,
        pushes=count,
        rate_off=f"{statistics.median(rate(t) for t in tallies['off']):.0f}/s",
        rate_on=f"{statistics.median(rate(t) for t in tallies['on']):.0f}/s",
        rate_ratio=f"{ratio:.2f}",
        p99_off=f"{off_p99 * 1000:.1f} ms",
        p99_on=f"{on_p99 * 1000:.1f} ms",
        attempts_while_down=attempts_while_down,
        caught_up_seconds=f"{caught_up:.1f}",
    )
    # Within noise: on this shared 2-core machine two identical receivers taking turns differ by up to 40%
    # (measured); waiting on a dead destination would cost far more (answers held for seconds).
    assert ratio >= 0.6
    assert on_p99 <= 2 * off_p99 + 0.05
    # The destination was probed on its schedule (doubling to 2 s), not once per waiting push.
    assert attempts_while_down <= OUTAGE_SECONDS / 1.0 + 10


async def test_sigterm_with_deliveries_hanging_exits_in_budget_and_keeps_them_pending(tmp_path: Path) -> None:
    downstream = Downstream(behaviours={"/in": Behaviour(hang_first=30)})
    await downstream.start()
    config = forward_config(
        tmp_path / "forward.toml",
        {"name": "crm", "url": downstream.url("/in"), "secret": new_secret(), "timeout": 25},
    )
    db_path = tmp_path / "pushes.sqlite3"
    try:
        with running_server(tmp_path, db_path, "--config", str(config)) as server:
            await deliver_all(f"{server.url}/push", [f"t-{n}" for n in range(10)], Tally())
            await until(lambda: len(downstream.received) == 4, 10, "four deliveries hanging (the concurrency)")
            started = time.monotonic()
            assert await asyncio.to_thread(server.stop, signal.SIGTERM, 10.0) == 0
            took = time.monotonic() - started
        assert job_states(db_path) == {"pending": 10}
        assert rows(db_path, "SELECT count(*) FROM forward_attempts")[0][0] == 0
        downstream.behaviours["/in"] = Behaviour()
        with running_server(tmp_path, db_path, "--config", str(config)) as server:
            await until(all_delivered(db_path, 10), 20, "every delivery made after the restart")
            assert server.stop() == 0
    finally:
        await downstream.stop()
    report("forward SIGTERM", stopped_in=f"{took:.2f}s", deliveries=len(downstream.received))
    assert took < 10


async def test_a_flapping_or_slow_destination_still_gets_every_delivery(tmp_path: Path) -> None:
    # The first attempt of each delivery fails: a 503 at one destination, no answer within the timeout at
    # the other. Neither is down: every second attempt goes through.
    downstream = Downstream(
        behaviours={"/flaps": Behaviour(fail_first=1, fail_status=503), "/slow": Behaviour(hang_first=1.0)}
    )
    await downstream.start()
    secret = new_secret()
    schedule = {"backoff_base": 1, "backoff_cap": 60}
    config = forward_config(
        tmp_path / "forward.toml",
        {"name": "flaps", "url": downstream.url("/flaps"), "secret": secret, **schedule},
        {"name": "slow", "url": downstream.url("/slow"), "secret": secret, "timeout": 0.3, **schedule},
    )
    db_path = tmp_path / "pushes.sqlite3"
    calls = 40
    try:
        with running_server(tmp_path, db_path, "--config", str(config)) as server:
            started = time.monotonic()
            await deliver_all(f"{server.url}/push", [f"f-{n}" for n in range(calls)], Tally())
            await until(all_delivered(db_path, 2 * calls), 30, "every delivery made to both")
            took = time.monotonic() - started
            assert server.stop() == 0
    finally:
        await downstream.stop()
    report("flapping and slow destinations", calls=calls, delivered_in=f"{took:.1f}s")
    for path in ("/flaps", "/slow"):
        assert len(downstream.ids(path)) == calls
        # Never more than the failed first try and the one that went through, but for probes.
        assert sum(downstream.ids(path).values()) <= 2 * calls + 5


async def test_a_pause_is_shown_everywhere_and_resume_or_replay_ends_it_within_a_second(tmp_path: Path) -> None:
    downstream = Downstream(behaviours={"/in": Behaviour(status=503)})
    await downstream.start()
    # Judged down after two failures; then the next probe is 10 to 20 s out, longer than the test waits.
    config = forward_config(
        tmp_path / "forward.toml",
        {
            "name": "crm",
            "url": downstream.url("/in"),
            "secret": new_secret(),
            "backoff_base": 20,
            "breaker_min_requests": 2,
            "concurrency": 1,
        },
    )
    db_path = tmp_path / "pushes.sqlite3"
    try:
        with running_server(tmp_path, db_path, "--config", str(config)) as server:
            await deliver_all(f"{server.url}/push", [f"p-{n}" for n in range(5)], Tally())
            await until(lambda: rows(db_path, "SELECT count(*) FROM forward_pauses")[0][0] == 1, 10, "the pause stored")
            shown = await asyncio.to_thread(cli, "forward", "status", "--config", str(config), "--db", str(db_path),
                                            cwd=tmp_path)  # fmt: skip
            assert "  paused until 20" in shown.stdout, shown.stdout
            assert ": HTTP 503" in shown.stdout
            (destination,) = orjson.loads(get(f"{server.url}/api/destinations")[1])["items"]
            assert destination["paused"]["reason"] == "HTTP 503"
            assert destination["pending"] == 5
            await until(lambda: 'airudder_receiver_forward_paused{destination="crm"} 1.0' in metrics(server.url), 10,
                        "the paused gauge")  # fmt: skip
            sent_while_paused = len(downstream.received)

            downstream.behaviours["/in"] = Behaviour()
            resumed = await asyncio.to_thread(cli, "forward", "resume", "crm", "--config", str(config), "--db",
                                              str(db_path), cwd=tmp_path)  # fmt: skip
            assert resumed.returncode == 0, resumed.stderr
            assert resumed.stdout == "resumed crm; a running server sends to it again within a second\n"
            started = time.monotonic()
            # The four the pause held; the first failure's delivery keeps its own retry time (10 to 20 s).
            held = {"delivered": 4, "pending": 1}
            await until(lambda: job_states(db_path) == held, 5, "the held deliveries made once resumed")
            took = time.monotonic() - started
            assert orjson.loads(get(f"{server.url}/api/destinations")[1])["items"][0]["paused"] is None
            assert 'airudder_receiver_forward_paused{destination="crm"} 0.0' in metrics(server.url)

            # Down again, paused again once the failures outweigh the four deliveries in the window; a replay of
            # its deliveries ends the pause as well, and sends them all.
            downstream.behaviours["/in"] = Behaviour(status=503)
            await deliver_all(f"{server.url}/push", [f"q-{n}" for n in range(10)], Tally())
            await until(lambda: rows(db_path, "SELECT count(*) FROM forward_pauses")[0][0] == 1, 10, "paused again")
            downstream.behaviours["/in"] = Behaviour()
            replayed = await asyncio.to_thread(cli, "forward", "replay", "--destination", "crm", "--since",
                                               "2000-01-01", "--db", str(db_path), cwd=tmp_path)  # fmt: skip
            assert replayed.returncode == 0, replayed.stderr
            started = time.monotonic()
            await until(all_delivered(db_path, 15), 5, "every delivery made once replayed")
            took_after_replay = time.monotonic() - started
            assert server.stop() == 0
    finally:
        await downstream.stop()
    report(
        "forward resume and replay",
        sent_while_paused=sent_while_paused,
        delivered_after_resume_in=f"{took:.2f}s",
        delivered_after_replay_in=f"{took_after_replay:.2f}s",
    )
    assert sent_while_paused == 2  # the two failures that paused it, and nothing more
    assert took < 3
    assert took_after_replay < 3
