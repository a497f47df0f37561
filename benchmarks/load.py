#!/usr/bin/env python
"""Load on a real server (gunicorn, 127.0.0.1): 1, 10 and 50 concurrent clients, bounded in time.

Each client keeps one connection and sends searches back to back (citizen-style queries,
percent-encoded) for --seconds; latency percentiles and requests per second per level.
Runs the server with 1 and with 2 workers, so the default can be judged.

Usage: python -m benchmarks.load [--seconds 10] [--levels 1,10,50] [--workers 1,2]
"""
from __future__ import annotations

import argparse
import http.client
import os
import statistics
import tempfile
import threading
import time
import urllib.parse
import urllib.request

from benchmarks.serving import REPO, served
from retriever.encoders import load_encoder
from retriever.pipeline import build_from_corpus

QUERIES = ["注销进度怎么查", "一建证书怎么注销", "手机号被人占用了", "证书注销了还能恢复吗", "单位不给我办注销怎么办",
           "建造师死亡了企业怎么注销", "註銷辦理進度怎麼看", "今天天气怎么样"]
PATHS = [f"/v1/search?q={urllib.parse.quote(q)}&top_k=5" for q in QUERIES]


def client(port: int, until: float, latencies: list, failures: list) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    i = 0
    while time.perf_counter() < until:
        started = time.perf_counter()
        try:
            connection.request("GET", PATHS[i % len(PATHS)])
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                failures.append(response.status)
            else:
                latencies.append(time.perf_counter() - started)
        except (OSError, http.client.HTTPException) as exc:
            failures.append(repr(exc))
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        i += 1
    connection.close()


def run_level(port: int, clients: int, seconds: float) -> dict:
    latencies: list[float] = []
    failures: list = []
    until = time.perf_counter() + seconds
    threads = [threading.Thread(target=client, args=(port, until, latencies, failures)) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    cuts = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0] * 99
    return {"clients": clients, "requests": len(latencies), "failures": len(failures), "rps": len(latencies) / elapsed,
            "p50": cuts[49] * 1000, "p95": cuts[94] * 1000, "p99": cuts[98] * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--levels", default="1,10,50")
    parser.add_argument("--workers", default="1,2")
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]

    with tempfile.TemporaryDirectory() as tmp:
        build_from_corpus(REPO / "corpus", tmp, load_encoder(), progress=False)
        rows = []
        for workers in [int(x) for x in args.workers.split(",")]:
            with served(tmp, workers) as server:
                run_level(server.port, 2, 2)  # warm-up
                for clients in levels:
                    rows.append({"workers": workers, **run_level(server.port, clients, args.seconds)})

    print(f"\nseed index, hybrid, {os.cpu_count()} cores, {args.seconds:g} s per level")
    print("| workers | clients | requests | failed | req/s | p50 ms | p95 ms | p99 ms |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['workers']} | {r['clients']} | {r['requests']} | {r['failures']} | {r['rps']:.1f} "
              f"| {r['p50']:.1f} | {r['p95']:.1f} | {r['p99']:.1f} |")


if __name__ == "__main__":
    main()
