#!/usr/bin/env python
"""Collections: worker memory and search latency, one collection of 1,000 entries vs three, one run.

Three collections of 1,000 Tianchi entries each (three different slices of the train split) are
served by a real `python -m retriever serve --workers 1`; so is one of them alone. Memory is the
worker's resident set (VmRSS) after every collection has answered a search; latency is the median
of the same queries sent to one collection, interleaved between the two servers.

Usage: python -m benchmarks.collections [--entries 1000] [--rounds 60]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

from benchmarks.serving import served
from benchmarks.tianchi import DEFAULT_PAIRS, load_pairs
from retriever.encoders import load_encoder
from retriever.store import build_index
from retriever.store.collections import collection_root

NAMES = ("alpha", "beta", "gamma")


def _worker_rss_mib(master) -> float:
    children = Path(f"/proc/{master.pid}/task/{master.pid}/children").read_text().split()
    status = Path(f"/proc/{children[0]}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS"))) / 1024


def _search_ms(url: str, collection: str, query: str) -> float:
    route = f"{url}/v1/collections/{collection}/search?" + urllib.parse.urlencode({"q": query})
    started = time.perf_counter()
    json.loads(urllib.request.urlopen(route, timeout=30).read())
    return (time.perf_counter() - started) * 1000


def _index_bytes(root: Path) -> int:
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file() and "versions" in f.parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=Path, default=DEFAULT_PAIRS)
    parser.add_argument("--entries", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=60)
    args = parser.parse_args()
    if not args.pairs.is_file():
        sys.exit(f"error: {args.pairs} not found (the benchmark data lives in ../shared)")
    entries, queries, _ = load_pairs(args.pairs, None)
    encoder = load_encoder()
    with tempfile.TemporaryDirectory() as tmp:
        one, three = Path(tmp) / "one", Path(tmp) / "three"
        step = max(1, (len(entries) - args.entries) // 2)
        slices = [entries[i * step:i * step + args.entries] for i in range(3)]
        build_index(slices[0], encoder, collection_root(one, NAMES[0]))
        for name, chosen in zip(NAMES, slices):
            build_index(chosen, encoder, collection_root(three, name))
        wanted = {e.id for e in slices[0]}
        sample = [q.query for q in queries if q.faq_id in wanted][:args.rounds]
        uncached = {"RETRIEVER_CACHE_SIZE": "0"}
        with served(one, workers=1, env=uncached) as server1, served(three, workers=1, env=uncached) as server3:
            (url1, p1), (url3, p3) = (server1.url, server1.process), (server3.url, server3.process)
            for url, names in ((url1, NAMES[:1]), (url3, NAMES)):
                for name in names:
                    _search_ms(url, name, sample[0])  # every collection loaded and warm
            rss1, rss3 = _worker_rss_mib(p1), _worker_rss_mib(p3)
            times1, times3 = [], []
            for query in sample:  # interleaved: both servers see the same machine noise
                times1.append(_search_ms(url1, NAMES[0], query))
                times3.append(_search_ms(url3, NAMES[0], query))
        extra = (_index_bytes(three) - _index_bytes(one)) / 2 ** 20  # the two more collections' files
    print(f"| served | worker RSS MiB | median search ms ({len(sample)} queries, collection {NAMES[0]}) |")
    print("|---|---|---|")
    print(f"| 1 collection x {args.entries} entries | {rss1:.0f} | {statistics.median(times1):.2f} |")
    print(f"| 3 collections x {args.entries} entries | {rss3:.0f} | {statistics.median(times3):.2f} |")
    bound = (rss1 + extra) * 1.10
    print(f"\nthe two more collections' index files: {extra:.1f} MiB; bound (RSS 1 + their files) x 1.10: "
          f"{bound:.0f} MiB -> {'holds' if rss3 <= bound else 'exceeded'}")
    print(f"RSS 3 / 1: {rss3 / rss1:.3f}; latency 3 / 1: {statistics.median(times3) / statistics.median(times1):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
