"""One client cannot starve the others: batch work bounded by what it costs, searches served before batch
chunks, the workbench's grouping embedding each logged text once (docs/fair-load.md)."""
import json
import os
import re
import shutil
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from conftest import SEED_CORPUS, running_server
from retriever.config import ServiceConfig
from retriever.encoders import CoalescingEncoder
from retriever.encoders.coalescing import LOWEST_PRIORITY, batch_work
from retriever.http import create_app
from retriever.http.grouping import GroupingVectors
from retriever.http.logs import UnmatchedLog
from retriever.http.ratelimit import BatchAdmission, Refused
from retriever.http.workbench import WORKBENCH
from retriever.reload import SearcherHolder
from retriever.search import Searcher

PHRASE = "我想咨询一下一级建造师注册证书注销以后还能不能重新申请注册需要准备哪些材料在哪里办理多久能办好谢谢"
LONG = (PHRASE * 12)[:500]  # the longest inquiry a request may hold
TOKEN = "fair-token"
HEADERS = {"X-Requested-With": "workbench"}


class RecordingModel:
    """The real model, recording each call's texts; the first call is held until ``release`` is set."""

    def __init__(self, encoder) -> None:
        self.encoder, self.calls = encoder, []
        self.name, self.source, self.dim = encoder.name, encoder.source, encoder.dim
        self.first_started, self.release = threading.Event(), threading.Event()
        self._lock = threading.Lock()

    def encode_queries(self, texts):
        with self._lock:
            self.calls.append(list(texts))
            first = len(self.calls) == 1
        if first:
            self.first_started.set()
            assert self.release.wait(30)
        return self.encoder.encode_queries(texts)

    def encode_passages(self, texts):
        return self.encoder.encode_passages(texts)

    def embedded(self) -> list[str]:
        return [text for call in self.calls for text in call]


def test_a_search_goes_before_the_chunks_of_a_batch_already_running(encoder):
    model = RecordingModel(encoder)
    coalescing = CoalescingEncoder(model, max_batch=8)
    texts = [f"{i}{LONG}"[:500] for i in range(4)]  # four chunks of one 500-character text
    batch_result = {}
    batch = threading.Thread(target=lambda: batch_result.update(vectors=coalescing.encode_queries(texts)))
    batch.start()
    assert model.first_started.wait(30)  # the batch holds the model with its first chunk
    search = threading.Thread(target=lambda: coalescing.encode_queries(["注销进度怎么查"]))
    search.start()
    deadline = time.monotonic() + 10
    while not coalescing._waiting and time.monotonic() < deadline:  # the search is queued behind the chunk
        time.sleep(0.01)
    model.release.set()
    batch.join(60)
    search.join(60)
    assert model.calls[0] == texts[:1] and model.calls[1] == ["注销进度怎么查"]  # before the batch's other chunks
    assert model.calls[2:] == [[t] for t in texts[1:]]
    assert np.array_equal(batch_result["vectors"], encoder.encode_queries(texts))  # chunking changes no vector


def test_with_a_batch_lane_a_search_is_answered_while_a_batch_chunk_runs(encoder):
    lane_model = RecordingModel(encoder)  # holds its first chunk until released
    coalescing = CoalescingEncoder(encoder, max_batch=8, batch_encoder=lane_model)
    texts = [LONG, PHRASE, "证书丢了怎么补办"]
    batch_result = {}
    batch = threading.Thread(target=lambda: batch_result.update(vectors=coalescing.encode_queries(texts)))
    batch.start()
    assert lane_model.first_started.wait(30)
    started = time.monotonic()
    vector = coalescing.encode_queries(["注销进度怎么查"])  # answered on the main copy, the chunk still held
    assert not batch_result and time.monotonic() - started < 20
    lane = [t for t in threading.enumerate() if t.name.startswith("batch-model")]
    assert lane and os.getpriority(os.PRIO_PROCESS, lane[0].native_id) == LOWEST_PRIORITY  # any search runs first
    lane_model.release.set()
    batch.join(60)
    assert lane_model.calls == [[LONG], [PHRASE, "证书丢了怎么补办"]]  # chunks of <= 500 characters
    assert np.array_equal(batch_result["vectors"], encoder.encode_queries(texts))
    assert np.array_equal(vector, encoder.encode_queries(["注销进度怎么查"]))
    with batch_work():  # a classify request's single inquiry is batch work too
        coalescing.encode_queries(["社保卡怎么补办"])
    assert lane_model.calls[-1] == ["社保卡怎么补办"]


def _classify(client, texts, **kwargs):
    return client.post("/v1/classify", json={"inquiries": [{"id": i, "text": t} for i, t in enumerate(texts)]},
                       **kwargs)


def test_a_request_larger_than_its_budget_is_refused_with_413_naming_it(searcher):
    client = create_app(searcher, ServiceConfig(classify_chars_per_request=1_000)).test_client()
    refused = _classify(client, [LONG, LONG, LONG])
    body = refused.get_json()
    assert refused.status_code == 413 and body["error"] == "classify_too_large"
    assert "1500 characters" in body["message"] and "at most 1000" in body["message"]
    assert _classify(client, [LONG, LONG]).status_code == 200  # 1,000 characters fit


def test_a_client_past_its_budget_gets_429_with_the_seconds_until_its_window_ends(searcher):
    # The rate limit stays on: its own window (1 s) must not overwrite the budget's Retry-After.
    config = ServiceConfig(classify_budget="150 per minute", api_keys=("key-1",))
    client = create_app(searcher, config).test_client()
    texts = ["证书丢了怎么补办", PHRASE]  # 8 + 49 characters
    assert _classify(client, texts).status_code == 200
    assert _classify(client, texts).status_code == 200  # 114 of 150
    refused = _classify(client, texts)
    body = refused.get_json()
    assert refused.status_code == 429 and body["error"] == "classify_budget_exceeded"
    assert "150 per minute" in body["message"] and "57" in body["message"]
    assert 30 <= int(refused.headers["Retry-After"]) <= 60  # the rest of this minute's window
    assert _classify(client, ["社保卡怎么补办"]).status_code == 200  # 7 more still fit: a small request passes
    other = _classify(client, texts, environ_base={"REMOTE_ADDR": "10.0.0.9"})
    keyed = _classify(client, texts, headers={"Authorization": "Bearer key-1"})
    assert other.status_code == 200 and keyed.status_code == 200  # each address and each key has its own


def test_a_worker_runs_only_its_batch_slots_at_once():
    admission = BatchAdmission(max_chars=1_000, slots=1, budget=None)
    with admission.admitted("address:a", 500, time.time()):
        with pytest.raises(Refused) as busy:
            with admission.admitted("address:b", 10, time.time()):
                pass
    assert busy.value.status == 503 and busy.value.code == "batch_busy" and busy.value.retry_after >= 1
    with admission.admitted("address:b", 10, time.time()):  # the slot is free again
        pass


@pytest.fixture()
def bench(tmp_path, seed_index, encoder):
    """A workbench over a copy of the seed corpus whose model records every text it embeds."""
    corpus = tmp_path / "corpus"
    shutil.copytree(SEED_CORPUS, corpus)
    model = RecordingModel(encoder)
    model.release.set()
    holder = SearcherHolder(seed_index, lambda folder: Searcher.load(folder, model))
    holder.load_initial()
    model.calls.clear()  # the load's own probe search: not the workbench's
    config = ServiceConfig(admin_token=TOKEN, corpus_dir=str(corpus), unmatched_log=str(tmp_path / "unmatched.jsonl"),
                           rate_limit=None)
    app = create_app(holder, config)
    client = app.test_client()
    assert client.post("/admin/login", json={"token": TOKEN}, headers=HEADERS).status_code == 200
    return app, client, model, UnmatchedLog(config.unmatched_log)


def test_grouping_embeds_each_logged_text_once_and_a_page_view_only_clusters(bench):
    _, client, model, log = bench
    texts = ["监理工程师怎么注销", "监理工程师怎样注销", "造价工程师证书怎么注销", "今天天气怎么样"]
    for text in texts:
        log.record(text, "cancel-01", 0.5, 0.9, "v", "search")
    first = client.get("/admin/api/groups").get_json()
    assert first["pending_texts"] == 0 and {g["texts"][0]["text"] for g in first["groups"]} == {
        "监理工程师怎么注销", "造价工程师证书怎么注销", "今天天气怎么样"}
    assert all(len(g["closest"]) == 3 for g in first["groups"])
    assert sorted(model.embedded()) == sorted(texts)  # each once: the closest entries reuse the vectors
    log.record("社保卡怎么补办", None, 0.1, 0.9, "v", "search")
    for _ in range(2):
        again = client.get("/admin/api/groups").get_json()
    assert sorted(model.embedded()) == sorted(texts + ["社保卡怎么补办"])  # only the new text, once
    assert {g["texts"][0]["text"] for g in again["groups"]} == {g["texts"][0]["text"] for g in first["groups"]} | {
        "社保卡怎么补办"}


def test_a_page_view_embeds_within_its_budget_and_the_rest_in_the_background(bench):
    app, client, model, log = bench
    app.extensions[WORKBENCH]["vectors"] = GroupingVectors(view_chars=60)
    texts = [f"{PHRASE[i:]}{i}" for i in range(5)]  # 46-50 characters each
    for text in texts:
        log.record(text, None, 0.1, 0.9, "v", "search")
    first = client.get("/admin/api/groups").get_json()
    assert first["pending_texts"] == 4 and sum(g["count"] for g in first["groups"]) == 1  # 50 of 60 characters
    deadline = time.monotonic() + 60
    while app.extensions[WORKBENCH]["vectors"].pending() and time.monotonic() < deadline:
        time.sleep(0.1)
    later = client.get("/admin/api/groups").get_json()
    assert later["pending_texts"] == 0 and sum(g["count"] for g in later["groups"]) == 5
    assert sorted(model.embedded()) == sorted(texts)  # each once, between the view and the background


def _post(url: str, body: dict, timeout: float = 120):
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def _batch_jobs_running(url: str) -> float:
    """retriever_batch_jobs_running as /metrics reports it (summed over the server's live workers)."""
    with urllib.request.urlopen(url + "/metrics", timeout=30) as response:
        scrape = response.read().decode("utf-8")
    return float(re.search(r"^retriever_batch_jobs_running (\S+)$", scrape, re.M).group(1))


def _wait_for_batch_jobs(url: str, count: float, seconds: float = 60) -> float:
    deadline, running = time.monotonic() + seconds, _batch_jobs_running(url)
    while running != count and time.monotonic() < deadline:
        time.sleep(0.05)
        running = _batch_jobs_running(url)
    return running


def test_a_real_server_answers_a_search_before_a_running_maximal_classify_ends(seed_index):
    """One worker: a search sent while a 40,000-character classify runs (several seconds of one core with the
    default model) is answered first, and a second classify meanwhile is refused (503, a batch slot) rather than
    holding another thread. /metrics shows the batch slot taken while it runs, and free after."""
    env = {"RETRIEVER_RATE_LIMIT": "", "RETRIEVER_CACHE_SIZE": "0", "RETRIEVER_BATCH_JOBS": "1",
           "RETRIEVER_RELOAD_POLL_SECONDS": "0", "RETRIEVER_CLASSIFY_MAX_CHARS": "40000",
           "RETRIEVER_CLASSIFY_BUDGET": ""}
    inquiries = [{"id": i, "text": f"{i}{LONG}"[:500]} for i in range(80)]
    finished: dict[str, float] = {}
    with running_server(seed_index, env) as (url, _):
        def classify():
            finished["classify_status"] = _post(url + "/v1/classify", {"inquiries": inquiries})[0]
            finished["classify"] = time.monotonic()

        batch = threading.Thread(target=classify)
        assert _batch_jobs_running(url) == 0
        batch.start()
        assert _wait_for_batch_jobs(url, 1) == 1  # the classify holds the worker's one batch slot
        second = _post(url + "/v1/classify", {"inquiries": inquiries[:2]})
        with urllib.request.urlopen(url + "/v1/search?q=" + urllib.request.quote("注销进度怎么查"), timeout=60) as r:
            assert r.status == 200
        finished["search"] = time.monotonic()
        batch.join(180)
        assert _wait_for_batch_jobs(url, 0) == 0  # released when it ends
    assert second[0] == 503 and second[1]["error"] == "batch_busy"
    assert finished["classify_status"] == 200 and finished["search"] < finished["classify"]
