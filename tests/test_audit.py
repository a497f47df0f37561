"""The audit trail (docs/accounts.md): every change appended as one JSON line, never rewritten; read filtered and
paged by reviewers and admins; exported as JSON Lines or CSV that match what the log holds."""
import csv
import io
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import SEED_CORPUS
from retriever.editorial.accounts import UserStore
from retriever.editorial.audit import AuditError, AuditLog
from retriever.config import ServiceConfig
from retriever.http import create_app
from retriever.privacy import Masker
from retriever.reload import SearcherHolder
from retriever.search import Searcher

TOKEN = "audit-admin-token"
BENCH = {"X-Requested-With": "workbench"}
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
ROOT = Path(__file__).resolve().parent.parent


# --- the log itself ------------------------------------------------------------------------------


def test_records_are_read_back_newest_first_filtered_and_paged(tmp_path):
    trail = AuditLog(tmp_path / "audit.jsonl")
    trail.record("zhang", "entry.updated", entry="cancel-01", diff={"answer": ["旧", "新"]})
    trail.record("li", "changeset.approved", change_set="cs-1", entries=["cancel-01", "cancel-02"])
    trail.record("zhang", "entry.created", entry="new-01")
    trail.record("wang", "user.created", user="zhang")
    assert [r["action"] for r in trail.read()] == ["user.created", "entry.created", "changeset.approved",
                                                   "entry.updated"]
    assert [r["action"] for r in trail.read(actor="zhang")] == ["entry.created", "entry.updated"]
    assert [r["action"] for r in trail.read(action="entry")] == ["entry.created", "entry.updated"]  # sub-actions
    assert [r["action"] for r in trail.read(entry="cancel-01")] == ["changeset.approved", "entry.updated"]
    assert trail.read(entry="cancel-01")[1]["diff"] == {"answer": ["旧", "新"]}
    assert [r["action"] for r in trail.read(limit=2, offset=1)] == ["entry.created", "changeset.approved"]
    assert trail.page(limit=1)["total"] == 4
    first = trail.read()[-1]["time"]
    # records written in the same millisecond share a time, so "until" the first one may hold several
    up_to_first = trail.read(until=first)
    assert first.endswith("Z") and up_to_first[-1]["action"] == "entry.updated"
    assert all(record["time"] == first for record in up_to_first)
    assert trail.read(since="2000-01-01", until="2000-12-31") == []
    assert len(trail.read(until=time.strftime("%Y-%m-%d", time.gmtime()))) == 4  # a date: the whole day
    with pytest.raises(AuditError, match="since: 'yesterday' is not an ISO date"):
        trail.read(since="yesterday")


def test_free_text_details_are_masked_and_ids_kept(tmp_path):
    trail = AuditLog(tmp_path / "audit.jsonl", Masker())
    trail.record("li", "changeset.returned", change_set="cs-13800138000", comment="请联系 13800138000 核实")
    record = trail.read()[0]
    assert "13800138000" not in record["comment"] and record["change_set"] == "cs-13800138000"


def test_a_line_edited_by_hand_is_skipped_not_fatal(tmp_path):
    trail = AuditLog(tmp_path / "audit.jsonl")
    trail.record("a1", "login")
    with open(trail.path, "a", encoding="utf-8") as handle:
        handle.write("not json\n[1, 2]\n")
    trail.record("a2", "logout")
    assert [r["actor"] for r in trail.read()] == ["a2", "a1"]


APPENDER = textwrap.dedent("""
    import sys
    from retriever.editorial.audit import AuditLog
    trail = AuditLog(sys.argv[1])
    for number in range(int(sys.argv[3])):
        trail.record(sys.argv[2], "entry.updated", entry=f"e{number}", text="长" * 3000)
""")


def test_two_processes_appending_at_once_leave_every_line_whole(tmp_path):
    path = tmp_path / "audit.jsonl"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    writers = [subprocess.Popen([sys.executable, "-c", APPENDER, str(path), actor, "200"], env=env)
               for actor in ("a1", "b2")]
    assert [writer.wait(timeout=120) for writer in writers] == [0, 0]
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 400 and all(json.loads(line)["text"] == "长" * 3000 for line in lines)
    entries = sorted(record["entry"] for record in AuditLog(path).read(actor="b2", limit=1000))
    assert entries == sorted(f"e{n}" for n in range(200))


# --- the routes ----------------------------------------------------------------------------------


@pytest.fixture()
def site(tmp_path, searcher):
    store = UserStore(tmp_path / "users.json")
    store.add("zhang", ["editor"], "zhang-password-1")
    store.add("li", ["reviewer"], "li-password-22")
    config = ServiceConfig(admin_token=TOKEN, users_file=str(store.path), audit_log=str(tmp_path / "audit.jsonl"),
                           rate_limit=None, secret="s", session_dir=str(tmp_path / "sessions"))
    return {"client": create_app(searcher, config).test_client(), "trail": AuditLog(tmp_path / "audit.jsonl"),
            "store": store}


def login(client, name, password):
    assert client.post("/admin/login", headers=BENCH, json={"name": name, "password": password}).status_code == 200


def test_the_audit_file_only_grows_through_logins_failures_changes_and_exports(site):
    client, path = site["client"], site["trail"].path
    sizes, contents = [], []

    def grew():
        content = path.read_bytes()
        assert not contents or content.startswith(contents[-1]) and len(content) > len(contents[-1])
        contents.append(content)
        sizes.append(len(content))

    client.post("/admin/login", headers=BENCH, json={"name": "li", "password": "wrong-password"})
    grew()
    login(client, "li", "li-password-22")
    grew()
    client.get("/admin/api/audit/export?format=csv").get_data()
    grew()
    client.post("/admin/logout", headers=BENCH)
    grew()
    admin = site["client"]
    admin.post("/admin/api/users", headers=ADMIN, json={"name": "wang", "roles": ["admin"], "token": True})
    grew()
    admin.patch("/admin/api/users/wang", headers=ADMIN, json={"disabled": True})
    grew()
    assert [r["action"] for r in reversed(site["trail"].read())] == [
        "login.failed", "login", "audit.exported", "logout", "user.created", "user.updated"]
    assert [r["actor"] for r in reversed(site["trail"].read())] == ["(anonymous)", "li", "li", "li", "admin", "admin"]


def test_reviewers_read_the_log_filtered_and_paged_editors_may_not(site):
    client, trail = site["client"], site["trail"]
    for number in range(5):
        trail.record("zhang", "entry.updated", entry=f"e{number}")
    trail.record("li", "changeset.approved", change_set="cs-1", entries=["e1", "e3"])
    login(client, "zhang", "zhang-password-1")
    refused = client.get("/admin/api/audit")
    assert refused.status_code == 403 and refused.get_json()["error"] == "forbidden_role"
    login(client, "li", "li-password-22")
    page = client.get("/admin/api/audit?actor=zhang&action=entry&limit=2&offset=1").get_json()
    assert page["enabled"] and page["total"] == 5 and page["offset"] == 1 and page["limit"] == 2
    assert [r["entry"] for r in page["records"]] == ["e3", "e2"]
    by_entry = client.get("/admin/api/audit?entry=e3").get_json()["records"]
    assert [r["action"] for r in by_entry] == ["changeset.approved", "entry.updated"]
    assert client.get("/admin/api/audit?action=changeset").get_json()["total"] == 1
    assert client.get("/admin/api/audit?since=2999-01-01").get_json()["total"] == 0


@pytest.mark.parametrize("query, named", [
    ("limit=0", "limit"), ("limit=1001", "limit"), ("limit=x", "limit"), ("offset=-1", "offset"),
    ("since=yesterday", "since"), ("until=2026-13-01", "until"), ("actor=" + "a" * 201, "actor")])
def test_bad_audit_parameters_are_400_naming_them(site, query, named):
    response = site["client"].get("/admin/api/audit?" + query, headers=ADMIN)
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_parameter"
    assert response.get_json()["message"].startswith(named)


def test_the_exports_match_the_log(site):
    client, trail = site["client"], site["trail"]
    trail.record("zhang", "entry.updated", entry="e1", answer="=HYPERLINK(\"http://x\")")
    trail.record("li", "changeset.approved", change_set="cs-1", comment="同意，已核对")
    expected = list(reversed(trail.read()))  # before the export records itself
    jsonl = client.get("/admin/api/audit/export?format=jsonl", headers=ADMIN)
    assert jsonl.status_code == 200 and jsonl.mimetype == "application/x-ndjson"
    assert "attachment" in jsonl.headers["Content-Disposition"]
    assert [json.loads(line) for line in jsonl.get_data(as_text=True).splitlines()] == expected
    only_li = client.get("/admin/api/audit/export?format=jsonl&actor=li", headers=ADMIN).get_data(as_text=True)
    assert [json.loads(line)["actor"] for line in only_li.splitlines()] == ["li"]
    sheet = client.get("/admin/api/audit/export?format=csv&action=entry", headers=ADMIN)
    text = sheet.get_data(as_text=True)
    assert sheet.mimetype == "text/csv" and text.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    assert rows[0] == ["time", "actor", "action", "details"] and len(rows) == 2
    assert rows[1][:3] == [expected[0]["time"], "zhang", "entry.updated"]
    assert json.loads(rows[1][3]) == {"entry": "e1", "answer": "=HYPERLINK(\"http://x\")"}  # a JSON cell, not a formula
    assert site["trail"].read(limit=1)[0]["action"] == "audit.exported"
    bad = client.get("/admin/api/audit/export?format=xml", headers=ADMIN)
    assert bad.status_code == 400 and bad.get_json()["message"].startswith("format")


def test_with_the_audit_log_off_the_routes_say_so(searcher):
    client = create_app(searcher, ServiceConfig(admin_token=TOKEN, rate_limit=None)).test_client()
    assert client.get("/admin/api/audit", headers=ADMIN).get_json() == {"enabled": False, "total": 0, "offset": 0,
                                                                        "limit": 100, "records": []}
    off = client.get("/admin/api/audit/export", headers=ADMIN)
    assert off.status_code == 409 and off.get_json()["error"] == "audit_disabled"


# --- publish and reload --------------------------------------------------------------------------


@pytest.fixture()
def served(tmp_path, seed_index, encoder):
    corpus, index = tmp_path / "corpus", tmp_path / "index"
    shutil.copytree(SEED_CORPUS, corpus)
    shutil.copytree(seed_index, index)
    holder = SearcherHolder(index, lambda folder: Searcher.load(folder, encoder))
    holder.load_initial()
    store = UserStore(tmp_path / "users.json")
    store.add("zhang", ["editor"], "zhang-password-1")
    config = ServiceConfig(admin_token=TOKEN, corpus_dir=str(corpus), users_file=str(store.path),
                           audit_log=str(tmp_path / "audit.jsonl"), rate_limit=None,
                           review=False)  # publishing without a change set (review before publish: tests/test_review*)
    return {"client": create_app(holder, config).test_client(), "corpus": corpus,
            "trail": AuditLog(tmp_path / "audit.jsonl"), "holder": holder}


def test_a_publish_is_audited_as_the_editor_who_started_it_with_its_outcome(served):
    client = served["client"]
    (served["corpus"] / "broken.yaml").write_text("- id: [unclosed\n", encoding="utf-8")  # fails before any model time
    login(client, "zhang", "zhang-password-1")
    assert client.post("/admin/api/publish", headers=BENCH, json={}).status_code == 202
    deadline = time.monotonic() + 60
    while client.get("/admin/api/publish").get_json()["state"] == "running" and time.monotonic() < deadline:
        time.sleep(0.2)
    records = served["trail"].read(action="publish")
    assert [(r["actor"], r["action"]) for r in records] == [("zhang", "publish.failed"), ("zhang", "publish.started")]
    assert records[0]["served_before"] == served["holder"].current.version and "broken.yaml" in records[0]["message"]


def test_a_reload_is_audited_as_the_admin(served):
    response = served["client"].post("/admin/reload", headers=ADMIN)
    assert response.status_code == 200
    record = served["trail"].read(limit=1)[0]
    assert (record["actor"], record["action"], record["version"]) == ("admin", "reload",
                                                                      served["holder"].current.version)


def test_an_admin_users_token_reloads_audited_by_name_and_an_editors_is_refused(served):
    store = UserStore(served["trail"].path.parent / "users.json")
    store.add("wang", ["admin"], "wang-password-1")
    admin_token, editor_token = store.issue_token("wang"), store.issue_token("zhang")
    client = served["client"]
    response = client.post("/admin/reload", headers={"Authorization": f"Bearer {admin_token}"})
    assert response.status_code == 200, response.get_json()
    record = served["trail"].read(limit=1)[0]
    assert (record["actor"], record["action"]) == ("wang", "reload")
    refused = client.post("/admin/reload", headers={"Authorization": f"Bearer {editor_token}"})
    assert (refused.status_code, refused.get_json()["error"]) == (403, "forbidden_role")
    wrong = client.post("/admin/reload", headers={"Authorization": "Bearer frt_not-a-token"})
    assert (wrong.status_code, wrong.get_json()["error"]) == (401, "unauthorized")


def test_without_an_admin_token_an_admin_user_still_reloads(tmp_path, seed_index, encoder):
    holder = SearcherHolder(seed_index, lambda folder: Searcher.load(folder, encoder))
    holder.load_initial()
    store = UserStore(tmp_path / "users.json")
    store.add("wang", ["admin"], "wang-password-1")
    token = store.issue_token("wang")
    config = ServiceConfig(users_file=str(store.path), audit_log=str(tmp_path / "audit.jsonl"), rate_limit=None)
    client = create_app(holder, config).test_client()
    assert client.post("/admin/reload", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    wrong = client.post("/admin/reload", headers={"Authorization": "Bearer frt_wrong"})
    assert (wrong.status_code, wrong.get_json()["error"]) == (401, "unauthorized")
    assert client.post("/admin/reload").status_code == 403  # nothing sent: the admin token is off
