"""The search page and the embeddable widget in a real headless Chromium (Debian's, driven by Playwright).

Skipped with the reason when Chromium or Playwright is missing, unless RETRIEVER_REQUIRE_BROWSER=1
(set by .ci/run, which installs Chromium), where that is a failure instead.
"""
import http.server
import os
import shutil
import threading
from pathlib import Path

import pytest

from conftest import REPO, running_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = REPO / "tests" / "artifacts"
# Flags for a root, offline, display-less machine: without the background-networking ones,
# Chromium keeps trying to reach Google's hosts.
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
NO_MATCH = "没有找到相关问题，请联系人工客服"


def _missing_reason() -> str | None:
    if CHROMIUM is None:
        return "Chromium is not installed (apt-get install chromium chromium-driver)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -r requirements-dev.txt)"
    return None


if _missing_reason():
    if os.environ.get("RETRIEVER_REQUIRE_BROWSER") == "1":
        pytest.fail(f"browser test required but {_missing_reason()}", pytrace=False)
    pytest.skip(_missing_reason(), allow_module_level=True)

from playwright.sync_api import expect, sync_playwright  # noqa: E402


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture()
def page(browser):
    context = browser.new_context(locale="zh-CN", viewport={"width": 1000, "height": 800})
    page = context.new_page()
    yield page
    context.close()


def test_search_page_answers_as_you_type(page, server):
    page.goto(f"http://127.0.0.1:{server}/")
    box = page.get_by_role("searchbox")
    box.press_sequentially("注销进度在哪查", delay=30)  # typed, so the debounce and cancelling run
    first = page.locator("#results li").first
    expect(first).to_have_attribute("data-faq-id", "cancel-02", timeout=10_000)
    expect(first.locator("h3")).to_have_text("注销手续进度如何查询?")
    expect(first).to_contain_text("匹配问题：")
    expect(first).to_contain_text("相似度 0.9")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "search-page.png"), full_page=True)

    # Keyboard: down into the results, between them, Enter opens the answer, Escape goes back.
    box.press("ArrowDown")
    expect(first).to_be_focused()
    page.keyboard.press("ArrowDown")
    expect(page.locator("#results li").nth(1)).to_be_focused()
    page.keyboard.press("ArrowUp")
    page.keyboard.press("Enter")
    expect(first).to_have_class("open")
    page.keyboard.press("Escape")
    expect(box).to_be_focused()

    box.fill("今天天气怎么样")
    expect(page.locator("#status")).to_contain_text(NO_MATCH, timeout=10_000)
    expect(page.locator("#results li")).to_have_count(0)
    page.screenshot(path=str(ARTIFACTS / "search-page-no-match.png"), full_page=True)


def test_search_page_on_a_phone_screen(browser, server):
    context = browser.new_context(locale="zh-CN", viewport={"width": 375, "height": 740}, is_mobile=True,
                                  has_touch=True, device_scale_factor=2)
    page = context.new_page()
    page.goto(f"http://127.0.0.1:{server}/")
    page.get_by_role("searchbox").fill("手机号被别人绑定了怎么办")
    expect(page.locator("#results li").first).to_have_attribute("data-faq-id", "cancel-03", timeout=10_000)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")  # no sideways scrolling
    page.screenshot(path=str(ARTIFACTS / "search-page-phone.png"))
    context.close()


def test_errors_are_shown_not_swallowed(page, server):
    page.goto(f"http://127.0.0.1:{server}/")
    page.get_by_role("searchbox").fill("注" * 501)  # over the service's query limit
    expect(page.locator("#status")).to_contain_text("查询出错：the query has 501 characters", timeout=10_000)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_widget_embedded_on_another_site(page, seed_index, tmp_path):
    """Another origin hosts a page with the widget script; CORS lets it call the API."""
    with running_server(seed_index, env={"RETRIEVER_CORS_ORIGINS": "*"}) as (api, _):
        site = tmp_path / "site"
        site.mkdir()
        (site / "index.html").write_text(
            '<!doctype html><meta charset="utf-8"><title>某市政务服务网</title><h1>办事指南</h1>'
            f'<div id="ask"></div><script src="{api}/widget.js" data-target="ask" data-top-k="3"></script>',
            encoding="utf-8")
        host = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                               lambda *a: _QuietHandler(*a, directory=str(site)))
        threading.Thread(target=host.serve_forever, daemon=True).start()
        try:
            page.goto(f"http://127.0.0.1:{host.server_port}/")
            page.get_by_role("searchbox").fill("注销进度在哪查")
            results = page.locator("#ask #results li")
            expect(results.first).to_have_attribute("data-faq-id", "cancel-02", timeout=10_000)
            expect(results).to_have_count(3)
        finally:
            host.shutdown()


def test_widget_without_cors_fails_visibly(page, server, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text(
        f'<!doctype html><meta charset="utf-8"><script src="http://127.0.0.1:{server}/widget.js"></script>',
        encoding="utf-8")
    host = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: _QuietHandler(*a, directory=str(site)))
    threading.Thread(target=host.serve_forever, daemon=True).start()
    try:
        page.goto(f"http://127.0.0.1:{host.server_port}/")
        page.get_by_role("searchbox").fill("注销进度")
        expect(page.locator("#status")).to_contain_text("无法连接服务", timeout=10_000)
    finally:
        host.shutdown()


def test_screenshot_artifact_is_a_png():
    shot = ARTIFACTS / "search-page.png"
    assert shot.is_file() and Path(shot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_api_docs_page_renders_every_route(page, server):
    page.goto(f"http://127.0.0.1:{server}/docs")
    expect(page.locator(".opblock")).to_have_count(7, timeout=15_000)
    expect(page.locator(".opblock-summary-path").first).to_have_text("/v1/search")
