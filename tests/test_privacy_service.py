"""Personal data never reaches a file the service writes; logs keep only whole lines, acknowledged once on disk;
records past the retention age are deleted."""
import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap
import time
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from conftest import REPO, SEED_CORPUS, running_server
from retriever.batch.classify import classify_file, read_output
from retriever.batch.report import write_report
from retriever.config import ServiceConfig
from retriever.files import append_line
from retriever.http import create_app
from retriever.http import logs as logs_module
from retriever.http.logs import UnmatchedLog, access_log

# Real-shaped personal data (valid check digits), and how each must appear once masked.
RAW = {"11010519491231002X": "110105********002X", "440308199003073310": "440308********3310",
       "13812345678": "138****5678", "15912345678": "159****5678", "010-87654321": "010-****4321",
       "6217000000123456786": "6217***********6786", "4532015112830366": "4532********0366",
       "zhangsan@example.com": "z***@example.com"}
RAW_FORMS = [*RAW, "87654321", "217000000123456", "1949123100", "zhangsan@"]  # no run of the middle either
QUERIES = ["我身份证号 11010519491231002X 的注册怎么注销，手机13812345678收不到验证码",
           "卡号6217000000123456786被冻结了，家里电话010-87654321，邮箱zhangsan@example.com",
           "440308199003073310 4532015112830366 15912345678"]
MASKED_QUERIES = ["我身份证号 110105********002X 的注册怎么注销，手机138****5678收不到验证码",
                  "卡号6217***********6786被冻结了，家里电话010-****4321，邮箱z***@example.com"]
NO_MATCH = 0.9999  # a threshold no answer reaches: every query goes to the unmatched log
TOKEN = "privacy-test-token"


def _files_holding_raw_data(*folders: Path) -> list[str]:
    """Every file under ``folders`` (recursively, any kind) holding a raw form of the personal data."""
    found = []
    for folder in folders:
        for path in Path(folder).rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                found += [f"{path}: {raw}" for raw in RAW_FORMS if raw.encode() in data]
    return found


def _call(url: str, body: dict | None = None, headers: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_no_file_the_server_writes_holds_personal_data(seed_index, tmp_path):
    index = tmp_path / "index"
    shutil.copytree(seed_index, index, ignore=shutil.ignore_patterns("data"))
    env = {"RETRIEVER_ADMIN_TOKEN": TOKEN, "RETRIEVER_CORPUS": str(SEED_CORPUS), "RETRIEVER_RATE_LIMIT": ""}
    with running_server(index, env=env) as (url, _):
        for query in QUERIES:
            status, _ = _call(f"{url}/v1/search?" + urllib.parse.urlencode({"q": query, "threshold": NO_MATCH}))
            assert status == 200
            assert _call(f"{url}/v1/search", {"query": query, "threshold": NO_MATCH})[0] == 200
            status, body = _call(f"{url}/v1/feedback", {"query": query, "faq_id": "cancel-01", "helpful": False,
                                                         "comment": f"请联系 {query}"})
            assert (status, body) == (201, {"status": "recorded"})
        status, body = _call(f"{url}/v1/classify", {"inquiries": [{"id": str(n), "text": q} for n, q in
                                                                  enumerate(QUERIES)], "threshold": NO_MATCH})
        assert status == 200 and body["counts"]["no_match"] == len(QUERIES)
        status, groups = _call(f"{url}/admin/api/groups", headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200
    shown = json.dumps(groups, ensure_ascii=False)
    assert not [raw for raw in RAW_FORMS if raw in shown]  # editors never see them in the clear
    assert "110105********002X" in shown and "138****5678" in shown
    data = index / "data"  # serve's default: recorded without any setting
    unmatched = [json.loads(line) for line in (data / "unmatched.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(unmatched) == 3 * len(QUERIES)  # GET, POST and classify
    masked = [MASKED_QUERIES[0], "440308********3310 4532********0366 159****5678"]
    assert {r["query"] for r in unmatched} == {*masked, MASKED_QUERIES[1]}
    by_query = {r["query"]: r for r in unmatched}
    assert by_query[masked[1]]["personal"] is True  # mostly personal data: stored masked, and flagged
    assert set(by_query[MASKED_QUERIES[1]]["masked"]) == {"bank_card", "landline", "email"}
    feedback = (data / "feedback.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(feedback) == len(QUERIES) and "z***@example.com" in "".join(feedback)
    assert not _files_holding_raw_data(index, SEED_CORPUS)


def test_the_access_log_and_the_cache_hold_no_personal_data(searcher, tmp_path):
    lines = tmp_path / "logs" / "access.jsonl"
    lines.parent.mkdir()
    handler = logging.FileHandler(lines, encoding="utf-8")
    access_log.addHandler(handler)
    level = access_log.level
    access_log.setLevel(logging.INFO)  # setLevel, not assignment: it also clears the logger's isEnabledFor cache
    try:
        app = create_app(searcher, ServiceConfig(unmatched_log=str(tmp_path / "logs" / "unmatched.jsonl")))
        client = app.test_client()
        for query in QUERIES:
            assert client.get("/v1/search", query_string={"q": query}).status_code == 200
            assert client.get(f"/v1/nothing/{query}").status_code == 404  # a path that carries the text
    finally:
        access_log.removeHandler(handler)
        access_log.setLevel(level)
        handler.close()
    assert "138****5678" in lines.read_text(encoding="utf-8")
    cache = app.extensions["retriever.cache"]
    keys = list(cache._entries)
    assert len(keys) == len(QUERIES) and all(k[0] == "default" and len(k[1]) == 64 and len(k) == 2 for k in keys)
    assert not _files_holding_raw_data(tmp_path)


def test_batch_outputs_and_reports_are_masked_by_default(searcher, tmp_path):
    source = tmp_path / "in" / "inquiries.jsonl"
    source.parent.mkdir()
    source.write_text("".join(json.dumps({"id": str(n), "text": q}, ensure_ascii=False) + "\n"
                              for n, q in enumerate(QUERIES)), encoding="utf-8")
    out, report = tmp_path / "out" / "decisions.csv", tmp_path / "reports" / "report.html"
    out.parent.mkdir()
    report.parent.mkdir()
    classify_file(searcher, source, out, threshold=NO_MATCH, progress=False)
    rows = list(read_output(out))
    assert [r["text"] for r in rows][:2] == MASKED_QUERIES
    assert [r["line"] for r in rows] == list(range(1, len(QUERIES) + 1))  # the way back to the input
    write_report(rows, report, threshold=NO_MATCH)
    assert "138****5678" in report.read_text(encoding="utf-8")
    assert not _files_holding_raw_data(tmp_path / "out", tmp_path / "reports")
    raw_report = tmp_path / "reports" / "raw.html"  # the report masks even an output written unmasked
    write_report([{**r, "text": QUERIES[0]} for r in rows], raw_report, threshold=NO_MATCH)
    assert not _files_holding_raw_data(tmp_path / "reports")


def test_control_characters_are_escaped_in_the_logs(tmp_path):
    log = UnmatchedLog(tmp_path / "unmatched.jsonl")
    text = "注销\x9b31m进度\x7f\u202e查询\x1b[2J\u2028"
    assert log.record(text, None, 0.1, 0.5, "v1", "search")
    raw = (tmp_path / "unmatched.jsonl").read_bytes()
    for char in ("\x9b", "\x7f", "\u202e", "\x1b", "\u2028"):
        assert char.encode() not in raw
    assert raw.count(b"\n") == 1 and json.loads(raw)["query"] == text  # escaped, not lost


# --- a full disk: acknowledged only once written, never a partial line -----------------------------------


@pytest.fixture()
def tiny_disk(tmp_path):
    """A 64 KB tmpfs (needs root), unmounted after; skipped where mounting is not allowed."""
    folder = tmp_path / "tiny"
    folder.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs needs root (the RLIMIT_FSIZE test covers the same path)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def _fill(folder: Path, leave: int) -> None:
    """Fill the disk but ``leave`` bytes (tmpfs counts whole 4 KB pages)."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError:
            pass
    os.truncate(filler, os.stat(filler).st_size - leave)


def test_feedback_on_a_full_disk_answers_503_and_keeps_whole_lines(searcher, tiny_disk):
    path = tiny_disk / "feedback.jsonl"
    client = create_app(searcher, ServiceConfig(feedback_log=str(path), rate_limit=None)).test_client()
    _fill(tiny_disk, 4096)  # room for a few records, not for five
    statuses = []
    for number in range(5):
        response = client.post("/v1/feedback", json={"query": f"注销进度{number}", "faq_id": "cancel-02",
                                                      "helpful": False, "comment": "慢" * 400})
        statuses.append(response.status_code)
        if response.status_code == 503:
            assert response.get_json()["error"] == "not_recorded" and "not recorded" in response.get_json()["message"]
    assert 201 in statuses and 503 in statuses, statuses
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""  # ends with a whole line
    assert len(lines) - 1 == statuses.count(201)  # every 201 is on disk, nothing else is
    assert all(json.loads(line)["query"].startswith("注销进度") for line in lines[:-1])


def test_unmatched_queries_on_a_full_disk_never_leave_a_partial_line(searcher, tiny_disk):
    path = tiny_disk / "unmatched.jsonl"
    client = create_app(searcher, ServiceConfig(unmatched_log=str(path), rate_limit=None)).test_client()
    _fill(tiny_disk, 4096)
    query = "火星签证" + "的办理" * 150  # ~1.4 KB a line: the fourth does not fit whole
    for _ in range(5):  # the same query (answered from the cache after the first), logged each time
        assert client.post("/v1/search", json={"query": query, "threshold": NO_MATCH}).status_code == 200
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b"" and 0 < len(lines) - 1 < 5
    assert all(json.loads(line)["query"].startswith("火星签证") for line in lines[:-1])


def test_a_file_size_limit_cuts_no_line_in_half(tmp_path):
    """The same guarantee under RLIMIT_FSIZE (any machine, no root): a short write is undone, the error raised."""
    script = textwrap.dedent(f"""
        import resource, signal, json
        from retriever.files import append_line
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1000, resource.RLIM_INFINITY))
        outcomes = []
        for number in range(6):
            try:
                append_line({str(tmp_path / 'log.jsonl')!r}, json.dumps({{"n": number, "pad": "x" * 300}}))
                outcomes.append("ok")
            except OSError as exc:
                outcomes.append(type(exc).__name__)
        print(json.dumps(outcomes))
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60)
    outcomes = json.loads(done.stdout)
    assert outcomes[:3] == ["ok"] * 3 and "ok" not in outcomes[3:], outcomes
    lines = (tmp_path / "log.jsonl").read_text().split("\n")
    assert lines[-1] == "" and [json.loads(line)["n"] for line in lines[:-1]] == [0, 1, 2]


def test_logs_rotate_past_their_size_keeping_five_parts(tmp_path):
    path = tmp_path / "log.jsonl"
    for number in range(40):
        append_line(path, json.dumps({"n": number, "pad": "x" * 80}), max_bytes=500, backups=5)
    parts = sorted(p.name for p in tmp_path.iterdir())
    assert parts == ["log.jsonl", *(f"log.jsonl.{n}" for n in range(1, 6))]
    newest = [json.loads(line)["n"] for line in path.read_text().splitlines()]
    assert newest[-1] == 39 and all(p.stat().st_size <= 500 for p in tmp_path.iterdir())


# --- retention ----------------------------------------------------------------------------------------


def _stamp(days_ago: float) -> str:
    return (datetime.now(timezone.utc) - timedelta(days=days_ago)).isoformat(timespec="seconds")


def _age(path: Path, days: float) -> None:
    moment = time.time() - days * 86400
    os.utime(path, (moment, moment))


def test_records_older_than_the_retention_age_are_deleted_at_start(tmp_path):
    path = tmp_path / "unmatched.jsonl"
    path.write_text("".join(json.dumps({"ts": _stamp(days), "query": query}) + "\n"
                            for days, query in ((120, "old"), (1, "new"))), encoding="utf-8")
    for number, days in ((1, 30), (2, 95), (3, 400)):
        part = tmp_path / f"unmatched.jsonl.{number}"
        part.write_text(json.dumps({"ts": _stamp(days), "query": f"part {number}"}) + "\n", encoding="utf-8")
        _age(part, days)
    UnmatchedLog(path, retention_days=90)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["unmatched.jsonl", "unmatched.jsonl.1"]
    assert [json.loads(line)["query"] for line in path.read_text(encoding="utf-8").splitlines()] == ["new"]


def test_retention_runs_again_while_the_log_is_written_and_can_be_turned_off(tmp_path, monkeypatch):
    path = tmp_path / "unmatched.jsonl"
    log = UnmatchedLog(path, retention_days=90)
    part = tmp_path / "unmatched.jsonl.1"
    part.write_text(json.dumps({"ts": _stamp(100), "query": "old"}) + "\n", encoding="utf-8")
    _age(part, 100)
    assert log.record("注销", None, None, None, "v1", "search") and part.exists()  # within the hour: not yet
    monkeypatch.setattr(logs_module, "PRUNE_EVERY_SECONDS", 0.0)
    assert log.record("注销", None, None, None, "v1", "search") and not part.exists()
    part.write_text(json.dumps({"ts": _stamp(100), "query": "old"}) + "\n", encoding="utf-8")
    _age(part, 100)
    UnmatchedLog(path, retention_days=0).record("注销", None, None, None, "v1", "search")
    assert part.exists()  # 0: kept until rotated away


def test_request_lines_in_server_messages_are_masked_as_the_client_meant_them(tmp_path):
    """gunicorn's and Werkzeug's messages quote the request line, percent-encoded: decoded, masked, one line."""
    from retriever.http.logs import mask_logger
    from retriever.privacy import DEFAULT_MASKER

    logger = logging.getLogger("retriever.test.requestline")
    handler = logging.FileHandler(tmp_path / "server.log", encoding="utf-8")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    mask_logger(logger.name, DEFAULT_MASKER)
    try:
        logger.info('"%s" %s', "GET /v1/search?q=%E6%89%8B%E6%9C%BA138+1234+5678%0A&e=zhangsan%40example.com "
                               "HTTP/1.1", 200)
        logger.info("Invalid request from ip=%s: %s", "127.0.0.1", "GET /x?id=11010519491231002X")
    finally:
        logger.removeHandler(handler)
        handler.close()
    written = (tmp_path / "server.log").read_text(encoding="utf-8")
    assert written.splitlines() == ['"GET /v1/search?q=手机138 **** 5678\\u000a&e=z***@example.com HTTP/1.1" 200',
                                    "Invalid request from ip=127.0.0.1: GET /x?id=110105********002X"]
    assert not _files_holding_raw_data(tmp_path)
