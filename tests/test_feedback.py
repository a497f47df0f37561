"""Feedback (POST /v1/feedback) and the search page's settings from the corpus's collection.yaml."""
import json

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.generation import GenerationMode

from conftest import SEED_CORPUS
from retriever.config import ServiceConfig
from retriever.corpus import load_corpus
from retriever.http import create_app

VOTE = {"query": "注销进度怎么查", "faq_id": "cancel-02", "helpful": False, "index_version": "v1",
        "comment": "没说要多久"}


@pytest.fixture()
def feedback_log(tmp_path):
    return tmp_path / "feedback.jsonl"


@pytest.fixture()
def voting(searcher, feedback_log):
    return create_app(searcher, ServiceConfig(feedback_log=str(feedback_log))).test_client()


def test_feedback_is_recorded_as_a_json_line(voting, feedback_log, searcher):
    response = voting.post("/v1/feedback", json=VOTE)
    assert response.status_code == 201 and response.get_json() == {"status": "recorded"}
    assert voting.post("/v1/feedback", json={"query": "注销流程", "faq_id": "cancel-01", "helpful": True}).status_code == 201
    first, second = [json.loads(line) for line in feedback_log.read_text(encoding="utf-8").splitlines()]
    assert {k: first[k] for k in VOTE} == VOTE and first["served_version"] == searcher.version and first["ts"]
    assert second["helpful"] is True and second["comment"] is None and second["index_version"] is None


@pytest.mark.parametrize("change, status, code", [
    ({"query": None}, 400, "missing_query"),
    ({"query": " \u200b "}, 400, "missing_query"),
    ({"query": "注" * 501}, 400, "query_too_long"),
    ({"faq_id": ""}, 400, "invalid_faq_id"),
    ({"helpful": "false"}, 400, "invalid_helpful"),  # strict JSON: a string is not a boolean
    ({"helpful": 0}, 400, "invalid_helpful"),
    ({"helpful": None}, 400, "invalid_helpful"),
    ({"comment": "太" * 501}, 400, "comment_too_long"),
    ({"index_version": 7}, 400, "invalid_index_version"),
    ({"rating": 5}, 400, "unknown_field"),
])
def test_bad_feedback_gets_a_stable_code(voting, feedback_log, change, status, code):
    body = {k: v for k, v in {**VOTE, **change}.items() if v is not None}
    response = voting.post("/v1/feedback", json=body)
    assert response.status_code == status and response.get_json()["error"] == code, response.get_json()
    assert not feedback_log.exists() or not feedback_log.read_text()


def test_feedback_size_and_media_type_limits(searcher, feedback_log):
    client = create_app(searcher, ServiceConfig(feedback_log=str(feedback_log), max_body_bytes=1024)).test_client()
    big = client.post("/v1/feedback", json={**VOTE, "comment": "x" * 2000})
    assert big.status_code == 413 and big.get_json()["error"] == "payload_too_large"
    form = client.post("/v1/feedback", data="query=x")
    assert form.status_code == 415 and form.get_json()["error"] == "unsupported_media_type"
    listed = client.post("/v1/feedback", json=[VOTE])
    assert listed.status_code == 400 and listed.get_json()["error"] == "invalid_body"


def test_feedback_is_off_without_a_log(client):
    response = client.post("/v1/feedback", json=VOTE)
    assert response.status_code == 403 and response.get_json()["error"] == "feedback_disabled"
    assert "RETRIEVER_FEEDBACK_LOG" in response.get_json()["message"]


def test_feedback_is_rate_limited_like_the_api(searcher, feedback_log):
    client = create_app(searcher, ServiceConfig(feedback_log=str(feedback_log), rate_limit="2 per minute")).test_client()
    statuses = [client.post("/v1/feedback", json=VOTE).status_code for _ in range(3)]
    assert statuses == [201, 201, 429]
    assert client.post("/v1/feedback", json=VOTE).headers["Retry-After"]
    assert client.get("/").status_code == 200  # the page is not limited


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_feedback_keeps_its_documented_contract(searcher, feedback_log, mode):
    app = create_app(searcher, ServiceConfig(feedback_log=str(feedback_log), rate_limit=None))
    operation = schemathesis.openapi.from_wsgi("/openapi.json", app)["/v1/feedback"]["POST"]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def keeps_contract(case):
        case.call_and_validate()

    keeps_contract()


# --- the search page: its words from collection.yaml, the feedback buttons ------------------------


def _page(searcher, **config) -> str:
    return create_app(searcher, ServiceConfig(**config)).test_client().get("/").get_data(as_text=True)


def test_search_page_takes_its_words_from_the_corpus(searcher, tmp_path):
    (tmp_path / "collection.yaml").write_text(
        "title: 社保卡常见问题 <b>\ndescription: 补办、挂失\nno_match: 没找到，请拨打 12345\ncontact: 热线 12345\n",
        encoding="utf-8")
    page = _page(searcher, corpus_dir=str(tmp_path), feedback_log=str(tmp_path / "f.jsonl"))
    assert "<title>社保卡常见问题 &lt;b&gt;</title>" in page and "一级建造师" not in page
    assert "补办、挂失" in page and "热线 12345" in page
    assert 'data-no-match="没找到，请拨打 12345"' in page and 'data-feedback="on"' in page
    assert '<script src="widget.js"' in page


def test_search_page_of_the_seed_and_without_a_corpus(searcher, tmp_path):
    assert "<title>一级建造师注册常见问题</title>" in _page(searcher, corpus_dir=str(SEED_CORPUS))
    plain = _page(searcher)
    assert "<title>常见问题搜索</title>" in plain and 'data-feedback="off"' in plain
    (tmp_path / "collection.yaml").write_text("title: [not, text]\nunknown: 1\n", encoding="utf-8")
    assert "<title>常见问题搜索</title>" in _page(searcher, corpus_dir=str(tmp_path))  # logged, not fatal


def test_collection_and_candidates_files_are_not_entries(tmp_path):
    (tmp_path / "faq.yaml").write_text("- id: a\n  question: 问\n  answer: 答\n", encoding="utf-8")
    (tmp_path / "collection.yaml").write_text("title: 标题\n", encoding="utf-8")
    (tmp_path / "candidates.jsonl").write_text('{"query": "新问题", "count": 2}\n', encoding="utf-8")
    assert [e.id for e in load_corpus(tmp_path)] == ["a"]


def test_widget_has_feedback_buttons_and_takes_the_no_match_message(client):
    widget = client.get("/widget.js").get_data(as_text=True)
    assert "有帮助" in widget and "没帮助" in widget and "/v1/feedback" in widget
    assert "script.dataset.noMatch" in widget
