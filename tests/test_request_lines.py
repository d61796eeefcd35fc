"""Request log lines under a flood: a line each up to log_requests_per_second, then one summary line."""

from __future__ import annotations

import asyncio
import logging
import time

import orjson
import pytest

from tests.support import ClientFactory, sample

pytestmark = pytest.mark.timeout(30)


def http_lines(caplog: pytest.LogCaptureFixture) -> tuple[list[dict[str, object]], list[logging.LogRecord]]:
    """The request lines' fields, and the summary lines."""
    records = [r for r in caplog.records if r.name == "airudder_receiver.http"]
    summaries = [r for r in records if "held_back" in getattr(r, "fields", {})]
    lines = [r.fields for r in records if r not in summaries and hasattr(r, "fields")]
    return lines, summaries


async def test_answered_requests_past_the_limit_are_counted_into_one_line(
    make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    client = await make_client(log_requests_per_second=3)
    started = time.monotonic()
    for n in range(12):
        assert (await client.post("/push", data=orjson.dumps(sample(call_id=f"flood-{n}")))).status == 200
    assert (await client.post("/push", data=orjson.dumps(sample(call_id="flood-0")))).status == 200
    # Past the limit of answered requests, and still a line of its own: errors have an allowance of their own.
    assert (await client.post("/push", data=b"not json")).status == 400
    seconds = int(time.monotonic()) - int(started) + 1
    await asyncio.sleep(1.3)  # the summary is written a second after the first request held back

    lines, summaries = http_lines(caplog)
    answered = [f for f in lines if f.get("status") == 200]
    held = sum(s.fields["held_back"] for s in summaries)  # type: ignore[attr-defined]
    assert 3 <= len(answered) <= 3 * seconds
    assert len(answered) + held == 13
    assert [f["error"] for f in lines if f.get("status") == 400] == ["invalid_json"]
    assert summaries
    message = summaries[0].getMessage()
    assert "past the 3 a second logged one by one: POST /push new " in message


async def test_zero_logs_summaries_only_and_shutdown_writes_the_last_one(
    make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    client = await make_client(log_requests_per_second=0)
    for n in range(2):
        assert (await client.post("/push", data=orjson.dumps(sample(call_id=f"quiet-{n}")))).status == 200
    await client.close()  # well before the summary's second has passed

    lines, summaries = http_lines(caplog)
    assert [f for f in lines if f.get("status") == 200] == []
    assert [s.fields["held_back"] for s in summaries] == [2]  # type: ignore[attr-defined]
    assert summaries[0].getMessage().endswith("past the 0 a second logged one by one: POST /push new 2")


async def test_error_lines_past_the_limit_are_counted_into_the_summary_too(
    make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    client = await make_client(log_requests_per_second=3)
    long_path = "/" + "x" * 8000
    started = time.monotonic()
    for _ in range(20):
        assert (await client.post(long_path, data=b"{}")).status == 404
        assert (await client.post("/push", data=b"not json")).status == 400
    # A flood of errors does not take the lines of the pushes that arrive meanwhile.
    assert (await client.post("/push", data=orjson.dumps(sample(call_id="amid-the-flood")))).status == 200
    seconds = int(time.monotonic()) - int(started) + 1
    await asyncio.sleep(1.3)

    lines, summaries = http_lines(caplog)
    errors = [f for f in lines if f["status"] in (400, 404)]
    held = sum(s.fields["held_back"] for s in summaries)  # type: ignore[attr-defined]
    assert 3 <= len(errors) <= 3 * seconds
    assert len(errors) + held == 40
    assert [f["outcome"] for f in lines if f["status"] == 200] == ["new"]
    assert "POST unmatched not_found " in summaries[0].getMessage()
    # What a line quotes of a long path is bounded.
    written = [r.getMessage() for r in caplog.records if r.name == "airudder_receiver.http"]
    assert max(len(message) for message in written) < 1000
    assert any(message.endswith("... (8001 characters)") for message in written)
