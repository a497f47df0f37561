"""Reloading a real gunicorn server under load: no failed request, no response mixing versions."""
import http.client
import json
import os
import shutil
import signal
import threading
import time
import urllib.request

import pytest

from conftest import SEED_CORPUS, running_server
from retriever.pipeline import build_from_corpus
from test_operations import NEW_ANSWER, TOKEN, change_answer

QUERY = "/v1/search?q=%E6%B3%A8%E9%94%80%E8%BF%9B%E5%BA%A6%E6%80%8E%E4%B9%88%E6%9F%A5&top_k=1"  # 注销进度怎么查


class Load:
    """A few clients sending searches until stopped; every response is kept."""

    def __init__(self, url: str, clients: int = 4) -> None:
        self.host, self.port = url.split("//")[1].split(":")
        self.responses: list[tuple[int, str | None, str | None]] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(clients)]

    def _client(self) -> None:
        connection = http.client.HTTPConnection(self.host, int(self.port), timeout=30)
        while not self._stop.is_set():
            try:
                connection.request("GET", QUERY)
                response = connection.getresponse()
                body = json.loads(response.read())
                hit = body["results"][0] if response.status == 200 else {}
                self.responses.append((response.status, body.get("index_version"), hit.get("answer")))
            except (OSError, http.client.HTTPException, ValueError) as exc:
                self.failures.append(repr(exc))
                connection.close()
                connection = http.client.HTTPConnection(self.host, int(self.port), timeout=30)

    def __enter__(self):
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)


def _wait_for(predicate, seconds=30):
    deadline = time.monotonic() + seconds
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.1)
    return predicate()


@pytest.fixture()
def live_index(tmp_path, encoder):
    corpus = tmp_path / "corpus"
    shutil.copytree(SEED_CORPUS, corpus)
    root = tmp_path / "index"
    old = build_from_corpus(corpus, root, encoder, progress=False).version_dir.name
    return corpus, root, old


def _answers_by_version(load):
    seen = {}
    for status, version, answer in load.responses:
        assert status == 200, (status, version)
        seen.setdefault(version, set()).add(answer)
    return seen


@pytest.mark.parametrize("trigger", ["admin", "sighup"])
def test_reload_under_load(live_index, encoder, trigger):
    corpus, root, old = live_index
    # Two workers: the one receiving /admin/reload swaps at once, the other within the poll interval.
    env = {"RETRIEVER_ADMIN_TOKEN": TOKEN, "RETRIEVER_RATE_LIMIT": "", "RETRIEVER_RELOAD_POLL_SECONDS": "0.5"}
    with running_server(root, env=env, workers=2) as (url, process):
        with Load(url) as load:
            assert _wait_for(lambda: len(load.responses) > 20)
            change_answer(corpus)
            new = build_from_corpus(corpus, root, encoder, progress=False).version_dir.name
            if trigger == "admin":
                request = urllib.request.Request(url + "/admin/reload", method="POST",
                                                 headers={"Authorization": f"Bearer {TOKEN}"})
                assert json.load(urllib.request.urlopen(request, timeout=60))["version"] == new
            else:
                os.kill(process.pid, signal.SIGHUP)  # gunicorn: new workers load CURRENT, old ones finish
            # Soon every worker answers from the new version.
            assert _wait_for(lambda: len(load.responses) > 30
                             and all(v == new for _, v, _ in load.responses[-30:]), 60)
    assert load.failures == []
    seen = _answers_by_version(load)
    assert set(seen) == {old, new}
    assert seen[new] == {NEW_ANSWER} and NEW_ANSWER not in seen[old] and len(seen[old]) == 1
