"""A real Prometheus server (Debian's package) scraping the real receiver: what a dashboard would see."""

from __future__ import annotations

import math
import shutil
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.process import running_server
from tests.support import free_port, get, post, sample

SCRAPE_SECONDS = 1
# Generous for a loaded two-core machine: Prometheus starts in about a second, then scrapes every second.
WAIT_SECONDS = 40.0

pytestmark = pytest.mark.timeout(120)


@contextmanager
def prometheus(workdir: Path, target_port: int) -> Iterator[str]:
    """Prometheus on 127.0.0.1, storing in ``workdir``, scraping the receiver every second; its URL."""
    binary = shutil.which("prometheus")
    assert binary, "Debian's prometheus package is not installed (make test installs tests/debian-packages.txt)"
    config = workdir / "prometheus.yml"
    config.write_text(
        f"""
global:
  scrape_interval: {SCRAPE_SECONDS}s
  scrape_timeout: {SCRAPE_SECONDS}s
scrape_configs:
  - job_name: airudder-receiver
    static_configs:
      - targets: ["127.0.0.1:{target_port}"]
""",
        encoding="utf-8",
    )
    port = free_port()
    log_path = workdir / "prometheus.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def api(url: str, path: str, **params: str) -> Any:
    """The ``data`` of a Prometheus API answer; None while Prometheus is not answering yet."""
    try:
        status, body = get(f"{url}{path}?{urllib.parse.urlencode(params)}", timeout=5)
    except OSError:
        return None
    if status != 200:
        return None
    answer = orjson.loads(body)
    assert answer["status"] == "success", answer
    return answer["data"]


def wait_for(what: str, check: Any, seconds: float = WAIT_SECONDS) -> Any:
    """Poll ``check()`` until it returns something other than None."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = check()
        if result is not None:
            return result
        time.sleep(0.25)
    raise AssertionError(f"within {seconds:g}s, {what}")


def scalar(url: str, query: str) -> float | None:
    """The one value an instant query answers, or None while it answers nothing."""
    data = api(url, "/api/v1/query", query=query)
    if not data or not data["result"]:
        return None
    (series,) = data["result"]
    return float(series["value"][1])


def target_health(url: str) -> str | None:
    data = api(url, "/api/v1/targets")
    if not data or not data["activeTargets"]:
        return None
    (target,) = data["activeTargets"]
    return None if target["health"] == "unknown" else str(target["health"])


MEDIAN_PUSH = 'histogram_quantile(0.5, sum(rate(airudder_receiver_request_seconds_bucket{route="/push"}[30s])) by (le))'
MEDIAN_ALL = "histogram_quantile(0.5, sum(rate(airudder_receiver_request_seconds_bucket[30s])) by (le))"


def test_prometheus_scrapes_zeros_first_then_a_request_quantile(tmp_path: Path) -> None:
    with (
        running_server(tmp_path, tmp_path / "pushes.sqlite3") as server,
        prometheus(tmp_path, server.port) as url,
    ):
        assert wait_for("the receiver target is scraped", lambda: target_health(url)) == "up"
        # Before any push, counters answer 0, not an empty result, and so does their rate.
        assert scalar(url, 'airudder_receiver_pushes_total{outcome="new"}') == 0
        assert scalar(url, 'airudder_receiver_pushes_rejected_total{reason="invalid_json"}') == 0
        assert scalar(url, 'airudder_receiver_pushes_unavailable_total{cause="queue_full"}') == 0
        rate = "sum(rate(airudder_receiver_pushes_total[30s]))"
        assert wait_for("a rate over two scrapes", lambda: scalar(url, rate)) == 0
        assert scalar(url, "up") == 1
        assert (scalar(url, "process_resident_memory_bytes") or 0) > 0
        assert scalar(url, "airudder_receiver_build_info") == 1
        for n in range(20):
            assert post(f"{server.url}/push", orjson.dumps(sample(call_id=f"prom-{n}")))[0] == 200
        assert post(f"{server.url}/push", b"{broken")[0] == 400

        def median(query: str) -> float | None:
            value = scalar(url, query)
            return None if value is None or math.isnan(value) else value

        push_median = wait_for("the median push time is a number", lambda: median(MEDIAN_PUSH))
        assert 0 < push_median < 10
        assert 0 < wait_for("the median request time is a number", lambda: median(MEDIAN_ALL)) < 10
        assert (
            wait_for(
                "the new pushes are counted", lambda: scalar(url, 'airudder_receiver_pushes_total{outcome="new"} == 20')
            )
            == 20
        )
        assert scalar(url, 'airudder_receiver_pushes_rejected_total{reason="invalid_json"}') == 1
        assert server.stop() == 0
