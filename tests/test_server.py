"""The real server process on 127.0.0.1, as curl talks to it."""
import json
import os
import socket
import subprocess
import sys
import time

import pytest

from conftest import REPO
from retriever.serving import repair_raw_utf8_query


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _raw_get(port: int, target: bytes) -> tuple[int, dict]:
    """Send a GET whose request target is given as raw bytes, as curl does with unescaped Chinese."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


@pytest.fixture(scope="module")
def server(seed_index):
    port = _free_port()
    process = subprocess.Popen([sys.executable, "-m", "retriever", "serve", "--index", str(seed_index),
                                "--port", str(port)], cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, env={**os.environ})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if _raw_get(port, b"/healthz")[0] == 200:
                break
        except (OSError, ValueError):
            time.sleep(0.2)
    else:
        process.kill()
        pytest.fail(f"server did not start: {process.stdout.read().decode()}")
    yield port
    process.terminate()
    process.wait(timeout=10)


def test_raw_utf8_query_like_curl(server):
    status, body = _raw_get(server, "/v1/search?q=注销进度怎么查".encode("utf-8"))
    assert status == 200
    assert body["query"] == "注销进度怎么查"
    assert body["results"][0]["faq_id"] == "cancel-02"


def test_percent_encoded_query(server):
    status, body = _raw_get(server, b"/v1/search?q=%E6%B3%A8%E9%94%80%E8%BF%9B%E5%BA%A6&top_k=2")
    assert status == 200 and body["query"] == "注销进度" and len(body["results"]) == 2


def test_errors_over_the_wire_are_json(server):
    status, body = _raw_get(server, b"/v1/search?top_k=3")
    assert status == 400 and body["error"] == "missing_query"
    status, body = _raw_get(server, b"/nowhere")
    assert status == 404 and body["error"] == "not_found"


def test_repair_leaves_ascii_and_other_servers_alone():
    seen = {}

    def app(environ, start_response):
        seen.update(environ)
        return []

    double_encoded = "q=注销".encode("utf-8").decode("latin-1").encode("utf-8").decode("latin-1")
    repair_raw_utf8_query(app)({"QUERY_STRING": double_encoded, "SERVER_SOFTWARE": "Werkzeug/3.1"}, None)
    assert seen["QUERY_STRING"].encode("latin-1").decode("utf-8") == "q=注销"
    repair_raw_utf8_query(app)({"QUERY_STRING": "q=%E6%B3%A8", "SERVER_SOFTWARE": "Werkzeug/3.1"}, None)
    assert seen["QUERY_STRING"] == "q=%E6%B3%A8"
    latin = "q=caf\xe9"
    repair_raw_utf8_query(app)({"QUERY_STRING": latin, "SERVER_SOFTWARE": "gunicorn"}, None)
    assert seen["QUERY_STRING"] == latin
