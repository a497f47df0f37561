"""Batch classification: the API, the file CLI (CSV / JSON Lines / text), resume, rejects, report."""
import json
import subprocess
import sys

import pytest

from conftest import REPO
from retriever.batch.classify import ClassifyError, classify_file, read_output
from retriever.config import ServiceConfig
from retriever.batch.report import write_report
from retriever.http import create_app

INQUIRIES = ["注销进度怎么查", "今天天气怎么样", "手机号被别人绑定了怎么办", "不小心把证书注销了能恢复吗",
             "单位不给办注销", "建造师去世了企业怎么注销", "社保卡怎么补办", "一建注销网上怎么操作"]


# --- API ------------------------------------------------------------------------------------------


def test_classify_api_mixes_good_and_bad_items(client):
    items = [{"id": "a", "text": "注销进度怎么查"}, {"id": "a", "text": "重复"}, {"text": "无编号"},
             {"id": 7, "text": "   "}, "不是对象", {"id": "b", "text": "今天天气怎么样"},
             {"id": "c", "text": "注" * 501}, {"id": "d", "text": "x", "lang": "zh"}, {"id": True, "text": "x"}]
    response = client.post("/v1/classify", json={"inquiries": items})
    assert response.status_code == 200
    body = response.get_json()
    results = {r["id"]: r for r in body["results"]}
    assert set(results) == {"a", "b"}
    assert results["a"]["index"] == 0 and results["a"]["decision"] == "answer" and results["a"]["faq_id"] == "cancel-02"
    assert results["a"]["runner_up_faq_id"] and results["a"]["runner_up_score"] < results["a"]["score"]
    assert results["a"]["margin"] == pytest.approx(results["a"]["score"] - results["a"]["runner_up_score"], abs=1e-5)
    assert results["b"]["index"] == 5 and results["b"]["decision"] == "no_match" and results["b"]["faq_id"] is None
    assert results["b"]["top_faq_id"]  # the best candidate is still named, for the person who handles it
    errors = {e["index"]: e["error"] for e in body["errors"]}
    assert errors == {1: "duplicate_id", 2: "missing_id", 3: "missing_text", 4: "invalid_item",
                      6: "text_too_long", 7: "unknown_field", 8: "missing_id"}
    assert body["counts"] == {"answer": 1, "ambiguous": 0, "no_match": 1, "invalid": 7}


def test_classify_api_encodes_a_request_in_one_model_call(client, searcher, monkeypatch):
    calls = []
    original = searcher.encoder.encode_queries
    monkeypatch.setattr(searcher.encoder, "encode_queries", lambda texts: calls.append(len(texts)) or original(texts))
    items = [{"id": str(i), "text": text} for i, text in enumerate(INQUIRIES)]
    body = client.post("/v1/classify", json={"inquiries": items}).get_json()
    assert calls == [len(INQUIRIES)]
    assert [r["id"] for r in body["results"]] == [str(i) for i in range(len(INQUIRIES))]


def test_classify_api_threshold_override(client):
    items = [{"id": "1", "text": "今天天气怎么样"}]
    assert client.post("/v1/classify", json={"inquiries": items}).get_json()["results"][0]["decision"] == "no_match"
    forced = client.post("/v1/classify", json={"inquiries": items, "threshold": 0.0}).get_json()
    assert forced["results"][0]["decision"] != "no_match" and forced["threshold"] == 0.0


@pytest.mark.parametrize("body, status, code", [
    ({}, 400, "invalid_inquiries"),
    ({"inquiries": []}, 400, "invalid_inquiries"),
    ({"inquiries": "注销"}, 400, "invalid_inquiries"),
    ({"inquiries": [{"id": "1", "text": "x"}] * 4}, 400, "too_many_inquiries"),
    ({"inquiries": [{"id": "1", "text": "x"}], "top_k": 3}, 400, "unknown_field"),
    ({"inquiries": [{"id": "1", "text": "x"}], "threshold": "high"}, 400, "invalid_threshold"),
])
def test_classify_api_envelope_errors(searcher, body, status, code):
    client = create_app(searcher, ServiceConfig(max_batch=3)).test_client()
    response = client.post("/v1/classify", json=body)
    assert response.status_code == status and response.get_json()["error"] == code


def test_body_limits_differ_per_route(searcher):
    client = create_app(searcher, ServiceConfig(max_body_bytes=1000, max_batch_body_bytes=5000)).test_client()
    items = [{"id": str(i), "text": "注销进度怎么查"} for i in range(40)]  # ~2 KB
    assert client.post("/v1/classify", json={"inquiries": items}).status_code == 200
    search = client.post("/v1/search", json={"query": "注销" * 400})
    assert search.status_code == 413 and search.get_json()["error"] == "payload_too_large"
    big = client.post("/v1/classify", json={"inquiries": items * 4})
    assert big.status_code == 413 and big.get_json()["error"] == "payload_too_large"
    assert client.get("/v1/classify").status_code == 405


# --- files ----------------------------------------------------------------------------------------


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


CSV = ("id,text,channel\n"
       "r1,注销进度怎么查,web\n"
       "r2,今天天气怎么样,phone\n"
       "r3,,web\n"
       "r4,\"手机号被别人绑定了,怎么办\",web\n"
       "r5\n"
       "\n"
       "r6,\"多行的\n问题:注销后还能恢复吗\",mail\n").encode("utf-8") + b"r7,\xff\xfe bad,web\n"


def test_csv_input_rows_equal_output_plus_rejects(tmp_path, searcher):
    source = _write(tmp_path / "in.csv", CSV)
    out = tmp_path / "out.csv"
    summary = classify_file(searcher, source, out, progress=False)
    records = list(read_output(out))
    rejects = [json.loads(line) for line in (tmp_path / "out.rejects.jsonl").read_text(encoding="utf-8").splitlines()]
    assert summary.rows == 8 == len(records) + len(rejects)
    assert [r["id"] for r in records] == ["r1", "r2", "r4", "r6"]
    assert [r["line"] for r in records] == [2, 3, 5, 8]  # a quoted field may span lines: its row starts at 8
    assert records[0]["faq_id"] == "cancel-02" and records[1]["decision"] == "no_match"
    assert records[1]["faq_id"] is None and records[2]["faq_id"] == "cancel-03"
    assert records[3]["faq_id"] == "cancel-04"
    assert rejects == [{"line": 4, "reason": "empty text"},
                       {"line": 6, "reason": "missing column 'text' (1 of 3 fields)"},
                       {"line": 7, "reason": "empty line"},
                       {"line": 10, "reason": "bad encoding (not UTF-8)"}]
    assert not list(tmp_path.glob("*.partial")) and not list(tmp_path.glob("*.progress.json"))


def test_jsonl_input_with_named_fields(tmp_path, searcher):
    lines = [json.dumps({"ticket": 1, "body": "注销进度怎么查"}, ensure_ascii=False), "{broken",
             json.dumps({"ticket": 2}), json.dumps(["not", "an", "object"]), "",
             json.dumps({"ticket": 3, "body": "建造师去世了企业怎么注销"}, ensure_ascii=False)]
    source = _write(tmp_path / "in.jsonl", ("\n".join(lines) + "\n").encode("utf-8"))
    out = tmp_path / "out.jsonl"
    summary = classify_file(searcher, source, out, id_column="ticket", text_column="body", progress=False)
    records = list(read_output(out))
    assert [(r["id"], r["faq_id"]) for r in records] == [("1", "cancel-02"), ("3", "cancel-06")]
    reasons = [json.loads(line)["reason"] for line in open(tmp_path / "out.rejects.jsonl", encoding="utf-8")]
    assert reasons[0].startswith("invalid JSON") and reasons[1:] == ["missing field 'body'", "not a JSON object",
                                                                     "empty line"]
    assert summary.rows == 6 == summary.classified + summary.rejected


def test_text_input_uses_line_numbers_as_ids(tmp_path, searcher):
    source = _write(tmp_path / "in.txt", "注销进度怎么查\n\n今天天气怎么样\n".encode("utf-8"))
    out = tmp_path / "out.jsonl"
    summary = classify_file(searcher, source, out, progress=False)
    assert [(r["id"], r["line"]) for r in read_output(out)] == [("1", 1), ("3", 3)]
    assert summary.rejected == 1 and summary.decisions["no_match"] == 1


def test_missing_column_and_unknown_format_are_errors(tmp_path, searcher):
    source = _write(tmp_path / "in.csv", "id,body\n1,注销\n".encode("utf-8"))
    with pytest.raises(ClassifyError, match=r"no column 'text' in the header \(id, body\)"):
        classify_file(searcher, source, tmp_path / "out.csv", progress=False)
    with pytest.raises(ClassifyError, match="cannot tell the format"):
        classify_file(searcher, _write(tmp_path / "in.xlsx", b"x"), tmp_path / "out.csv", progress=False)
    with pytest.raises(ClassifyError, match="Parquet is read by the Ray engine; add --engine ray"):
        classify_file(searcher, _write(tmp_path / "in.parquet", b"PAR1"), tmp_path / "out.csv", progress=False)
    assert not (tmp_path / "out.csv").exists()


def test_an_escaped_lone_surrogate_is_a_reject_not_a_crash(tmp_path, searcher):
    # JSON may spell a surrogate alone ("\\ud800"): valid JSON, but not text the model or the output can take.
    lines = ['{"id": "a", "text": "\\ud800注销"}', '{"id": "b\\udfff", "text": "注销进度怎么查"}',
             '{"id": "c", "text": "注销进度怎么查"}']
    source = _write(tmp_path / "in.jsonl", ("\n".join(lines) + "\n").encode("utf-8"))
    summary = classify_file(searcher, source, tmp_path / "out.jsonl", progress=False)
    assert [r["id"] for r in read_output(tmp_path / "out.jsonl")] == ["c"]
    rejects = [json.loads(line) for line in open(tmp_path / "out.rejects.jsonl", encoding="utf-8")]
    assert rejects == [{"line": 1, "reason": "bad encoding (not UTF-8)"}, {"line": 2, "reason": "bad encoding (not UTF-8)"}]
    assert summary.rows == 3


def _big_input(tmp_path):
    lines = [INQUIRIES[i % len(INQUIRIES)] + ("" if i % 5 else f" 第{i}条") for i in range(60)]
    lines[17] = ""  # a reject in the middle
    return _write(tmp_path / "in.txt", ("\n".join(lines) + "\n").encode("utf-8"))


@pytest.mark.parametrize("garbage_after_checkpoint", [False, True])
def test_interrupted_run_resumed_equals_uninterrupted(tmp_path, searcher, monkeypatch, garbage_after_checkpoint):
    source = _big_input(tmp_path)
    classify_file(searcher, source, tmp_path / "clean.csv", batch_size=8, progress=False)

    out = tmp_path / "out.csv"
    original, calls = searcher.search_many, []

    def crash_on_fourth_batch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt  # as if the operator pressed Ctrl-C
        return original(*args, **kwargs)

    monkeypatch.setattr(searcher, "search_many", crash_on_fourth_batch)
    with pytest.raises(KeyboardInterrupt):
        classify_file(searcher, source, out, batch_size=8, progress=False)
    monkeypatch.setattr(searcher, "search_many", original)
    assert not out.exists() and (tmp_path / "out.csv.partial").exists()
    if garbage_after_checkpoint:  # killed while writing: rows past the checkpoint must not survive
        with open(tmp_path / "out.csv.partial", "a", encoding="utf-8") as handle:
            handle.write("99,99,half a row")

    summary = classify_file(searcher, source, out, batch_size=8, resume=True, progress=False)
    assert summary.resumed_from == 24
    assert out.read_text(encoding="utf-8") == (tmp_path / "clean.csv").read_text(encoding="utf-8")
    assert (tmp_path / "out.rejects.jsonl").read_text() == (tmp_path / "clean.rejects.jsonl").read_text()
    assert summary.rows == 60 and summary.rejected == 1


def test_resume_refuses_a_changed_input(tmp_path, searcher, monkeypatch):
    source = _big_input(tmp_path)
    original, calls = searcher.search_many, []

    def crash_on_second_batch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(searcher, "search_many", crash_on_second_batch)
    with pytest.raises(KeyboardInterrupt):
        classify_file(searcher, source, tmp_path / "out.jsonl", batch_size=8, progress=False)
    monkeypatch.undo()
    assert (tmp_path / "out.jsonl.progress.json").is_file()
    with open(source, "a", encoding="utf-8") as handle:
        handle.write("新的一行\n")
    with pytest.raises(ClassifyError, match="another input, index or options"):
        classify_file(searcher, source, tmp_path / "out.jsonl", batch_size=8, resume=True, progress=False)


def test_report_has_counts_histogram_and_unmatched(tmp_path, searcher):
    lines = ["今天天气怎么样"] * 3 + ["社保卡怎么补办"] * 2 + ["注销进度怎么查"] * 4
    source = _write(tmp_path / "in.txt", ("\n".join(lines) + "\n").encode("utf-8"))
    out = tmp_path / "out.jsonl"
    classify_file(searcher, source, out, progress=False)
    data = write_report(read_output(out), tmp_path / "report.html", threshold=0.92)
    assert data.rows == 9 and data.decisions["no_match"] == 5 and data.per_entry["cancel-02"] == 4
    assert data.unmatched.most_common(2) == [("今天天气怎么样", 3), ("社保卡怎么补办", 2)]
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "data:image/png;base64,iVBOR" in page  # a PNG is embedded
    assert "今天天气怎么样</td><td class=n>3" in page and "cancel-02" in page
    assert "未匹配 5 (55.6%)" in page


def test_classify_cli_end_to_end(tmp_path, seed_index):
    source = _write(tmp_path / "in.csv", CSV)
    result = subprocess.run([sys.executable, "-m", "retriever", "classify", str(source), "--out",
                             str(tmp_path / "out.jsonl"), "--index", str(seed_index), "--report",
                             str(tmp_path / "r.html")], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "8 rows: 4 classified" in result.stdout and "4 rejected" in result.stdout
    assert "classifying" in result.stderr and "rows/s" in result.stderr  # progress bar with rate
    assert (tmp_path / "r.html").is_file()
    bad = subprocess.run([sys.executable, "-m", "retriever", "classify", str(source), "--out",
                          str(tmp_path / "o.csv"), "--index", str(seed_index), "--text-column", "body"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "no column 'body'" in bad.stderr and "Traceback" not in bad.stderr
