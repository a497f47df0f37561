"""Review before publish, end to end in a real Chromium against a real `serve` process with a users file.

An editor logs in, adds an entry whose answer links to a guide in the entry editor (and, through the
entry API, one that expired yesterday: the editor form has no date fields), tests a query against the
draft and submits; a reviewer sends it back with a comment, which the editor sees; the editor edits and
resubmits; the reviewer approves and publishes; the search page answers with the new entry and its link
opens the guide; the expired entry is not answered; the audit log names both users.
"""
import datetime as dt
import functools
import http.server
import json
import shutil
import threading
import urllib.parse
import urllib.request
from zoneinfo import ZoneInfo

import pytest

from conftest import SEED_CORPUS, running_server
from test_browser import ARTIFACTS, browser  # noqa: F401 - the fixture; skips with no browser
from playwright.sync_api import expect

from retriever.editorial.accounts import UserStore
from retriever.editorial.audit import AuditLog

EDITOR, REVIEWER = ("editor1", "editor1-password"), ("reviewer1", "reviewer1-password")
QUESTION = "居住证在哪里办理？"
EXPIRED_QUESTION = "二〇二五年度居住证集中换领点在哪里？"
GUIDE_TITLE = "居住证办事指南"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # the test's output is for the test
        pass


@pytest.fixture()
def guide_site(tmp_path):
    """A page on 127.0.0.1 that the new answer links to (the test has no internet); stopped after the test."""
    folder = tmp_path / "site"
    folder.mkdir()
    (folder / "guide.html").write_text(f'<!doctype html><meta charset="utf-8"><title>{GUIDE_TITLE}</title>'
                                       f"<h1>{GUIDE_TITLE}</h1>", encoding="utf-8")
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/guide.html"
    server.shutdown()
    server.server_close()


def _log_in(browser, url, who):
    context = browser.new_context(locale="zh-CN", viewport={"width": 1200, "height": 1000})
    page = context.new_page()
    page.goto(url + "/admin")
    page.locator("#login-name").fill(who[0])
    page.locator("#login-password").fill(who[1])
    page.get_by_role("button", name="登录").click()
    expect(page.locator("#review-panel")).to_be_visible(timeout=15_000)
    return context, page


def _call(page, method, path, body=None):
    """A JSON request from the logged-in page itself (its session cookie, the workbench's header)."""
    return page.evaluate("""async ([method, path, body]) => {
        const options = {method, credentials: "same-origin",
                         headers: {"X-Requested-With": "workbench", "Content-Type": "application/json"}};
        if (body !== null) options.body = JSON.stringify(body);
        const response = await fetch(path, options);
        return {status: response.status, body: await response.json()};
    }""", [method, path, body])


def _search(page, url, query):
    page.goto(url + "/")
    page.get_by_role("searchbox").press_sequentially(query, delay=20)
    return page.locator("#results li").first


def test_editor_submits_reviewer_approves_and_the_page_answers_with_the_link(browser, seed_index, tmp_path,
                                                                               guide_site):
    corpus, index = tmp_path / "corpus", tmp_path / "index"
    shutil.copytree(SEED_CORPUS, corpus)
    shutil.copytree(seed_index, index)
    users = UserStore(tmp_path / "users.json")
    users.add(EDITOR[0], ["editor"], EDITOR[1])
    users.add(REVIEWER[0], ["reviewer"], REVIEWER[1])
    audit_path = tmp_path / "audit.jsonl"
    env = {"RETRIEVER_ADMIN_TOKEN": "", "RETRIEVER_CORPUS": str(corpus), "RETRIEVER_USERS_FILE": str(users.path),
           "RETRIEVER_AUDIT_LOG": str(audit_path), "RETRIEVER_UNMATCHED_LOG": "off", "RETRIEVER_FEEDBACK_LOG": "off"}
    yesterday = (dt.datetime.now(ZoneInfo("Asia/Shanghai")).date() - dt.timedelta(days=1)).isoformat()
    answer = f"请先阅读[办事指南]({guide_site})，材料齐全后到社区服务中心办理。"
    with running_server(index, env=env, workers=1) as (url, _):
        editor_context, editor = _log_in(browser, url, EDITOR)
        expect(editor.locator("#review-mode")).to_have_text("发布前需要审核人批准变更集。")
        # The editor adds the entry in the entry editor, and tries a citizen's question on the draft.
        editor.locator("#entries-new").click()
        editor.locator("#entry-id").fill("residence-permit")
        editor.locator("#entry-question").fill(QUESTION)
        editor.locator("#entry-paraphrases").fill("办居住证去哪里\n居住证办理地点")
        editor.locator("#entry-answer").fill(answer)
        editor.locator("#entry-category").fill("居住证")
        editor.locator("#entry-save").click()
        expect(editor.locator("#entries-notice")).to_contain_text("已保存 residence-permit")
        # The editor form has no validity dates: the expired entry goes in through the same entry API.
        expired = _call(editor, "POST", "/admin/api/entries", {
            "id": "permit-2025", "question": EXPIRED_QUESTION, "answer": "已结束。", "valid_until": yesterday})
        assert expired["status"] == 201, expired
        editor.locator("#draft-query").fill("办居住证去哪里")
        editor.locator("#draft-form").get_by_role("button", name="测试").click()
        expect(editor.locator('#draft-result[data-decision="answer"] li').first).to_have_attribute(
            "data-faq-id", "residence-permit", timeout=30_000)

        editor.locator("#review-comment").fill("新增居住证办理条目")
        editor.locator("#review-submit").get_by_role("button", name="提交审核").click()
        submitted = editor.locator('article.changeset[data-status="submitted"]')
        expect(submitted).to_contain_text("新增 2 条", timeout=10_000)
        new_entry = submitted.locator('li.entry-change[data-faq-id="residence-permit"]')
        expect(new_entry).to_contain_text(f"[办事指南]({guide_site})")  # the Markdown shown as text in the diff
        expect(submitted.locator("a")).to_have_count(0)
        expect(submitted.get_by_role("button", name="批准")).to_have_count(0)  # an editor does not approve
        expect(editor.locator("#review-publish")).to_be_disabled()

        # The reviewer reads the diff and sends it back with a comment; the editor sees it.
        reviewer_context, reviewer = _log_in(browser, url, REVIEWER)
        pending = reviewer.locator('article.changeset[data-status="submitted"]')
        expect(pending.locator('li.entry-change[data-faq-id="permit-2025"]')).to_contain_text(yesterday)
        pending.get_by_label("退回意见").fill("请给居住证条目加上标签")
        pending.get_by_role("button", name="退回").click()
        expect(reviewer.locator('article.changeset[data-status="sent_back"]')).to_be_visible()
        editor.locator("#review-refresh").click()
        expect(editor.locator('article.changeset[data-status="sent_back"] .review-comment')).to_contain_text(
            "reviewer1 退回")
        expect(editor.locator('article.changeset[data-status="sent_back"]')).to_contain_text("请给居住证条目加上标签")

        editor.locator("#entry-close").click()  # still open from adding it: opened anew, it shows once loaded
        expect(editor.locator("#entry-editor")).to_be_hidden()
        editor.locator("#entries-rows tr", has_text="residence-permit").get_by_role("button", name="打开").click()
        expect(editor.locator("#entry-editor")).to_be_visible()
        expect(editor.locator("#entry-title")).to_have_text("编辑条目 residence-permit")
        before = editor.locator("#entry-meta").text_content()  # names the entry's version: saving changes it
        editor.locator("#entry-tags").fill("办理地点")
        editor.locator("#entry-save").click()
        expect(editor.locator("#entry-meta")).not_to_have_text(before)
        editor.locator("#review-comment").fill("已加标签")
        editor.locator("#review-submit").get_by_role("button", name="提交审核").click()
        expect(editor.locator('article.changeset[data-status="submitted"]')).to_contain_text("已加标签")

        # The reviewer approves and publishes.
        reviewer.reload()
        again = reviewer.locator('article.changeset[data-status="submitted"]')
        expect(again.locator('li.entry-change[data-faq-id="residence-permit"] [data-field="tags"]')).to_contain_text(
            "办理地点")
        again.get_by_role("button", name="批准").click()
        expect(reviewer.locator('article.changeset[data-status="approved"]')).to_be_visible()
        publish = reviewer.locator("#review-publish")
        expect(publish).to_be_enabled()
        publish.click()
        result = reviewer.locator('#publish-result[data-state="done"]')
        expect(result).to_contain_text("已发布并上线", timeout=240_000)
        expect(reviewer.locator('article.changeset[data-status="published"]')).to_contain_text("已发布为版本",
                                                                                                timeout=15_000)
        ARTIFACTS.mkdir(exist_ok=True)
        reviewer.screenshot(path=str(ARTIFACTS / "workbench-review.png"), full_page=True)
        editor.locator("#review-refresh").click()
        expect(editor.locator('article.changeset[data-status="published"]')).to_contain_text("reviewer1")

        # A citizen asks: the new entry answers, and its link opens the guide.
        citizen_context = browser.new_context(locale="zh-CN")
        citizen = citizen_context.new_page()
        first = _search(citizen, url, "居住证去哪办")
        expect(first).to_have_attribute("data-faq-id", "residence-permit", timeout=15_000)
        first.click()
        link = first.locator(".answer a")
        expect(link).to_have_text("办事指南")
        expect(link).to_have_attribute("href", guide_site)
        with citizen_context.expect_page() as opened:
            link.click()
        expect(opened.value).to_have_title(GUIDE_TITLE, timeout=10_000)
        # The entry whose validity ended yesterday is published but never answered.
        query = urllib.parse.quote(EXPIRED_QUESTION)
        answered = json.loads(urllib.request.urlopen(f"{url}/v1/search?q={query}", timeout=15).read())
        assert "permit-2025" not in [hit["faq_id"] for hit in answered["results"]], answered
        _search(citizen, url, EXPIRED_QUESTION)
        expect(citizen.locator("#status")).not_to_have_text("", timeout=15_000)
        expect(citizen.locator('#results li[data-faq-id="permit-2025"]')).to_have_count(0)

        # The audit log: every step, by whom (the reviewer reads it in the workbench too).
        expect(reviewer.locator("#audit-panel")).to_be_visible()
        reviewer.locator("#audit-form").get_by_role("button", name="筛选").click()
        expect(reviewer.locator("#audit")).to_contain_text("changeset.approve")
        expect(reviewer.locator("#audit")).to_contain_text("editor1")
        for context in (editor_context, reviewer_context, citizen_context):
            context.close()
    steps = [(r["actor"], r["action"]) for r in reversed(AuditLog(audit_path).read(limit=1000))]
    for step in [("editor1", "login"), ("editor1", "entry.create"), ("editor1", "changeset.submit"),
                 ("reviewer1", "login"), ("reviewer1", "changeset.send_back"), ("editor1", "entry.update"),
                 ("reviewer1", "changeset.approve"), ("reviewer1", "publish.started"), ("reviewer1", "publish.done"),
                 ("reviewer1", "changeset.publish")]:
        assert step in steps, (step, steps)
    order = [steps.index(s) for s in [("editor1", "changeset.submit"), ("reviewer1", "changeset.send_back"),
                                       ("reviewer1", "changeset.approve"), ("reviewer1", "publish.done")]]
    assert order == sorted(order)


def test_a_reviewer_sees_only_the_panels_their_role_may_use(browser, seed_index, tmp_path):
    """The groups, pending and conflicts panels need the editor role: hidden (not "无法加载 403") for a reviewer,
    as are the entry editor's writing buttons; an editor sees them."""
    corpus, index = tmp_path / "corpus", tmp_path / "index"
    shutil.copytree(SEED_CORPUS, corpus, ignore=shutil.ignore_patterns(".workbench"))
    shutil.copytree(seed_index, index)
    users = UserStore(tmp_path / "users.json")
    users.add(EDITOR[0], ["editor"], EDITOR[1])
    users.add(REVIEWER[0], ["reviewer"], REVIEWER[1])
    env = {"RETRIEVER_ADMIN_TOKEN": "", "RETRIEVER_CORPUS": str(corpus), "RETRIEVER_USERS_FILE": str(users.path),
           "RETRIEVER_DATA_DIR": str(tmp_path / "data")}
    editor_only = ("#groups", "#pending", "#conflicts")
    with running_server(index, env=env, workers=1) as (url, _):
        reviewer_context, reviewer = _log_in(browser, url, REVIEWER)
        expect(reviewer.locator("#whoami")).to_contain_text("reviewer1")
        reviewer.locator("#entries-rows .entry-open").first.click()  # the roles are known once entries load
        expect(reviewer.locator("#entry-editor")).to_be_visible()
        for hidden in (*editor_only, "#entries-new", "#entry-save", "#entry-toggle", "#entry-delete"):
            expect(reviewer.locator(hidden)).to_be_hidden()
        expect(reviewer.locator("#entry-close")).to_be_visible()
        expect(reviewer.locator("#audit-panel")).to_be_visible()
        # The panels a reviewer may use load (through workbench-common.js), with no error shown.
        expect(reviewer.locator("#hits-table")).to_be_visible()
        expect(reviewer.locator("#validity-today")).to_contain_text("服务日期")
        expect(reviewer.locator("#audit")).to_contain_text("login")
        expect(reviewer.get_by_text("无法加载")).to_have_count(0)
        expect(reviewer.locator("#bench [role=alert].error")).to_have_count(0)
        editor_context, editor = _log_in(browser, url, EDITOR)
        for shown in (*editor_only, "#entries-new"):
            expect(editor.locator(shown)).to_be_visible()
        expect(editor.locator("#pending")).to_contain_text("正在服务的版本", timeout=15_000)  # loaded, not refused
        expect(editor.get_by_text("无法加载")).to_have_count(0)
        for context in (reviewer_context, editor_context):
            context.close()
