"""Batch classification resumes by the input's content, not its mtime; a full disk is `error:` and exit 2, and
the partial files resume correctly (issue 19, item 8)."""
import json
import subprocess
import sys

import pytest
from conftest import REPO

INQUIRIES = ["注销进度怎么查", "一级建造师怎么注销注册", "手机号换了怎么办", "今天天气怎么样", "注销需要多久"]


def _inquiries(path, count):
    path.write_text("".join(f"{INQUIRIES[i % len(INQUIRIES)]} 第{i:03d}条\n" for i in range(count)), encoding="utf-8")
    return path


def _stop_after_first_batch(summary):
    raise KeyboardInterrupt  # as if the operator pressed Ctrl-C once the first checkpoint is on disk


def test_resume_refuses_a_same_size_edit_with_the_old_mtime(tmp_path, searcher):
    import os

    from retriever.batch.classify import ClassifyError, classify_file

    source, out = _inquiries(tmp_path / "in.txt", 30), tmp_path / "out.jsonl"
    with pytest.raises(KeyboardInterrupt):
        classify_file(searcher, source, out, batch_size=8, progress=False, on_batch=_stop_after_first_batch)
    stat = source.stat()
    text = source.read_text(encoding="utf-8")
    source.write_text(text.replace("第001条", "第901条"), encoding="utf-8")  # a row already done, same size
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # the old mtime restored
    assert source.stat().st_size == stat.st_size and source.stat().st_mtime_ns == stat.st_mtime_ns
    with pytest.raises(ClassifyError, match="another input, index or options"):
        classify_file(searcher, source, out, batch_size=8, resume=True, progress=False)

    source.write_text(text, encoding="utf-8")  # the same bytes again, a newer mtime: the run continues
    summary = classify_file(searcher, source, out, batch_size=8, resume=True, progress=False)
    assert summary.resumed_from == 8 and summary.rows == 30
    assert [r["line"] for r in map(json.loads, out.read_text(encoding="utf-8").splitlines())] == list(range(1, 31))


def _limited_run(args, limit_bytes):
    """`python -m retriever classify ...` allowed to write files of at most ``limit_bytes`` (a disk that fills)."""
    import resource
    import signal

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, as ENOSPC would
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run([sys.executable, "-m", "retriever", "classify", *args], check=False, cwd=REPO,
                          capture_output=True, text=True, timeout=300, preexec_fn=limit if limit_bytes else None)


def test_a_full_disk_during_classify_is_an_error_and_the_partial_files_resume_correctly(tmp_path, seed_index):
    source, out = _inquiries(tmp_path / "in.txt", 120), tmp_path / "out.jsonl"
    args = [str(source), "--index", str(seed_index), "--out", str(out), "--batch-size", "16", "--quiet"]
    full = _limited_run(args, 12_000)
    assert full.returncode == 2, full.stderr[-2000:]
    assert "Traceback" not in full.stderr
    message = full.stderr.strip().splitlines()[-1]
    assert message.startswith("error: ") and "--resume" in message and "File too large" in message
    assert not out.exists() and (tmp_path / "out.jsonl.partial").exists()
    checkpoint = json.loads((tmp_path / "out.jsonl.progress.json").read_text())
    assert 0 < checkpoint["summary"]["rows"] < 120

    resumed = _limited_run(args + ["--resume"], None)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resumed after row {checkpoint['summary']['rows']}" in resumed.stdout
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["line"] for r in rows] == list(range(1, 121))  # every row once, none lost or doubled
