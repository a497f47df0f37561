"""The real server process on 127.0.0.1, as curl talks to it (raw sockets, raw bytes)."""
import json
import socket

import pytest


def _raw_get(port: int, target: bytes) -> tuple[int, dict]:
    """Send a GET whose request target is given as raw bytes, as curl does with unescaped Chinese."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


@pytest.mark.parametrize("query, decision", [
    ("注销进度怎么查", "answer"),
    ("今天天气怎么样", "no_match"),  # 样 is E6 A0 B7: \xa0 once split the stdlib's request line
    ("注销后还能恢复吗？（急）", "answer"),
])
def test_raw_utf8_query_like_curl(server, query, decision):
    status, body = _raw_get(server, f"/v1/search?q={query}&top_k=2".encode("utf-8"))
    assert status == 200
    assert body["query"] == query and body["decision"] == decision


def test_raw_bytes_that_python_calls_whitespace_survive(server):
    query = "样丅注销"  # E6 A0 B7, E4 B8 85: \xa0 and \x85 are whitespace to str.split()
    status, body = _raw_get(server, f"/v1/search?q={query}".encode("utf-8"))
    assert status == 200 and body["query"] == query


def test_percent_encoded_query(server):
    status, body = _raw_get(server, b"/v1/search?q=%E6%B3%A8%E9%94%80%E8%BF%9B%E5%BA%A6&top_k=2")
    assert status == 200 and body["query"] == "注销进度" and len(body["results"]) == 2


def test_errors_over_the_wire_are_json(server):
    status, body = _raw_get(server, b"/v1/search?top_k=3")
    assert status == 400 and body["error"] == "missing_query"
    status, body = _raw_get(server, b"/nowhere")
    assert status == 404 and body["error"] == "not_found"
