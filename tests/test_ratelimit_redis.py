"""One rate limit shared by every worker through a real Redis (Debian's redis-server), and what a missing store does.

The Redis test starts redis-server on a free 127.0.0.1 port and stops it by its pid. It is skipped
with the reason where redis-server is missing, unless RETRIEVER_REQUIRE_REDIS=1 (set by .ci/run,
which installs it), where that is a failure instead.
"""
import logging
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from conftest import free_port, running_server
from retriever.config import ServiceConfig
from retriever.errors import RetrieverError
from retriever.http import create_app

REDIS_SERVER = shutil.which("redis-server")


def _require_redis():
    if REDIS_SERVER is None:
        reason = "redis-server is not installed (make redis-deps, or apt-get install redis-server)"
        if os.environ.get("RETRIEVER_REQUIRE_REDIS") == "1":
            pytest.fail(f"Redis test required but {reason}", pytrace=False)
        pytest.skip(reason)


@pytest.fixture()
def redis_url(tmp_path):
    _require_redis()
    port = free_port()
    process = subprocess.Popen([REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no", "--dir", str(tmp_path)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import redis

        client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("redis-server did not start")
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_two_workers_enforce_one_limit_through_redis(seed_index, redis_url):
    env = {"RETRIEVER_RATE_LIMIT": "10 per minute", "RETRIEVER_RATE_LIMIT_STORAGE": redis_url}
    with running_server(seed_index, env=env, workers=2) as (url, _):
        # Each request on its own connection, so both workers take some; a missing query is a quick
        # 400, counted by the limiter like any other request.
        statuses = [_status(url + "/v1/search") for _ in range(24)]
    assert statuses.count(400) == 10, statuses
    assert statuses.count(429) == 14, statuses


def test_an_unreachable_store_falls_back_to_memory_without_a_trace(searcher, caplog):
    config = ServiceConfig(rate_limit="3 per minute", rate_limit_storage=f"redis://127.0.0.1:{free_port()}")
    with caplog.at_level(logging.INFO):
        client = create_app(searcher, config).test_client()
        statuses = [client.get("/v1/search?q=社保卡怎么补办").status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]  # the same limit, counted in this worker's memory
    messages = [record.getMessage() for record in caplog.records]
    assert any("does not answer: each worker limits in its own memory" in m for m in messages), messages
    assert not any(record.exc_info for record in caplog.records)


def test_a_storage_uri_that_is_not_one_is_refused_at_start():
    with pytest.raises(RetrieverError, match="RETRIEVER_RATE_LIMIT_STORAGE='localhost:6379' is not a storage URI"):
        ServiceConfig.from_env({"RETRIEVER_RATE_LIMIT_STORAGE": "localhost:6379"})
