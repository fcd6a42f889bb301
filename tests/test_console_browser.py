"""The console in a real browser: Debian's chromium, headless, driven by Playwright (pointed at
/usr/bin/chromium; the registries serve no browser build of their own). An operator and a key
holder sign in, follow the filters, download the CSV; each page is screenshotted into
tests/artifacts/ (TOLLGATE_SCREENSHOTS=DIR saves them there too, e.g. docs/img). Every request
the pages make is recorded: none may leave 127.0.0.1, and no page may log an error."""

from __future__ import annotations

import csv
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.console_support import KEYS, chat, traffic, write_bundle
from tests.fakes.openai_upstream import FakeUpstream
from tests.gateway_process import GatewayProcess

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]

if not CHROMIUM.exists() and not os.environ.get("CI"):
    pytest.skip("Debian's chromium is not installed (/usr/bin/chromium): run scripts/system-deps.sh",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api") if not os.environ.get("CI") else None
from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    fake = FakeUpstream("console").start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, upstream: FakeUpstream) -> Iterator[GatewayProcess]:
    root = tmp_path_factory.mktemp("console-browser")
    write_bundle(root / "policies", upstream)
    with GatewayProcess(root / "policies", root / "data") as process:
        traffic(process)
        yield process


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        yield launched
        launched.close()


class Watched:
    """A page with every request and every console error / page error recorded."""

    def __init__(self, browser: Browser, gw: GatewayProcess) -> None:
        self.context = browser.new_context(accept_downloads=True, viewport={"width": 1360, "height": 900})
        self.page: Page = self.context.new_page()
        self.gw = gw
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def go(self, path: str) -> Any:
        return self.page.goto(f"{self.gw.url}{path}")

    def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        target = ARTIFACTS / f"console-{name}.png"
        self.page.screenshot(path=str(target), full_page=True)
        extra = os.environ.get("TOLLGATE_SCREENSHOTS")
        if extra:
            Path(extra).mkdir(parents=True, exist_ok=True)
            shutil.copy(target, Path(extra) / target.name)

    def sign_in(self, secret: str) -> None:
        self.go("/console/")
        self.page.fill("#key", secret)
        self.page.click("#signin")
        self.page.wait_for_load_state()

    def check_clean(self, expected_errors: int = 0) -> None:
        prefix = f"{self.gw.url}/"
        outside = [u for u in self.requests if not (u.startswith(prefix) or u.startswith("data:"))]
        assert outside == [], f"requests left the gateway: {outside}"
        assert len(self.errors) == expected_errors, self.errors

    def close(self) -> None:
        self.context.close()


@pytest.fixture()
def tab(browser: Browser, gw: GatewayProcess) -> Iterator[Watched]:
    watched = Watched(browser, gw)
    yield watched
    watched.close()


def test_operator_sees_everything_and_follows_the_filters(tab: Watched, gw: GatewayProcess) -> None:
    page = tab.page
    tab.go("/console/")
    assert page.url.endswith("/console/login")
    tab.shot("login")
    tab.sign_in(KEYS["admin"])
    assert page.url.endswith("/console/")
    assert page.text_content("#who") and "ops" in str(page.text_content("#who"))
    page.wait_for_selector("[data-chart] canvas")  # uPlot drew the charts
    assert page.locator("[data-chart] canvas").count() >= 2
    expect(page.locator("#live-rps")).not_to_have_text("…", timeout=10000)  # (the CSP forbids eval)
    top = str(page.text_content("#top-models"))
    assert "mock-small" in top and "mock-large" in top
    assert "team" in str(page.text_content("#near"))
    tab.shot("overview")

    page.select_option("#f-by", "key")  # a select applies itself
    page.wait_for_url("**by=key**")
    assert "alice" in str(page.text_content("#top-keys"))

    page.click("#nav-usage")
    page.fill("#f-key", "alice")
    page.click("#apply")
    page.wait_for_url("**key=alice**")
    cells = page.locator("#usage tbody tr td:nth-child(3)").all_text_contents()
    assert cells and set(cells) == {"alice"}
    tab.shot("usage")

    with page.expect_download() as info:
        page.click("#download-csv")
    saved = Path(info.value.path())
    with saved.open() as fh:
        rows = list(csv.DictReader(fh))
    expected = gw.usage_sql("SELECT request_id FROM usage WHERE key_id = 'alice' ORDER BY started_at, request_id")
    assert [r["request_id"] for r in rows] == [e["request_id"] for e in expected]

    page.click("#usage a[href^='/console/keys/alice']")
    page.wait_for_url("**/console/keys/alice**")
    assert page.text_content("#key-id") == "alice"
    page.goto(f"{gw.url}/console/usage?limit=lots")
    assert "parameter `limit`" in str(page.text_content("#error-message"))
    tab.check_clean(expected_errors=1)  # the 400 page's own status, which chromium logs


def test_key_holder_sees_only_their_own_usage(tab: Watched, gw: GatewayProcess) -> None:
    page = tab.page
    chat(gw, "alice", "demo", 1)
    tab.sign_in(KEYS["alice"])
    assert page.url.endswith("/console/me")
    page.wait_for_selector("[data-chart] canvas")
    body = str(page.text_content("body"))
    assert "alice" in body and "bob" not in body and "switched-off" not in body
    assert "mock-large" in str(page.text_content("#models"))
    assert gw.url in str(page.text_content("#base-url"))
    assert "OpenAI(base_url" in str(page.text_content("#snippet-openai"))
    assert page.locator("#recent tbody tr").count() >= 5
    assert page.locator("#nav-usage").count() == 0  # no operator page in the menu
    tab.shot("key")
    tab.check_clean()

    answer = tab.go("/console/usage")
    assert answer.status == 403 and "for operators" in str(page.text_content("#error-message"))
    tab.go("/console/keys/bob")
    assert "bob" not in str(page.text_content("main"))
    page.click("#logout")
    page.wait_for_url("**/console/login")
    tab.check_clean(expected_errors=2)  # the two 403 pages


def test_a_wrong_key_is_refused_without_a_hint(tab: Watched) -> None:
    tab.sign_in("tg-not-a-key")
    assert "cannot sign in" in str(tab.page.text_content("#signin-error"))
    tab.sign_in(KEYS["off"])
    assert "cannot sign in" in str(tab.page.text_content("#signin-error"))
    assert "switched-off" not in str(tab.page.content())
    tab.check_clean(expected_errors=2)  # the two 401 answers
