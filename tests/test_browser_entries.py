"""The entry editor in a real Chromium against a real `serve` process: create an entry, find it in the list,
edit it, see the draft answer with it before publishing; a concurrent save shows both versions and keeps the
editor's text; an answer with markup stays text in the editor."""
import json
import shutil
import urllib.parse
import urllib.request

import pytest

from conftest import SEED_CORPUS, running_server
from test_browser import ARTIFACTS, browser  # noqa: F401 - the fixture; skips with no browser
from playwright.sync_api import expect

TOKEN = "entries-browser-token"
QUESTION = "二级建造师继续教育学时怎么查询？"
TRICK = '<img src=x onerror="window.pwned=1">[链接](javascript:alert(1))'


def _put(url: str, path: str, body: dict) -> dict:
    request = urllib.request.Request(url + path, json.dumps(body).encode(), method="PUT",
                                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_editor_creates_finds_edits_and_tests_an_entry_against_the_draft(browser, seed_index, tmp_path):
    corpus, index = tmp_path / "corpus", tmp_path / "index"
    shutil.copytree(SEED_CORPUS, corpus)
    shutil.copytree(seed_index, index)
    env = {"RETRIEVER_ADMIN_TOKEN": TOKEN, "RETRIEVER_CORPUS": str(corpus)}
    context = browser.new_context(locale="zh-CN", viewport={"width": 1100, "height": 900})
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())  # the delete confirmation
    with running_server(index, env=env, workers=1) as (url, _):
        page.goto(url + "/admin")
        page.get_by_label("管理令牌").fill(TOKEN)
        page.get_by_role("button", name="登录").click()
        panel = page.locator("#entries-panel")
        expect(panel.locator("#entries-page")).to_contain_text("共 ", timeout=15_000)

        # Add an entry whose answer carries markup: in the editor it is text to edit, never HTML.
        panel.get_by_role("button", name="新建条目").click()
        page.locator("#entry-question").fill(QUESTION)
        page.locator("#entry-paraphrases").fill("二建继续教育学时查询\n继续教育学时在哪里看")
        page.locator("#entry-answer").fill("登录继续教育平台查询学时。" + TRICK)
        page.locator("#entry-category").fill("继续教育")
        page.get_by_role("button", name="保存").click()
        expect(page.locator("#entries-notice")).to_contain_text("已保存", timeout=10_000)
        expect(page.locator("#entry-meta")).to_contain_text("版本")
        assert page.evaluate("window.pwned") is None and page.locator("#entries-panel img").count() == 0

        # Find it in the list by a word of its paraphrases, and open it.
        page.locator("#entries-q").fill("继续教育学时在哪里")
        panel.get_by_role("button", name="搜索").click()
        row = page.locator("#entries-rows tr")
        expect(row).to_have_count(1)
        expect(row.first).to_contain_text(QUESTION)
        faq_id = row.first.get_attribute("data-faq-id")
        page.locator("#entry-close").click()
        row.first.get_by_role("button", name="打开").click()
        expect(page.locator("#entry-answer")).to_have_value("登录继续教育平台查询学时。" + TRICK)

        # Edit it: one more paraphrase; then the draft answers the new wording, before any publish.
        page.locator("#entry-paraphrases").fill("二建继续教育学时查询\n继续教育学时在哪里看\n二建学时怎么查")
        page.locator("#entry-valid-until").fill("2099-12-31")
        page.get_by_role("button", name="保存").click()
        expect(page.locator("#entries-notice")).to_contain_text("已保存")
        assert "valid_until: \"2099-12-31\"" in (corpus / "seed.yaml").read_text(encoding="utf-8")
        page.locator("#draft-query").fill("二建学时怎么查")
        page.get_by_role("button", name="测试").click()
        first = page.locator("#draft-result li").first
        expect(first).to_have_attribute("data-faq-id", faq_id, timeout=60_000)
        expect(page.locator("#draft-result")).to_contain_text("判定：")
        expect(page.locator("#draft-result")).to_contain_text("判定参数来自正在服务的版本")
        expect(first.locator(".draft-answer")).to_contain_text("<img src=x")  # shown as text
        assert page.evaluate("window.pwned") is None
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "workbench-entries.png"), full_page=True)
        search = f"{url}/v1/search?q={urllib.parse.quote('二建学时怎么查')}"
        with urllib.request.urlopen(search, timeout=30) as response:
            served = json.loads(response.read())
        assert faq_id not in [hit["faq_id"] for hit in served["results"]]  # citizens still get the served index

        # Someone else saves meanwhile: this editor's save is refused with both versions, their text kept.
        version = json.loads(urllib.request.urlopen(urllib.request.Request(
            f"{url}/admin/api/entries/{faq_id}", headers={"Authorization": f"Bearer {TOKEN}"}), timeout=30).read())
        _put(url, f"/admin/api/entries/{faq_id}", {"version": version["version"], "answer": "另一位编辑的答案"})
        page.locator("#entry-answer").fill("我的答案")
        page.get_by_role("button", name="保存").click()
        conflict = page.locator("#entry-conflict")
        expect(conflict).to_be_visible()
        expect(conflict.locator('tr[data-field="answer"] .conflict-current')).to_have_text("另一位编辑的答案")
        expect(conflict.locator('tr[data-field="answer"] .conflict-mine')).to_have_text("我的答案")
        expect(page.locator("#entry-answer")).to_have_value("我的答案")
        conflict.get_by_role("button", name="用我的版本覆盖").click()
        expect(page.locator("#entries-notice")).to_contain_text("已保存")

        # Disable, then delete it (with the confirmation): the corpus file is as it was.
        page.locator("#entry-toggle").click()
        expect(page.locator("#entries-notice")).to_contain_text("已停用")
        page.locator("#entry-delete").click()
        expect(page.locator("#entries-notice")).to_contain_text("已删除")
    context.close()
    assert (corpus / "seed.yaml").read_bytes() == (SEED_CORPUS / "seed.yaml").read_bytes()
