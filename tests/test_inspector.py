"""The inspector page in real headless Chromium against the real server process."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.process import ROOT, running_server
from tests.support import SAMPLE_BYTES, TOKEN, execute, get, post, sample

ARTIFACTS = ROOT / "tests" / "artifacts"
HOSTILE_NAME = "<img src=x onerror=window.injected=1>"
PAGE_SIZE = 100  # the page's first load and each "Load older pushes"
# Debian's browser, never a downloaded one; the flags keep it from reaching for the network at start.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing; make test installs Debian's chromium package")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, timeout=30_000)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


def robot_and_person_lines(push: dict[str, object]) -> tuple[list[str], list[str]]:
    turns = push["call"]["asr_result"]  # type: ignore[index]
    return [t["robottext"] for t in turns if t["robottext"]], [t["text"] for t in turns if t["text"]]


def test_push_appears_live_and_opens_as_a_dialogue(tmp_path: Path, page: Page) -> None:
    earlier = sample(call_id="earlier-call", intention="A", asr_result=[])
    earlier["callee"]["callee_number"] = "+8613800000001"
    earlier["callee"]["callee_name"] = HOSTILE_NAME
    with running_server(tmp_path, tmp_path / "pushes.sqlite3", "--dev") as server:
        assert post(f"{server.url}/push", orjson.dumps(earlier))[0] == 200
        page.goto(f"{server.url}/")
        rows = page.locator("#pushes tbody tr")
        expect(rows).to_have_count(1)
        expect(page.locator("#live")).to_have_text("live")
        page.evaluate("window.sameDocument = true")  # gone if the page reloads

        assert post(f"{server.url}/push", SAMPLE_BYTES)[0] == 200
        expect(rows).to_have_count(2)
        newest = rows.first
        expect(newest).to_contain_text("test_api_action6")
        expect(newest).to_contain_text("+861xxxxxxxx5721")
        assert post(f"{server.url}/push", SAMPLE_BYTES)[0] == 200  # a duplicate delivery
        expect(newest.locator(".deliveries")).to_have_text("2")
        assert page.evaluate("window.sameDocument") is True

        newest.click()
        detail = page.locator("#detail-pane")
        expect(detail.locator("h2")).to_have_text("WILL SMITH")
        expect(detail).to_contain_text("No Voice")
        expect(detail.locator(".chips")).to_contain_text(["identity_correct_person"])
        robot, person = robot_and_person_lines(orjson.loads(SAMPLE_BYTES))
        expect(detail.locator(".turn.robot .bubble")).to_have_text(robot)
        expect(detail.locator(".turn.person .bubble")).to_have_text(person)
        expect(detail.locator("table.small").first.locator("tbody tr")).to_have_count(3)  # redials
        expect(detail).to_contain_text("CURP Verification")
        detail.locator("details.raw summary").click()
        expect(detail.locator("details.raw pre")).to_contain_text('"call_id": "817377d194xxxxxxxxc8ad463bc81d996a"')

        ARTIFACTS.mkdir(exist_ok=True)
        detail.locator("details.raw summary").click()  # closed again, and back to the top of the call
        detail.evaluate("pane => { pane.scrollTop = 0; }")
        page.screenshot(path=str(ARTIFACTS / "inspector.png"))

        page.fill("#filter", "13800000001")
        expect(rows.filter(visible=True)).to_have_count(1)
        expect(rows.filter(visible=True)).to_contain_text("+8613800000001")
        expect(page.locator("#summary")).to_have_text("1 of 2 calls match")
        rows.filter(visible=True).click()
        # Push contents are text on the page, never markup.
        expect(detail.locator("h2")).to_have_text(HOSTILE_NAME)
        assert page.evaluate("window.injected") is None
        assert server.stop() == 0


def test_older_pushes_load_on_demand(tmp_path: Path, page: Page) -> None:
    with running_server(tmp_path, tmp_path / "pushes.sqlite3", "--dev") as server:
        for n in range(PAGE_SIZE + 1):
            assert post(f"{server.url}/push", orjson.dumps(sample(call_id=f"older-{n}")))[0] == 200
        page.goto(f"{server.url}/")
        rows = page.locator("#pushes tbody tr")
        expect(rows).to_have_count(PAGE_SIZE)
        page.click("#older")
        expect(rows).to_have_count(PAGE_SIZE + 1)
        expect(page.locator("#older")).to_be_hidden()
        # Newest on top, oldest at the bottom: the first push ever is the last row.
        assert (rows.first.get_attribute("data-seq"), rows.last.get_attribute("data-seq")) == (str(PAGE_SIZE + 1), "1")


def test_inspector_is_on_by_default_and_off_when_asked(tmp_path: Path) -> None:
    with running_server(tmp_path, tmp_path / "pushes.sqlite3") as server:
        status, body = get(f"{server.url}/")
        assert status == 200
        assert b"<title>AIRudder pushes" in body
    config = tmp_path / "off.toml"
    config.write_text("inspector = false\n", encoding="utf-8")
    with running_server(tmp_path, tmp_path / "pushes.sqlite3", "--config", str(config)) as server:
        status, body = get(f"{server.url}/")
        assert status == 404
        assert orjson.loads(body)["error"] == "not_found"
        assert server.stop() == 0
    assert "inspector on" not in server.log()


def test_with_an_api_token_the_page_asks_for_it_then_shows_pushes_live(tmp_path: Path, page: Page) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'inspector = true\napi_token = "{TOKEN}"\n')
    with running_server(tmp_path, tmp_path / "pushes.sqlite3", "--config", str(config)) as server:
        assert post(f"{server.url}/push", orjson.dumps(sample(call_id="before-login")))[0] == 200
        page.goto(f"{server.url}/")
        expect(page.locator("#login-reason")).to_have_text("send Authorization: Bearer <api_token>")
        expect(page.locator("#pushes")).to_be_hidden()
        expect(page.locator("#live")).to_have_text("token needed")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "inspector-token-prompt.png"))
        page.fill("#token", "not-the-token")
        page.click("#login button")
        expect(page.locator("#login-reason")).to_have_text("the bearer token is not the api_token")

        page.fill("#token", TOKEN)
        page.click("#login button")
        rows = page.locator("#pushes tbody tr")
        expect(rows).to_have_count(1)
        expect(page.locator("#live")).to_have_text("live")  # the event stream, read with the token
        assert post(f"{server.url}/push", SAMPLE_BYTES)[0] == 200
        expect(rows).to_have_count(2)
        expect(rows.first).to_contain_text("+861xxxxxxxx5721")
        assert post(f"{server.url}/push", SAMPLE_BYTES)[0] == 200
        expect(rows.first.locator(".deliveries")).to_have_text("2")
        rows.first.click()
        expect(page.locator("#detail-pane h2")).to_have_text("WILL SMITH")
        page.screenshot(path=str(ARTIFACTS / "inspector-token.png"))

        page.reload()  # the token stays with the tab
        expect(rows).to_have_count(2)
        expect(page.locator("#login")).to_be_hidden()
        expect(page.locator("#live")).to_have_text("live")
        assert server.stop() == 0
    assert TOKEN not in server.log()


def test_a_call_shows_its_forwarding_state(tmp_path: Path, page: Page) -> None:
    config = tmp_path / "forward.toml"
    config.write_text(
        '[[forward]]\nname = "archive"\ncommand = ["true"]\n\n'
        '[[forward]]\nname = "broken"\ncommand = ["false"]\nmax_attempts = 1\n'
    )
    with running_server(tmp_path, tmp_path / "pushes.sqlite3", "--dev", "--config", str(config)) as server:
        assert post(f"{server.url}/push", SAMPLE_BYTES)[0] == 200
        page.goto(f"{server.url}/")
        page.locator("#pushes tbody tr").first.click()
        deliveries = page.locator("#detail-pane .forward")
        expect(deliveries).to_have_count(2)
        # The page shows what the API says when it is opened: reopen until both deliveries are settled.
        for _ in range(50):
            if get(f"{server.url}/api/deliveries?state=pending")[1].count(b'"id"') == 0:
                break
            page.wait_for_timeout(100)
        page.locator("#pushes tbody tr").first.click()
        expect(deliveries.nth(0).locator(".state")).to_have_text("delivered")
        expect(deliveries.nth(0)).to_contain_text("archive · 1 attempt(s)")
        expect(deliveries.nth(1).locator(".state")).to_have_text("dead")
        expect(deliveries.nth(1).locator(".attempts li")).to_contain_text("1 · ")
        expect(deliveries.nth(1).locator(".attempts li")).to_contain_text("exit 1")


def test_refused_pushes_and_a_calls_latest_version_are_shown(tmp_path: Path, page: Page) -> None:
    with running_server(tmp_path, tmp_path / "pushes.sqlite3", "--dev") as server:
        assert post(f"{server.url}/push", SAMPLE_BYTES)[0] == 200
        assert post(f"{server.url}/push", orjson.dumps(sample(intention="F")))[0] == 200  # a later version
        assert post(f"{server.url}/push", b"not json, <b>bold</b>")[0] == 400
        assert post(f"{server.url}/push", b'{"workflow_id": "w"}')[0] == 422
        page.goto(f"{server.url}/")
        expect(page.locator("#live")).to_have_text("live")
        page.locator("#pushes tbody tr").first.click()
        detail = page.locator("#detail-pane")
        expect(detail.locator(".intention.big")).to_have_text("F")
        expect(detail.locator("details.raw summary")).to_have_text("Raw JSON (the latest of 2 versions)")

        expect(page.locator("#reject-count")).to_have_text("(2)")
        page.locator("#rejects-box summary").click()
        rejects = page.locator("#rejects tbody tr")
        expect(rejects).to_have_count(2)
        expect(rejects.first).to_contain_text("missing_field")  # newest first
        rejects.last.click()
        expect(detail.locator("h2")).to_have_text("Refused: invalid_json")
        expect(detail.locator("pre.reject-body")).to_have_text("not json, <b>bold</b>")  # text, never markup


def test_the_deliveries_view_shows_what_waits_and_retries_it(tmp_path: Path, page: Page) -> None:
    script = tmp_path / "take.sh"
    # Refuses every delivery until the test lets it through.
    script.write_text(f'#!/bin/sh\n[ -e "{tmp_path}/open" ] || {{ echo "not yet" >&2; exit 1; }}\n')
    script.chmod(0o755)
    config = tmp_path / "forward.toml"
    config.write_text(
        f'[[forward]]\nname = "crm"\ncommand = ["{script}"]\nmax_attempts = 1\n\n'
        '[[forward]]\nname = "archive"\ncommand = ["true"]\n'
    )
    db_path = tmp_path / "pushes.sqlite3"
    with running_server(tmp_path, db_path, "--dev", "--config", str(config)) as server:
        assert post(f"{server.url}/push", SAMPLE_BYTES)[0] == 200
        for _ in range(50):
            if b'"dead"' in get(f"{server.url}/api/deliveries?state=dead")[1]:
                break
            page.wait_for_timeout(100)
        execute(
            db_path,
            "INSERT INTO forward_pauses (destination, paused_at, paused_until, reason)"
            " VALUES ('archive', '2026-12-01T00:00:00.000Z', NULL, 'HTTP 410 Gone: the destination takes no more')",
        )
        page.goto(f"{server.url}/")
        page.click("#show-deliveries")
        expect(page.locator("#workspace")).to_be_hidden()
        cards = page.locator("#destinations .destination")
        expect(cards).to_have_count(2)
        expect(cards.nth(0)).to_contain_text("archive")
        expect(cards.nth(0).locator(".paused")).to_have_text(
            "Paused until resumed: HTTP 410 Gone: the destination takes no more"
        )
        expect(cards.nth(1)).to_contain_text("0 pending · 0 delivered · 1 dead")
        expect(cards.nth(1).locator(".last-error")).to_have_text("last error: exit 1: not yet")
        deliveries = page.locator("#deliveries tbody tr")
        expect(deliveries).to_have_count(1)
        expect(deliveries.first.locator(".state")).to_have_text("dead")
        expect(deliveries.first).to_contain_text("817377d194xxxxxxxxc8ad463bc81d996a")
        expect(deliveries.first).to_contain_text("exit 1: not yet")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "inspector-deliveries.png"))

        (tmp_path / "open").touch()
        deliveries.first.locator("button.retry").click()
        for _ in range(50):
            if b'"delivered"' in get(f"{server.url}/api/deliveries?destination=crm")[1]:
                break
            page.wait_for_timeout(100)
        page.click("#show-deliveries")  # looked at again: nothing waits any more
        expect(deliveries).to_have_count(0)
        expect(page.locator("#no-deliveries")).to_be_visible()
        expect(cards.nth(1)).to_contain_text("0 pending · 1 delivered · 0 dead")
        page.click("#show-pushes")
        expect(page.locator("#workspace")).to_be_visible()
        assert server.stop() == 0
