"""Conflict checks: texts two entries share refuse a build and an import (named, both entries), paraphrases
the model places nearer another entry are warned about (build, import --dry-run, workbench)."""
import contextlib
import csv
import io
import json
import os
import re
import threading
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import SEED_CORPUS
from retriever.cli import main
from retriever.config import ServiceConfig
from retriever.corpus import (ConflictError, FaqEntry, check_entries, check_identical, find_identical, load_corpus,
                              read_conflicts)
from retriever.corpus import nearest as nearest_module
from retriever.corpus.conflicts import closer_elsewhere
from retriever.http import create_app
from retriever.reload import SearcherHolder
from retriever.search import Searcher
from retriever.store import current_version

TOKEN = "conflict-token"
HEADERS = {"X-Requested-With": "workbench"}
# Entry "cancel" holds, in traditional characters, the question of entry "register" (identical once
# normalised); entry "phone" holds a paraphrase about registering (the model's warning).
CORPUS = """\
- id: register
  question: 一级建造师初始注册怎么申请
  paraphrases: [初始注册流程, 第一次注册建造师要准备什么材料]
  answer: 在注册系统中提交初始注册申请。
- id: phone
  question: 手机号被别人绑定了怎么办
  paraphrases: [怎么解绑手机号, 手机号码绑定冲突找哪个部门, 一级建造师初始注册需要哪些材料]
  answer: 联系客服解绑。
- id: cancel
  question: 证书怎么注销
  paraphrases: [注销流程, 一級建造師初始註冊怎麼申請]
  answer: 在系统里申请注销。
"""
SHEET = [["id", "question", "paraphrases", "answer"],
         ["register", "一级建造师初始注册怎么申请", "初始注册流程；第一次注册建造师要准备什么材料", "提交初始注册申请。"],
         ["phone", "手机号被别人绑定了怎么办", "怎么解绑手机号；一级建造师初始注册需要哪些材料", "联系客服解绑。"],
         ["cancel", "证书怎么注销", "注销流程；一级建造师初始注册怎么申请", "在系统里申请注销。"]]


def entry(entry_id, question, paraphrases=(), negatives=()):
    return FaqEntry(id=entry_id, question=question, answer="答", paraphrases=tuple(paraphrases),
                    negatives=tuple(negatives))


# --- identical texts (pure) ------------------------------------------------------------------------


@pytest.mark.parametrize("entries, expected", [
    # a paraphrase equal, once normalised (traditional, full width, spaces), to another entry's question
    ([entry("a", "注销流程", ["怎么注销?"]), entry("b", "怎麼註銷？", ["注销进度"])],
     [("怎么注销?", [("a", "paraphrase"), ("b", "question")])]),
    # three entries share one text: one conflict naming all three
    ([entry("a", "注销"), entry("b", "进度", ["注销"]), entry("c", "恢复", ["注\u200b销"])],
     [("注销", [("a", "question"), ("b", "paraphrase"), ("c", "paraphrase")])]),
    # a negative that is another entry's question is what negatives are for: no conflict
    ([entry("yi", "一级建造师怎么注销", negatives=["二级建造师怎么注销"]), entry("er", "二级建造师怎么注销")], []),
    # a negative of an entry's own paraphrase contradicts it
    ([entry("a", "注销流程", ["怎么注销"], negatives=["怎么注销"])], [("怎么注销", [("a", "paraphrase"), ("a", "negative")])]),
    # repeats within one entry are one text
    ([entry("a", "注销流程", ["注销流程", "註銷流程"]), entry("b", "注销进度")], []),
])
def test_identical_texts_name_every_entry_involved(entries, expected):
    found = find_identical(entries)
    assert [(c.norm, [(p.entry_id, p.field) for p in c.places]) for c in found] == expected


def test_identical_messages_name_both_entries_in_chinese_and_english():
    contradiction, shared = find_identical([entry("a", "注销流程", ["怎么注销"], negatives=["注销流程"]),
                                            entry("b", "怎么注销")])
    assert shared.message_zh() == "问法「怎么注销」同时属于条目 a（相似问题）和条目 b（标准问题）"
    assert shared.message_en() == "'怎么注销' is in entry a (paraphrase) and entry b (question) (once normalised)"
    assert contradiction.message_zh() == "问法「注销流程」既是条目 a 的标准问题，又是它的负例"
    assert shared.to_dict()["faq_ids"] == ["a", "b"]
    (written_otherwise,) = find_identical([entry("a", "注销流程"), entry("b", "进度", ["註銷流程"])])
    assert written_otherwise.message_zh() == "问法「注销流程」同时属于条目 a（标准问题）和条目 b（相似问题「註銷流程」）"


def test_the_seed_corpus_has_no_identical_texts():
    assert find_identical(load_corpus(SEED_CORPUS)) == ()  # else `make serve` would refuse to build


# --- closer to another entry (pure) -----------------------------------------------------------------


class Text:
    def __init__(self, entry, field, text):
        self.entry, self.field, self.text, self.norm = entry, field, text, text


def unit(*rows):
    matrix = np.array(rows, dtype=np.float32)
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def test_a_paraphrase_nearer_another_entry_is_named_with_both_cosines():
    texts = [Text(0, "question", "q0"), Text(0, "paraphrase", "p0"), Text(0, "paraphrase", "stray"),
             Text(0, "answer", "a0"), Text(1, "question", "q1"), Text(1, "paraphrase", "p1"), Text(2, "question", "q2")]
    vectors = unit([1, 0, 0], [0.95, 0.3, 0], [0.2, 1, 0], [0.2, 1, 0], [0, 1, 0.1], [0.1, 1, 0], [0, 0, 1])
    (found,) = closer_elsewhere(texts, vectors, ["a", "b", "c"])
    assert (found.faq_id, found.text, found.own_text, found.other_faq_id, found.other_text) == \
        ("a", "stray", "p0", "b", "p1")  # the answer (same vector as stray) is not one of the entry's questions
    assert found.other_cosine == pytest.approx(float(vectors[2] @ vectors[5]), abs=1e-4)
    assert found.own_cosine == pytest.approx(float(vectors[2] @ vectors[1]), abs=1e-4)
    assert "更接近条目 b 的「p1」" in found.message_zh()
    # a margin larger than the difference keeps it quiet; an entry with one text has nothing to compare
    assert closer_elsewhere(texts, vectors, ["a", "b", "c"], margin=0.6) == ()


def test_closer_elsewhere_is_the_same_in_blocks_and_fast_for_ten_thousand_texts(monkeypatch):
    rng = np.random.default_rng(7)
    entries, per_entry, dim = 2000, 5, 384
    centres = rng.standard_normal((entries, dim)).astype(np.float32)
    vectors = np.repeat(centres, per_entry, axis=0) + 0.6 * rng.standard_normal((entries * per_entry, dim))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    vectors[7] = vectors[per_entry * 9]  # one paraphrase of entry 1 is a copy of entry 9's question
    texts = [Text(i // per_entry, "question" if i % per_entry == 0 else "paraphrase", f"t{i}")
             for i in range(entries * per_entry)]
    ids = [f"e{i}" for i in range(entries)]
    started = time.perf_counter()
    found = closer_elsewhere(texts, vectors, ids)
    elapsed = time.perf_counter() - started
    print(f"10,000 texts checked in {elapsed:.1f} s")
    assert elapsed < 30  # about 2 s on 2 busy cores (20,000: 7 s); a per-pair loop would take an hour
    assert [(c.faq_id, c.text, c.other_faq_id, c.other_text) for c in found] == [("e1", "t7", "e9", "t45")]
    small = texts[:600]
    whole = closer_elsewhere(small, vectors[:600], ids)
    monkeypatch.setattr(nearest_module, "CHUNK_ROWS", 7)
    assert closer_elsewhere(small, vectors[:600], ids) == whole and len(whole) == 1


def _closer_by_pairs(texts, vectors, ids, margin):
    """closer_elsewhere's definition, one pair at a time: the reference for the blocked version."""
    asking = [i for i, t in enumerate(texts) if t.field in ("question", "paraphrase")]
    found = set()
    for i in asking:
        own = [j for j in asking if j != i and texts[j].entry == texts[i].entry]
        other = [j for j in asking if texts[j].entry != texts[i].entry]
        if texts[i].field != "paraphrase" or not own or not other:
            continue
        mine = max(own, key=lambda j: (float(vectors[i] @ vectors[j]), -j))
        theirs = max(other, key=lambda j: (float(vectors[i] @ vectors[j]), -j))
        if float(vectors[i] @ vectors[theirs]) > float(vectors[i] @ vectors[mine]) + margin:
            found.add((ids[texts[i].entry], texts[i].text, texts[mine].text, ids[texts[theirs].entry], texts[theirs].text))
    return found


def test_closer_elsewhere_equals_the_pair_by_pair_definition_with_entries_interleaved(monkeypatch):
    rng = np.random.default_rng(3)
    centres = rng.standard_normal((30, 16))
    owners = rng.integers(0, 30, 240)  # texts of an entry scattered over the list, not one run each
    vectors = centres[owners] + 0.9 * rng.standard_normal((240, 16))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    fields = ["question" if i % 6 == 0 else "answer" if i % 11 == 0 else "paraphrase" for i in range(240)]
    texts = [Text(int(owner), field, f"t{i}") for i, (owner, field) in enumerate(zip(owners, fields))]
    ids = [f"e{i}" for i in range(30)]
    monkeypatch.setattr(nearest_module, "CHUNK_ROWS", 13)
    found = closer_elsewhere(texts, vectors, ids, margin=0.02)
    assert len(found) > 20
    assert {(c.faq_id, c.text, c.own_text, c.other_faq_id, c.other_text) for c in found} == \
        _closer_by_pairs(texts, vectors, ids, 0.02)


def _scattered_corpus(rng, entries: int, per_entry: int, dim: int = 16):
    """Entries of one question and some paraphrases around a centre, noisy enough to cross entries."""
    centres = rng.standard_normal((entries, dim))
    texts, rows = [], []
    for entry in range(entries):
        for k in range(per_entry):
            texts.append(Text(entry, "question" if k == 0 else "paraphrase", f"e{entry}-t{k}"))
            rows.append(centres[entry] + 0.9 * rng.standard_normal(dim))
    vectors = np.array(rows, dtype=np.float32)
    return texts, vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _as_keys(table, texts, ids):
    """The table by entry id and text, as a build after an edit must find it."""
    def key(row):
        return (ids[texts[row].entry], texts[row].text) if row >= 0 else None
    return {key(p): (key(o), key(t)) for p, o, t in zip(table.probes, table.own, table.other)}, \
        {key(p): (round(float(oc), 5), round(float(tc), 5)) for p, oc, tc in
         zip(table.probes, table.own_cosine, table.other_cosine)}


def test_a_rebuilds_nearest_texts_equal_a_full_computation(tmp_path, monkeypatch):
    """The previous version's table taken over (nearest.py) after an entry edited, one added and one
    removed, whose text was some kept paraphrase's nearest other text: the same table as computed afresh."""
    rng = np.random.default_rng(11)
    texts, vectors = _scattered_corpus(rng, 60, 4)
    ids = [f"e{i}" for i in range(60)]
    monkeypatch.setattr(nearest_module, "CHUNK_ROWS", 17)
    before = nearest_module.nearest_texts(texts, vectors, ids)
    nearest_module.write_nearest(tmp_path, before, texts, ids, "model-a")
    gone = int(before.other[0]) // 4  # an entry holding a kept paraphrase's nearest other text
    assert gone != 0
    keep = [i for i, t in enumerate(texts) if t.entry != gone]
    after_texts = [Text(t.entry if t.entry < gone else t.entry - 1, t.field, t.text) for t in (texts[i] for i in keep)]
    after_ids = [i for i in ids if i != f"e{gone}"] + ["new"]
    after_vectors = vectors[keep]
    after_vectors[5] = -after_vectors[5]  # an edited paraphrase (its vector moves, its text too)
    after_texts[5] = Text(after_texts[5].entry, "paraphrase", "edited")
    added, added_vectors = _scattered_corpus(rng, 1, 4)
    after_texts += [Text(len(after_ids) - 1, t.field, "new-" + t.text) for t in added]
    after_vectors = np.vstack([after_vectors, added_vectors]).astype(np.float32)
    previous = nearest_module.read_nearest(tmp_path, "model-a")
    assert nearest_module.read_nearest(tmp_path, "model-b") is None  # another model's vectors: computed afresh
    computed = []
    own_best = nearest_module._own_best
    monkeypatch.setattr(nearest_module, "_own_best", lambda similar, block, *rest: computed.extend(block) or
                        own_best(similar, block, *rest))
    taken = nearest_module.nearest_texts(after_texts, after_vectors, after_ids, previous)
    # computed afresh: the paraphrases of the edited and the new entry, and those whose nearest other was removed
    assert 6 <= len(computed) < len(taken.probes) // 2
    fresh = nearest_module.nearest_texts(after_texts, after_vectors, after_ids)
    assert _as_keys(taken, after_texts, after_ids) == _as_keys(fresh, after_texts, after_ids)
    assert closer_elsewhere(after_texts, after_vectors, after_ids, table=taken) == \
        closer_elsewhere(after_texts, after_vectors, after_ids)


# --- build ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def conflicting(tmp_path_factory):
    """The conflicting corpus, and an index of it built by `build --allow-conflicts` (with what it printed)."""
    folder = tmp_path_factory.mktemp("conflicting")
    corpus = folder / "corpus"
    corpus.mkdir()
    (corpus / "faq.yaml").write_text(CORPUS, encoding="utf-8")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["build", "--corpus", str(corpus), "--out", str(folder / "index"), "--quiet", "--allow-conflicts"])
    return {"corpus": corpus, "index": folder / "index", "code": code, "printed": printed.getvalue()}


def test_build_refuses_a_text_of_two_entries_and_names_both(tmp_path, capsys, conflicting):
    out = tmp_path / "index"
    assert main(["build", "--corpus", str(conflicting["corpus"]), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: 1 text(s) belong to more than one entry") and "Traceback" not in err
    assert ("问法「一级建造师初始注册怎么申请」同时属于条目 register（标准问题）和条目 cancel"
            "（相似问题「一級建造師初始註冊怎麼申請」）") in err
    assert "build with --allow-conflicts" in err
    assert current_version(out) is None  # nothing published


def test_build_with_allow_conflicts_publishes_and_records_them(conflicting):
    out, printed = conflicting["index"], conflicting["printed"]
    assert conflicting["code"] == 0
    assert "warning: 1 text(s) shared by two entries published with --allow-conflicts" in printed
    assert "条目 phone 的相似问题「一级建造师初始注册需要哪些材料」更接近条目 register" in printed
    version = out / "versions" / current_version(out)
    manifest = json.loads((version / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["conflicts"] == {"identical": 1, "closer_elsewhere": 2, "allowed": True, "model_checked": True,
                                     "margin": 0.01}
    assert "conflicts.json" in manifest["files"]  # checksummed like every artifact


def test_the_model_warns_about_a_paraphrase_written_for_another_entry(conflicting):
    report = read_conflicts(conflicting["index"] / "versions" / current_version(conflicting["index"]))
    # The misplaced paraphrase first (most misplaced); it also pulls a paraphrase of its true entry towards it.
    misplaced, pulled = report.closer
    assert (misplaced.faq_id, misplaced.text, misplaced.other_faq_id) == \
        ("phone", "一级建造师初始注册需要哪些材料", "register")
    assert misplaced.other_cosine > misplaced.own_cosine + 0.1
    assert (pulled.faq_id, pulled.other_faq_id, pulled.other_text) == ("register", "phone", misplaced.text)
    assert [c.entry_ids for c in report.identical] == [("register", "cancel")] and report.allowed


# --- import -----------------------------------------------------------------------------------------


def write_sheet(path: Path, rows) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return path


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_import_dry_run_names_the_conflicts_and_writes_nothing(tmp_path, capsys):
    sheet = write_sheet(tmp_path / "faq.csv", SHEET + [["bad", "", "", "无问题"]])
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "other.yaml").write_text("- id: other\n  question: 注销流程\n  answer: 见系统。\n", encoding="utf-8")
    before = snapshot(tmp_path)
    assert main(["corpus", "import", str(sheet), "--out", str(corpus), "--dry-run", "--quiet"]) == 1
    out = capsys.readouterr().out
    assert snapshot(tmp_path) == before  # no corpus file, no rejects file
    assert f"would write {corpus / 'faq.yaml'} with 3 entries" in out and "1 of 4 rows cannot be imported" in out
    assert "问法「一级建造师初始注册怎么申请」同时属于条目 register（标准问题）和条目 cancel（相似问题）" in out
    assert "问法「注销流程」同时属于条目 cancel（相似问题）和条目 other（标准问题）" in out  # with the folder's file
    # its nearest text is in two entries (register's question, cancel's paraphrase): an exact tie, either is named
    assert re.search(r"条目 phone 的相似问题「一级建造师初始注册需要哪些材料」更接近条目 (register|cancel) 的「一级建造师初始注册怎么申请」", out)
    assert out.rstrip().endswith("the import would be refused (导入会被拒绝)")

    assert main(["corpus", "import", str(sheet), "--out", str(corpus), "--dry-run", "--quiet", "--no-model-check",
                 "--skip-bad", "--allow-conflicts"]) == 0
    out = capsys.readouterr().out
    assert "paraphrases not checked with a model" in out and "import would succeed" in out
    assert snapshot(tmp_path) == before


def test_import_refuses_identical_texts_unless_allowed(tmp_path, capsys):
    sheet = write_sheet(tmp_path / "faq.csv", SHEET)
    corpus = tmp_path / "corpus"
    assert main(["corpus", "import", str(sheet), "--out", str(corpus), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "error: 1 text(s) belong to more than one entry" in err and "Traceback" not in err
    assert "条目 register（标准问题）和条目 cancel（相似问题）" in err and "Nothing was written" in err
    assert not corpus.exists()
    assert main(["corpus", "import", str(sheet), "--out", str(corpus), "--quiet", "--allow-conflicts"]) == 0
    assert "warning: 问法「一级建造师初始注册怎么申请」同时属于条目 register" in capsys.readouterr().err
    assert [e.id for e in load_corpus(corpus)] == ["register", "phone", "cancel"]


def test_check_entries_without_a_model_finds_identical_texts_only():
    entries = [entry("a", "注销流程", ["怎么注销"]), entry("b", "怎么注销")]
    report = check_entries(entries)
    assert len(report.identical) == 1 and report.closer == () and not report.model_checked
    with pytest.raises(ConflictError, match="条目 a（相似问题）和条目 b（标准问题）\n.*\nfix it"):
        check_identical(entries, fix="fix it")
    assert check_identical(entries, allow=True) == report.identical


# --- workbench --------------------------------------------------------------------------------------


@pytest.fixture()
def bench(tmp_path, conflicting, encoder):
    corpus, index = tmp_path / "corpus", tmp_path / "index"
    shutil.copytree(conflicting["corpus"], corpus)
    shutil.copytree(conflicting["index"], index)
    holder = SearcherHolder(index, lambda folder: Searcher.load(folder, encoder))
    holder.load_initial()
    app = create_app(holder, ServiceConfig(admin_token=TOKEN, corpus_dir=str(corpus), rate_limit=None))
    client = app.test_client()
    assert client.post("/admin/login", json={"token": TOKEN}, headers=HEADERS).status_code == 200
    return {"app": app, "client": client, "corpus": corpus, "index": index}


def test_workbench_lists_the_served_versions_conflicts_and_the_corpus_ones(bench):
    response = bench["client"].get("/admin/api/conflicts")
    assert response.status_code == 200
    data = response.get_json()
    assert data["checked"] and data["served_version"] == current_version(bench["index"])
    assert [c["faq_ids"] for c in data["identical_texts"]] == [["register", "cancel"]]
    closer = data["closer_elsewhere_texts"][0]
    assert (closer["faq_id"], closer["other_faq_id"]) == ("phone", "register")
    assert closer["message"].startswith("条目 phone 的相似问题「一级建造师初始注册需要哪些材料」更接近条目 register")
    assert [c["message"] for c in data["corpus_identical_texts"]] == [
        "问法「一级建造师初始注册怎么申请」同时属于条目 register（标准问题）和条目 cancel（相似问题「一級建造師初始註冊怎麼申請」）"]


def test_workbench_publish_is_refused_with_both_entries_named(bench):
    served = current_version(bench["index"])
    client = bench["client"]
    assert client.post("/admin/api/publish", json={"force": True}, headers=HEADERS).status_code == 202
    deadline = time.monotonic() + 60
    while (status := client.get("/admin/api/publish").get_json())["state"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert status["state"] == "failed"
    assert "语料中有冲突的问法，没有发布" in status["message"]
    assert "问法「一级建造师初始注册怎么申请」同时属于条目 register（标准问题）和条目 cancel（相似问题「一級" in status["message"]
    assert [c["faq_ids"] for c in status["conflicts"]] == [["register", "cancel"]]
    assert current_version(bench["index"]) == served


def test_workbench_conflicts_need_an_editor(tmp_path, conflicting, encoder):
    holder = SearcherHolder(conflicting["index"], lambda folder: Searcher.load(folder, encoder))
    holder.load_initial()
    client = create_app(holder, ServiceConfig(admin_token=TOKEN, rate_limit=None)).test_client()
    assert client.get("/admin/api/conflicts").status_code == 401
    data = client.get("/admin/api/conflicts", headers={"Authorization": f"Bearer {TOKEN}"}).get_json()
    assert data["corpus_identical_texts"] == [] and data["corpus_error"] is None  # no corpus folder configured
    assert [c["faq_id"] for c in data["closer_elsewhere_texts"]] == ["phone", "register"]


# The flags of tests/test_browser.py (not imported: that module skips itself as a whole without Chromium).
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]


def _browser_missing() -> str | None:
    if CHROMIUM is None:
        return "Chromium is not installed (make browser-deps)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -r requirements-dev.txt)"
    return None


def test_the_workbench_panel_names_both_entries_in_a_browser(bench):
    if _browser_missing():
        if os.environ.get("RETRIEVER_REQUIRE_BROWSER") == "1":
            pytest.fail(f"browser test required but {_browser_missing()}")
        pytest.skip(_browser_missing())
    from playwright.sync_api import expect, sync_playwright
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, bench["app"], threaded=True)
    threading.Thread(target=server.serve_forever, name="conflicts-browser-test", daemon=True).start()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(locale="zh-CN")
            page.goto(f"http://127.0.0.1:{server.server_port}/admin")
            page.get_by_label("管理令牌").fill(TOKEN)
            page.get_by_role("button", name="登录").click()
            listed = page.locator("#corpus-conflicts li")
            expect(listed).to_have_count(1, timeout=15_000)
            expect(listed).to_contain_text(  # (the page isolates texts from outside in bidi marks)
                "问法「一级建造师初始注册怎么申请」同时属于条目 register（标准问题）和条目 cancel（相似问题「一級建造師初始註冊怎麼申請」）")
            expect(page.locator('#closer-elsewhere li[data-faq-ids="phone register"]')).to_contain_text(
                "条目 phone 的相似问题「一级建造师初始注册需要哪些材料」更接近条目 register")
            page.get_by_role("button", name="重新构建并发布").click()
            expect(page.locator('#publish-result[data-state="failed"]')).to_contain_text(
                "语料中有冲突的问法，没有发布", timeout=60_000)
            browser.close()
    finally:
        server.shutdown()
