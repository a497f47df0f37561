"""The OpenAPI document is an exact contract: a schema-driven fuzzer (Schemathesis) checks every operation.

Schemathesis generates requests the document calls valid (each must be accepted) and requests it calls
invalid (each must be refused with a 4xx), and checks every response against the documented status
codes, headers, content types and schemas. Its pytest plugin does not load under pytest 9, so the
operations are parametrised here and each one's Hypothesis strategy is drawn directly.
"""
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.generation import GenerationMode

from retriever.config import ServiceConfig
from retriever.http import create_app

ADMIN_TOKEN = "contract-token"
EXAMPLES = 40  # per operation and generation mode; the README quotes the total
# Every documented operation but the document itself, which Schemathesis leaves out of its operations.
OPERATIONS = [("/v1/search", "GET"), ("/v1/search", "POST"), ("/v1/classify", "POST"), ("/healthz", "GET"),
              ("/readyz", "GET"), ("/metrics", "GET"), ("/admin/reload", "POST"), ("/v1/feedback", "POST"),
              ("/v1/collections", "GET"), ("/v1/collections/{name}/search", "GET"),
              ("/v1/collections/{name}/search", "POST"), ("/v1/collections/{name}/classify", "POST"),
              ("/retrieval", "POST"), ("/admin/api/expiring", "GET"), ("/admin/api/hits", "GET"),
              # review before publish (retriever/http/review.py)
              ("/admin/api/changesets", "GET"), ("/admin/api/changesets", "POST"),
              ("/admin/api/changesets/{changeset_id}", "GET"), ("/admin/api/changesets/{changeset_id}/approve", "POST"),
              ("/admin/api/changesets/{changeset_id}/send-back", "POST"),
              # publishing from the workbench (retriever/http/workbench.py)
              ("/admin/api/publish", "GET"), ("/admin/api/publish", "POST"),
              # the entry editor (retriever/http/entries.py)
              ("/admin/api/entries", "GET"), ("/admin/api/entries", "POST"), ("/admin/api/entries/{faq_id}", "GET"),
              ("/admin/api/entries/{faq_id}", "PUT"), ("/admin/api/entries/{faq_id}", "DELETE"),
              ("/admin/api/entries/{faq_id}/disable", "POST"), ("/admin/api/entries/{faq_id}/enable", "POST"),
              ("/admin/api/draft/search", "POST"),
              # users and the audit log (retriever/http/users.py)
              ("/admin/api/me", "GET"), ("/admin/api/me/password", "POST"), ("/admin/api/users", "GET"),
              ("/admin/api/users", "POST"),
              ("/admin/api/users/{name}", "GET"), ("/admin/api/users/{name}", "PATCH"),
              ("/admin/api/users/{name}", "DELETE"), ("/admin/api/users/{name}/token", "POST"),
              ("/admin/api/users/{name}/token", "DELETE"), ("/admin/api/audit", "GET"),
              ("/admin/api/audit/export", "GET")]


@pytest.fixture(scope="module")
def api_schema(searcher):
    app = create_app(searcher, ServiceConfig(admin_token=ADMIN_TOKEN, rate_limit=None))
    return schemathesis.openapi.from_wsgi("/openapi.json", app)


def test_the_document_lists_exactly_the_operations_fuzzed(api_schema):
    fuzzed = {(op.ok().path, op.ok().method.upper()) for op in api_schema.get_all_operations()}
    documented = {(path, method.upper()) for path, item in api_schema.raw_schema["paths"].items() for method in item}
    assert fuzzed == set(OPERATIONS) and documented == fuzzed | {("/openapi.json", "GET")}


# Negative cases exist only where a request has parameters or a body to get wrong.
CASES = [(path, method, GenerationMode.POSITIVE) for path, method in OPERATIONS] + \
        [(path, method, GenerationMode.NEGATIVE) for path, method in OPERATIONS
         if path.startswith("/v1/") and path != "/v1/collections"]


@pytest.mark.parametrize("path, method, mode", CASES, ids=lambda value: getattr(value, "value", value))
def test_every_operation_keeps_the_contract(api_schema, path, method, mode):
    operation = api_schema[path][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def keeps_contract(case):
        case.call_and_validate(headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})

    keeps_contract()


@pytest.mark.parametrize("path, method, allowed", [
    ("/v1/search", "DELETE", {"GET", "POST"}), ("/v1/classify", "GET", {"POST"}), ("/healthz", "POST", {"GET"}),
    ("/admin/reload", "GET", {"POST"}), ("/", "PUT", {"GET"}), ("/openapi.json", "PATCH", {"GET"}),
])
def test_405_names_the_allowed_methods(searcher, path, method, allowed):
    """RFC 9110: a 405 carries Allow; the body is the API's JSON error."""
    response = create_app(searcher).test_client().open(path, method=method)
    assert response.status_code == 405
    assert allowed <= {m.strip() for m in response.headers["Allow"].split(",")}
    assert response.get_json()["error"] == "method_not_allowed"


@pytest.mark.parametrize("top_k, status", [(44.0, 200), (44, 200), ("44", 400), (True, 400), (44.5, 400), (51, 400)])
def test_top_k_is_an_integer_as_json_schema_means_it(client, top_k, status):
    response = client.post("/v1/search", json={"query": "注销进度", "top_k": top_k})
    assert response.status_code == status, response.get_json()
    if status == 200:
        assert len(response.get_json()["results"]) <= 44
