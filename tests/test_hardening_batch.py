"""Hardening (issue 10): batch input (BOM, stray quotes, two runs into one output) and hostile HTTP bodies."""
import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from conftest import REPO, free_port, port_open, started
from retriever.batch.classify import ClassifyError, classify_file, read_output
from retriever.batch.readers import MAX_RECORD_LINES, id_shape, looks_like_a_record, parse_record
from retriever.cli import main
from retriever.config import ServiceConfig
from retriever.http import create_app
from retriever.http.errors import retry_after_seconds
from retriever.http.logs import json_line


def _rejects(out):
    path = out.with_name(out.stem + ".rejects.jsonl")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _accounted_lines(out):
    """Every line number that starts a row, classified or rejected."""
    return sorted([r["line"] for r in read_output(out)] + [r["line"] for r in _rejects(out)])


# --- item 11: a byte order mark (Excel's "CSV UTF-8") ---------------------------------------------


@pytest.mark.parametrize("name, body", [
    ("in.csv", "id,text\nr1,注销进度怎么查\nr2,今天天气怎么样\n"),
    ("in.jsonl", '{"id": "r1", "text": "注销进度怎么查"}\n{"id": "r2", "text": "今天天气怎么样"}\n'),
    ("in.txt", "注销进度怎么查\n今天天气怎么样\n"),
])
def test_a_byte_order_mark_is_accepted(tmp_path, seed_index, capsys, name, body):
    source = tmp_path / name
    source.write_bytes(b"\xef\xbb\xbf" + body.encode("utf-8"))
    out = tmp_path / "out.jsonl"
    assert main(["classify", str(source), "--out", str(out), "--index", str(seed_index), "--quiet"]) == 0
    assert "2 rows: 2 classified" in capsys.readouterr().out
    records = list(read_output(out))
    assert records[0]["text"] == "注销进度怎么查" and records[0]["faq_id"] == "cancel-02"
    assert records[0]["id"] in ("r1", "1") and "\ufeff" not in records[0]["id"]


# --- item 12: a stray quote must not swallow the rows after it -------------------------------------


def test_the_stray_quote_of_the_issue_rejects_one_row_and_keeps_the_rest(tmp_path, seed_index, capsys):
    source = tmp_path / "in.csv"
    source.write_text("id,text\n1,注销进度怎么查\n2,今天天气怎么样\n3,\"未闭合的引号\n"
                      "4,手机号被别人绑定了怎么办\n5,社保卡怎么补办\n6,一建注销网上怎么操作\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    assert main(["classify", str(source), "--out", str(out), "--index", str(seed_index), "--quiet"]) == 0
    assert "6 rows: 5 classified" in capsys.readouterr().out
    assert [r["id"] for r in read_output(out)] == ["1", "2", "4", "5", "6"]
    assert [r["text"] for r in read_output(out)][2] == "手机号被别人绑定了怎么办"
    assert _rejects(out) == [{"line": 4, "reason": "unclosed quote: the field swallows the record on line 5"}]
    assert _accounted_lines(out) == list(range(2, 8))  # every physical data line, once


def test_a_stray_quote_closed_much_later_still_rejects_only_its_row(tmp_path, searcher):
    # The quote on line 3 is "closed" by the one on line 5: csv alone would merge lines 3-5 into one row.
    source = tmp_path / "in.csv"
    source.write_text('id,text,channel\nr1,注销进度怎么查,web\nr2,"半个引号,web\nr3,社保卡怎么补办,web\n'
                      'r4,他说"你好",web\nr5,今天天气怎么样,web\n', encoding="utf-8")
    out = tmp_path / "out.csv"
    summary = classify_file(searcher, source, out, progress=False)
    assert [r["id"] for r in read_output(out)] == ["r1", "r3", "r4", "r5"]
    assert _rejects(out)[0]["line"] == 3 and "swallows the record on line 4" in _rejects(out)[0]["reason"]
    assert summary.rows == 5 == summary.classified + summary.rejected
    assert _accounted_lines(out) == list(range(2, 7))


def test_short_multi_line_fields_still_work(tmp_path, searcher):
    # Interior lines of prose (even with an ASCII comma) are not records: no id-shaped first field.
    source = tmp_path / "in.csv"
    source.write_text('id,text\n101,"您好,\n请问不小心把证书注销了,\n能恢复吗"\n102,注销进度怎么查\n'
                      '103,"第一行\n\n第三行"\n', encoding="utf-8")
    out = tmp_path / "out.jsonl"
    summary = classify_file(searcher, source, out, progress=False)
    records = list(read_output(out))
    assert [(r["id"], r["line"]) for r in records] == [("101", 2), ("102", 5), ("103", 6)]
    assert records[0]["text"] == "您好,\n请问不小心把证书注销了,\n能恢复吗"
    assert summary.rejected == 0


def test_an_open_quote_is_bounded_in_lines_and_at_the_end_of_file(tmp_path, searcher):
    prose = "".join(f"第{i}行的文字\n" for i in range(MAX_RECORD_LINES + 4))
    source = tmp_path / "in.csv"
    source.write_text(f'id,text\n1,"开了不关\n{prose}2,注销进度怎么查\n3,"又开了一个\n最后一行\n', encoding="utf-8")
    out = tmp_path / "out.jsonl"
    summary = classify_file(searcher, source, out, progress=False)
    reasons = {r["line"]: r["reason"] for r in _rejects(out)}
    assert reasons[2] == f"unclosed quote: the field is still open after {MAX_RECORD_LINES} lines"
    assert reasons[3] == "missing column 'text' (1 of 2 fields)"  # the swallowed lines, read again
    last = 2 + 1 + len(prose.splitlines()) + 1
    assert reasons[last] == "unclosed quote: the field is still open at the end of the file"
    assert [r["id"] for r in read_output(out)] == ["2"]
    assert summary.rows == summary.classified + summary.rejected == last
    assert _accounted_lines(out) == list(range(2, last + 2))


def test_a_bad_header_is_refused_before_any_file_is_touched(tmp_path, searcher):
    source = tmp_path / "in.csv"
    source.write_bytes(b"\xef\xbb\xbfid,body\n1,x\n")
    with pytest.raises(ClassifyError, match=r"no column 'text' in the header \(id, body\)"):
        classify_file(searcher, source, tmp_path / "out.csv", progress=False)
    source.write_text('id,"text\n1,x\n', encoding="utf-8")
    with pytest.raises(ClassifyError, match="the header line has an unclosed quote"):
        classify_file(searcher, source, tmp_path / "out.csv", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]


@pytest.mark.parametrize("lines, fields", [
    (["a,b\n"], ["a", "b"]),
    (['a,"b\n'], None),
    (['a,"b\n', 'c",d\n'], ["a", "b\nc", "d"]),
    (['a,"b""\n'], None),
    (["\n"], []),
])
def test_parse_record_tells_open_quotes_from_complete_records(lines, fields):
    assert parse_record(lines) == fields


@pytest.mark.parametrize("line, opening, width, id_at, expected", [
    ("4,手机号被别人绑定了怎么办\n", '3,"未闭合\n', 2, 0, True),
    ("r4,x,web\n", 'r3,"y,web\n', 3, 0, True),
    ("请问不小心把证书注销了,能恢复吗\n", '101,"您好\n', 2, 0, False),  # prose: id shape differs
    ("4,手机号\n", '3,"未闭合,web\n', 3, 0, False),  # not the header's width
    ("随便,两列\n", '"开头\n', 2, None, True),  # without an id column, width alone decides
])
def test_looks_like_a_record(line, opening, width, id_at, expected):
    assert looks_like_a_record(line, opening, width, id_at) is expected


def test_id_shape():
    assert id_shape("r12") == id_shape("r3") == "a9" and id_shape("1024") == "9" and id_shape("您好") == "x"


# --- item 10: two runs into one output ------------------------------------------------------------


def _inquiries(tmp_path, count=16):
    source = tmp_path / "in.txt"
    source.write_text("".join(f"注销进度怎么查 第{i}次\n" for i in range(count)), encoding="utf-8")
    return source


def test_a_second_run_into_the_same_output_is_refused_and_the_first_is_intact(tmp_path, searcher, seed_index,
                                                                              capsys):
    source, out = _inquiries(tmp_path), tmp_path / "out.csv"
    seen = []

    def second_run(summary):
        if seen:
            return
        with pytest.raises(ClassifyError, match=rf"being written by another classify run \(pid {os.getpid()}\)"):
            classify_file(searcher, source, out, batch_size=8, progress=False)
        seen.append(main(["classify", str(source), "--out", str(out), "--index", str(seed_index), "--quiet"]))

    summary = classify_file(searcher, source, out, batch_size=8, progress=False, on_batch=second_run)
    assert seen == [2]
    err = capsys.readouterr().err
    assert f"error: {out} is being written by another classify run (pid {os.getpid()})" in err
    assert "Traceback" not in err
    records = list(read_output(out))
    assert summary.rows == summary.classified == 16 and [r["line"] for r in records] == list(range(1, 17))
    assert not list(tmp_path.glob("*.lock")) and not list(tmp_path.glob("*.partial"))
    assert classify_file(searcher, source, out, progress=False).rows == 16  # the lock was released


def test_the_refusal_names_the_process_holding_the_output(tmp_path, searcher):
    out = tmp_path / "out.jsonl"
    holder = subprocess.Popen([sys.executable, "-c", "import sys; from pathlib import Path; "
                               "from retriever.batch.writers import OutputLock; "
                               f"lock = OutputLock(Path({str(out)!r})); lock.acquire(); print('held', flush=True); "
                               "sys.stdin.read(); lock.release()"],
                              cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ClassifyError, match=rf"another classify run \(pid {holder.pid}\)"):
            classify_file(searcher, _inquiries(tmp_path), out, progress=False)
        assert not out.exists() and not list(tmp_path.glob("*.partial"))
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert classify_file(searcher, _inquiries(tmp_path), out, progress=False).classified == 16


def test_a_run_never_reports_success_over_a_file_it_did_not_write_alone(tmp_path, searcher):
    source, out = _inquiries(tmp_path), tmp_path / "out.jsonl"

    def intruder(summary):  # someone (ignoring the lock) replaces the partial output mid-run
        if summary.rows == 8:
            intruded = tmp_path / "elsewhere"
            intruded.write_text('{"line": 1, "id": "x"}\n', encoding="utf-8")
            os.replace(intruded, out.with_name(out.name + ".partial"))

    with pytest.raises(ClassifyError, match=r"out.jsonl.partial was replaced or changed by someone else"):
        classify_file(searcher, source, out, batch_size=8, progress=False, on_batch=intruder)
    assert not out.exists() and not list(tmp_path.glob("*.lock"))


# --- HTTP: hostile bodies (items 5, 6, 7) ---------------------------------------------------------


def _strict_json(text):
    """Parse as standard JSON only: NaN / Infinity make it fail."""
    def refuse(name):
        raise AssertionError(f"{name} in a response body")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def open_client(searcher):
    return create_app(searcher, ServiceConfig(rate_limit=None)).test_client()


@pytest.mark.parametrize("path, data, code", [
    ("/v1/search", "[" * 5000, "malformed_json"),
    ("/v1/classify", "[" * 100000, "malformed_json"),
    ("/v1/classify", '{"a":' * 5000, "malformed_json"),
    ("/v1/search", '{"query": ' + "[" * 40 + "]" * 40 + "}", "malformed_json"),  # parses, but 41 deep
    ("/v1/classify", '{"inquiries": [{"id": ' + "[" * 40 + "]" * 40 + ', "text": "x"}]}', "malformed_json"),
    ("/v1/search", '{"query": ' + "[" * 10 + "]" * 10 + "}", "invalid_query"),  # shallow: the schema says why
])
def test_deeply_nested_bodies_are_400(open_client, path, data, code):
    response = open_client.post(path, data=data, content_type="application/json")
    assert response.status_code == 400 and _strict_json(response.get_data(as_text=True))["error"] == code


@pytest.mark.parametrize("item_id, code", [
    ("1e999", "invalid_number"), ("-1e999", "invalid_number"), ("NaN", "malformed_json"),
    ("Infinity", "malformed_json"), ("-Infinity", "malformed_json"), ("-" + "9" * 5000, "invalid_number"),
])
def test_non_finite_and_unsafe_numbers_are_refused(open_client, item_id, code):
    body = '{"inquiries": [{"id": %s, "text": "注销进度怎么查"}]}' % item_id
    response = open_client.post("/v1/classify", data=body, content_type="application/json")
    text = response.get_data(as_text=True)
    assert response.status_code == 400 and _strict_json(text)["error"] == code
    assert "Infinity" not in text.replace(item_id, "") and "NaN" not in text.replace(item_id, "")


def test_an_id_beyond_2_53_is_refused_for_its_item_alone(open_client):
    """The document calls any item acceptable (bad ones are reported by index), so the body is not refused."""
    body = '{"inquiries": [{"id": %d, "text": "注销进度怎么查"}, {"id": 7, "text": "注销进度"}]}' % (2 ** 53 + 1)
    response = open_client.post("/v1/classify", data=body, content_type="application/json")
    payload = _strict_json(response.get_data(as_text=True))
    assert response.status_code == 200 and [r["id"] for r in payload["results"]] == [7]
    assert payload["errors"][0]["error"] == "missing_id" and "2^53" in payload["errors"][0]["message"]


def test_safe_integers_and_finite_numbers_still_work(open_client):
    body = '{"inquiries": [{"id": %d, "text": "注销进度怎么查"}, {"id": 1.5e300, "text": "x"}], "threshold": 1e-3}' \
           % 2 ** 53
    response = open_client.post("/v1/classify", data=body, content_type="application/json")
    payload = _strict_json(response.get_data(as_text=True))
    assert response.status_code == 200 and payload["results"][0]["id"] == 2 ** 53
    assert payload["errors"][0]["error"] == "missing_id" and payload["errors"][0]["id"] == 1.5e300
    threshold = open_client.post("/v1/search", data='{"query": "注销", "threshold": 1e999}',
                                 content_type="application/json")
    assert threshold.status_code == 400 and threshold.get_json()["error"] == "invalid_number"


def test_a_nan_that_slips_through_is_a_500_not_a_body_with_nan(searcher):
    # As a future bug might: a view that puts NaN or Infinity in its response.
    from flask import jsonify

    app = create_app(searcher, ServiceConfig(rate_limit=None))
    app.add_url_rule("/buggy/<kind>", "buggy", lambda kind: jsonify({"score": float(kind)}))
    client = app.test_client()
    for kind in ("nan", "inf", "-inf"):
        response = client.get(f"/buggy/{kind}")
        body = _strict_json(response.get_data(as_text=True))
        assert response.status_code == 500 and body["error"] == "internal_error"
    assert client.get("/buggy/0.5").get_json() == {"score": 0.5}
    with pytest.raises(ValueError):
        app.json.dumps({"score": float("nan")})


def _chunked(client, path, data: bytes):
    """A body sent with Transfer-Encoding: chunked, as a server that de-chunks hands it to the app."""
    return client.post(path, input_stream=io.BytesIO(data), content_type="application/json",
                       headers={"Transfer-Encoding": "chunked"}, environ_overrides={"wsgi.input_terminated": True})


def test_the_size_limit_holds_for_chunked_bodies(searcher):
    client = create_app(searcher, ServiceConfig(rate_limit=None, max_body_bytes=1000,
                                                max_batch_body_bytes=5000)).test_client()
    small = json.dumps({"query": "注销进度怎么查"}).encode()
    assert _chunked(client, "/v1/search", small).status_code == 200
    too_big = json.dumps({"query": "注销" * 400}).encode()  # 2.4 KB: over the search limit, under the batch one
    response = _chunked(client, "/v1/search", too_big)
    assert response.status_code == 413 and response.get_json()["error"] == "payload_too_large"
    items = json.dumps({"inquiries": [{"id": str(i), "text": "注销进度怎么查"} for i in range(40)]}).encode()
    assert _chunked(client, "/v1/classify", items).status_code == 200
    huge = _chunked(client, "/v1/classify", json.dumps({"inquiries": [{"id": "1", "text": "x" * 9000}]}).encode())
    assert huge.status_code == 413 and huge.get_json()["error"] == "payload_too_large"


def _raw_exchange(port: int, data: bytes) -> tuple[int, dict]:
    """Send raw bytes to 127.0.0.1:port (``Connection: close``), return the status and the JSON body."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sender = threading.Thread(target=lambda: _send_quietly(sock, data), daemon=True)
        sender.start()
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        sender.join(timeout=15)
    head, _, body = received.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in head.lower():
        size, _, rest = body.partition(b"\r\n")
        body = rest[:int(size, 16)]
    return int(head.split()[1]), _strict_json(body.decode("utf-8"))


def _send_quietly(sock, data):
    try:
        sock.sendall(data)
    except OSError:  # the server may answer (413) and close before reading everything
        pass


CHUNKED_HEAD = (b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")


def _one_chunk(path: bytes, body: bytes, size_line: bytes | None = None) -> bytes:
    return CHUNKED_HEAD % path + (size_line or b"%x" % len(body)) + b"\r\n" + body + b"\r\n0\r\n\r\n"


@contextlib.contextmanager
def _threaded_server(index):
    """`serve --worker-class gthread`: the app itself reads the chunked stream (no buffering in front)."""
    port = free_port()
    with started([sys.executable, "-m", "retriever", "serve", "--index", str(index), "--port", str(port),
                  "--workers", "1", "--worker-class", "gthread"], port_open(port)):
        yield port


def _check_chunked_framing(port):
    query = json.dumps({"query": "注销进度怎么查"}).encode()
    status, body = _raw_exchange(port, _one_chunk(b"/v1/search", query))
    assert status == 200 and body["results"][0]["faq_id"] == "cancel-02"
    for bad_size in (b"zz", b"5", b"-1", b"0x10"):
        status, body = _raw_exchange(port, _one_chunk(b"/v1/search", query, bad_size))
        assert status == 400 and body["error"] in ("malformed_body", "bad_request"), (bad_size, body)
    status, body = _raw_exchange(port, _one_chunk(b"/v1/search", b'{"query": "' + b"a" * 200_000 + b'"}'))
    assert status == 413 and body["error"] == "payload_too_large"
    status, body = _raw_exchange(port, _one_chunk(b"/v1/search", b"[" * 5000))
    assert status == 400 and body["error"] == "malformed_json"
    status, body = _raw_exchange(port, _one_chunk(b"/v1/classify", b"[" * 100_000))
    assert status == 400 and body["error"] == "malformed_json"


def test_chunked_framing_against_a_real_server(server):
    _check_chunked_framing(server)


def test_chunked_framing_against_threaded_workers_reading_the_stream_themselves(seed_index):
    with _threaded_server(seed_index) as port:
        _check_chunked_framing(port)


# --- HTTP: smaller items of 14 -----------------------------------------------------------------------


@pytest.mark.parametrize("reset_time, now, fallback, seconds", [
    (100.2, 100.0, None, 1), (100.0, 100.0, None, 1), (99.0, 100.0, None, 1), (105.5, 100.0, None, 6),
    (None, 100.0, "0", 1), (None, 100.0, "7", 7), (None, 100.0, None, 1),
])
def test_retry_after_seconds(reset_time, now, fallback, seconds):
    assert retry_after_seconds(reset_time, now, fallback) == seconds


def test_a_429_never_says_retry_after_0(searcher):
    # flask-limiter alone says int(reset - now), 0 in the last second of a window: seen here within ~1 s.
    client = create_app(searcher, ServiceConfig(rate_limit="1 per second")).test_client()
    waits, deadline = [], time.monotonic() + 1.5
    while time.monotonic() < deadline:
        response = client.get("/v1/search")  # a quick 400 (no query), counted by the limiter all the same
        if response.status_code == 429:
            waits.append(int(response.headers["Retry-After"]))
        time.sleep(0.05)
    assert len(waits) > 10 and set(waits) == {1}  # at least a second, and never more than the 1 s window


def test_the_unmatched_log_keeps_one_record_a_line(searcher, tmp_path):
    path = tmp_path / "unmatched.jsonl"
    client = create_app(searcher, ServiceConfig(rate_limit=None, unmatched_log=str(path))).test_client()
    query = "今天\u2028天气\x85怎么\u2029样"
    assert client.get("/v1/search", query_string={"q": query}).get_json()["decision"] == "no_match"
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["query"] == query
    assert "\\u2028" in lines[0] and "\\u0085" in lines[0] and "\\u2029" in lines[0] and "今天" in lines[0]


@pytest.mark.parametrize("text", ["注销进度怎么查\u2028", "a\x85b", "x\u2029", "plain\n", "中文"])
def test_json_line_is_one_line(text):
    line = json_line({"query": text})
    assert len(line.splitlines()) == 1 and json.loads(line)["query"] == text


def test_query_length_is_checked_after_normalisation_too(open_client, tmp_path, searcher):
    assert open_client.get("/v1/search", query_string={"q": "注" * 500}).status_code == 200
    expanded = open_client.get("/v1/search", query_string={"q": "㌀" * 500})  # NFKC: ㌀ -> アパート
    assert expanded.status_code == 400 and expanded.get_json()["error"] == "query_too_long"
    assert "2000 characters once normalised; the limit is 500" in expanded.get_json()["message"]
    posted = open_client.post("/v1/search", json={"query": "㌀" * 126})
    assert posted.status_code == 400 and posted.get_json()["error"] == "query_too_long"
    items = [{"id": "a", "text": "㌀" * 200}, {"id": "b", "text": "注销进度怎么查"}]
    body = open_client.post("/v1/classify", json={"inquiries": items}).get_json()
    assert body["errors"][0]["error"] == "text_too_long" and body["results"][0]["id"] == "b"
    source = tmp_path / "in.txt"
    source.write_text("㌀" * 200 + "\n注销进度怎么查\n", encoding="utf-8")
    classify_file(searcher, source, tmp_path / "out.jsonl", progress=False)
    assert _rejects(tmp_path / "out.jsonl") == [{"line": 1, "reason": "text longer than 500 characters "
                                                                      "once normalised (800)"}]
