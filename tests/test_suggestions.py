""""Did you mean": suggestions for ambiguous and close no_match queries, never for off-topic ones; hit roles."""
import dataclasses

import pytest

from conftest import REPO
from retriever.http import create_app
from retriever.config import ServiceConfig
from retriever.http.schemas import ClassifyResponse, SearchResponse
from retriever.results import Hit, MAX_SUGGESTIONS, Suggestion, suggestions_for
from retriever.search import Searcher

OFF_TOPIC = ["今天天气怎么样", "附近有什么好吃的", "你好", "公积金怎么提取", "个人所得税怎么申报"]
# Same domain, not in the seed FAQ (tests/data/seed_near_domain.yaml): close under the threshold.
NEAR_DOMAIN = {"二级建造师怎么注销": "cancel-01", "二建证书注销后能恢复吗": "cancel-04", "监理工程师注销进度在哪查": "cancel-02"}


@pytest.mark.parametrize("query", OFF_TOPIC)
def test_an_off_topic_query_gets_no_suggestions(searcher, query):
    result = searcher.search(query)
    assert result.decision == "no_match"
    assert result.suggestions == []
    assert {hit["metadata"]["role"] for hit in result.to_dict()["results"]} == {"candidate"}


@pytest.mark.parametrize("query, first", NEAR_DOMAIN.items())
def test_a_near_domain_no_match_suggests_the_close_entries(searcher, query, first):
    result = searcher.search(query)
    assert result.decision == "no_match"
    assert 1 <= len(result.suggestions) <= MAX_SUGGESTIONS
    assert result.suggestions[0].faq_id == first
    questions = {e.id: e.question for e in searcher.index.entries}
    assert all(s.question == questions[s.faq_id] for s in result.suggestions)
    # Each suggestion is at least as close as the FAQ's own entries are to one another.
    by_id = {hit.faq_id: hit for hit in result.hits}
    assert all(by_id[s.faq_id].dense_score >= searcher.close_similarity for s in result.suggestions if s.faq_id in by_id)


def test_the_close_level_comes_from_the_index_and_sits_above_off_topic_scores(searcher):
    level = searcher.close_similarity
    assert 0.85 < level < 1.0
    assert all(searcher.search(q).hits[0].dense_score < level for q in OFF_TOPIC)


def test_an_answer_has_no_suggestions_and_runners_up_are_never_the_answer(searcher):
    result = searcher.search("注销申请的审核进度")
    assert result.decision == "answer" and result.suggestions == []
    roles = [hit["metadata"]["role"] for hit in result.to_dict()["results"]]
    assert roles[0] == "answer" and set(roles[1:]) == {"alternative"}


@pytest.fixture(scope="module")
def ambiguous_searcher(searcher, encoder):
    """The seed index deciding by score with an ambiguity margin (as a calibration with look-alike entries sets)."""
    manifest = dict(searcher.index.manifest)
    calibration = {mode: dict(values) for mode, values in manifest["calibration"].items()}
    calibration["hybrid"]["ambiguity_margin"] = 0.05
    manifest["calibration"] = calibration
    index = dataclasses.replace(searcher.index, judge=None, manifest=manifest)
    return Searcher(index, encoder)


def test_an_ambiguous_query_suggests_its_close_candidates(ambiguous_searcher):
    result = ambiguous_searcher.search("注销", top_k=5)  # every entry is about 注销
    assert result.decision == "ambiguous"
    assert 2 <= len(result.suggestions) <= MAX_SUGGESTIONS
    assert result.suggestions[0].faq_id == result.hits[0].faq_id
    shape = result.to_dict()
    assert shape["suggestions"][0] == {"faq_id": result.hits[0].faq_id, "question": result.hits[0].question}
    roles = [hit["metadata"]["role"] for hit in shape["results"]]
    assert "answer" not in roles and roles[: len(result.suggestions)] == ["suggestion"] * len(result.suggestions)


def _hit(faq_id, dense, negative=None):
    return Hit(faq_id, f"{faq_id}?", "answer", dense, f"{faq_id}?", "question", dense_score=dense,
               negative_example=negative)


@pytest.mark.parametrize("decision, close, hits, expected", [
    ("answer", 0.9, [_hit("a", 0.99), _hit("b", 0.98)], []),
    ("no_match", None, [_hit("a", 0.99)], []),  # no close level: nothing to offer
    ("no_match", 0.9, [_hit("a", 0.95), _hit("b", 0.91), _hit("c", 0.89)], ["a", "b"]),
    ("no_match", 0.9, [_hit("a", 0.95, negative="不是这个"), _hit("b", 0.92)], ["b"]),
    ("no_match", 0.5, [_hit(x, 0.9) for x in "abcde"], ["a", "b", "c"]),
    ("ambiguous", 0.95, [_hit("a", 0.93), _hit("b", 0.96), _hit("c", 0.90)], ["a", "b"]),
])
def test_suggestions_for(decision, close, hits, expected):
    assert [s.faq_id for s in suggestions_for(decision, hits, close)] == expected


def test_the_search_and_classify_responses_carry_suggestions_and_metadata(searcher):
    client = create_app(searcher, ServiceConfig(rate_limit=None)).test_client()
    body = client.get("/v1/search", query_string={"q": "二级建造师怎么注销"}).get_json()
    SearchResponse.model_validate(body)
    assert body["suggestions"][0] == {"faq_id": "cancel-01", "question": "注销手续操作流程是怎样的?"}
    first = body["results"][0]
    assert first["metadata"] == {"faq_id": first["faq_id"], "question": first["question"],
                                 "category": first["category"], "tags": first["tags"],
                                 "matched_field": first["matched_field"], "role": "suggestion"}
    weather = client.get("/v1/search", query_string={"q": "今天天气怎么样"}).get_json()
    assert weather["decision"] == "no_match" and weather["suggestions"] == []

    classified = client.post("/v1/classify", json={"inquiries": [{"id": 1, "text": "二级建造师怎么注销"},
                                                                  {"id": 2, "text": "今天天气怎么样"}]}).get_json()
    ClassifyResponse.model_validate(classified)
    near, weather = classified["results"]
    assert near["faq_id"] is None and near["suggestions"][0]["faq_id"] == "cancel-01"
    assert weather["suggestions"] == []


def test_suggestions_are_documented_in_the_api_guide():
    guide = (REPO / "docs" / "api.md").read_text(encoding="utf-8")
    assert "suggestions" in guide and "您是不是想问" in guide
    assert Suggestion("x", "y").to_dict() == {"faq_id": "x", "question": "y"}
