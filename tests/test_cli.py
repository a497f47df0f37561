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

    again = run("scripts/build_index.py", "--corpus", "corpus/", "--out", str(out), "--if-stale")
    assert again.returncode == 0 and "up to date" in again.stdout

    found = run("-m", "retriever", "search", "注销进度怎么查", "--index", str(out), "--top-k", "2")
    assert found.returncode == 0, found.stderr
    assert found.stdout.startswith("1. [cancel-02]")

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
    (("scripts/build_index.py", "--corpus", "/nonexistent"), "no such corpus file or folder"),
    (("scripts/build_index.py", "--model", "/nonexistent/model"), "cannot load sentence-transformers model"),
    (("-m", "retriever", "serve", "--index", "/nonexistent"), "no index here"),
])
def test_cli_errors_are_messages_not_traces(tmp_path, seed_index, args, message):
    result = run(*args, env={"RETRIEVER_INDEX": str(seed_index)})
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
