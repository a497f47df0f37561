"""Property-based fuzzing of every route: whatever a client sends, no 5xx, and API errors are JSON."""
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retriever.config import ServiceConfig
from retriever.http import create_app

EXAMPLES = 250  # per test; the README quotes the total
ROUTES = ["/", "/widget.js", "/healthz", "/readyz", "/metrics", "/v1/search", "/v1/classify", "/admin/reload",
          "/static/widget.js", "/nope", "/v1/", "/admin/"]
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]
# Text includes unpaired surrogates, which JSON can escape ("\ud800") but UTF-8 cannot encode.
TEXT = st.text() | st.text(st.characters(categories=["Cs", "Lo", "Nd"]), max_size=6)
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
                    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10),
                                                                                      children, max_size=5),
                    max_leaves=20)
SEARCH_BODY = st.fixed_dictionaries({}, optional={"query": TEXT | JSON, "top_k": st.integers() | JSON,
                                                  "threshold": st.floats(allow_nan=False) | JSON,
                                                  "mode": st.sampled_from(["hybrid", "dense", "lexical", ""]) | JSON})
INQUIRY = st.fixed_dictionaries({}, optional={"id": TEXT | st.integers() | JSON, "text": TEXT | JSON})
CLASSIFY_BODY = st.fixed_dictionaries({}, optional={"inquiries": st.lists(INQUIRY | JSON, max_size=8) | JSON,
                                                    "threshold": st.floats(allow_nan=False) | JSON})
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def client(searcher):
    return create_app(searcher, ServiceConfig(admin_token="t", rate_limit=None)).test_client()


def post_json(client, path, body):
    """As a client sends it: ASCII JSON, so lone surrogates travel as escapes like \\ud800."""
    return client.post(path, data=json.dumps(body), content_type="application/json")


def check(response, path, method="POST"):
    assert response.status_code < 500, (path, response.status_code, response.get_data(as_text=True)[:300])
    if response.status_code >= 400 and not path.startswith("/static") and method != "HEAD":  # HEAD: no body
        body = response.get_json(silent=True)
        assert isinstance(body, dict) and isinstance(body.get("error"), str) and body.get("message"), body


@FUZZ
@given(path=st.sampled_from(ROUTES), method=st.sampled_from(METHODS),
       params=st.dictionaries(st.sampled_from(["q", "top_k", "threshold", "mode", "x"]), st.text(max_size=30)))
def test_any_method_and_query_string(client, path, method, params):
    check(client.open(path, method=method, query_string=params), path, method)


@FUZZ
@given(body=SEARCH_BODY | JSON)
def test_search_json_bodies(client, body):
    check(post_json(client, "/v1/search", body), "/v1/search")


@FUZZ
@given(body=CLASSIFY_BODY | JSON)
def test_classify_json_bodies(client, body):
    check(post_json(client, "/v1/classify", body), "/v1/classify")


@FUZZ
@given(path=st.sampled_from(["/v1/search", "/v1/classify", "/admin/reload"]), data=st.binary(max_size=300),
       content_type=st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded",
                                     "multipart/form-data", "application/json; charset=latin-1", ""]),
       # Control characters cannot be sent in a header at all (the HTTP client refuses them).
       authorization=st.text(st.characters(blacklist_categories=("Cc",)), max_size=20))
def test_raw_bodies_and_headers(client, path, data, content_type, authorization):
    check(client.post(path, data=data, content_type=content_type, headers={"Authorization": authorization}), path)
