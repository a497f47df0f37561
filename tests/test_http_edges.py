"""HTTP edges: transfer codings answered as RFC 9112 says, against the real server; duplicate JSON keys refused on
every JSON route (issue 19, item 9)."""

import pytest

from conftest import raw_exchange
from retriever.config import ServiceConfig
from retriever.http import create_app


def _gzip_chunked(payload: bytes) -> bytes:
    import gzip

    data = gzip.compress(payload)
    return b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data)


SEARCH = b"POST /v1/search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n"


@pytest.mark.parametrize("coding, body, status, error", [
    # RFC 9112 6.3: a request whose last transfer coding is not chunked has no knowable length: MUST be 400.
    (b"gzip", b'{"query": "x"}', 400, "bad_request"),
    # RFC 9112 6.1: a coding the server does not decode SHOULD be 501; this one decodes none but chunked.
    (b"gzip, chunked", _gzip_chunked(b'{"query": "\xe6\xb3\xa8\xe9\x94\x80"}'), 501, "not_implemented"),
    (b"br, chunked", b"0\r\n\r\n", 501, "not_implemented"),
    (b"br", b'{"query": "x"}', 501, "not_implemented"),  # gunicorn's own answer to a coding it does not know
    (b"chunked", b'13\r\n{"query": "\xe6\xb3\xa8\xe9\x94\x80"}\r\n0\r\n\r\n', 200, None),
])
def test_transfer_codings_are_answered_as_http_says(server, coding, body, status, error):
    answered, answer = raw_exchange(server, SEARCH + b"Transfer-Encoding: " + coding + b"\r\n\r\n" + body)
    assert answered == status, answer
    if error:
        assert answer["error"] == error and answer["message"]
    else:
        assert answer["results"]


DUPLICATES = [
    ("/v1/search", b'{"query": "\\u6ce8\\u9500", "query": "\\u5929\\u6c14"}', "query"),
    ("/v1/search", b'{"query": "x", "category": "a", "category": "b"}', "category"),
    ("/v1/classify", b'{"inquiries": [{"id": "1", "text": "x", "text": "y"}]}', "text"),
    ("/v1/feedback", b'{"query": "x", "faq_id": "cancel-01", "helpful": true, "helpful": false}', "helpful"),
    ("/retrieval", b'{"knowledge_id": "a", "query": "x", "retrieval_setting": {"top_k": 1, "top_k": 2}}', "top_k"),
]


@pytest.mark.parametrize("path, body, key", DUPLICATES)
def test_duplicate_json_keys_are_refused_on_every_route(path, body, key, searcher, tmp_path):
    config = ServiceConfig(rate_limit=None, api_keys=("k",), feedback_log=str(tmp_path / "feedback.jsonl"))
    client = create_app(searcher, config).test_client()
    response = client.post(path, data=body, content_type="application/json", headers={"Authorization": "Bearer k"})
    assert response.status_code == 400, response.get_json()
    answer = response.get_json()
    if path == "/retrieval":  # Dify's error shape: {"error_code", "error_msg"}
        assert answer["error_code"] == 3001 and f"'{key}' twice" in answer["error_msg"], answer
    else:
        assert answer["error"] == "duplicate_key" and f"'{key}' twice" in answer["message"], answer
    assert not (tmp_path / "feedback.jsonl").exists()
