"""Answers with a Markdown subset on the real search page (headless Chromium, test_browser.py's setup):
paragraphs, lists, bold and links render; hostile answers render as text and run nothing; an entry whose
last valid day was yesterday is not answered, its replacement is."""
import datetime as dt
import http.server
import json
import re
import threading

import pytest
# First: test_browser skips this module when Chromium or Playwright is missing (before playwright is imported).
from test_browser import ARTIFACTS, CHROMIUM, _QuietHandler, browser, page  # noqa: F401,I001 - fixtures
from conftest import running_server
from playwright.sync_api import expect

from retriever.validity import zone_clock

assert CHROMIUM  # test_browser skipped this module already when there is no browser
BENCH_TOKEN = "markup-bench-token"


def _corpus(landing: str, today: dt.date) -> list[dict]:
    yesterday, tomorrow = today - dt.timedelta(days=1), today + dt.timedelta(days=1)
    return [
        {"id": "guide", "question": "居住证怎么办理？", "paraphrases": ["办居住证要什么材料", "居住证在哪里申请"],
         "answer": f"**办理须知**：请先阅读[办事指南]({landing})。\n\n所需材料：\n- 身份证\n- 户口本\n\n"
                   "办理步骤：\n1. 网上预约\n2. 到[服务中心](https://www.example.gov/center)办理"},
        {"id": "tricks", "question": "居住证到期怎么续签？", "paraphrases": ["居住证过期了怎么办", "居住证续签流程"],
         "answer": "<script>window.__pwned=1</script>[续签说明](javascript:window.__pwned=2)"
                   "<img src=x onerror=\"window.__pwned=3\">&lt;script&gt;window.__pwned=4&lt;/script&gt;"
                   "[邮件](&#106;avascript:window.__pwned=5)**<b onmouseover=\"window.__pwned=6\">粗</b>**"
                   "[x](https://ok.example/\"onmouseover=\"window.__pwned=7)\n- <svg onload=window.__pwned=8>"
                   "\n\n&#60;iframe src=javascript:window.__pwned=9&#62; [联系](mailto:help@example.gov)"},
        {"id": "allowance-old", "question": "居住证补贴标准是多少？", "paraphrases": ["居住证补贴多少钱", "居住证补贴怎么算"],
         "answer": "旧标准：每月100元。", "valid_until": yesterday.isoformat()},
        {"id": "allowance-new", "question": "居住证补贴标准是多少？", "paraphrases": ["居住证补贴多少钱", "居住证补贴怎么算"],
         "answer": "新标准：每月200元。", "valid_from": today.isoformat()},
        {"id": "allowance-next", "question": "明年居住证积分政策", "paraphrases": ["居住证积分新政策"],
         "answer": "明年起施行。", "valid_from": tomorrow.isoformat()},
    ]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A page on another local origin that the answers link to."""
    folder = tmp_path_factory.mktemp("landing")
    (folder / "guide.html").write_text('<!doctype html><meta charset="utf-8"><title>办事指南</title><h1>指南</h1>',
                                       encoding="utf-8")
    host = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: _QuietHandler(*a, directory=str(folder)))
    threading.Thread(target=host.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{host.server_port}/guide.html"
    host.shutdown()


@pytest.fixture(scope="module")
def service(tmp_path_factory, encoder, site):
    from retriever.pipeline import build_from_corpus

    root = tmp_path_factory.mktemp("markup")
    (root / "corpus").mkdir()
    today = zone_clock("Asia/Shanghai")()  # the service's own clock: the system date in its time zone
    (root / "corpus" / "faq.jsonl").write_text(
        "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in _corpus(site, today)), encoding="utf-8")
    build_from_corpus(root / "corpus", root / "index", encoder, progress=False, self_calibration=False)
    with running_server(root / "index", env={"RETRIEVER_ADMIN_TOKEN": BENCH_TOKEN,
                                             "RETRIEVER_DATA_DIR": str(root / "data")}) as (url, _):
        yield url


def _ask(page, url: str, query: str):
    page.goto(url + "/")
    page.get_by_role("searchbox").press_sequentially(query, delay=20)


def _watch(page) -> list[str]:
    """Every dialog the page opens and every console message: a script that ran would leave one."""
    seen: list[str] = []
    page.on("dialog", lambda dialog: (seen.append(f"dialog {dialog.message}"), dialog.dismiss()))
    page.on("console", lambda message: None if message.text.startswith("Failed to load resource")  # favicon
            else seen.append(f"console {message.text}"))
    return seen


def test_paragraphs_lists_bold_and_links_render_and_links_click_through(page, service, site):
    seen = _watch(page)
    _ask(page, service, "办居住证要什么材料")
    answer = page.locator('#results > li[data-faq-id="guide"] .answer')
    expect(answer).to_be_visible(timeout=10_000)
    expect(answer.locator("strong")).to_have_text("办理须知")
    expect(answer.locator("p")).to_have_count(3)
    expect(answer.locator("ul > li")).to_have_text(["身份证", "户口本"])
    expect(answer.locator("ol > li")).to_have_count(2)
    link = answer.get_by_role("link", name="办事指南")
    expect(link).to_have_attribute("href", site)
    expect(link).to_have_attribute("rel", "noopener noreferrer")
    page.locator('#results > li[data-faq-id="guide"]').click()  # open the answer
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "search-page-markup.png"), full_page=True)
    with page.context.expect_page() as opened:
        link.click()
    landing = opened.value
    landing.wait_for_load_state()
    assert landing.url == site and landing.title() == "办事指南"
    assert seen == []


def test_hostile_answers_render_as_text_and_run_nothing(page, service):
    seen = _watch(page)
    _ask(page, service, "居住证续签流程")
    item = page.locator('#results > li[data-faq-id="tricks"]')
    answer = item.locator(".answer")
    expect(answer).to_contain_text("<script>window.__pwned=1</script>", timeout=10_000)
    for shown in ("[续签说明](javascript:window.__pwned=2)", '<img src=x onerror="window.__pwned=3">',
                  "&lt;script&gt;window.__pwned=4&lt;/script&gt;", "[邮件](&#106;avascript:window.__pwned=5)",
                  '<b onmouseover="window.__pwned=6">粗</b>', "<svg onload=window.__pwned=8>",
                  "&#60;iframe src=javascript:window.__pwned=9&#62;"):
        expect(answer).to_contain_text(shown)
    expect(answer.locator("a")).to_have_count(1)  # only the mailto: link
    expect(answer.locator("a")).to_have_attribute("href", "mailto:help@example.gov")
    expect(page.locator("#results script, #results img, #results svg, #results iframe, #results b")).to_have_count(0)
    expect(answer.locator("strong")).to_have_count(1)  # the bold run holds the tag as text
    item.click()
    answer.hover()
    answer.locator("strong").hover()
    page.wait_for_timeout(300)
    assert page.evaluate("window.__pwned") is None
    assert seen == []
    page.screenshot(path=str(ARTIFACTS / "search-page-markup-tricks.png"), full_page=True)


def test_an_entry_valid_until_yesterday_is_not_answered(page, service):
    _ask(page, service, "居住证补贴多少钱")
    first = page.locator("#results > li").first
    expect(first).to_have_attribute("data-faq-id", "allowance-new", timeout=10_000)
    expect(first.locator(".answer")).to_have_text("新标准：每月200元。")
    expect(page.locator('#results > li[data-faq-id="allowance-old"]')).to_have_count(0)
    page.get_by_role("searchbox").fill("")
    page.get_by_role("searchbox").press_sequentially("居住证积分新政策", delay=20)  # valid from tomorrow
    expect(page.locator("#status")).to_contain_text(re.compile("找到|可能"), timeout=10_000)  # searched
    expect(page.locator('#results > li[data-faq-id="allowance-next"]')).to_have_count(0)
    expect(page.locator("#results")).not_to_contain_text("明年起施行")


def test_the_workbench_lists_what_expires_and_what_is_asked(page, service):
    for _ in range(2):
        _ask(page, service, "居住证补贴多少钱")
        expect(page.locator("#results > li").first).to_have_attribute("data-faq-id", "allowance-new",
                                                                       timeout=10_000)
    page.goto(service + "/admin")
    page.get_by_label("管理令牌").fill(BENCH_TOKEN)
    page.get_by_role("button", name="登录").click()
    validity = page.locator("#validity-table")
    expect(validity.locator('tr[data-faq-id="allowance-next"]')).to_contain_text("开始生效", timeout=10_000)
    expect(validity.locator('tr[data-faq-id="allowance-next"]')).to_contain_text("1 天后")
    expect(validity.locator('tr[data-faq-id="allowance-old"]')).to_contain_text("已过期")
    hits = page.locator("#hits-table")
    asked = hits.locator('tr[data-faq-id="allowance-new"]')
    expect(asked).to_be_visible(timeout=10_000)
    counts = [int(text) for text in hits.locator("tr[data-faq-id] td:nth-child(4)").all_inner_texts()]
    assert counts == sorted(counts, reverse=True) and int(asked.locator("td").nth(3).inner_text()) >= 2
    page.locator("#hits-sort").select_option("never")
    expect(hits.locator("tr[data-faq-id]").first.locator("td").nth(5)).to_have_text("从未")
    expect(hits.locator('tr[data-faq-id="allowance-old"] td').nth(3)).to_have_text("0")  # never answered
    counts = [int(text) for text in hits.locator("tr[data-faq-id] td:nth-child(4)").all_inner_texts()]
    assert counts == sorted(counts) and counts[-1] >= 2
    page.locator("#validity-panel").scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "workbench-validity-hits.png"), full_page=True)
