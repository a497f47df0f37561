"""A client generated from /openapi.json (openapi-python-client) calls every operation of a real server.

Each 200/201 answer must parse into its model (a generated client returns None for an answer whose
schema the document leaves out); documented errors parse into the error model of their route.
"""
import importlib
import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from conftest import running_server

ADMIN_TOKEN, API_KEY = "client-admin-token", "client-dify-key"
PACKAGE = "faq_retriever_client"


@pytest.fixture(scope="module")
def served(seed_index, tmp_path_factory):
    folder = tmp_path_factory.mktemp("generated-client")
    env = {"RETRIEVER_ADMIN_TOKEN": ADMIN_TOKEN, "RETRIEVER_API_KEYS": API_KEY, "RETRIEVER_RATE_LIMIT": "",
           "RETRIEVER_FEEDBACK_LOG": str(folder / "feedback.jsonl")}
    with running_server(seed_index, env=env) as (url, _):
        yield url, folder


@pytest.fixture(scope="module")
def generated(served):
    """The client package generated into a temporary folder from the server's own document, imported."""
    url, folder = served
    with urllib.request.urlopen(url + "/openapi.json", timeout=15) as response:
        (folder / "openapi.json").write_bytes(response.read())
    (folder / "config.json").write_text(json.dumps({"project_name_override": PACKAGE, "package_name_override": PACKAGE,
                                                    "post_hooks": []}))
    generator = Path(sys.executable).with_name("openapi-python-client")
    result = subprocess.run([str(generator), "generate", "--path", str(folder / "openapi.json"), "--meta", "none",
                             "--output-path", str(folder / PACKAGE), "--config", str(folder / "config.json")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Warning" not in result.stdout + result.stderr, result.stdout + result.stderr  # nothing left out
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(folder))
        package = importlib.import_module(PACKAGE)
        yield package, folder / PACKAGE
        for name in [name for name in sys.modules if name == PACKAGE or name.startswith(PACKAGE + ".")]:
            del sys.modules[name]


TAGS = ("search", "collections", "feedback", "dify", "operations", "admin")


def _operation(name: str):
    """The generated module of one operation (by its operationId in snake case), under its tag's folder."""
    for tag in TAGS:
        try:
            return importlib.import_module(f"{PACKAGE}.api.{tag}.{name}")
        except ModuleNotFoundError:
            continue
    raise AssertionError(f"no generated operation {name}")


def _call(operation: str, client, **arguments):
    response = _operation(operation).sync_detailed(client=client, **arguments)
    return response.status_code.value, response.parsed


def test_every_operation_answers_a_parsed_model(generated, served):
    package, source = generated
    url, _ = served
    models = importlib.import_module(f"{PACKAGE}.models")
    public = package.Client(base_url=url, timeout=30.0)
    admin = package.AuthenticatedClient(base_url=url, token=ADMIN_TOKEN, timeout=60.0)
    dify = package.AuthenticatedClient(base_url=url, token=API_KEY, timeout=30.0)
    called = {}

    def expect(operation, client, status, model, **arguments):
        got_status, parsed = _call(operation, client, **arguments)
        assert got_status == status and parsed is not None, (operation, got_status, parsed)
        assert isinstance(parsed, model), (operation, type(parsed))
        called[operation] = parsed
        return parsed

    listing = expect("list_collections", public, 200, models.CollectionsResponse)
    name = listing.default
    assert name and listing.collections[0].ready and listing.collections[0].entries > 0
    found = expect("search", public, 200, models.SearchResponse, q="社保卡怎么补办", top_k=3)
    assert found.results and found.results[0].metadata.faq_id == found.results[0].faq_id
    expect("search_json", public, 200, models.SearchResponse,
           body=models.SearchRequest(query="社保卡怎么补办", tags=[]))
    classified = expect("classify", public, 200, models.ClassifyResponse, body=models.ClassifyRequest(
        inquiries=[models.Inquiry(id=1, text="注销进度怎么查"), models.Inquiry(id="b", text="今天天气怎么样")]))
    assert [result.id for result in classified.results] == [1, "b"]
    expect("search_collection", public, 200, models.SearchResponse, name=name, q="注销进度")
    expect("search_collection_json", public, 200, models.SearchResponse, name=name,
           body=models.SearchRequest(query="注销进度"))
    expect("classify_collection", public, 200, models.ClassifyResponse, name=name,
           body=models.ClassifyRequest(inquiries=[models.Inquiry(id=1, text="注销进度")]))
    expect("send_feedback", public, 201, models.FeedbackResponse, body=models.FeedbackRequest(
        query="社保卡怎么补办", faq_id=found.results[0].faq_id, helpful=True, index_version=found.index_version))
    records = expect("dify_retrieval", dify, 200, models.DifyRecords, body=models.DifyRetrievalBody.from_dict(
        {"knowledge_id": name, "query": "注销进度怎么查", "retrieval_setting": {"top_k": 3, "score_threshold": 0.0}}))
    assert records.records and records.records[0].metadata.faq_id
    health = expect("healthz", public, 200, models.Health)
    ready = expect("readyz", public, 200, models.Ready)
    assert health.index.additional_properties["version"] == ready.index_version == found.index_version
    assert health.service_version and health.version == health.service_version  # the old key, one release
    expect("metrics", public, 200, str)
    expect("openapi_document", public, 200, models.OpenapiDocumentResponse200)
    reloaded = expect("reload_index", admin, 200, models.ReloadResponse)
    assert reloaded.version == found.index_version and reloaded.changed is False
    generated_operations = {path.stem for path in (source / "api").glob("*/*.py") if path.stem != "__init__"}
    assert generated_operations == set(called)  # every operation of the document, called once


@pytest.mark.parametrize("operation, client_kind, arguments, status, code", [
    ("search_json", "public", {"body": {"query": "社保", "top_k": 999}}, 400, "invalid_top_k"),
    ("search_collection", "public", {"name": "nothing-here", "q": "社保"}, 404, "unknown_collection"),
    ("reload_index", "wrong", {}, 401, "unauthorized"),
    ("dify_retrieval", "wrong", {"body": {"knowledge_id": "x", "query": "社保", "retrieval_setting": {}}}, 403, 1002),
])
def test_documented_errors_parse_into_the_routes_error_model(generated, served, operation, client_kind, arguments,
                                                             status, code):
    package, _ = generated
    url, _ = served
    models = importlib.import_module(f"{PACKAGE}.models")
    client = package.Client(base_url=url, timeout=30.0) if client_kind == "public" else \
        package.AuthenticatedClient(base_url=url, token="wrong", timeout=30.0)
    if "body" in arguments:
        body_model = {"search_json": models.SearchRequest, "dify_retrieval": models.DifyRetrievalBody}[operation]
        arguments = {**arguments, "body": body_model.from_dict(arguments["body"])}
    got_status, parsed = _call(operation, client, **arguments)
    assert got_status == status
    if isinstance(code, int):
        assert isinstance(parsed, models.DifyError) and parsed.error_code == code
    else:
        assert isinstance(parsed, models.Error) and parsed.error == code and parsed.message
