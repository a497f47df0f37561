"""The OpenAPI document comes from the validating models, and real responses match it."""
from openapi_spec_validator import validate

from retriever.config import ServiceConfig
from retriever.http.schemas import ClassifyResponse, Error, SearchResponse
from retriever.http import create_app


def test_openapi_document_carries_the_validating_schemas(searcher):
    client = create_app(searcher, ServiceConfig(max_query_chars=300, max_batch=20)).test_client()
    document = client.get("/openapi.json").get_json()
    validate(document)  # a valid OpenAPI 3.1 document
    assert document["openapi"].startswith("3.1")
    assert {"/v1/search", "/v1/classify", "/healthz", "/readyz", "/metrics", "/admin/reload"} <= set(document["paths"])
    schemas = document["components"]["schemas"]
    assert schemas["SearchRequest"]["properties"]["query"]["maxLength"] == 300  # the configured limit
    assert schemas["SearchRequest"]["additionalProperties"] is False
    assert schemas["ClassifyRequest"]["properties"]["inquiries"]["maxItems"] == 20
    # Items are validated one by one: an Inquiry is meant, and any other item is answered under "errors".
    items = schemas["ClassifyRequest"]["properties"]["inquiries"]["items"]
    assert items["anyOf"] == [{"$ref": "#/components/schemas/Inquiry"}, {}] and "errors" in items["description"]
    assert set(schemas["Inquiry"]["required"]) == {"id", "text"}
    get_params = {p["name"] for p in document["paths"]["/v1/search"]["get"]["parameters"] if p["in"] == "query"}
    assert get_params == {"q", "top_k", "threshold", "mode", "category", "tags"}
    assert document["paths"]["/admin/reload"]["post"]["security"] == [{"bearer": []}]
    # Every $ref points at a schema that is there.
    refs = set()

    def collect(node):
        if isinstance(node, dict):
            if "$ref" in node:
                refs.add(node["$ref"].rsplit("/", 1)[1])
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    collect(document)
    assert refs <= set(schemas)


def test_real_responses_match_the_documented_models(client):
    SearchResponse.model_validate(client.get("/v1/search?q=注销进度怎么查").get_json())
    SearchResponse.model_validate(client.post("/v1/search", json={"query": "今天天气", "mode": "lexical"}).get_json())
    classified = client.post("/v1/classify", json={"inquiries": [{"id": 1, "text": "注销进度"}, {"id": 1, "text": "x"},
                                                                 {"text": "y"}]}).get_json()
    ClassifyResponse.model_validate(classified)
    Error.model_validate(client.get("/v1/search").get_json())


def test_docs_page_is_served_without_a_cdn(client):
    page = client.get("/docs")
    assert page.status_code == 200 and "/openapi.json" in page.get_data(as_text=True)
    bundle = client.get("/docs/swagger-ui-bundle.js")
    assert bundle.status_code == 200 and len(bundle.get_data()) > 100_000
    assert client.get("/docs/nothing-here.js").get_json()["error"] == "not_found"
