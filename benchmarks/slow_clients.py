#!/usr/bin/env python
"""Slow and idle clients against a real server (127.0.0.1), then its throughput, per worker class.

While ``--idle`` connections send nothing and ``--slow`` connections send a POST with
``Content-Length: 1000`` and then one body byte a second (each reconnecting whenever the
server closes it, as an attacker would), a probe client sends ``--probes`` normal searches,
each on a new connection, and records how long each took (a probe over 5 s counts as failed).
Then the attack stops and benchmarks/load.py's clients measure throughput on the same server.

Usage: python -m benchmarks.slow_clients [--idle 50] [--slow 50] [--probes 20]
                                         [--worker-class gevent,gthread] [--workers 2] [--seconds 10]
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import tempfile
import threading
import time
import urllib.request

from benchmarks.load import PATHS, run_level
from benchmarks.serving import REPO, served
from retriever.encoders import load_encoder
from retriever.pipeline import build_from_corpus

SLOW_HEAD = (b"POST /v1/search HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
             b"Content-Length: 1000\r\n\r\n")


class Attack:
    """Idle and slow-body connections kept open (reopened when the server closes them) until stopped."""

    def __init__(self, port: int, idle: int, slow: int) -> None:
        self.port = port
        self.slots: list[tuple[str, socket.socket | None]] = [("idle", None)] * idle + [("slow", None)] * slow
        self.reconnects = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _open(self, kind: str) -> socket.socket | None:
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=2)
            if kind == "slow":
                sock.sendall(SLOW_HEAD)
            sock.setblocking(False)
            return sock
        except OSError:
            return None

    @staticmethod
    def _alive(sock: socket.socket, kind: str) -> bool:
        try:
            sock.recv(1, socket.MSG_PEEK)
            return False  # the server answered (408 ...) or closed it: this connection is done
        except BlockingIOError:
            pass
        except OSError:
            return False
        if kind == "slow":
            try:
                sock.send(b" ")
            except OSError:
                return False
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            for i, (kind, sock) in enumerate(self.slots):
                if sock is None or not self._alive(sock, kind):
                    if sock is not None:
                        sock.close()
                        self.reconnects += 1
                    self.slots[i] = (kind, self._open(kind))
            self._stop.wait(1.0)

    def __enter__(self) -> "Attack":
        self._thread.start()
        time.sleep(1.5)  # every slot connected before the probes start
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        for _, sock in self.slots:
            if sock is not None:
                sock.close()


def probe(port: int, count: int, timeout: float = 5.0) -> tuple[list[float], int]:
    """Latencies of ``count`` searches on fresh connections, and how many failed or took over ``timeout``."""
    latencies, failed = [], 0
    for i in range(count):
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{PATHS[i % len(PATHS)]}", timeout=timeout) as r:
                r.read()
            latencies.append(time.perf_counter() - started)
        except OSError:
            failed += 1
        time.sleep(0.2)
    return latencies, failed


def measure(index: str, worker_class: str, args: argparse.Namespace) -> dict:
    with served(index, args.workers, ("--worker-class", worker_class)) as server:
        port = server.port
        calm, _ = probe(port, 5)
        with Attack(port, args.idle, args.slow) as attack:
            latencies, failed = probe(port, args.probes)
        time.sleep(args.settle)  # let the attack's connections time out before the load
        run_level(port, 2, 2)  # warm-up
        load = [run_level(port, clients, args.seconds) for clients in (1, 10)]
    return {"worker_class": worker_class, "calm_ms": statistics.median(calm) * 1000,
            "p50_ms": statistics.median(latencies) * 1000 if latencies else float("nan"),
            "max_ms": max(latencies) * 1000 if latencies else float("nan"), "failed": failed,
            "reconnects": attack.reconnects, "rps_1": load[0]["rps"], "rps_10": load[1]["rps"],
            "p50_10": load[1]["p50"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--idle", type=int, default=50)
    parser.add_argument("--slow", type=int, default=50)
    parser.add_argument("--probes", type=int, default=20)
    parser.add_argument("--worker-class", default="gevent,gthread")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10, help="per throughput level (1 and 10 clients)")
    parser.add_argument("--settle", type=float, default=12, help="seconds between the attack and the load")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        build_from_corpus(REPO / "corpus", tmp, load_encoder(), progress=False)
        rows = [measure(tmp, name, args) for name in args.worker_class.split(",")]
    print(f"\nseed index, {args.workers} workers, {os.cpu_count()} cores; {args.idle} idle + {args.slow} slow-body "
          f"clients during {args.probes} probes; throughput afterwards, {args.seconds:g} s per level")
    print("| worker class | probe p50 ms (calm) | probe p50 ms (attack) | probe max ms | probes failed (>5 s) "
          "| attack reconnects | req/s, 1 client | req/s, 10 clients | p50 ms, 10 clients |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['worker_class']} | {r['calm_ms']:.0f} | {r['p50_ms']:.0f} | {r['max_ms']:.0f} "
              f"| {r['failed']}/{args.probes} | {r['reconnects']} | {r['rps_1']:.1f} | {r['rps_10']:.1f} "
              f"| {r['p50_10']:.1f} |")


if __name__ == "__main__":
    main()
