"""Review before publish: change sets (the diff of entries, their rules, their files) and their HTTP routes,
with real users (a users file), the real audit log, and a real build behind the publish route."""
import json
import shutil
import time

import pytest

from conftest import SEED_CORPUS
from retriever.editorial.accounts import UserStore
from retriever.editorial.audit import AuditLog
from retriever.editorial.changesets import (ChangeSetStore, DraftChanged, Drafts, InvalidComment, NothingToSubmit, NotApproved,
                                  NotOpen, OwnSubmission, UnknownChangeSet, Unreadable, built_from, entry_changes)
from retriever.config import ServiceConfig
from retriever.corpus import FaqEntry
from retriever.editorial.editing import add_examples
from retriever.http import create_app
from retriever.reload import SearcherHolder
from retriever.search import Searcher
from retriever.store import current_version

A = FaqEntry("a", "社保怎么转移？", "在网上办理。", ("社保转移流程",), "社保", ("流程",))
B = FaqEntry("b", "公积金怎么提取？", "带身份证到柜台。", ("公积金提取",))
C = FaqEntry("c", "居住证怎么办？", "见[办事指南](https://example.gov/guide)。")
SERVED = [A, B]


def _edited(entry: FaqEntry, **fields) -> FaqEntry:
    return FaqEntry(**{**{name: getattr(entry, name) for name in ("id", "question", "answer", "paraphrases",
                                                                   "category", "tags", "negatives")}, **fields})


# --- the diff of entries -------------------------------------------------------------------------


def test_the_diff_names_each_entry_and_field_before_and_after():
    draft = [_edited(A, answer="在网上或窗口办理。", paraphrases=("社保转移流程", "社保卡转到外地")), C]
    changes = {c["faq_id"]: c for c in entry_changes(draft, SERVED)}
    assert list(changes) == ["a", "c", "b"]  # the draft's order, removed ones last
    changed = changes["a"]
    assert changed["change"] == "changed" and set(changed["fields"]) == {"answer", "paraphrases"}
    assert changed["fields"]["answer"] == {"before": "在网上办理。", "after": "在网上或窗口办理。"}
    assert changed["fields"]["paraphrases"]["added"] == ["社保卡转到外地"]
    assert changed["fields"]["paraphrases"]["removed"] == []
    added = changes["c"]
    assert added["change"] == "added" and added["fields"]["answer"] == {"before": None, "after": C.answer}
    assert "category" not in added["fields"]  # empty on both sides: not a change
    removed = changes["b"]
    assert removed["change"] == "removed" and removed["question"] == B.question
    assert removed["fields"]["question"] == {"before": B.question, "after": None}
    assert entry_changes(SERVED, SERVED) == []


# --- the rules, on the domain's own store --------------------------------------------------------


@pytest.fixture()
def store(tmp_path):
    return ChangeSetStore(tmp_path / "changesets")


def test_submit_approve_publish_is_recorded_step_by_step_and_survives_a_restart(store):
    submitted, superseded = store.submit(Drafts([A, B, C], SERVED, "v1"), "editor1", " 新增居住证 ")
    assert superseded is None and submitted.status == "submitted" and submitted.comment == "新增居住证"
    assert submitted.counts() == {"added": 1, "changed": 0, "removed": 0}
    approved = store.approve(submitted.id, "reviewer1", Drafts([A, B, C], SERVED, "v1"))
    assert approved.status == "approved" and approved.reviewer == "reviewer1"
    assert store.approved_for(Drafts([A, B, C], SERVED, "v1")).id == submitted.id
    store.record_publish(submitted.id, "reviewer1", {"state": "refused", "message": "发布检查未通过"})
    assert store.get(submitted.id).status == "approved"  # the gate refused: still approved, the reason kept
    assert store.get(submitted.id).last_publish["state"] == "refused"
    store.record_publish(submitted.id, "reviewer1", {"state": "done", "version": "v2"})
    reread = ChangeSetStore(store.folder).get(submitted.id)  # a new store: what is on disk
    assert reread.status == "published" and reread.published_version == "v2"
    assert [(e["action"], e["actor"]) for e in reread.history] == [
        ("submit", "editor1"), ("approve", "reviewer1"), ("publish_refused", "reviewer1"), ("publish", "reviewer1")]
    assert json.loads((store.folder / f"{submitted.id}.json").read_text(encoding="utf-8"))["status"] == "published"
    with pytest.raises(NotApproved):  # published: nothing open to publish
        store.approved_for(Drafts([A, B, C], SERVED, "v1"))


def test_a_newer_submission_supersedes_the_open_one(store):
    first, _ = store.submit(Drafts([A, B, C], SERVED), "editor1", "")
    store.approve(first.id, "reviewer1", Drafts([A, B, C], SERVED))
    second, superseded = store.submit(Drafts([A, C], SERVED), "editor2", "也删掉 b")
    assert superseded.id == first.id and store.get(first.id).status == "superseded"
    assert store.get(first.id).superseded_by == second.id
    assert store.open().id == second.id and [c.id for c in store.all()] == [second.id, first.id]
    with pytest.raises(NotOpen):
        store.approve(first.id, "reviewer1", Drafts([A, C], SERVED))


def test_approval_is_of_the_draft_as_submitted_by_someone_else(store):
    submitted, _ = store.submit(Drafts([A, B, C], SERVED), "both", "")
    with pytest.raises(OwnSubmission):
        store.approve(submitted.id, "both", Drafts([A, B, C], SERVED))
    edited = [A, _edited(B, answer="带身份证和银行卡到柜台。"), C]
    with pytest.raises(DraftChanged) as refused:
        store.approve(submitted.id, "reviewer1", Drafts(edited, SERVED))
    assert refused.value.detail["entries"] == ["b"]  # what changed since the submission
    assert store.get(submitted.id).status == "submitted"
    assert store.approve(submitted.id, "both", Drafts([A, B, C], SERVED), may_approve_own=True).status == "approved"
    with pytest.raises(DraftChanged):  # approved, then edited: not publishable
        store.approved_for(Drafts(edited, SERVED))


def test_refusals_name_the_problem(store):
    with pytest.raises(NothingToSubmit):
        store.submit(Drafts(SERVED, SERVED), "editor1", "")
    with pytest.raises(NotApproved) as nothing:
        store.approved_for(Drafts([A, B, C], SERVED))
    assert nothing.value.detail == {}
    submitted, _ = store.submit(Drafts([A, B, C], SERVED), "editor1", "")
    with pytest.raises(NotApproved) as waiting:
        store.approved_for(Drafts([A, B, C], SERVED))
    assert waiting.value.detail["changeset"] == submitted.id
    for unknown in ("nope", "../changesets/x", submitted.id[:-1] + "0" if submitted.id[-1] != "0" else "x"):
        with pytest.raises(UnknownChangeSet):
            store.get(unknown)
    for comment, problem in [("", "missing"), ("   ", "missing"), ("长" * 2001, "limit")]:
        with pytest.raises(InvalidComment) as invalid:
            store.send_back(submitted.id, "reviewer1", comment)
        assert problem in invalid.value.detail
    sent_back = store.send_back(submitted.id, "reviewer1", "答案里的链接写错了")
    assert sent_back.status == "sent_back" and sent_back.review_comment == "答案里的链接写错了"
    with pytest.raises(NotOpen) as closed:
        store.approve(submitted.id, "reviewer1", Drafts([A, B, C], SERVED))
    assert closed.value.detail["status"] == "sent_back"


def test_the_build_checks_that_it_built_the_approved_draft(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"corpus_checksum": Drafts([A, C], SERVED).checksum}))
    calls = []
    check = lambda staging, fields: calls.append(staging) or {"checked": True}
    assert built_from(check, Drafts([A, C], SERVED).checksum)(tmp_path, {}) == {"checked": True}
    with pytest.raises(DraftChanged):
        built_from(check, Drafts([A, B, C], SERVED).checksum)(tmp_path, {})
    assert calls == [tmp_path]  # the gate never ran on the other draft


# --- over HTTP, with users -----------------------------------------------------------------------

TOKEN = "review-admin-token"
HEADERS = {"X-Requested-With": "workbench"}


def _service(tmp_path, served) -> dict:
    """A copy of the seed corpus served by ``served`` (a searcher, or a holder of an index folder), a users file
    with an editor, a reviewer and one user holding both roles, each logged in in a browser of their own, and
    the audit log."""
    corpus = tmp_path / "corpus"
    shutil.copytree(SEED_CORPUS, corpus)
    users = UserStore(tmp_path / "users.json")
    config = ServiceConfig(admin_token=TOKEN, corpus_dir=str(corpus), users_file=str(tmp_path / "users.json"),
                           audit_log=str(tmp_path / "audit.jsonl"), rate_limit=None)
    app = create_app(served, config)
    browsers = {None: app.test_client()}  # one browser (cookie jar) per user; None: nobody logged in
    for name, roles in [("editor1", ["editor"]), ("reviewer1", ["reviewer"]), ("both1", ["editor", "reviewer"])]:
        users.add(name, roles, password=f"{name}-password")
        browsers[name] = app.test_client()
        login = browsers[name].post("/admin/login", json={"name": name, "password": f"{name}-password"},
                                    headers=HEADERS)
        assert login.status_code == 200, login.get_json()
    return {"client": app.test_client(), "corpus": corpus, "by": browsers, "audit": AuditLog(config.audit_log)}


@pytest.fixture()
def service(tmp_path, searcher):
    return _service(tmp_path, searcher)


@pytest.fixture()
def publishing(tmp_path, seed_index, encoder):
    """As ``service``, over a copy of the seed index that publishing replaces."""
    index = tmp_path / "index"
    shutil.copytree(seed_index, index)
    holder = SearcherHolder(index, lambda folder: Searcher.load(folder, encoder))
    holder.load_initial()
    return {**_service(tmp_path, holder), "index": index, "holder": holder}


def _as(service, who, method, path, body=None):
    """``who``'s browser sends the request, with the workbench's header."""
    return service["by"][who].open(path, method=method, json=body, headers=HEADERS)


def _edit(corpus, text="注销了为什么还显示在册"):
    add_examples(corpus, "cancel-02", "paraphrase", [text])


def _submit(service, who="editor1", comment="cancel-02 加一个问法"):
    return _as(service, who, "POST", "/admin/api/changesets", {"comment": comment})


def test_editor_submits_reviewer_sees_the_diff_and_approves_and_the_audit_log_names_both(service):
    corpus = service["corpus"]
    _edit(corpus)
    submitted = _submit(service)
    assert submitted.status_code == 201, submitted.get_json()
    body = submitted.get_json()
    assert body["status"] == "submitted" and body["author"] == "editor1" and body["draft_matches"] is True
    assert body["counts"] == {"added": 0, "changed": 1, "removed": 0}
    [change] = body["changes"]
    assert change["faq_id"] == "cancel-02" and change["fields"]["paraphrases"]["added"] == ["注销了为什么还显示在册"]

    listed = _as(service, "reviewer1", "GET", "/admin/api/changesets").get_json()
    assert listed["open"] == body["id"] and listed["review"] == {"required": True, "self_approval": False}
    assert listed["user"] == {"name": "reviewer1", "roles": ["reviewer"]}
    assert "changes" not in listed["changesets"][0] and listed["changesets"][0]["status_label"] == "待审核"
    shown = _as(service, "reviewer1", "GET", f"/admin/api/changesets/{body['id']}").get_json()
    assert shown["changes"] == body["changes"]

    approved = _as(service, "reviewer1", "POST", f"/admin/api/changesets/{body['id']}/approve", {"comment": "可以"})
    assert approved.status_code == 200 and approved.get_json()["status"] == "approved"
    assert approved.get_json()["reviewer"] == "reviewer1" and approved.get_json()["review_comment"] == "可以"
    steps = [(r["actor"], r["action"], r.get("change_set")) for r in service["audit"].read(action="changeset")]
    assert steps == [("reviewer1", "changeset.approve", body["id"]), ("editor1", "changeset.submit", body["id"])]
    assert service["audit"].read(entry="cancel-02")[0]["action"] == "changeset.approve"


@pytest.mark.parametrize("who, method, path, body, status, code", [
    ("editor1", "POST", "/admin/api/changesets/{id}/approve", {}, 403, "forbidden_role"),
    ("editor1", "POST", "/admin/api/changesets/{id}/send-back", {"comment": "x"}, 403, "forbidden_role"),
    ("reviewer1", "POST", "/admin/api/changesets", {}, 403, "forbidden_role"),
    ("reviewer1", "GET", "/admin/api/changesets/20261204T000000.000000Z-abcdef", None, 404, "unknown_changeset"),
    ("reviewer1", "POST", "/admin/api/changesets/nope/approve", {}, 404, "unknown_changeset"),
    ("reviewer1", "POST", "/admin/api/changesets/nope/send-back", {"comment": "x"}, 404, "unknown_changeset"),
    ("reviewer1", "POST", "/admin/api/changesets/{id}/send-back", {}, 400, "invalid_comment"),
    ("reviewer1", "POST", "/admin/api/changesets/{id}/send-back", {"comment": "  "}, 400, "invalid_comment"),
    ("reviewer1", "POST", "/admin/api/changesets/{id}/send-back", {"comment": "长" * 2001}, 400, "invalid_comment"),
    ("reviewer1", "POST", "/admin/api/changesets/{id}/send-back", {"comment": 5}, 400, "invalid_comment"),
    ("reviewer1", "POST", "/admin/api/changesets/{id}/send-back", {"comment": "长" * 30_000}, 413, "payload_too_large"),
    ("reviewer1", "POST", "/admin/api/changesets/{id}/approve", {"status": "approved"}, 400, "unknown_field"),
    ("both1", "POST", "/admin/api/changesets/{id}/approve", {}, 403, "own_submission"),
    (None, "POST", "/admin/api/changesets/{id}/approve", {}, 401, "login_required"),
])
def test_bad_requests_are_refused_with_a_reason(service, who, method, path, body, status, code):
    _edit(service["corpus"])
    submitted = _submit(service, who="both1").get_json()
    response = _as(service, who, method, path.format(id=submitted["id"]), body)
    assert response.status_code == status, response.get_json()
    assert response.get_json()["error"] == code and response.get_json()["message"]
    assert _as(service, "both1", "GET", f"/admin/api/changesets/{submitted['id']}").get_json()["status"] == "submitted"


def test_a_draft_edited_after_submission_cannot_be_approved_and_says_what_changed(service):
    _edit(service["corpus"])
    submitted = _submit(service).get_json()
    add_examples(service["corpus"], "cancel-01", "negative", ["建造师考试报名"])
    refused = _as(service, "reviewer1", "POST", f"/admin/api/changesets/{submitted['id']}/approve", {})
    assert refused.status_code == 409 and refused.get_json()["error"] == "draft_changed"
    assert refused.get_json()["entries"] == ["cancel-01"] and "cancel-01" in refused.get_json()["message"]
    resubmitted = _submit(service, comment="再加一个负例").get_json()
    assert resubmitted["superseded"] == submitted["id"] and resubmitted["counts"]["changed"] == 2


def test_nothing_to_submit_and_no_corpus(service, searcher):
    nothing = _submit(service)
    assert nothing.status_code == 409 and nothing.get_json()["error"] == "nothing_to_submit"
    bare = create_app(searcher, ServiceConfig(admin_token=TOKEN, rate_limit=None)).test_client()
    response = bare.get("/admin/api/changesets", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 409 and response.get_json()["error"] == "no_corpus"


def test_the_cookie_session_needs_the_workbench_header(service):
    client = service["client"]
    assert client.post("/admin/login", json={"name": "editor1", "password": "editor1-password"},
                       headers=HEADERS).status_code == 200
    _edit(service["corpus"])
    forged = client.post("/admin/api/changesets", json={})
    assert forged.status_code == 403 and forged.get_json()["error"] == "missing_csrf_header"
    assert client.post("/admin/api/changesets", json={}, headers=HEADERS).status_code == 201


def _wait_for_publish(service, who, seconds: float = 240) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        response = _as(service, who, "GET", "/admin/api/publish")
        status = response.get_json()
        assert response.status_code == 200, status
        if status["state"] != "running":
            return status
        time.sleep(0.5)
    raise AssertionError(f"publishing still running after {seconds} s: {status}")


def test_publish_needs_the_approved_draft_and_marks_it_published(publishing):
    service = publishing
    served = service["holder"].current.version
    _edit(service["corpus"])
    unreviewed = _as(service, "reviewer1", "POST", "/admin/api/publish", {})
    assert unreviewed.status_code == 409 and unreviewed.get_json()["error"] == "not_approved"
    submitted = _submit(service).get_json()
    waiting = _as(service, "reviewer1", "POST", "/admin/api/publish", {})
    assert waiting.status_code == 409 and waiting.get_json()["changeset"] == submitted["id"]
    _as(service, "reviewer1", "POST", f"/admin/api/changesets/{submitted['id']}/approve", {})
    add_examples(service["corpus"], "cancel-01", "paraphrase", ["建造师注销去哪个网站"])  # after approval
    stale = _as(service, "reviewer1", "POST", "/admin/api/publish", {})
    assert stale.status_code == 409 and stale.get_json()["error"] == "draft_changed"
    assert stale.get_json()["entries"] == ["cancel-01"]
    assert current_version(service["index"]) == served  # nothing was built

    shutil.copy(SEED_CORPUS / "seed.yaml", service["corpus"] / "seed.yaml")  # the late edit undone: the approved
    _edit(service["corpus"])  # draft again
    started = _as(service, "reviewer1", "POST", "/admin/api/publish", {})
    assert started.status_code == 202, started.get_json()
    status = _wait_for_publish(service, "reviewer1")
    assert status["state"] == "done", status
    published = _as(service, "reviewer1", "GET", f"/admin/api/changesets/{submitted['id']}").get_json()
    assert published["status"] == "published" and published["published_version"] == status["version"]
    assert published["published_by"] == "reviewer1"
    answer = service["client"].get("/v1/search", query_string={"q": "注销了为什么还显示在册"}).get_json()
    assert answer["results"][0]["faq_id"] == "cancel-02"
    steps = [(r["actor"], r["action"]) for r in reversed(service["audit"].read())]  # oldest first
    assert steps.index(("editor1", "changeset.submit")) < steps.index(("reviewer1", "changeset.approve")) < \
        steps.index(("reviewer1", "publish.started")) < steps.index(("reviewer1", "publish.done"))
    assert ("reviewer1", "changeset.publish") in steps


@pytest.mark.parametrize("review, required", [(None, False), (True, True), (False, False)])
def test_review_follows_the_setting_and_the_legacy_admin_token_may_approve_its_own(tmp_path, searcher, review, required):
    """No users file: review is off unless RETRIEVER_REVIEW=on; the admin token may approve its own change set."""
    corpus = tmp_path / "corpus"
    shutil.copytree(SEED_CORPUS, corpus)
    config = ServiceConfig(admin_token=TOKEN, corpus_dir=str(corpus), users_file=str(tmp_path / "users.json"),
                           rate_limit=None, review=review)
    client = create_app(searcher, config).test_client()
    admin = {"Authorization": f"Bearer {TOKEN}"}
    listed = client.get("/admin/api/changesets", headers=admin).get_json()
    assert listed["review"] == {"required": required, "self_approval": True}
    _edit(corpus)
    submitted = client.post("/admin/api/changesets", headers=admin, json={}).get_json()
    approved = client.post(f"/admin/api/changesets/{submitted['id']}/approve", headers=admin, json={})
    assert approved.status_code == 200 and approved.get_json()["reviewer"] == "admin"


def test_review_settings_come_from_the_environment():
    assert ServiceConfig.from_env({}).review is None
    assert ServiceConfig.from_env({"RETRIEVER_REVIEW": "off"}).review is False
    both = ServiceConfig.from_env({"RETRIEVER_REVIEW": "on", "RETRIEVER_REVIEW_SELF_APPROVAL": "on"})
    assert both.review is True and both.review_self_approval is True
    from retriever.errors import RetrieverError
    with pytest.raises(RetrieverError, match="RETRIEVER_REVIEW='maybe' must be on, off or auto"):
        ServiceConfig.from_env({"RETRIEVER_REVIEW": "maybe"})


def test_a_gate_refusal_keeps_the_change_set_approved_with_the_reason(publishing):
    service = publishing
    served = service["holder"].current.version
    add_examples(service["corpus"], "cancel-01", "negative", ["注销手续的办理流程"])  # a labelled query of cancel-01
    submitted = _submit(service, comment="负例").get_json()
    _as(service, "reviewer1", "POST", f"/admin/api/changesets/{submitted['id']}/approve", {})
    assert _as(service, "editor1", "POST", "/admin/api/publish", {}).status_code == 202
    status = _wait_for_publish(service, "editor1")
    assert status["state"] == "refused" and status["gate"]["broken"][0]["query"] == "注销手续的办理流程"
    kept = _as(service, "editor1", "GET", f"/admin/api/changesets/{submitted['id']}").get_json()
    assert kept["status"] == "approved" and kept["last_publish"]["state"] == "refused"
    assert kept["last_publish"]["message"] == "发布检查未通过，没有发布" and kept["last_publish"]["actor"] == "editor1"
    assert service["holder"].current.version == served
    refused = service["audit"].read(action="publish.refused")
    assert refused[0]["actor"] == "editor1" and refused[0]["change_set"] == submitted["id"]


def test_a_change_set_file_broken_by_hand_is_named_and_left_out_of_the_list(store):
    kept, _ = store.submit(Drafts([A, B, C], SERVED), "editor1", "")
    broken = store.folder / "20200101T000000.000000Z-abcdef.json"
    broken.write_text("{not json", encoding="utf-8")
    assert [c.id for c in store.all()] == [kept.id]
    with pytest.raises(Unreadable, match="20200101T000000.000000Z-abcdef.json: not a change set"):
        store.get("20200101T000000.000000Z-abcdef")
