"""A client generated from /openapi.json (openapi-python-client) calls every operation of a real server.

Each 200/201 answer must parse into its model (a generated client returns None for an answer whose
schema the document leaves out); documented errors parse into the error model of their route.
"""
import importlib
import json
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from conftest import SEED_CORPUS, running_server

ADMIN_TOKEN, API_KEY = "client-admin-token", "client-dify-key"
PACKAGE = "faq_retriever_client"


@pytest.fixture(scope="module")
def served(seed_index, tmp_path_factory):
    folder = tmp_path_factory.mktemp("generated-client")
    # The entry editor edits a copy of the seed corpus; logs, users and hit counts go to the temporary folder;
    # review is on, so that a publish is refused (409 not_approved) and never builds into the shared seed index.
    shutil.copytree(SEED_CORPUS, folder / "corpus", ignore=shutil.ignore_patterns(".workbench"))
    env = {"RETRIEVER_ADMIN_TOKEN": ADMIN_TOKEN, "RETRIEVER_API_KEYS": API_KEY, "RETRIEVER_RATE_LIMIT": "",
           "RETRIEVER_DATA_DIR": str(folder), "RETRIEVER_CORPUS": str(folder / "corpus"), "RETRIEVER_REVIEW": "on",
           "RETRIEVER_FEEDBACK_LOG": str(folder / "feedback.jsonl"),
           "RETRIEVER_USERS_FILE": str(folder / "users.json"), "RETRIEVER_AUDIT_LOG": str(folder / "audit.jsonl")}
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


TAGS = ("search", "collections", "feedback", "dify", "operations", "admin", "entries")


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
    _entries(expect, admin, models, found.index_version)
    _content(expect, admin, models, found)
    _publish(expect, admin, models)
    _review(expect, admin, models)
    _users_and_audit(expect, admin, models)
    generated_operations = {path.stem for path in (source / "api").glob("*/*.py") if path.stem != "__init__"}
    assert generated_operations == set(called)  # every operation of the document, called once


def _entries(expect, admin, models, served_version):
    """The entry editor (retriever/http/entries.py) on the server's copy of the seed corpus."""
    draft = expect("search_draft", admin, 200, models.DraftSearchResponse,
                   body=models.SearchRequest(query="社保卡怎么补办", top_k=3))
    assert draft.results and draft.draft.served_version == served_version
    assert draft.draft.texts_embedded == 0  # the draft is what is served: nothing embedded, no cache written
    page = expect("list_entries", admin, 200, models.EntryList, limit=2)
    assert len(page.entries) == 2 and page.total > 2 and page.offset == 0
    first = expect("get_entry", admin, 200, models.EntryRecord, faq_id=page.entries[0].id)
    assert first.version == page.entries[0].version and first.file
    change = models.EntryUpdate(version=first.version, tags=["客户端"])
    change.additional_properties["valid_until"] = "2099-12-31"  # a schema field beyond the editor's own
    changed = expect("update_entry", admin, 200, models.EntryRecord, faq_id=first.id, body=change)
    assert changed.tags == ["客户端"] and changed.additional_properties["valid_until"] == "2099-12-31"
    off = expect("disable_entry", admin, 200, models.EntryRecord, faq_id=first.id,
                 body=models.VersionOnly(version=changed.version))
    on = expect("enable_entry", admin, 200, models.EntryRecord, faq_id=first.id,
                body=models.VersionOnly(version=off.version))
    assert off.enabled is False and on.enabled is True
    created = expect("create_entry", admin, 201, models.EntryRecord, body=models.NewEntry(
        id="client-new", question="生成的客户端能新建条目吗", answer="能。"))
    removed = expect("delete_entry", admin, 200, models.DeletedEntry, faq_id="client-new", version=created.version)
    assert removed.deleted == "client-new" and removed.entry.question == "生成的客户端能新建条目吗"


def _content(expect, admin, models, found):
    """Validity dates ahead and hit counts (retriever/http/content.py), of the served index."""
    expiring = expect("list_expiring", admin, 200, models.ExpiringResponse, days=366)
    assert expiring.days == 366 and expiring.index_version == found.index_version and expiring.today
    hits = expect("list_hits", admin, 200, models.HitsResponse, limit=3)
    assert hits.total > 3 and len(hits.entries) == 3 and hits.never_hit < hits.total
    assert hits.entries[0].hits >= 1 and hits.entries[0].last_hit  # the searches above answered


def _publish(expect, admin, models):
    """The publish job's status, and a start refused: review is on and nothing is approved."""
    status = expect("get_publish_status", admin, 200, models.PublishStatus)
    assert status.state == models.PublishStatusState.IDLE and [s.id for s in status.stages][0] == "corpus"
    refused = expect("start_publish", admin, 409, models.Error, body=models.PublishRequest(force=False))
    assert refused.error == "not_approved"


def _review(expect, admin, models):
    """The change set routes (retriever/http/review.py), answered without writing to the corpus folder."""
    listed = expect("list_change_sets", admin, 200, models.ChangeSetList)
    assert listed.user.additional_properties["name"] == "admin"
    unknown = "20200101T000000.000000Z-abcdef"
    expect("submit_change_set", admin, 400, models.Error, body=models.CommentBody(comment="长" * 2001))
    for operation in ("get_change_set", "approve_change_set"):
        assert expect(operation, admin, 404, models.Error, changeset_id=unknown).error == "unknown_changeset"
    expect("send_back_change_set", admin, 404, models.Error, changeset_id=unknown,
           body=models.CommentBody(comment="请补充"))


def _users_and_audit(expect, admin, models):
    """The users and audit routes (retriever/http/users.py), last: a user in the file turns review on."""
    me = expect("who_am_i", admin, 200, models.Me)
    assert me.user == "admin" and me.own_password is False
    refused = expect("change_own_password", admin, 409, models.Error, body=models.PasswordChange(
        current_password="x", new_password="a-new-password-1"))
    assert refused.error == "no_own_password"  # the admin token has no password
    created = expect("create_user", admin, 201, models.UserCreated, body=models.NewUser(
        name="zhang", roles=[models.NewUserRolesItem.EDITOR], password="zhang-password-1"))
    assert created.user.name == "zhang" and created.token is None
    assert [user.name for user in expect("list_users", admin, 200, models.UsersList).users] == ["zhang"]
    expect("get_user", admin, 200, models.UserView, name="zhang")
    expect("update_user", admin, 200, models.UserView, name="zhang", body=models.UserChange(disabled=True))
    assert expect("issue_user_token", admin, 201, models.TokenIssued, name="zhang").token.startswith("frt_")
    assert expect("revoke_user_token", admin, 200, models.UserView, name="zhang").token is False
    expect("remove_user", admin, 200, models.UserView, name="zhang")
    page = expect("read_audit", admin, 200, models.AuditPage, action="user")
    assert [record.action for record in page.records][-1] == "user.created"
    assert "user.removed" in expect("export_audit", admin, 200, str)


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
