#!/usr/bin/env python
"""Batch classification throughput: bare encoder vs CLI vs HTTP API, same texts, one run.

Inquiries are sampled (with replacement, fixed seed) from the Tianchi query texts and
classified against the Tianchi index (1,510 entries, hybrid mode). The CLI runs as
a real process (start-up included); the API is a real server on 127.0.0.1 taking
1,000 inquiries a request. Peak memory of the CLI at a tenth of the rows and at all
of them shows that it streams.

Usage: python -m benchmarks.classify_throughput [--n 20000]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from benchmarks.serving import REPO, served
from benchmarks.tianchi import DEFAULT_PAIRS, load_pairs

from retriever.encoders import load_encoder
from retriever.store import build_index
from retriever.normalize import normalize


def run_cli(input_path: Path, out: Path, index: Path) -> tuple[float, float]:
    """Seconds and peak RSS (MiB) of one `retriever classify` process."""
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "retriever", "classify", str(input_path), "--out", str(out),
                                "--index", str(index), "--quiet"], cwd=REPO, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        sys.exit(f"classify failed with status {status}")
    return time.perf_counter() - started, usage.ru_maxrss / 1024


def run_api(texts: list[str], index: Path, batch: int = 1000) -> float:
    """Seconds for a real server (2 workers) to classify ``texts`` in requests of ``batch``."""
    with served(index) as server:
        started = time.perf_counter()
        for start in range(0, len(texts), batch):
            items = [{"id": str(i), "text": t} for i, t in enumerate(texts[start:start + batch], start)]
            request = urllib.request.Request(server.url + "/v1/classify", data=json.dumps({"inquiries": items}).encode(),
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=600) as response:
                assert len(json.load(response)["results"]) == len(items)
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20_000, help="inquiries (default 20000)")
    parser.add_argument("--pairs", type=Path, default=DEFAULT_PAIRS)
    args = parser.parse_args()

    entries, queries, _ = load_pairs(args.pairs, None)
    sample = random.Random(0).choices([q.query.replace("\n", " ") for q in queries], k=args.n)
    encoder = load_encoder()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        index = tmp / "index"
        build_index(entries, encoder, index, settings={"index_answers": False}, progress=False)
        full, tenth = tmp / "inquiries.txt", tmp / "tenth.txt"
        full.write_text("\n".join(sample) + "\n", encoding="utf-8")
        tenth.write_text("\n".join(sample[: args.n // 10]) + "\n", encoding="utf-8")

        normalised = [normalize(t) for t in sample]
        started = time.perf_counter()
        for start in range(0, len(normalised), 256):
            encoder.encode_queries(normalised[start:start + 256])
        encoder_seconds = time.perf_counter() - started

        _, tenth_rss = run_cli(tenth, tmp / "tenth.jsonl", index)
        cli_seconds, cli_rss = run_cli(full, tmp / "out.jsonl", index)
        api_seconds = run_api(sample, index)

    rate = args.n / encoder_seconds
    print(f"\n{args.n} inquiries, Tianchi index ({len(entries)} entries, hybrid), {os.cpu_count()} cores")
    print("| path | seconds | inquiries/s | share of encoder rate |")
    print("|---|---|---|---|")
    for name, seconds in (("bare encoder (batches of 256)", encoder_seconds),
                          ("CLI `retriever classify` (process start included)", cli_seconds),
                          ("HTTP `POST /v1/classify` (1,000 a request)", api_seconds)):
        print(f"| {name} | {seconds:.1f} | {args.n / seconds:.0f} | {args.n / seconds / rate:.0%} |")
    print(f"\nCLI peak memory: {tenth_rss:.0f} MiB for {args.n // 10} rows, {cli_rss:.0f} MiB for {args.n} rows")


if __name__ == "__main__":
    main()
