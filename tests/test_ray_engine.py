"""Batch classification on Ray Data (issue 15, item 4): the local engine's output and rejects, on an actor pool.

One local Ray session (2 CPUs) serves the module; the CLI test starts its own, as a user's run does.
"""
import http.server
import json
import logging
import socket
import subprocess
import sys
import threading
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray

from conftest import REPO
from retriever.batch.classify import ClassifyError, classify_file, classify_texts, read_output
from retriever.batch.ray_engine import RayClusterError, check_address, classify_on_ray, parquet_rows

# Eight rows: an empty text, a quoted field over two lines, a stray quote, a text over the 500-character limit.
ROWS = ('1,注销进度怎么查\n2,今天天气怎么样\n3,\n4,"多行的咨询：\n手机号被别人绑定了怎么办"\n'
        '5,"未闭合的引号\n6,社保卡怎么补办\n7,' + "注" * 501 + '\n8,一建注销网上怎么操作\n')
CSV = "id,text\n" + ROWS


@pytest.fixture(scope="module")
def ray_cluster():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level=logging.WARNING)
    yield
    ray.shutdown()


def _rejects(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _local_and_ray(tmp_path, searcher, seed_index, name, body, out_name, **options):
    """Classify the same file with both engines; returns the two output paths."""
    source = tmp_path / name
    source.write_text(body, encoding="utf-8")
    local, on_ray = tmp_path / f"local-{out_name}", tmp_path / f"ray-{out_name}"
    classify_file(searcher, source, local, progress=False, **options)
    summary, calibration = classify_on_ray(seed_index, source, on_ray, actors=2, progress=False, **options)
    assert summary.rows == summary.classified + summary.rejected
    assert calibration["threshold"] == searcher.calibration()["threshold"]
    return local, on_ray


def test_personal_data_is_masked_on_ray_as_it_is_locally(ray_cluster, searcher, seed_index, tmp_path):
    body = "id,text\n1,我的手机13812345678注销进度怎么查\n2,身份证11010519491231002X的注册怎么注销\n"
    local, on_ray = _local_and_ray(tmp_path, searcher, seed_index, "pii.csv", body, "pii.csv")
    assert on_ray.read_bytes() == local.read_bytes()
    written = on_ray.read_text(encoding="utf-8")
    assert "13812345678" not in written and "11010519491231002X" not in written
    assert "138****5678" in written and "110105********002X" in written


def test_csv_on_two_actors_is_the_local_engines_output_byte_for_byte(ray_cluster, searcher, seed_index, tmp_path):
    # Small batches, so that many go through both actors and must come back in input order.
    local, on_ray = _local_and_ray(tmp_path, searcher, seed_index, "in.csv", "id,text\n" + ROWS * 6, "out.csv",
                                   batch_size=4)
    assert on_ray.read_bytes() == local.read_bytes()
    assert _rejects(on_ray.with_name("ray-out.rejects.jsonl")) == _rejects(local.with_name("local-out.rejects.jsonl"))
    lines = [r["line"] for r in read_output(on_ray)] + [r["line"] for r in _rejects(tmp_path / "ray-out.rejects.jsonl")]
    assert len(lines) == 6 * 8 and len(set(lines)) == len(lines)  # input rows = output rows + rejects
    assert not list(tmp_path.glob("*.partial")) and not list(tmp_path.glob("*.lock"))


def test_jsonl_on_ray_has_the_local_engines_records_and_rejects(ray_cluster, searcher, seed_index, tmp_path):
    rows = ['{"id": "a", "text": "注销进度怎么查"}', "not json", '{"id": "b", "text": 7}', '{"text": "无编号"}', "",
            '{"id": "d", "text": "今天天气怎么样"}']
    local, on_ray = _local_and_ray(tmp_path, searcher, seed_index, "in.jsonl", "\n".join(rows) + "\n", "out.jsonl")
    assert on_ray.read_bytes() == local.read_bytes()  # JSON Lines output carries every key of a classification
    assert _rejects(tmp_path / "ray-out.rejects.jsonl") == _rejects(tmp_path / "local-out.rejects.jsonl") == [
        {"line": 2, "reason": "invalid JSON (Expecting value)"}, {"line": 3, "reason": "field 'text' is not a string"},
        {"line": 4, "reason": "missing or invalid field 'id'"}, {"line": 5, "reason": "empty line"}]


def test_parquet_rows_are_numbered_checked_and_classified(ray_cluster, searcher, seed_index, tmp_path):
    texts = ["注销进度怎么查", None, "今天天气怎么样", "注" * 501, "  ", "社保卡怎么补办"]
    source = tmp_path / "in.parquet"
    pq.write_table(pa.table({"id": [10, 11, 12, 13, None, 15], "text": texts}), source, row_group_size=2)
    out = tmp_path / "out.csv"
    summary, _ = classify_on_ray(seed_index, source, out, actors=2, batch_size=2, progress=False)
    records = list(read_output(out))
    assert [(r["line"], r["id"]) for r in records] == [(1, "10"), (3, "12"), (6, "15")]
    expected = classify_texts(searcher, [texts[0], texts[2], texts[5]])
    assert [{k: r[k] for k in ("decision", "faq_id", "score")} for r in records] == \
           [{k: e[k] for k in ("decision", "faq_id", "score")} for e in expected]
    assert _rejects(tmp_path / "out.rejects.jsonl") == [
        {"line": 2, "reason": "empty text"}, {"line": 4, "reason": "text longer than 500 characters (501)"},
        {"line": 5, "reason": "missing or invalid field 'id'"}]
    assert summary.rows == 6 == summary.classified + summary.rejected


def test_parquet_reading_checks_values_like_json_lines(tmp_path):
    source = tmp_path / "typed.parquet"
    pq.write_table(pa.table({"id": ["a", "b"], "text": [3, None]}), source)
    rows = list(parquet_rows(str(source), id_column="id", text_column="text", max_chars=500))
    assert [(r.line, r.problem) for r in rows] == [(1, "field 'text' is not a string (int)"), (2, "empty text")]
    unnumbered = list(parquet_rows(str(source), id_column=None, text_column="id", max_chars=500))
    assert [(r.line, r.id, r.text) for r in unnumbered] == [(1, "1", "a"), (2, "2", "b")]


def test_parquet_without_the_text_column_is_refused_before_ray_starts(seed_index, tmp_path):
    source = tmp_path / "questions.parquet"
    pq.write_table(pa.table({"id": [1], "question": ["注销进度怎么查"]}), source)
    with pytest.raises(ClassifyError, match=r"no column 'text' in the Parquet file \(id, question\); "
                                            r"choose with --text-column"):
        classify_on_ray(seed_index, source, tmp_path / "out.csv", address="127.0.0.1:1", progress=False)
    assert not list(tmp_path.glob("out*"))


def test_an_actor_that_cannot_load_the_index_stops_the_run_with_its_message(ray_cluster, seed_index, tmp_path):
    source = tmp_path / "in.csv"
    source.write_text(CSV, encoding="utf-8")
    with pytest.raises(ClassifyError, match="built with model 'e5-onnx-int8-smooth"):
        classify_on_ray(seed_index, source, tmp_path / "out.csv", model="use-m3", actors=1, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]  # no output, no partial file, no lock


@pytest.fixture()
def http_port():
    """A plain HTTP/1 server on 127.0.0.1 (what a dashboard port answers): not a Ray head."""
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _refused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again: nothing listens there


@pytest.mark.parametrize("address, message", [
    ("refused", "cannot reach a Ray cluster there"),
    ("http", r"not a Ray head \(no gRPC\)"),
    ("ray://127.0.0.1:10001", "Ray Client"),
    ("localhost", "expected HOST:PORT"),
])
def test_a_bad_ray_address_is_refused_quickly(http_port, address, message):
    address = {"refused": f"127.0.0.1:{_refused_port()}", "http": f"127.0.0.1:{http_port}"}.get(address, address)
    started = time.monotonic()
    with pytest.raises(RayClusterError, match=message):
        check_address(address)
    assert time.monotonic() - started < 6


def _cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "retriever", "classify", *args, "--quiet"], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def test_cli_bad_ray_address_is_one_line_and_exit_2(seed_index, tmp_path):
    source = tmp_path / "in.csv"
    source.write_text(CSV, encoding="utf-8")
    started = time.monotonic()
    done = _cli(str(source), "--out", str(tmp_path / "out.csv"), "--index", str(seed_index), "--engine", "ray",
                "--ray-address", f"127.0.0.1:{_refused_port()}")
    assert done.returncode == 2 and time.monotonic() - started < 30
    assert done.stderr.startswith("error: --ray-address 127.0.0.1:") and "Traceback" not in done.stderr
    assert not (tmp_path / "out.csv").exists()


def test_cli_starts_a_local_ray_and_writes_what_the_local_engine_writes(seed_index, searcher, tmp_path):
    source = tmp_path / "in.csv"
    source.write_text(CSV, encoding="utf-8")
    done = _cli(str(source), "--out", str(tmp_path / "ray.jsonl"), "--index", str(seed_index), "--engine", "ray",
                "--actors", "2")
    assert done.returncode == 0, done.stderr
    assert "8 rows: 5 classified" in done.stdout and "3 rejected" in done.stdout
    classify_file(searcher, source, tmp_path / "local.jsonl", progress=False)
    assert (tmp_path / "ray.jsonl").read_bytes() == (tmp_path / "local.jsonl").read_bytes()
    assert (tmp_path / "ray.rejects.jsonl").read_bytes() == (tmp_path / "local.rejects.jsonl").read_bytes()
