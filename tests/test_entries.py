"""The entry editor: the draft corpus entry by entry (files kept readable and round-trippable), versions and
409 conflicts (threads and processes), the JSON API's bad inputs, the audit trail, and "test a query" against
the draft before it is published."""
import json
import shutil
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from conftest import REPO, SEED_CORPUS
from retriever.editorial.accounts import UserStore
from retriever.config import ServiceConfig
from retriever.corpus import corpus_checksum, export_sheet, load_corpus
from retriever.editorial.editing import add_examples
from retriever.corpus.entry_store import (EntryNotFound, IdTaken, SheetNotWritable, VersionConflict, create_entry,
                                          delete_entry, get_entry, update_entry)
from retriever.http import create_app
from retriever.reload import SearcherHolder
from retriever.search import Searcher

TOKEN = "entries-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}

COMMENTED = """\
# 社保常见问题 —— 编辑请保留注释
entries:
  # 第一组：缴费
  - id: pay-01
    category: 缴费
    tags: [缴费, 在线办理]   # 标签
    question: 社保怎么缴费?
    paraphrases:
      - 社保在哪交
      - 怎么交社保   # 口语
    answer: |-
      登录电子税务局缴费。
      也可以到银行柜台缴费。

  # 第二组：转移
  - id: move-01
    category: 转移
    question: 社保怎么转移?
    answer: 在新参保地申请转移接续。
"""


@pytest.fixture()
def corpus(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "faq.yaml").write_text(COMMENTED, encoding="utf-8")
    return folder


# --- the domain: files kept as they were, versions -----------------------------------------------


def test_update_rewrites_only_the_changed_fields_and_keeps_every_comment(corpus):
    before = get_entry(corpus, "pay-01")
    after = update_entry(corpus, "pay-01", {"question": "社保费怎么缴纳?", "paraphrases": ["社保在哪交", "网上交社保"],
                                            "negatives": ["医保怎么缴费"]}, before.version)
    text = (corpus / "faq.yaml").read_text(encoding="utf-8")
    assert after.version != before.version and after.entry.question == "社保费怎么缴纳?"
    for kept in ("# 社保常见问题 —— 编辑请保留注释", "# 第一组：缴费", "tags: [缴费, 在线办理]   # 标签",
                 "# 第二组：转移", "登录电子税务局缴费。"):
        assert kept in text
    assert text.endswith(COMMENTED[COMMENTED.index("\n  # 第二组"):])  # the other entry byte for byte
    assert [e.id for e in load_corpus(corpus)] == ["pay-01", "move-01"]
    assert load_corpus(corpus)[0].negatives == ("医保怎么缴费",)


def test_create_then_delete_leaves_the_file_byte_identical(corpus):
    created = create_entry(corpus, {"question": "社保断缴有什么影响?", "answer": "详见[说明](https://example.com/a)。",
                                    "category": "缴费", "tags": ["断缴"]})
    assert created.file == "faq.yaml" and created.entry.id.startswith("q-")
    assert get_entry(corpus, created.entry.id).entry.answer == "详见[说明](https://example.com/a)。"
    assert (corpus / "faq.yaml").read_text(encoding="utf-8").startswith(COMMENTED)  # appended, nothing else moved
    delete_entry(corpus, created.entry.id, created.version)
    assert (corpus / "faq.yaml").read_text(encoding="utf-8") == COMMENTED
    backups = list((corpus / ".workbench" / "backups").iterdir())
    assert len(backups) == 2  # each write kept what it replaced


def test_disabled_entries_stay_in_the_file_but_are_never_built(corpus):
    served_checksum = corpus_checksum(load_corpus(corpus))
    stored = get_entry(corpus, "move-01")
    disabled = update_entry(corpus, "move-01", {"enabled": False}, stored.version)
    assert "enabled: false" in (corpus / "faq.yaml").read_text(encoding="utf-8")
    assert [e.id for e in load_corpus(corpus)] == ["pay-01"]
    assert [e.id for e in load_corpus(corpus, include_disabled=True)] == ["pay-01", "move-01"]
    update_entry(corpus, "move-01", {"enabled": True}, disabled.version)
    assert (corpus / "faq.yaml").read_text(encoding="utf-8") == COMMENTED
    # A corpus that disables nothing keeps its checksum: "enabled" is not part of an enabled entry's record.
    assert corpus_checksum(load_corpus(corpus)) == served_checksum
    assert "enabled" not in load_corpus(corpus)[0].to_record()


def test_quick_edits_of_a_disabled_entry_keep_it_disabled(corpus):
    update_entry(corpus, "move-01", {"enabled": False}, get_entry(corpus, "move-01").version)
    add_examples(corpus, "move-01", "paraphrase", ["社保跨省转移"])
    moved = get_entry(corpus, "move-01").entry
    assert moved.enabled is False and moved.paraphrases == ("社保跨省转移",)


def test_a_flow_style_entry_is_rewritten_whole_and_nothing_else_moves(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    second = "  # 第二个\n  - id: f2\n    question: 问二?\n    answer: 答二\n"
    text = "# 注释\nentries:\n  - {id: f1, question: 问一?, answer: 答一}   # 行内\n" + second
    (corpus / "faq.yaml").write_text(text, encoding="utf-8")
    update_entry(corpus, "f1", {"answer": "新答案", "tags": ["甲"]}, get_entry(corpus, "f1").version)
    written = (corpus / "faq.yaml").read_text(encoding="utf-8")
    assert written.startswith("# 注释\nentries:\n") and written.endswith(second)
    assert [(e.id, e.answer, e.tags) for e in load_corpus(corpus)] == [("f1", "新答案", ("甲",)), ("f2", "答二", ())]


def test_a_stale_version_changes_nothing_and_carries_both_versions(corpus):
    base = get_entry(corpus, "pay-01")
    first = update_entry(corpus, "pay-01", {"answer": "第一位编辑的答案"}, base.version)
    with pytest.raises(VersionConflict) as conflict:
        update_entry(corpus, "pay-01", {"answer": "第二位编辑的答案"}, base.version)
    assert conflict.value.current.version == first.version
    assert conflict.value.current.entry.answer == "第一位编辑的答案"
    assert conflict.value.submitted == {"answer": "第二位编辑的答案", "id": "pay-01", "version": base.version}
    with pytest.raises(VersionConflict):
        delete_entry(corpus, "pay-01", base.version)
    assert get_entry(corpus, "pay-01").entry.answer == "第一位编辑的答案"
    with pytest.raises(EntryNotFound):
        update_entry(corpus, "nope", {"answer": "x"}, base.version)
    with pytest.raises(IdTaken):
        create_entry(corpus, {"id": "move-01", "question": "重复编号?", "answer": "x"})


def test_jsonl_entries_change_on_their_own_line(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    lines = ['{"id": "a", "question": "甲问题?", "answer": "甲", "tags": ["t"]}',
             '{"answer": "乙", "id": "b", "question": "乙问题?"}',
             '{"id":"c","question":"丙问题?","answer":"丙"}']
    (corpus / "faq.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    update_entry(corpus, "b", {"paraphrases": ["乙的问法"]}, get_entry(corpus, "b").version)
    written = (corpus / "faq.jsonl").read_text(encoding="utf-8").splitlines()
    assert written[0] == lines[0] and written[2] == lines[2]
    assert json.loads(written[1]) == {"answer": "乙", "id": "b", "question": "乙问题?", "paraphrases": ["乙的问法"]}
    assert list(json.loads(written[1])) == ["answer", "id", "question", "paraphrases"]  # key order kept
    delete_entry(corpus, "a", get_entry(corpus, "a").version)
    assert (corpus / "faq.jsonl").read_text(encoding="utf-8").splitlines() == [written[1], lines[2]]


def test_spreadsheets_are_rewritten_only_when_nothing_is_lost(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    entries = load_corpus(SEED_CORPUS)[:3]
    export_sheet(entries, corpus / "faq.csv", headers="zh")
    stored = get_entry(corpus, entries[0].id)
    changed = update_entry(corpus, entries[0].id, {"tags": ["新标签"]}, stored.version)
    assert load_corpus(corpus)[0].tags == ("新标签",) and "标准问题" in (corpus / "faq.csv").read_text("utf-8-sig")
    with pytest.raises(SheetNotWritable, match="启用"):
        update_entry(corpus, entries[0].id, {"enabled": False}, changed.version)
    # A column the corpus does not read (备注) would be lost by a rewrite: refused, the file untouched.
    text = (corpus / "faq.csv").read_text("utf-8-sig").splitlines()
    text = [text[0] + ",备注"] + [line + ",内部备注" for line in text[1:]]
    (corpus / "faq.csv").write_text("\n".join(text) + "\n", encoding="utf-8")
    original = (corpus / "faq.csv").read_bytes()
    with pytest.raises(SheetNotWritable, match="其他列"):
        update_entry(corpus, entries[1].id, {"answer": "新答案"}, get_entry(corpus, entries[1].id).version)
    assert (corpus / "faq.csv").read_bytes() == original
    # A new entry never goes into a sheet by default: it gets a YAML file of its own.
    assert create_entry(corpus, {"question": "表格旁的新问题?", "answer": "好"}).file == "entries.yaml"


def test_two_processes_saving_one_entry_one_wins_the_other_conflicts(corpus):
    version = get_entry(corpus, "pay-01").version
    script = textwrap.dedent("""
        import json, sys
        from retriever.corpus.entry_store import VersionConflict, update_entry
        try:
            update_entry(sys.argv[1], "pay-01", {"answer": sys.argv[3]}, sys.argv[2])
            print(json.dumps({"saved": True}))
        except VersionConflict as exc:
            print(json.dumps({"saved": False, "current": exc.current.entry.answer, "submitted": exc.submitted}))
    """)
    runs = [subprocess.Popen([sys.executable, "-c", script, str(corpus), version, f"进程{n}的答案"], cwd=REPO,
                             stdout=subprocess.PIPE, text=True) for n in (1, 2)]
    outcomes = [json.loads(run.communicate(timeout=60)[0]) for run in runs]
    assert sorted(o["saved"] for o in outcomes) == [False, True]
    lost = next(o for o in outcomes if not o["saved"])
    won = get_entry(corpus, "pay-01").entry.answer
    assert lost["current"] == won and lost["submitted"]["answer"] != won
    assert lost["submitted"]["answer"].startswith("进程")


# --- the JSON API ---------------------------------------------------------------------------------


def _bench(tmp_path: Path, seed_index: Path, encoder) -> dict:
    """A served copy of the seed index, the seed corpus as the draft, an audit log, an editor and a reviewer."""
    corpus = tmp_path / "corpus"
    shutil.copytree(SEED_CORPUS, corpus)
    index = tmp_path / "index"
    shutil.copytree(seed_index, index)
    holder = SearcherHolder(index, lambda folder: Searcher.load(folder, encoder))
    holder.load_initial()
    users = UserStore(tmp_path / "users.json")
    users.add("rita", ["reviewer"])  # API tokens only: no password to hash
    users.add("eddie", ["editor"])
    config = ServiceConfig(admin_token=TOKEN, corpus_dir=str(corpus), rate_limit=None,
                           users_file=str(tmp_path / "users.json"), audit_log=str(tmp_path / "audit.jsonl"))
    app = create_app(holder, config)
    return {"app": app, "client": app.test_client(), "corpus": corpus, "audit": tmp_path / "audit.jsonl",
            "reviewer": {"Authorization": f"Bearer {users.issue_token('rita')}"},
            "editor": {"Authorization": f"Bearer {users.issue_token('eddie')}"}}


@pytest.fixture()
def bench(tmp_path, seed_index, encoder):
    return _bench(tmp_path, seed_index, encoder)


@pytest.fixture(scope="module")
def unchanged_bench(tmp_path_factory, seed_index, encoder):
    """One bench for the tests that change nothing (each checks that it did not)."""
    return _bench(tmp_path_factory.mktemp("entries"), seed_index, encoder)


def test_entries_are_listed_searched_and_filtered(unchanged_bench):
    client = unchanged_bench["client"]
    everything = client.get("/admin/api/entries", headers=ADMIN).get_json()
    assert everything["total"] == len(load_corpus(SEED_CORPUS)) and everything["categories"]
    found = client.get("/admin/api/entries", query_string={"q": "手机号"}, headers=ADMIN).get_json()
    assert found["total"] >= 1 and all("手机号" in json.dumps(e, ensure_ascii=False) for e in found["entries"])
    page = client.get("/admin/api/entries", query_string={"limit": 2, "offset": 1}, headers=ADMIN).get_json()
    assert [e["id"] for e in page["entries"]] == [e["id"] for e in everything["entries"][1:3]]
    category = everything["categories"][0]
    by_category = client.get("/admin/api/entries", query_string={"category": category}, headers=ADMIN).get_json()
    assert by_category["total"] and all(e["category"] == category for e in by_category["entries"])
    one = client.get(f"/admin/api/entries/{page['entries'][0]['id']}", headers=ADMIN)
    assert one.status_code == 200 and one.headers["ETag"] == f'"{one.get_json()["version"]}"'
    assert client.get("/admin/api/entries", query_string={"status": "disabled"}, headers=ADMIN).get_json()["total"] == 0


def test_create_update_disable_delete_over_http_are_audited_with_the_user(bench):
    client, editor = bench["client"], bench["editor"]
    created = client.post("/admin/api/entries", json={"question": "公积金怎么提取?", "answer": "到公积金中心办理。",
                                                      "category": "公积金"}, headers=editor)
    assert created.status_code == 201, created.get_json()
    entry = created.get_json()
    assert created.headers["Location"] == f"/admin/api/entries/{entry['id']}" and entry["file"] == "seed.yaml"
    saved = client.put(f"/admin/api/entries/{entry['id']}", json={"version": entry["version"],
                                                                  "paraphrases": ["提取公积金", "公积金取出来"]},
                       headers=editor)
    assert saved.status_code == 200 and saved.get_json()["paraphrases"] == ["提取公积金", "公积金取出来"]
    disabled = client.post(f"/admin/api/entries/{entry['id']}/disable", json={"version": saved.get_json()["version"]},
                           headers=editor)
    assert disabled.status_code == 200 and disabled.get_json()["enabled"] is False
    listed = client.get("/admin/api/entries", query_string={"status": "disabled"}, headers=editor).get_json()
    assert [e["id"] for e in listed["entries"]] == [entry["id"]]
    gone = client.delete(f"/admin/api/entries/{entry['id']}", query_string={"version": disabled.get_json()["version"]},
                         headers=editor)
    assert gone.status_code == 200 and gone.get_json()["deleted"] == entry["id"]
    assert (bench["corpus"] / "seed.yaml").read_bytes() == (SEED_CORPUS / "seed.yaml").read_bytes()
    records = [json.loads(line) for line in bench["audit"].read_text(encoding="utf-8").splitlines()]
    mine = [r for r in records if r["action"].startswith("entry.")]
    assert [r["action"] for r in mine] == ["entry.create", "entry.update", "entry.disable", "entry.delete"]
    assert {r["actor"] for r in mine} == {"eddie"} and {r["entry"] for r in mine} == {entry["id"]}
    assert mine[1]["before"]["paraphrases"] == [] and mine[1]["after"]["paraphrases"] == ["提取公积金", "公积金取出来"]


def test_validity_dates_round_trip_through_put_into_the_yaml_file_and_answer_versions_stay(bench):
    """The editor's 生效日期 / 失效日期 (entries.js sends them with every save): written, read back, removed."""
    client, editor, seed = bench["client"], bench["editor"], bench["corpus"] / "seed.yaml"
    version = client.get("/admin/api/entries/cancel-01", headers=editor).get_json()["version"]
    versions = [{"from": "2099-06-01", "answer": "新的办理方式：\n全程网办。"}]
    dated = client.put("/admin/api/entries/cancel-01", json={"version": version, "valid_until": "2099-12-31",
                                                             "answer_versions": versions}, headers=editor)
    assert dated.status_code == 200, dated.get_json()
    assert dated.get_json()["valid_until"] == "2099-12-31" and dated.get_json()["answer_versions"] == versions
    block = seed.read_text(encoding="utf-8").split("- id: cancel-01\n")[1].split("\n  - id: ")[0]
    assert 'valid_until: "2099-12-31"' in block and "- from: \"2099-06-01\"" in block
    (entry,) = [e for e in load_corpus(bench["corpus"]) if e.id == "cancel-01"]
    assert entry.valid_until == "2099-12-31" and entry.answer_versions[0].answer == "新的办理方式：\n全程网办。"
    # What the form sends: every field it shows, an empty date as null (removed); answer_versions not sent: kept.
    cleared = client.put("/admin/api/entries/cancel-01", json={"version": dated.get_json()["version"],
                                                               "valid_from": "2026-01-01", "valid_until": None},
                         headers=editor).get_json()
    assert cleared["valid_from"] == "2026-01-01" and "valid_until" not in cleared and cleared["answer_versions"]
    (entry,) = [e for e in load_corpus(bench["corpus"]) if e.id == "cancel-01"]
    assert (entry.valid_from, entry.valid_until, len(entry.answer_versions)) == ("2026-01-01", None, 1)
    backwards = client.put("/admin/api/entries/cancel-01", json={"version": cleared["version"],
                                                                 "valid_until": "2025-12-31"}, headers=editor)
    assert backwards.status_code == 400 and backwards.get_json()["field"] == "valid_until"
    assert "valid_until: " not in seed.read_text(encoding="utf-8").split("- id: cancel-01\n")[1].split("- id: ")[0]


def test_two_editors_saving_at_once_one_gets_409_and_loses_nothing(bench):
    client = bench["client"]
    base = client.get("/admin/api/entries/cancel-01", headers=ADMIN).get_json()
    barrier, answers = threading.Barrier(2), {}

    def save(name: str) -> None:
        own = bench["app"].test_client()
        barrier.wait()
        answers[name] = own.put("/admin/api/entries/cancel-01", headers=ADMIN,
                                json={"version": base["version"], "answer": f"{name} 写的答案"})

    threads = [threading.Thread(target=save, args=(name,)) for name in ("甲", "乙")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    statuses = sorted(response.status_code for response in answers.values())
    assert statuses == [200, 409]
    loser = next(name for name, response in answers.items() if response.status_code == 409)
    body = answers[loser].get_json()
    assert body["error"] == "version_conflict" and body["submitted"]["answer"] == f"{loser} 写的答案"
    assert body["current"]["answer"] != body["submitted"]["answer"]
    assert body["current"]["version"] == client.get("/admin/api/entries/cancel-01", headers=ADMIN).get_json()["version"]
    assert body["submitted"]["version"] == base["version"]


@pytest.mark.parametrize("method, path, body, status, code", [
    ("GET", "/admin/api/entries/no-such-entry", None, 404, "unknown_entry"),
    ("PUT", "/admin/api/entries/no-such-entry", {"version": "abc", "answer": "x"}, 404, "unknown_entry"),
    ("DELETE", "/admin/api/entries/no-such-entry?version=abc", None, 404, "unknown_entry"),
    ("POST", "/admin/api/entries/no-such-entry/disable", {"version": "abc"}, 404, "unknown_entry"),
    ("PUT", "/admin/api/entries/cancel-01", {"version": "stale0000000", "answer": "x"}, 409, "version_conflict"),
    ("DELETE", "/admin/api/entries/cancel-01?version=stale0000000", None, 409, "version_conflict"),
    ("DELETE", "/admin/api/entries/cancel-01", None, 400, "missing_version"),
    ("PUT", "/admin/api/entries/cancel-01", {"answer": "没有版本"}, 400, "invalid_entry"),
    ("PUT", "/admin/api/entries/cancel-01", {"version": "x", "id": "other"}, 400, "invalid_edit"),
    ("POST", "/admin/api/entries", {"question": "问" * 501, "answer": "x"}, 400, "invalid_entry"),
    ("POST", "/admin/api/entries", {"question": "问题?", "answer": "答" * 20_001}, 400, "invalid_entry"),
    ("POST", "/admin/api/entries", {"question": "问题?", "answer": "x", "tags": ["t"] * 51}, 400, "invalid_entry"),
    ("POST", "/admin/api/entries", {"question": "问题?", "answer": "x", "category": 5}, 400, "invalid_entry"),
    ("POST", "/admin/api/entries", {"question": "问题?", "answer": "x", "colour": "red"}, 400, "invalid_entry"),
    ("POST", "/admin/api/entries", {"question": "问题?", "answer": "x", "valid_from": "明天"}, 400, "invalid_entry"),
    ("POST", "/admin/api/entries", {"question": "问题?", "answer": "x", "file": "../out.yaml"}, 400, "invalid_edit"),
    ("POST", "/admin/api/entries", {"id": "cancel-01", "question": "问题?", "answer": "x"}, 409, "id_taken"),
    ("POST", "/admin/api/entries", {"question": "问题?", "answer": "x" * 1_100_000}, 413, "payload_too_large"),
    ("GET", "/admin/api/entries?limit=0", None, 400, "invalid_limit"),
    ("GET", "/admin/api/entries?status=gone", None, 400, "invalid_status"),
    ("POST", "/admin/api/draft/search", {"query": ""}, 400, None),
])
def test_bad_inputs_are_refused_with_json_naming_the_problem(unchanged_bench, method, path, body, status, code):
    bench = unchanged_bench
    before = (bench["corpus"] / "seed.yaml").read_bytes()
    response = bench["client"].open(path, method=method, json=body, headers=ADMIN)
    assert response.status_code == status, response.get_json()
    error = response.get_json()
    assert error["message"] and (code is None or error["error"] == code)
    assert (bench["corpus"] / "seed.yaml").read_bytes() == before
    if code == "version_conflict":
        assert error["current"]["id"] == "cancel-01" and error["submitted"]["version"] == "stale0000000"


def test_who_may_read_and_who_may_write(unchanged_bench):
    bench = unchanged_bench
    client, reviewer = bench["client"], bench["reviewer"]
    assert client.get("/admin/api/entries").status_code == 401
    assert client.post("/admin/api/entries", json={"question": "问?", "answer": "答"}).status_code == 401
    assert client.get("/admin/api/entries/cancel-01", headers=reviewer).status_code == 200
    assert client.post("/admin/api/draft/search", json={"query": "注销流程"}, headers=reviewer).status_code == 200
    version = client.get("/admin/api/entries/cancel-01", headers=reviewer).get_json()["version"]
    for method, path, body in (("POST", "/admin/api/entries", {"question": "问?", "answer": "答"}),
                               ("PUT", "/admin/api/entries/cancel-01", {"version": version, "answer": "改"}),
                               ("POST", "/admin/api/entries/cancel-01/disable", {"version": version}),
                               ("DELETE", f"/admin/api/entries/cancel-01?version={version}", None)):
        refused = client.open(path, method=method, json=body, headers=reviewer)
        assert refused.status_code == 403 and refused.get_json()["error"] == "forbidden_role", (method, path)
    assert (bench["corpus"] / "seed.yaml").read_bytes() == (SEED_CORPUS / "seed.yaml").read_bytes()


def test_without_a_corpus_folder_the_routes_say_so(searcher):
    client = create_app(searcher, ServiceConfig(admin_token=TOKEN, rate_limit=None)).test_client()
    response = client.get("/admin/api/entries", headers=ADMIN)
    assert response.status_code == 409 and response.get_json()["error"] == "no_corpus"


# --- test a query against the draft ---------------------------------------------------------------


def test_the_draft_answers_with_a_new_entry_before_publish_and_the_served_index_does_not(bench):
    client, editor = bench["client"], bench["editor"]
    question = "二级建造师的继续教育学时怎么查询?"
    created = client.post("/admin/api/entries", headers=editor, json={
        "question": question, "paraphrases": ["二建继续教育学时查询", "继续教育学时在哪里看"],
        "answer": "登录[继续教育平台](https://example.com/edu)查询学时。", "category": "继续教育"}).get_json()
    draft = client.post("/admin/api/draft/search", json={"query": "二建继续教育学时在哪查"}, headers=editor)
    assert draft.status_code == 200, draft.get_json()
    body = draft.get_json()
    assert body["results"][0]["faq_id"] == created["id"]
    assert body["draft"]["texts_embedded"] >= 3  # the new texts, not the whole corpus
    assert body["draft"]["texts_embedded"] < 10
    assert body["draft"]["decision_parameters"] == body["draft"]["served_version"] != body["index_version"]
    assert {"decision", "confidence", "threshold", "suggestions"} <= set(body)
    served = client.post("/v1/search", json={"query": "二建继续教育学时在哪查"}).get_json()
    assert created["id"] not in [hit["faq_id"] for hit in served["results"]]
    # Disabling cancel-01 takes it out of the draft's answers at once, and only there.
    version = client.get("/admin/api/entries/cancel-01", headers=editor).get_json()["version"]
    client.post("/admin/api/entries/cancel-01/disable", json={"version": version}, headers=editor)
    again = client.post("/admin/api/draft/search", json={"query": "一级建造师怎么注销注册"}, headers=editor).get_json()
    assert "cancel-01" not in [hit["faq_id"] for hit in again["results"]]
    served = client.post("/v1/search", json={"query": "一级建造师怎么注销注册"}).get_json()
    assert served["results"][0]["faq_id"] == "cancel-01"


def test_a_broken_draft_is_named_not_searched(bench):
    (bench["corpus"] / "broken.yaml").write_text("entries:\n  - id: x\n    question: [\n", encoding="utf-8")
    response = bench["client"].post("/admin/api/draft/search", json={"query": "注销流程"}, headers=ADMIN)
    assert response.status_code == 409 and response.get_json()["error"] == "corpus_invalid"
    assert "broken.yaml" in response.get_json()["message"]


def test_the_routes_are_in_the_openapi_document(unchanged_bench):
    bench = unchanged_bench
    paths = bench["client"].get("/openapi.json").get_json()["paths"]
    assert {"get", "post"} <= set(paths["/admin/api/entries"])
    assert {"get", "put", "delete"} <= set(paths["/admin/api/entries/{faq_id}"])
    assert "409" in paths["/admin/api/entries/{faq_id}"]["put"]["responses"]
    assert "post" in paths["/admin/api/draft/search"] and "post" in paths["/admin/api/entries/{faq_id}/disable"]
