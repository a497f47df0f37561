"""/retrieval as Dify's releases really call it: nulls, built-in metadata fields, long chat messages, errors in
Dify's form for every status, rate limits per API key, decisions counted and no_match queries logged.

The bodies are built the way Dify builds them: langgenius/dify api/services/external_knowledge_service.py,
``ExternalDatasetService.fetch_external_knowledge_retrieval`` (``request_params``, sent as
``data=json.dumps(params)`` with ``Content-Type: application/json``), with ``metadata_condition`` a
``MetadataCondition.model_dump()`` of api/core/rag/entities/metadata_entities.py, filled as
api/core/rag/retrieval/dataset_retrieval.py ``_get_metadata_filter_condition`` fills it (automatic mode
copies the node's ``logical_operator``, which may be None; manual mode dumps the node's conditions).
The connection check is ``check_endpoint_and_api_key`` of the same service: a POST with no body.
"""
import json
from collections.abc import Sequence
from typing import Literal, Optional

import pytest
from pydantic import BaseModel, Field

from retriever.config import ServiceConfig
from retriever.encoders import EncoderCache
from retriever.http import create_app
from retriever.http.schemas import DifyRecords
from retriever.normalize import QueryTooLong, check_query_length, query_length
from retriever.registry import CollectionRegistry
from test_collections import collections_root  # noqa: F401 - the module fixture, shared

KEY, OTHER_KEY = "dify-edge-key", "dify-other-key"
LONG_QUERY = "我的社保卡丢了，" + "请问" * 290 + "怎么挂失补办？"  # a 597-character chat message


# --- Dify's own models and request assembly (shapes as in the files named above) ----------------------

class Condition(BaseModel):
    name: str
    comparison_operator: Literal["contains", "not contains", "start with", "end with", "is", "is not", "empty",
                                 "not empty", "in", "not in", "=", "≠", ">", "<", "≥", "≤", "before", "after"]
    value: str | Sequence[str] | Sequence[int] | Sequence[float] | None | int | float = None


class MetadataCondition(BaseModel):
    logical_operator: Optional[Literal["and", "or"]] = "and"
    conditions: Optional[list[Condition]] = Field(default=None)


def difys_request_params(knowledge_id: str, query: str, external_retrieval_parameters: dict,
                         metadata_condition: MetadataCondition | None = None) -> dict:
    """``request_params`` exactly as fetch_external_knowledge_retrieval assembles them."""
    score_threshold_enabled = external_retrieval_parameters.get("score_threshold_enabled") or False
    score_threshold = external_retrieval_parameters.get("score_threshold", 0.0) if score_threshold_enabled else 0.0
    return {
        "retrieval_setting": {"top_k": external_retrieval_parameters.get("top_k"), "score_threshold": score_threshold},
        "query": query,
        "knowledge_id": knowledge_id,
        "metadata_condition": metadata_condition.model_dump() if metadata_condition else None,
    }


def post(client, params, key=KEY):
    return client.post("/retrieval", data=json.dumps(params),
                       headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"})


@pytest.fixture(scope="module")
def registry(collections_root, encoder):  # noqa: F811
    encoders = EncoderCache()
    encoders._encoders[encoder.source] = encoder
    # A default collection: /metrics reports the default's index (a root without one answers it 404).
    return CollectionRegistry.open(collections_root, encoders, default="shebao")


@pytest.fixture(scope="module")
def unmatched_log(tmp_path_factory):
    return tmp_path_factory.mktemp("logs") / "unmatched.jsonl"


@pytest.fixture(scope="module")
def client(registry, unmatched_log):
    config = ServiceConfig(rate_limit=None, api_keys=(KEY, OTHER_KEY), unmatched_log=str(unmatched_log))
    return create_app(registry, config).test_client()


RETRIEVAL_MODELS = {  # Dify datasets' external_retrieval_model, as stored
    "no top_k": {"score_threshold_enabled": False},
    "threshold disabled": {"top_k": 3, "score_threshold_enabled": False, "score_threshold": 0.9},
    "threshold enabled": {"top_k": 3, "score_threshold_enabled": True, "score_threshold": 0.5},
    "threshold null": {"top_k": 2, "score_threshold_enabled": True, "score_threshold": None},
}


@pytest.mark.parametrize("model", RETRIEVAL_MODELS.values(), ids=RETRIEVAL_MODELS.keys())
def test_every_retrieval_setting_dify_sends_is_accepted(client, model):
    response = post(client, difys_request_params("shebao", "社保卡丢了怎么办", model))
    assert response.status_code == 200, response.get_json()
    records = response.get_json()["records"]
    assert records and records[0]["metadata"]["faq_id"] == "sb-03"
    assert len(records) <= (model.get("top_k") or ServiceConfig().default_top_k)


CONDITIONS = {
    "none": None,
    "null operator and conditions": MetadataCondition(logical_operator=None, conditions=None),
    "automatic mode, built-in field": MetadataCondition(
        logical_operator=None, conditions=[Condition(name="document_name", comparison_operator="contains",
                                                     value="社保")]),
    "manual, dates and uploader": MetadataCondition(conditions=[
        Condition(name="upload_date", comparison_operator="before", value=1767225600),
        Condition(name="uploader", comparison_operator="is", value="admin"),
        Condition(name="source", comparison_operator="empty")]),
}


@pytest.mark.parametrize("condition", CONDITIONS.values(), ids=CONDITIONS.keys())
def test_null_and_built_in_metadata_conditions_filter_nothing(client, condition):
    unfiltered = post(client, difys_request_params("shebao", "社保卡丢了怎么办", {"top_k": 4})).get_json()["records"]
    response = post(client, difys_request_params("shebao", "社保卡丢了怎么办", {"top_k": 4}, condition))
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["records"] == unfiltered


def test_our_fields_still_filter_beside_built_in_ones(client):
    condition = MetadataCondition(logical_operator="and", conditions=[
        Condition(name="category", comparison_operator="is", value="社保缴费"),
        Condition(name="document_name", comparison_operator="contains", value="x")])
    records = post(client, difys_request_params("shebao", "社保", {"top_k": 10}, condition)).get_json()["records"]
    assert {r["metadata"]["faq_id"] for r in records} <= {"sb-01", "sb-02"} and records


@pytest.mark.parametrize("query", [LONG_QUERY, "㌀" * 500], ids=["597 characters", "2000 once normalised"])
def test_a_long_chat_message_is_truncated_and_says_so(client, query, caplog):
    assert query_length(query) > ServiceConfig().max_query_chars
    with caplog.at_level("WARNING", logger="retriever.http.dify"):
        response = post(client, difys_request_params("shebao", query, {"top_k": 3}))
    assert response.status_code == 200
    assert "truncated" in caplog.text and query[:20] not in caplog.text  # the length, never the text
    for record in response.get_json()["records"]:
        assert record["metadata"]["query_truncated"] is True
    if query == LONG_QUERY:
        assert response.get_json()["records"][0]["metadata"]["faq_id"] == "sb-03"


def test_one_length_check_for_every_route(client, registry):
    """500 x ㌀ is 2,000 characters once normalised: /v1/search refuses it, /retrieval cuts it to the same limit."""
    query = "㌀" * 500
    limit = ServiceConfig().max_query_chars
    with pytest.raises(QueryTooLong):
        check_query_length(query, limit)
    cut = check_query_length(query, limit, truncate=True)
    assert query_length(cut) <= limit < query_length(cut + "㌀")
    search = client.get("/v1/collections/shebao/search", query_string={"q": query})
    assert search.status_code == 400 and search.get_json()["error"] == "query_too_long"
    classify = client.post("/v1/collections/shebao/classify", json={"inquiries": [{"id": 1, "text": query}]})
    assert classify.get_json()["errors"][0]["error"] == "text_too_long"
    assert post(client, difys_request_params("shebao", query, {"top_k": 1})).status_code == 200


def test_roles_say_answer_alternative_or_suggestion(client):
    answered = post(client, difys_request_params("jianzaoshi", "注销申请的审核进度", {"top_k": 4})).get_json()["records"]
    roles = [r["metadata"]["role"] for r in answered]
    assert roles[0] == "answer" and set(roles[1:]) == {"alternative"}  # runners-up never labelled answer
    near_body = post(client, difys_request_params("jianzaoshi", "二级建造师怎么注销", {"top_k": 4})).get_json()
    DifyRecords.model_validate(near_body)  # the documented response
    near = near_body["records"]
    assert near and {r["metadata"]["role"] for r in near} == {"suggestion"}
    assert near[0]["metadata"]["faq_id"] == "cancel-01"
    assert near[0]["metadata"]["decision"] == "no_match"
    weather = post(client, difys_request_params("jianzaoshi", "今天天气怎么样", {"top_k": 4})).get_json()
    assert weather == {"records": []}


def test_decisions_are_counted_and_no_match_queries_logged(client, unmatched_log):
    post(client, difys_request_params("jianzaoshi", "附近有什么好吃的", {"top_k": 2}))
    metrics = client.get("/metrics").get_data(as_text=True)
    counted = [line for line in metrics.splitlines()
               if line.startswith("retriever_decisions") and 'route="dify"' in line and 'decision="no_match"' in line]
    assert counted and float(counted[0].split()[-1]) >= 1
    logged = [json.loads(line) for line in unmatched_log.read_text(encoding="utf-8").splitlines()]
    assert any(entry["source"] == "dify" for entry in logged)


def test_difys_connection_check_gets_neither_403_nor_404(client):
    """check_endpoint_and_api_key: httpx.post(endpoint, headers={"Authorization": ...}) with no body."""
    response = client.post("/retrieval", headers={"Authorization": f"Bearer {KEY}"})
    assert response.status_code not in (403, 404, 502)
    assert set(response.get_json()) == {"error_code", "error_msg"}
    wrong = client.post("/retrieval", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 403 and wrong.get_json()["error_code"] == 1002


def test_every_error_status_is_in_difys_form(client):
    method = client.get("/retrieval")
    assert method.status_code == 405 and "POST" in method.headers["Allow"]
    assert method.get_json()["error_code"] == 3002 and method.get_json()["error_msg"]
    too_big = client.post("/retrieval", data=b"{" + b" " * (ServiceConfig().max_body_bytes + 10) + b"}",
                          headers={"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"})
    assert too_big.status_code == 413 and too_big.get_json()["error_code"] == 3001
    unknown = post(client, difys_request_params("no-such-knowledge", "x", {"top_k": 1}))
    assert unknown.status_code == 404 and unknown.get_json()["error_code"] == 2001


def test_the_rate_limit_counts_per_api_key_on_retrieval(registry):
    client = create_app(registry, ServiceConfig(rate_limit="2 per minute", api_keys=(KEY, OTHER_KEY))).test_client()
    params = difys_request_params("shebao", "社保卡丢了怎么办", {"top_k": 1})
    assert [post(client, params).status_code for _ in range(2)] == [200, 200]
    limited = post(client, params)
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    assert limited.get_json()["error_code"] == 4001 and limited.get_json()["error_msg"]
    # Same address, another key (another Dify installation or app): its own budget.
    assert post(client, params, key=OTHER_KEY).status_code == 200
    # The /v1 API keeps counting per address, apart from the keys' budgets.
    assert client.get("/v1/collections/shebao/search", query_string={"q": "社保"}).status_code == 200
