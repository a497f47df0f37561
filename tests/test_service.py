import json

import pytest

from retriever.config import ServiceConfig
from retriever.http import create_app


def scores_of(body):
    return [r["score"] for r in body["results"]]


def test_get_search_returns_entry_2_first(client):
    response = client.get("/v1/search", query_string={"q": "注销进度怎么查"})
    assert response.status_code == 200
    body = response.get_json()
    assert body["query"] == "注销进度怎么查"
    assert body["results"][0]["faq_id"] == "cancel-02"
    assert len(body["results"]) == 5
    assert set(body["results"][0]) == {"faq_id", "question", "answer", "answer_text", "score", "dense_score", "lexical_score",
                                        "confidence", "negative_example",  # the judge's (retriever/judge.py)
                                        "matched_text", "matched_field", "category", "tags",
                                        "metadata"}  # entry, labels and role (docs/api.md)
    assert body["results"][0]["metadata"]["role"] == "answer" and body["suggestions"] == []
    assert body["decision"] == "answer" and body["mode"] == "hybrid"
    assert body["threshold"] > 0.5 and body["margin"] == pytest.approx(scores_of(body)[0] - scores_of(body)[1], abs=1e-5)
    scores = [r["score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True)
    assert body["took_ms"] >= 0 and body["index_version"]
    assert "注销" in response.get_data(as_text=True)  # Chinese is not \u-escaped


def test_post_search_with_top_k(client):
    response = client.post("/v1/search", json={"query": "手機號被別人綁定了", "top_k": 2})
    assert response.status_code == 200
    results = response.get_json()["results"]
    assert [r["faq_id"] for r in results][:1] == ["cancel-03"] and len(results) == 2


def test_get_and_post_agree(client):
    got = client.get("/v1/search?q=不小心把证书注销了&top_k=3").get_json()["results"]
    posted = client.post("/v1/search", json={"query": "不小心把证书注销了", "top_k": 3}).get_json()["results"]
    assert got == posted


def test_out_of_domain_query_is_no_match_and_threshold_can_be_overridden(client):
    body = client.get("/v1/search", query_string={"q": "今天天气怎么样"}).get_json()
    assert body["decision"] == "no_match" and body["results"]  # candidates still listed, for a person
    low = client.post("/v1/search", json={"query": "今天天气怎么样", "threshold": 0.1}).get_json()
    assert low["decision"] in ("answer", "ambiguous") and low["threshold"] == 0.1
    high = client.get("/v1/search", query_string={"q": "注销进度怎么查", "threshold": "0.999"}).get_json()
    assert high["decision"] == "no_match"


@pytest.mark.parametrize("mode", ["dense", "lexical", "hybrid"])
def test_mode_can_be_chosen_per_request(client, mode):
    body = client.post("/v1/search", json={"query": "注销进度怎么查", "mode": mode}).get_json()
    assert body["mode"] == mode and body["results"][0]["faq_id"] == "cancel-02"
    assert (body["results"][0]["dense_score"] is None) == (mode == "lexical")
    assert (body["results"][0]["lexical_score"] is None) == (mode == "dense")


def test_healthz_reports_index_facts(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok"
    assert body["index"]["entries"] == 6 and body["index"]["vectors"] >= 72
    assert body["index"]["model"].startswith("e5-onnx-int8-smooth") and body["index"]["built_at"]
    assert body["index"]["mode"] == "hybrid" and body["index"]["calibration"]["labelled_queries"] == 60


LONG = "注" * 501


@pytest.mark.parametrize("method, url, kwargs, status, code", [
    ("get", "/v1/search", {}, 400, "missing_query"),
    ("get", "/v1/search?q=", {}, 400, "missing_query"),
    ("get", "/v1/search?q=%20%20", {}, 400, "missing_query"),
    ("get", f"/v1/search?q={LONG}", {}, 400, "query_too_long"),
    ("get", "/v1/search?q=注销&top_k=abc", {}, 400, "invalid_top_k"),
    ("get", "/v1/search?q=注销&top_k=0", {}, 400, "invalid_top_k"),
    ("get", "/v1/search?q=注销&top_k=51", {}, 400, "invalid_top_k"),
    ("get", "/v1/search?q=注销&top_k=2.5", {}, 400, "invalid_top_k"),
    ("post", "/v1/search", {"json": {}}, 400, "missing_query"),
    ("post", "/v1/search", {"json": {"query": "   "}}, 400, "missing_query"),
    ("post", "/v1/search", {"json": {"query": 42}}, 400, "invalid_query"),
    ("post", "/v1/search", {"json": {"query": LONG}}, 400, "query_too_long"),
    ("post", "/v1/search", {"json": {"query": "注销", "top_k": "5"}}, 400, "invalid_top_k"),
    ("post", "/v1/search", {"json": {"query": "注销", "top_k": True}}, 400, "invalid_top_k"),
    ("post", "/v1/search", {"json": {"query": "注销", "top_k": 0}}, 400, "invalid_top_k"),
    ("post", "/v1/search", {"json": {"query": "注销", "top_k": 51}}, 400, "invalid_top_k"),
    ("post", "/v1/search", {"json": {"query": "注销", "topk": 3}}, 400, "unknown_field"),
    ("get", "/v1/search?q=注销&lang=zh", {}, 400, "unknown_field"),
    ("get", "/v1/search?q=注销&threshold=high", {}, 400, "invalid_threshold"),
    ("get", "/v1/search?q=注销&threshold=2", {}, 400, "invalid_threshold"),
    ("post", "/v1/search", {"json": {"query": "注销", "threshold": "0.9"}}, 400, "invalid_threshold"),
    ("post", "/v1/search", {"json": {"query": "注销", "threshold": None, "mode": "fuzzy"}}, 400, "invalid_mode"),
    ("get", "/v1/search?q=注销&mode=", {}, 400, "invalid_mode"),
    ("post", "/v1/search", {"json": ["注销"]}, 400, "invalid_body"),
    ("post", "/v1/search", {"data": "null", "content_type": "application/json"}, 400, "invalid_body"),
    ("post", "/v1/search", {"data": '{"query": "\\ud800"}', "content_type": "application/json"}, 400, "malformed_json"),
    ("post", "/v1/classify", {"data": '{"inquiries": [{"id": "\\udfff", "text": "x"}]}',
                              "content_type": "application/json"}, 400, "malformed_json"),
    ("post", "/v1/search", {"data": "{\"query\": ", "content_type": "application/json"}, 400, "malformed_json"),
    ("post", "/v1/search", {"data": "query=注销", "content_type": "application/x-www-form-urlencoded"},
     415, "unsupported_media_type"),
    ("post", "/v1/search", {"data": "注销"}, 415, "unsupported_media_type"),
    ("post", "/v1/search", {"data": json.dumps({"query": "注" * 70000}), "content_type": "application/json"},
     413, "payload_too_large"),
    ("get", "/v1/nothing", {}, 404, "not_found"),
    ("get", "/nothing.js", {}, 404, "not_found"),
    ("delete", "/v1/search", {}, 405, "method_not_allowed"),
    ("post", "/healthz", {}, 405, "method_not_allowed"),
])
def test_bad_requests_get_a_json_error(client, method, url, kwargs, status, code):
    response = getattr(client, method)(url, **kwargs)
    assert response.status_code == status
    assert response.is_json
    body = response.get_json()
    assert body["error"] == code
    assert body["message"] and "Traceback" not in body["message"]


def test_limits_come_from_the_config(searcher):
    client = create_app(searcher, ServiceConfig(max_query_chars=4, max_top_k=2)).test_client()
    assert client.get("/v1/search?q=注销进度查询").get_json()["error"] == "query_too_long"
    assert client.get("/v1/search?q=注销&top_k=3").get_json()["error"] == "invalid_top_k"
    assert client.get("/v1/search?q=注销&top_k=2").status_code == 200


def test_a_fault_inside_the_service_is_a_json_500_without_trace(searcher, monkeypatch):
    app = create_app(searcher)
    monkeypatch.setattr(searcher, "search", lambda *a, **k: 1 / 0)
    response = app.test_client().get("/v1/search?q=注销")
    assert response.status_code == 500
    assert response.get_json() == {"error": "internal_error",
                                   "message": "the service failed to handle this request"}


def test_config_from_env_rejects_nonsense():
    from retriever.errors import RetrieverError

    assert ServiceConfig.from_env({"RETRIEVER_MAX_TOP_K": "20"}).max_top_k == 20
    with pytest.raises(RetrieverError, match="RETRIEVER_MAX_TOP_K='lots' is not an integer"):
        ServiceConfig.from_env({"RETRIEVER_MAX_TOP_K": "lots"})
    assert ServiceConfig.from_env({}).preload  # workers share the preloaded index unless told otherwise
    assert not ServiceConfig.from_env({"RETRIEVER_PRELOAD": "0"}).preload
    assert not ServiceConfig.from_env({"RETRIEVER_PRELOAD": "off"}).preload
    with pytest.raises(RetrieverError, match="RETRIEVER_PRELOAD='sometimes' must be on or off"):
        ServiceConfig.from_env({"RETRIEVER_PRELOAD": "sometimes"})


def test_page_and_widget_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert '<script src="widget.js"' in page.get_data(as_text=True)
    widget = client.get("/widget.js")
    assert widget.status_code == 200 and "javascript" in widget.mimetype
    assert "没有找到相关问题，请联系人工客服" in widget.get_data(as_text=True)


def test_cors_is_off_unless_configured(client):
    response = client.get("/v1/search?q=注销", headers={"Origin": "https://portal.example"})
    assert response.status_code == 200 and "Access-Control-Allow-Origin" not in response.headers


def test_cors_allows_configured_origins_only(searcher):
    client = create_app(searcher, ServiceConfig(cors_origins=("https://portal.example",))).test_client()
    allowed = client.get("/v1/search?q=注销", headers={"Origin": "https://portal.example"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://portal.example"
    other = client.get("/v1/search?q=注销", headers={"Origin": "https://elsewhere.example"})
    assert "Access-Control-Allow-Origin" not in other.headers
    preflight = client.options("/v1/classify", headers={"Origin": "https://portal.example",
                                                        "Access-Control-Request-Method": "POST",
                                                        "Access-Control-Request-Headers": "Content-Type"})
    assert preflight.status_code == 200
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert ServiceConfig.from_env({"RETRIEVER_CORS_ORIGINS": "https://a.example, https://b.example"}).cors_origins \
        == ("https://a.example", "https://b.example")
