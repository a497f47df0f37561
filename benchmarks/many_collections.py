#!/usr/bin/env python
"""Many small collections: start-up, worker memory lazy vs all loaded, and a reload of one changed collection.

One small collection (tests/data/collections/shebao.yaml, 4 entries) is built once and its folder
copied ``--collections`` times (c000, c001, ...) beside a default collection, under one index root.
A real `python -m retriever serve --workers 1` serves it with no bound on loaded collections
(RETRIEVER_MAX_LOADED_COLLECTIONS=0, RETRIEVER_COLLECTION_IDLE_SECONDS=0), so that touching every
collection loads every one. Measured: start-up (process start to /readyz), the worker's resident set
(VmRSS) after start and after one search in each collection, the worker's idle CPU with all loaded,
and POST /admin/reload after one collection was rebuilt, with every collection loaded. The machine
is shared: figures are noisy, one run.

Usage: python -m benchmarks.many_collections [--collections 300]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

from tqdm import tqdm

from benchmarks.serving import REPO, ServerProcess
from retriever.encoders import load_encoder
from retriever.pipeline import build_from_corpus
from retriever.store.collections import collection_root

DATA = REPO / "tests" / "data" / "collections"
TOKEN = "many-collections-benchmark"
QUERY = "社保卡丢了怎么挂失补办?"


def _worker_pids(master) -> list[int]:
    return [int(pid) for pid in Path(f"/proc/{master.pid}/task/{master.pid}/children").read_text().split()]


def _rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS"))) / 1024


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=60) as response:
        return json.load(response)


def _reload(url: str) -> tuple[float, dict]:
    request = urllib.request.Request(url + "/admin/reload", method="POST",
                                     headers={"Authorization": f"Bearer {TOKEN}"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=600) as response:
        body = json.load(response)
    return time.perf_counter() - started, body


def _build(root: Path, count: int, encoder) -> list[str]:
    """The default collection and ``count`` copies of one built collection; the names."""
    source = root.parent / "source"
    build_from_corpus(DATA / "shebao.yaml", source, encoder, progress=False)
    shutil.copytree(source, root, ignore=shutil.ignore_patterns("data"))  # the default collection
    names = [f"c{i:03d}" for i in range(count)]
    for name in tqdm(names, desc="copying collections", mininterval=2):
        shutil.copytree(source, collection_root(root, name), ignore=shutil.ignore_patterns("data"))
    return names


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collections", type=int, default=300)
    parser.add_argument("--workers", type=int, default=1,
                        help="with more than one, each search reaches one worker: memory is per worker")
    parser.add_argument("--idle-seconds", type=float, default=5.0, help="how long to watch the idle worker's CPU")
    args = parser.parse_args()
    encoder = load_encoder()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "index"
        names = _build(root, args.collections, encoder)
        env = {"RETRIEVER_MAX_LOADED_COLLECTIONS": "0", "RETRIEVER_COLLECTION_IDLE_SECONDS": "0",
               "RETRIEVER_ADMIN_TOKEN": TOKEN}
        started = time.perf_counter()
        server = ServerProcess(root, workers=args.workers, env=env)
        try:
            rows.append(("start-up (process start to /readyz)", f"{time.perf_counter() - started:.1f} s"))
            workers = _worker_pids(server.process)
            worker = workers[0]
            listed = _get(server.url + "/v1/collections")["collections"]
            loaded = sum(c["loaded"] for c in listed)
            rss_lazy = _rss_mib(worker)
            rows.append((f"worker RSS after start ({len(listed)} listed, {loaded} loaded)",
                         " / ".join(f"{_rss_mib(pid):.0f}" for pid in workers) + " MiB"))
            started = time.perf_counter()
            for name in tqdm(names, desc="first search in each collection", mininterval=2):
                _get(f"{server.url}/v1/collections/{name}/search?" + urllib.parse.urlencode({"q": QUERY}))
            first_uses = time.perf_counter() - started
            rows.append((f"first search in each of {len(names)} collections (loads it)",
                         f"{first_uses:.1f} s ({first_uses / len(names) * 1000:.0f} ms each)"))
            rss_all = _rss_mib(worker)
            rows.append((f"worker RSS after a search in each collection",
                         " / ".join(f"{_rss_mib(pid):.0f}" for pid in workers) + " MiB"))
            if args.workers == 1:
                rows.append(("memory per loaded collection (RSS delta / loaded)",
                             f"{(rss_all - rss_lazy) / len(names) * 1024:.0f} KiB"))
            cpu = _cpu_seconds(worker)
            time.sleep(args.idle_seconds)
            idle_cpu = (_cpu_seconds(worker) - cpu) / args.idle_seconds * 100
            rows.append((f"first worker's CPU while idle ({args.idle_seconds:.0f} s), after a search in each",
                         f"{idle_cpu:.1f} %"))
            seconds, _ = _reload(server.url)
            rows.append(("POST /admin/reload, nothing changed", f"{seconds:.2f} s"))
            changed = names[len(names) // 2]
            build_from_corpus(DATA / "gongjijin.yaml", collection_root(root, changed), encoder, progress=False)
            seconds, body = _reload(server.url)
            reloaded = sorted(n for n, o in body["collections"].items() if o.get("changed"))
            rows.append((f"POST /admin/reload, {changed} rebuilt (reloaded: {', '.join(reloaded)})",
                         f"{seconds:.2f} s"))
        finally:
            server.stop()
    print(f"\n| {args.collections} collections of 4 entries, {args.workers} worker(s) (noisy: shared machine, "
          f"one run) | |")
    print("|---|---|")
    for label, value in rows:
        print(f"| {label} | {value} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
