"""The OpenAPI document comes from the validating models, and real responses match it."""
import urllib.parse

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from retriever.config import ServiceConfig
from retriever.http.schemas import ClassifyResponse, Error, Health, Ready, SearchResponse
from retriever.version import __version__
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
    assert document["paths"]["/admin/reload"]["post"]["security"] == [{"adminToken": []}]
    assert document["paths"]["/retrieval"]["post"]["security"] == [{"difyApiKey": []}]
    assert set(document["components"]["securitySchemes"]) == {"adminToken", "difyApiKey"}
    operations = [(path, method, operation) for path, item in document["paths"].items()
                  for method, operation in item.items()]
    ids = [operation["operationId"] for _, _, operation in operations]
    assert len(ids) == len(set(ids)) == len(operations)  # one unique operationId each
    declared_tags = {tag["name"] for tag in document["tags"]}
    for path, method, operation in operations:
        assert operation["tags"] and set(operation["tags"]) <= declared_tags, (path, method)
        answered = [status for status in operation["responses"] if status.startswith("2")]
        assert all("content" in operation["responses"][status] for status in answered), (path, method)
        assert "500" in operation["responses"] or path == "/openapi.json"
    assert {"414", "429"} <= set(document["paths"]["/v1/search"]["get"]["responses"])
    dify_errors = {status: response for status, response in document["paths"]["/retrieval"]["post"]["responses"].items()
                   if not status.startswith("2")}
    assert {response["content"]["application/json"]["schema"]["$ref"] for response in dify_errors.values()} == \
        {"#/components/schemas/DifyError"}  # Dify's own error form on every failure of its route
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


def _query_parameter(document: dict, name: str) -> dict:
    return next(p["schema"] for p in document["paths"]["/v1/search"]["get"]["parameters"] if p["name"] == name)


@pytest.mark.parametrize("query, status", [
    ("tags=流程", 200),  # one value: a string as a query string carries it
    ("tags=流程&tags=在线办理", 200),
    ("category=" + "类" * 101, 400),  # over maxLength: refused, as the document says
    ("category=社保&category=" + "类" * 101, 400),
    ("tags=" + "类" * 101, 400),
])
def test_query_string_filters_are_what_the_document_says(client, query, status):
    """Fuzzer findings: a string `tags` was accepted though documented as an array; long `category` items."""
    document = client.get("/openapi.json").get_json()
    values = urllib.parse.parse_qs(query)
    response = client.get("/v1/search?q=社保卡&" + query)
    assert response.status_code == status, response.get_json()
    for name, given in values.items():
        value = given[0] if len(given) == 1 else given
        valid = not list(Draft202012Validator(_query_parameter(document, name)).iter_errors(value))
        assert valid == (status == 200), (name, value)
    if status == 400:
        assert response.get_json()["error"] == "invalid_filter"


def test_health_and_readiness_name_their_versions(client, searcher):
    health, ready = client.get("/healthz").get_json(), client.get("/readyz").get_json()
    assert health["service_version"] == __version__ and health["index"]["version"] == searcher.version
    assert ready["index_version"] == searcher.version
    assert health["version"] == __version__ and ready["version"] == searcher.version  # old keys, one release
    Health.model_validate(health)
    Ready.model_validate(ready)
