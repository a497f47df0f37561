"""Dify's External Knowledge API (request bodies as Dify sends them). The MCP server: tests/test_mcp.py."""
import json

import pytest

from retriever.config import ServiceConfig
from retriever.encoders import EncoderCache
from retriever.http import create_app
from retriever.registry import CollectionRegistry
from test_collections import collections_root  # noqa: F401 - the module fixture, shared

KEY = "dify-test-key"


@pytest.fixture(scope="module")
def dify(collections_root, encoder):  # noqa: F811
    encoders = EncoderCache()
    encoders._encoders[encoder.source] = encoder
    registry = CollectionRegistry.open(collections_root, encoders)
    return create_app(registry, ServiceConfig(rate_limit=None, api_keys=(KEY, "second-key"))).test_client()


def retrieve(client, body, key=KEY, **headers):
    auth = {"Authorization": f"Bearer {key}"} if key is not None else {}
    return client.post("/retrieval", data=json.dumps(body), content_type="application/json",
                       headers={**auth, **headers})


def dify_body(knowledge_id="shebao", query="社保卡丢了怎么办", top_k=3, score_threshold=0.5, **extra):
    """The body Dify's ExternalDatasetService sends: knowledge_id, query, retrieval_setting (+ metadata_condition)."""
    return {"knowledge_id": knowledge_id, "query": query,
            "retrieval_setting": {"top_k": top_k, "score_threshold": score_threshold}, **extra}


def test_records_in_difys_shape(dify):
    response = retrieve(dify, dify_body())
    assert response.status_code == 200
    records = response.get_json()["records"]
    assert 1 <= len(records) <= 3
    first = records[0]
    assert set(first) == {"content", "score", "title", "metadata"}
    assert first["title"] == "社保卡丢了怎么挂失补办?" and first["content"].startswith("可拨打12333")
    assert isinstance(first["metadata"], dict)  # never null: Dify's pipeline fails on null metadata
    assert set(first["metadata"]) == {"faq_id", "question", "category", "tags", "matched_field", "matched_text",
                                      "role", "decision", "query_truncated"}
    assert first["metadata"]["faq_id"] == "sb-03" and first["metadata"]["category"] == "社保卡"
    assert first["metadata"]["role"] == "answer" and {r["metadata"]["role"] for r in records[1:]} <= {"alternative"}
    assert [r["score"] for r in records] == sorted((r["score"] for r in records), reverse=True)


def test_score_threshold_applies_on_top(dify):
    everything = retrieve(dify, dify_body(score_threshold=0.0, top_k=10)).get_json()["records"]
    cut = everything[0]["score"] - 1e-6
    kept = retrieve(dify, dify_body(score_threshold=cut, top_k=10)).get_json()["records"]
    assert [r["metadata"]["faq_id"] for r in kept] == [everything[0]["metadata"]["faq_id"]]


def test_a_no_match_decision_returns_no_records(dify):
    """The seed collection is calibrated: a weather question is no_match, and Dify gets nothing to quote."""
    body = retrieve(dify, dify_body("jianzaoshi", "今天天气怎么样", score_threshold=0.0)).get_json()
    assert body == {"records": []}


@pytest.mark.parametrize("condition, expected", [
    ({"logical_operator": "and", "conditions": [{"name": ["category"], "comparison_operator": "is",
                                                 "value": "社保缴费"}]}, {"sb-01", "sb-02"}),
    ({"conditions": [{"name": "tags", "comparison_operator": "contains", "value": "挂"}]}, {"sb-03"}),
    ({"conditions": [{"name": "faq_id", "comparison_operator": "in", "value": ["sb-01", "sb-04"]}]}, {"sb-01", "sb-04"}),
    ({"conditions": [{"name": "faq_id", "comparison_operator": "not in", "value": "sb-01,sb-02"}]}, {"sb-03", "sb-04"}),
    ({"conditions": [{"name": "category", "comparison_operator": "is not", "value": "社保卡"}]}, {"sb-01", "sb-02"}),
    ({"conditions": [{"name": "tags", "comparison_operator": "not contains", "value": "缴费"}]}, {"sb-03", "sb-04"}),
    ({"conditions": [{"name": "category", "comparison_operator": "empty"}]}, set()),
    ({"conditions": [{"name": "tags", "comparison_operator": "not empty"}]}, {"sb-01", "sb-02", "sb-03", "sb-04"}),
    ({"logical_operator": "or", "conditions": [
        {"name": "faq_id", "comparison_operator": "is", "value": "sb-01"},
        {"name": "tags", "comparison_operator": "is", "value": "激活"}]}, {"sb-01", "sb-04"}),
    ({"logical_operator": "and", "conditions": [
        {"name": "category", "comparison_operator": "start with", "value": "社保"},
        {"name": "faq_id", "comparison_operator": "end with", "value": "2"}]}, {"sb-02"}),
])
def test_metadata_conditions_filter_before_ranking(dify, condition, expected):
    body = dify_body(top_k=10, score_threshold=0.0, metadata_condition=condition)
    records = retrieve(dify, body).get_json()["records"]
    assert {r["metadata"]["faq_id"] for r in records} == expected


@pytest.mark.parametrize("key, header, status, code", [
    (None, None, 403, 1001),  # no Authorization header
    (None, "Basic abc", 403, 1001),
    (None, "Bearer", 403, 1001),
    ("wrong-key", None, 403, 1002),
])
def test_authorization_errors_in_difys_form(dify, key, header, status, code):
    headers = {"Authorization": header} if header else {}
    response = retrieve(dify, dify_body(), key=key, **headers)
    assert response.status_code == status
    body = response.get_json()
    assert body["error_code"] == code and body["error_msg"]


def test_the_second_key_works_too(dify):
    assert retrieve(dify, dify_body(), key="second-key").status_code == 200


def test_without_configured_keys_the_route_is_403(collections_root, encoder):  # noqa: F811
    encoders = EncoderCache()
    encoders._encoders[encoder.source] = encoder
    client = create_app(CollectionRegistry.open(collections_root, encoders)).test_client()
    response = retrieve(client, dify_body())
    assert response.status_code == 403 and response.get_json()["error_code"] == 1002


def test_an_unknown_knowledge_id_is_2001(dify):
    response = retrieve(dify, dify_body(knowledge_id="AAA-BBB-CCC"))
    assert response.status_code == 404
    body = response.get_json()
    assert body["error_code"] == 2001 and "shebao" in body["error_msg"]


@pytest.mark.parametrize("body, words", [
    ({"query": "x", "retrieval_setting": {"top_k": 1, "score_threshold": 0}}, "knowledge_id"),
    (dify_body(query=""), "query"),
    ({"knowledge_id": "shebao", "query": "x"}, "retrieval_setting"),
    (dify_body(top_k="5"), "top_k"),
    (dify_body(top_k=0), "top_k"),
    (dify_body(score_threshold=1.5), "score_threshold"),
    (dify_body(metadata_condition={"conditions": "category"}), "conditions"),
    (dify_body(metadata_condition={"logical_operator": "xor", "conditions": []}), "logical_operator"),
    (dify_body(metadata_condition={"conditions": [{"name": "author", "comparison_operator": "is", "value": "a"}]}),
     "author"),
    (dify_body(metadata_condition={"conditions": [{"name": "category", "comparison_operator": "like",
                                                   "value": "a"}]}), "comparison_operator"),
    (dify_body(metadata_condition={"conditions": [{"name": "category", "comparison_operator": ">", "value": 3}]}),
     "numbers or dates"),
    (dify_body(metadata_condition={"conditions": [{"name": "category", "comparison_operator": "is"}]}), "value"),
    ([1, 2], "object"),
])
def test_malformed_bodies_are_400_with_a_message(dify, body, words):
    response = retrieve(dify, body)
    assert response.status_code == 400
    error = response.get_json()
    assert error["error_code"] == 3001 and words in error["error_msg"]


def test_not_json_is_refused_in_difys_form(dify):
    response = dify.post("/retrieval", data="{nope", content_type="application/json",
                         headers={"Authorization": f"Bearer {KEY}"})
    assert response.status_code == 400 and response.get_json()["error_code"] == 3001
