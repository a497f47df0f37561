"""The command line as a user runs it: real processes, exit codes, messages."""
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO


def run(*args, cwd=REPO, env=None):
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def test_build_script_then_search_and_if_stale(tmp_path):
    out = tmp_path / "idx"
    built = run("scripts/build_index.py", "--corpus", "corpus/", "--out", str(out))
    assert built.returncode == 0, built.stderr
    assert "6 entries" in built.stdout and "embedding" in built.stderr  # the progress bar
    assert "calibrated (labelled) on 42 + 18 labelled queries (in domain + out of domain) from corpus/labelled.jsonl" \
        in built.stdout and "hybrid: threshold" in built.stdout

    again = run("scripts/build_index.py", "--corpus", "corpus/", "--out", str(out), "--if-stale")
    assert again.returncode == 0 and "up to date" in again.stdout

    found = run("-m", "retriever", "search", "注销进度怎么查", "--index", str(out), "--top-k", "2")
    assert found.returncode == 0, found.stderr
    assert found.stdout.startswith("decision: answer (mode hybrid")
    assert found.stdout.splitlines()[1].startswith("1. [cancel-02]")

    as_json = run("-m", "retriever", "search", "注销进度怎么查", "--json", env={"RETRIEVER_INDEX": str(out)})
    assert json.loads(as_json.stdout)["results"][0]["faq_id"] == "cancel-02"


def test_bad_corpus_stops_the_build_and_keeps_the_previous_index(tmp_path):
    out = tmp_path / "idx"
    assert run("scripts/build_index.py", "--corpus", "corpus/", "--out", str(out), "--quiet").returncode == 0
    before = (out / "CURRENT").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text("- id: x\n  question: 注销\n  answer: ''\n", encoding="utf-8")
    failed = run("scripts/build_index.py", "--corpus", str(bad), "--out", str(out))
    assert failed.returncode == 2
    assert f"error: {bad}: entry #1 (id 'x'): 'answer' is empty" in failed.stderr
    assert "Traceback" not in failed.stderr
    assert (out / "CURRENT").read_text() == before


@pytest.mark.parametrize("args, message", [
    (("-m", "retriever", "search", "注销", "--index", "/nonexistent"), "no index here"),
    (("-m", "retriever", "search", "注销", "--top-k", "0"), "must be between 1 and 50"),
    (("-m", "retriever", "search", "   "), "empty after normalisation"),
    (("-m", "retriever", "search", b"\xff\xfe".decode("utf-8", "surrogateescape")), "not valid Unicode text"),
    (("-m", "retriever", "evaluate", "--queries", "/nonexistent.jsonl"), "cannot read labelled queries"),
    (("scripts/build_index.py", "--labelled", "/nonexistent.jsonl"), "cannot read labelled queries"),
    (("scripts/build_index.py", "--corpus", "/nonexistent"), "no such corpus file or folder"),
    (("scripts/build_index.py", "--model", "/nonexistent/model"), "cannot load sentence-transformers model"),
    (("-m", "retriever", "serve", "--index", "/nonexistent"), "no index here"),
])
def test_cli_errors_are_messages_not_traces(tmp_path, seed_index, args, message):
    result = run(*args, env={"RETRIEVER_INDEX": str(seed_index)})
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_evaluate_prints_metrics_sweep_and_json(tmp_path, seed_index):
    labelled = tmp_path / "labelled.jsonl"
    labelled.write_text('{"query": "注销进度怎么查", "faq_id": "cancel-02"}\n'
                        '{"query": "今天天气怎么样", "faq_id": null}\n', encoding="utf-8")
    table = run("-m", "retriever", "evaluate", "--index", str(seed_index), "--queries", str(labelled))
    assert table.returncode == 0, table.stderr
    assert "| 1.0000 | 1.0000 | 1.0000 | 1.0000 |" in table.stdout  # R@1, R@3, R@5, MRR
    assert "no-match threshold sweep" in table.stdout and "recommended: threshold" in table.stdout
    as_json = run("-m", "retriever", "evaluate", "--index", str(seed_index), "--queries", str(labelled),
                  "--json", "--mode", "dense")
    report = json.loads(as_json.stdout)
    assert report["mode"] == "dense" and report["ranking"]["recall@1"] == 1.0
    assert report["in_domain"] == 1 and report["out_of_domain"] == 1 and len(report["sweep"]) == 11


@pytest.mark.parametrize("line, message", [
    ('{"query": "注销", "faq_id": "cancel-99"}', "labelled.jsonl:1: faq_id 'cancel-99' is not in the index"),
    ('{"faq_id": "cancel-01"}', "labelled.jsonl:1: needs a non-empty string 'query'"),
    ('{"query": "注销", "faq_id": 3}', "'faq_id' must be a string or null"),
    ("not json", "labelled.jsonl:1: invalid JSON"),
])
def test_bad_labelled_queries_are_named(tmp_path, seed_index, line, message):
    labelled = tmp_path / "labelled.jsonl"
    labelled.write_text(line + "\n", encoding="utf-8")
    result = run("-m", "retriever", "evaluate", "--index", str(seed_index), "--queries", str(labelled))
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
