"""Workers share the index: `serve --workers 2` loads the default collection in the master before the fork,
and every worker maps the vectors file read-only.

The criterion (issue: "the second worker's private memory <= 25% of the first's"): the second
worker's ``Private_Dirty`` (smaps_rollup: pages only it holds and has written) is at most 25%
of the first worker's ``Rss`` (every page the first worker uses: what a second worker would
cost if nothing were shared). With RETRIEVER_PRELOAD=0 (each worker loads its own copy) the
same measurement must come out far higher, so the test measures what it claims. At this test
size the model's and jieba's memory dominate; benchmarks/shared_memory.py measures 20,000 entries.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from conftest import SEED_CORPUS, running_server
from retriever.corpus import load_corpus
from retriever.store import build_index, current_version

MODEL_FILE = "model.onnx.data"  # the default model's weights, mapped once a worker has loaded it
QUERIES = ["注销进度怎么查", "一建证书怎么注销", "证书注销了还能恢复吗", "手机号被人占用了"]


def _workers(master: int) -> list[int]:
    return [int(pid) for pid in Path(f"/proc/{master}/task/{master}/children").read_text().split()]


def _rollup(pid: int) -> dict[str, int]:
    """smaps_rollup of ``pid`` in KiB."""
    lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]
    return {key: int(value.split()[0]) for key, value in (line.split(":", 1) for line in lines)}


def _mapped(pid: int, needle: str) -> bool:
    return needle in Path(f"/proc/{pid}/maps").read_text()


def _serving_workers(url: str, master: int, count: int, timeout: float = 60.0) -> list[int]:
    """The master's ``count`` workers once each has loaded its model , after searches on both."""
    deadline = time.monotonic() + timeout
    while True:
        workers = _workers(master)
        if len(workers) == count and all(_mapped(pid, MODEL_FILE) for pid in workers):
            break
        assert time.monotonic() < deadline, f"workers not ready: {workers}"
        for query in QUERIES:  # the model loads with the index; a search makes sure
            urllib.request.urlopen(f"{url}/v1/search?q={urllib.parse.quote(query)}", timeout=30).read()
        time.sleep(0.5)
    for query in QUERIES * 5:
        urllib.request.urlopen(f"{url}/v1/search?q={urllib.parse.quote(query)}", timeout=30).read()
    return workers


def _second_over_first(workers: list[int]) -> tuple[float, list[dict]]:
    first, second = (_rollup(pid) for pid in workers)
    return second["Private_Dirty"] / first["Rss"], [first, second]


def _renewed_workers(url: str, master: int, old: list[int], timeout: float = 60.0) -> list[int]:
    """The two workers that replaced ``old`` after a SIGHUP, once serving."""
    deadline = time.monotonic() + timeout
    while set(_workers(master)) & set(old) or len(_workers(master)) != 2:
        assert time.monotonic() < deadline, "the workers were not replaced after SIGHUP"
        time.sleep(0.5)
    return _serving_workers(url, master, 2)


def _served_versions(url: str) -> set[str]:
    """The versions /healthz answers with, asked several times (either worker may answer)."""
    versions = set()
    for _ in range(6):
        with urllib.request.urlopen(url + "/healthz", timeout=30) as response:
            versions.add(json.load(response)["index"]["version"])
    return versions


@pytest.fixture()
def served_root(seed_index, tmp_path) -> Path:
    """A copy of the seed index (built with its judge) that a test may publish new versions into."""
    root = tmp_path / "index"
    shutil.copytree(seed_index, root)
    return root


def test_workers_share_the_index_through_reload_and_sighup(served_root, encoder):
    with running_server(served_root, env={"RETRIEVER_RELOAD_POLL_SECONDS": "0.5"}, workers=2) as (url, process):
        workers = _serving_workers(url, process.pid, 2)
        ratio, rollups = _second_over_first(workers)
        assert ratio <= 0.25, rollups

        # A new version: every worker reloads it, its vectors mapped from the version folder (page cache).
        build_index(load_corpus(SEED_CORPUS), encoder, served_root, settings={"index_answers": False}, progress=False)
        version = current_version(served_root)
        deadline = time.monotonic() + 30
        while not (all(_mapped(pid, f"{version}/vectors.faiss") for pid in workers)
                   and _served_versions(url) == {version}):
            assert time.monotonic() < deadline, "the workers did not reload and map the new version's vectors"
            time.sleep(0.5)

        # SIGHUP: the master preloads the new version before it forks the new workers, which share it.
        os.kill(process.pid, signal.SIGHUP)
        renewed = _renewed_workers(url, process.pid, workers)
        ratio, rollups = _second_over_first(renewed)
        assert ratio <= 0.25, rollups
        assert _served_versions(url) == {version}


def test_without_preloading_each_worker_holds_its_own_copy(seed_index):
    """The control: RETRIEVER_PRELOAD=0 turns sharing off, and the same measurement sees it."""
    with running_server(seed_index, env={"RETRIEVER_PRELOAD": "0"}, workers=2) as (url, process):
        ratio, rollups = _second_over_first(_serving_workers(url, process.pid, 2))
    assert ratio > 0.5, rollups

