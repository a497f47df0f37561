"""The editors' workbench: login and session, groups of unmatched and unhelpful queries, corpus edits
(atomic, with backups, layout kept), pending changes, publishing through the gate; the Chinese report."""
import shutil
import time

import numpy as np
import pytest

from conftest import SEED_CORPUS
from retriever.batch.report import axis_range, collect, render
from retriever.config import ServiceConfig
from retriever.corpus import FaqEntry, load_corpus
from retriever.editorial.editing import (EditError, InboxItem, add_candidates, add_examples, group_items, inbox_items,
                               pending_changes, read_log)
from retriever.http import create_app
from retriever.http.logs import UnmatchedLog
from retriever.reload import SearcherHolder
from retriever.normalize import normalize
from retriever.search import Searcher
from retriever.store import current_version

TOKEN = "bench-token"
HEADERS = {"X-Requested-With": "workbench"}


@pytest.fixture()
def bench(tmp_path, seed_index, encoder):
    """A served copy of the seed index, a copy of the seed corpus, and both logs, in tmp_path."""
    corpus = tmp_path / "corpus"
    shutil.copytree(SEED_CORPUS, corpus)
    index = tmp_path / "index"
    shutil.copytree(seed_index, index)
    holder = SearcherHolder(index, lambda folder: Searcher.load(folder, encoder))
    holder.load_initial()
    config = ServiceConfig(admin_token=TOKEN, corpus_dir=str(corpus), unmatched_log=str(tmp_path / "unmatched.jsonl"),
                           feedback_log=str(tmp_path / "feedback.jsonl"), rate_limit=None)
    app = create_app(holder, config)
    return {"app": app, "client": app.test_client(), "corpus": corpus, "index": index, "holder": holder,
            "config": config}


def _login(client):
    response = client.post("/admin/login", json={"token": TOKEN}, headers=HEADERS)
    assert response.status_code == 200, response.get_json()
    return response


# --- who may -------------------------------------------------------------------------------------


def test_login_keeps_the_token_out_of_urls_and_cookies(bench):
    client = bench["client"]
    page = client.get("/admin")
    assert page.status_code == 200 and "FAQ 编辑工作台" in page.get_data(as_text=True)
    assert client.get("/admin/api/session").get_json()["editor"] is False
    wrong = client.post("/admin/login", json={"token": "guess"}, headers=HEADERS)
    assert wrong.status_code == 401 and wrong.get_json()["error"] == "wrong_token"
    no_header = client.post("/admin/login", json={"token": TOKEN})
    assert no_header.status_code == 403 and no_header.get_json()["error"] == "missing_csrf_header"
    cookie = _login(client).headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/admin" in cookie and TOKEN not in cookie
    assert client.get("/admin/api/session").get_json() == {"editor": True, "enabled": True, "corpus": True,
                                                           "publish": True}
    client.post("/admin/logout", headers=HEADERS)
    assert client.get("/admin/api/groups").status_code == 401


def test_endpoints_take_the_session_or_the_bearer_token(bench):
    client = bench["client"]
    refused = client.get("/admin/api/pending")
    assert refused.status_code == 401 and refused.get_json()["error"] == "login_required"
    assert client.get("/admin/api/pending", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert client.get("/admin/api/pending", headers={"Authorization": "Bearer nope"}).status_code == 401
    _login(client)
    forged = client.post("/admin/api/assign", json={"action": "candidate", "texts": ["x"]})  # no custom header
    assert forged.status_code == 403 and forged.get_json()["error"] == "missing_csrf_header"
    assert not (bench["corpus"] / "candidates.jsonl").exists()


def test_workbench_is_off_without_an_admin_token(searcher):
    client = create_app(searcher).test_client()
    response = client.post("/admin/login", json={"token": "x"}, headers=HEADERS)
    assert response.status_code == 403 and response.get_json()["error"] == "admin_disabled"


def test_too_many_wrong_tokens_wait(bench):
    client = bench["client"]
    statuses = [client.post("/admin/login", json={"token": "guess"}, headers=HEADERS).status_code for _ in range(11)]
    assert statuses[:10] == [401] * 10 and statuses[10] == 429
    assert client.post("/admin/login", json={"token": TOKEN}, headers=HEADERS).status_code == 429  # even right


# --- groups --------------------------------------------------------------------------------------


def test_unmatched_and_unhelpful_queries_are_grouped_with_their_closest_entries(bench):
    client, config = bench["client"], bench["config"]
    log = UnmatchedLog(config.unmatched_log)  # the service's own writer
    for query in ["监理工程师怎么注销", "监理工程师怎么注销", "监理工程师怎样注销", "造价工程师证书怎么注销", "今天天气怎么样",
                  "注销流程"]:
        log.record(query, "cancel-01", 0.9, 0.92, "v", "search")
    vote = {"query": "离职后注册证书怎么处理", "faq_id": "cancel-04", "helpful": False}
    assert client.post("/v1/feedback", json=vote).status_code == 201
    assert client.post("/v1/feedback", json={**vote, "helpful": True}).status_code == 201  # helpful: not listed
    _login(client)
    data = client.get("/admin/api/groups").get_json()
    groups = {g["texts"][0]["text"]: g for g in data["groups"]}
    # 注销流程 is a paraphrase already; 造价工程师 (cosine 0.93 with 监理工程师) is another question
    assert set(groups) == {"监理工程师怎么注销", "造价工程师证书怎么注销", "今天天气怎么样", "离职后注册证书怎么处理"}
    near = groups["监理工程师怎么注销"]
    assert near["count"] == 3 and [t["text"] for t in near["texts"]] == ["监理工程师怎么注销", "监理工程师怎样注销"]
    assert data["groups"][0]["count"] == 3  # most frequent first
    assert groups["离职后注册证书怎么处理"]["texts"][0]["unhelpful_faq_ids"] == {"cancel-04": 1}
    assert len(near["closest"]) == 3 and near["closest"][0]["faq_id"].startswith("cancel-")
    assert {e["id"] for e in data["entries"]} == {e.id for e in load_corpus(SEED_CORPUS)}


# --- edits ---------------------------------------------------------------------------------------


def test_assigning_a_group_edits_the_corpus_atomically_and_shows_as_pending(bench):
    client, corpus = bench["client"], bench["corpus"]
    before = (corpus / "seed.yaml").read_text(encoding="utf-8")
    _login(client)
    added = client.post("/admin/api/assign", headers=HEADERS, json={
        "action": "paraphrase", "faq_id": "cancel-02", "texts": ["注销需要企业同意吗", "注销进度"]}).get_json()
    assert added["added"] == ["注销需要企业同意吗"] and added["skipped"] == [{"text": "注销进度", "reason": "条目中已有"}]
    after = (corpus / "seed.yaml").read_text(encoding="utf-8")
    assert [line for line in after.splitlines() if line not in before.splitlines()] == ["      - 注销需要企业同意吗"]
    assert after.startswith("# 一级建造师注册常见问题解答")  # comments and layout kept
    assert (corpus / added["backup"]).read_text(encoding="utf-8") == before
    negative = client.post("/admin/api/assign", headers=HEADERS, json={
        "action": "negative", "faq_id": "cancel-01", "texts": ["监理工程师怎么注销"]}).get_json()
    assert negative["added"] == ["监理工程师怎么注销"]
    contradiction = client.post("/admin/api/assign", headers=HEADERS, json={
        "action": "paraphrase", "faq_id": "cancel-01", "texts": ["监理工程师怎么注销"]}).get_json()
    assert contradiction["added"] == [] and "负例" in contradiction["skipped"][0]["reason"]
    assert client.post("/admin/api/assign", headers=HEADERS, json={
        "action": "candidate", "texts": ["社保卡怎么补办"]}).status_code == 200
    pending = client.get("/admin/api/pending").get_json()
    changes = {c["faq_id"]: c for c in pending["changes"]}
    assert changes["cancel-02"]["paraphrases"] == {"added": ["注销需要企业同意吗"], "removed": []}
    assert changes["cancel-01"]["negatives"]["added"] == ["监理工程师怎么注销"]
    assert [c["query"] for c in pending["candidates"]] == ["社保卡怎么补办"]
    assert len(load_corpus(corpus)) == len(load_corpus(SEED_CORPUS))  # candidates.jsonl is not an entry file


@pytest.mark.parametrize("body, status, code", [
    ({"action": "paraphrase", "texts": ["x"]}, 400, "missing_faq_id"),
    ({"action": "paraphrase", "faq_id": "nope", "texts": ["x"]}, 409, "edit_refused"),
    ({"action": "rename", "faq_id": "cancel-01", "texts": ["x"]}, 400, "invalid_assignment"),
    ({"action": "paraphrase", "faq_id": "cancel-01", "texts": []}, 400, "invalid_assignment"),
    ({"action": "paraphrase", "faq_id": "cancel-01", "texts": ["长" * 501]}, 409, "edit_refused"),
])
def test_bad_assignments_change_nothing(bench, body, status, code):
    client, corpus = bench["client"], bench["corpus"]
    before = (corpus / "seed.yaml").read_bytes()
    _login(client)
    response = client.post("/admin/api/assign", headers=HEADERS, json=body)
    assert response.status_code == status and response.get_json()["error"] == code, response.get_json()
    assert (corpus / "seed.yaml").read_bytes() == before


def test_edits_of_jsonl_and_sheet_files_read_back_and_keep_backups(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"id": "j1", "question": "问题一", "answer": "答一"}\n', encoding="utf-8")
    (tmp_path / "b.csv").write_text("\ufeff编号,标准问题,答案\r\ns1,问题二,答二\r\n", encoding="utf-8")
    (tmp_path / "c.yaml").write_text("- {id: y1, question: 问题三, answer: 答三}\n- id: y2\n  question: 问题四\n"
                                     "  paraphrases: [甲]\n  answer: 答四\n", encoding="utf-8")
    assert add_examples(tmp_path, "j1", "paraphrase", ["一的说法"]).added == ("一的说法",)
    assert add_examples(tmp_path, "s1", "negative", ["不是二"]).added == ("不是二",)
    assert add_examples(tmp_path, "y2", "paraphrase", ["乙: 丙"]).added == ("乙: 丙",)
    assert "paraphrases: [甲, \"乙: 丙\"]" in (tmp_path / "c.yaml").read_text(encoding="utf-8")  # flow list kept
    assert add_examples(tmp_path, "y1", "negative", ["非三"]).added == ("非三",)  # flow entry: file rewritten
    entries = {e.id: e for e in load_corpus(tmp_path)}
    assert entries["j1"].paraphrases == ("一的说法",) and entries["s1"].negatives == ("不是二",)
    assert entries["y2"].paraphrases == ("甲", "乙: 丙") and entries["y1"].negatives == ("非三",)
    assert (tmp_path / "b.csv").read_text(encoding="utf-8-sig").startswith("编号,")  # headers stay Chinese
    assert len(list((tmp_path / ".workbench" / "backups").iterdir())) == 4
    with pytest.raises(EditError, match="no entry 'zz'"):
        add_examples(tmp_path, "zz", "paraphrase", ["x"])
    assert add_candidates(tmp_path, ["新问题", "新问题"]).added == ("新问题",)
    assert add_candidates(tmp_path, ["新问题"]).skipped == (("新问题", "already_candidate"),)


def test_pending_changes_and_grouping_are_plain_functions():
    served = [FaqEntry("a", "问A", "答"), FaqEntry("b", "问B", "答", paraphrases=("b1",)), FaqEntry("c", "问C", "答")]
    corpus = [FaqEntry("a", "问A", "答"), FaqEntry("b", "问B", "新答", paraphrases=("b2",)), FaqEntry("d", "问D", "答")]
    assert pending_changes(corpus, served) == [
        {"faq_id": "b", "question": "问B", "change": "changed", "paraphrases": {"added": ["b2"], "removed": ["b1"]},
         "fields": ["answer"]},
        {"faq_id": "d", "question": "问D", "change": "added"},
        {"faq_id": "c", "question": "问C", "change": "removed"}]
    items = inbox_items([{"query": "x"}, {"query": "ｘ"}, {"query": "y"}, {"query": "问A"}],
                        [{"query": "z", "helpful": False, "faq_id": "a"}, {"query": "y", "helpful": True}],
                        known={normalize("问A")})
    assert [(i.text, i.count, i.unhelpful) for i in items] == [("x", 2, 0), ("y", 1, 0), ("z", 1, 1)]
    vectors = np.array([[1, 0], [0.96, 0.28], [0, 1]], dtype=np.float32)
    groups = group_items([InboxItem("p", "p", 1), InboxItem("q", "q", 3), InboxItem("r", "r", 1)], vectors, 0.95)
    assert [[i.text for i in g.items] for g in groups] == [["p", "q"], ["r"]] and groups[0].count == 4


def test_rotated_logs_are_read_newest_first(tmp_path):
    log = tmp_path / "u.jsonl"
    (tmp_path / "u.jsonl.1").write_text('{"query": "old"}\nnot json\n', encoding="utf-8")
    log.write_text('{"query": "new1"}\n{"query": "new2"}\n', encoding="utf-8")
    assert [r["query"] for r in read_log(log)] == ["new2", "new1", "old"]
    assert [r["query"] for r in read_log(log, limit=2)] == ["new2", "new1"]
    assert read_log(None) == [] and read_log(tmp_path / "missing") == []


# --- publishing ----------------------------------------------------------------------------------


def _wait_for_publish(client, seconds: float = 150) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status = client.get("/admin/api/publish").get_json()
        if status["state"] != "running":
            return status
        time.sleep(0.5)
    raise AssertionError(f"publishing still running after {seconds} s: {status}")


def test_publish_that_would_break_a_labelled_query_is_refused_and_shown(bench):
    """The workbench runs the same gate as the build command: nothing is published, the query is named."""
    client, holder = bench["client"], bench["holder"]
    served, current = holder.current.version, current_version(bench["index"])
    _login(client)
    client.post("/admin/api/assign", headers=HEADERS, json={  # a labelled query of cancel-01, as its negative
        "action": "negative", "faq_id": "cancel-01", "texts": ["注销手续的办理流程"]})
    started = client.post("/admin/api/publish", headers=HEADERS, json={})
    assert started.status_code == 202 and started.get_json()["state"] == "running"
    again = client.post("/admin/api/publish", headers=HEADERS, json={})
    assert again.status_code == 409 and again.get_json()["error"] == "publish_running"
    status = _wait_for_publish(client)
    assert status["state"] == "refused", status
    gate = status["gate"]
    assert gate["passed"] is False and gate["right_after"] < gate["right_before"]
    assert [c["query"] for c in gate["broken"]] == ["注销手续的办理流程"]
    assert holder.current.version == served and current_version(bench["index"]) == current  # nothing published
    assert [c["faq_id"] for c in client.get("/admin/api/pending").get_json()["changes"]] == ["cancel-01"]


# --- the classification report, in Chinese -------------------------------------------------------


def test_report_axis_always_includes_the_threshold():
    assert axis_range([0.80, 0.88], 0.922)[1] > 0.922  # the run that hid its threshold line
    low, high = axis_range([0.95], 0.5)
    assert low < 0.5 < 0.95 < high
    assert axis_range([], None) == (0.0, 1.0)


def test_report_is_in_chinese():
    records = [{"decision": "no_match", "score": 0.80, "text": "今天天气怎么样"}] * 2 + \
              [{"decision": "answer", "score": 0.97, "faq_id": "cancel-02", "question": "注销手续进度如何查询?",
                "text": "注销进度"}]
    page = render(collect(records), "分类报告", threshold=0.922)
    assert "共分类 3 条咨询" in page and "未匹配 2 (66.7%)" in page and "已回答 1 (33.3%)" in page
    assert "阈值 0.922" in page and "最常见的未匹配咨询" in page and "data:image/png;base64,iVBOR" in page
    assert "Score distribution" not in page and "inquiries" not in page
