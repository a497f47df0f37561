#!/usr/bin/env python
"""Ray scaling: batch classification on 1 and 2 Ray actors beside the local engine, same input, one run.

Inquiries are sampled (with replacement, fixed seed) from the Tianchi query texts and classified
against the Tianchi index (1,510 entries, hybrid mode), as ``benchmarks.classify_throughput`` does.
In this one process, interleaved ``--repeats`` times:

- the local engine, ``classify_file``, with the model as the CLI loads it (the library's default
  threads: every core);
- ``classify_on_ray`` on a local Ray started here with one CPU per core, 1 and then 2 actors (one
  model thread each: Ray scales by actors).

Each engine classifies the first N inquiries, then all 2N. Two rates: end to end (2N over the
2N run's time, actors' start-up and model loading included; Ray's own start-up is not, it is
printed apart) and marginal (N over the difference of the two runs' times: the fixed start-up
costs cancel, what a long run sees). Results reach the driver in input order, so they arrive in
bursts and a rate read off the progress of one run would mislead. The table shows medians, and each
rate as a multiple of the 1-actor run's.

Before each run it waits (``--wait-idle`` seconds at most) for the CPUs to be idle: on a shared
machine, other jobs would be measured too.

Usage: python -m benchmarks.ray_scaling [--n 1200] [--repeats 3] [--wait-idle 120]
"""
from __future__ import annotations

import argparse
import logging
import os
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import ray

from benchmarks.tianchi import DEFAULT_PAIRS, load_pairs
from retriever.batch.classify import classify_file
from retriever.batch.ray_engine import classify_on_ray
from retriever.encoders import load_encoder
from retriever.search import Searcher
from retriever.store import build_index


def _cpu_ticks() -> tuple[int, int]:
    """(idle, total) CPU ticks since boot, from /proc/stat."""
    with open("/proc/stat", encoding="ascii") as handle:
        ticks = [int(value) for value in handle.readline().split()[1:9]]
    return ticks[3] + ticks[4], sum(ticks)


def wait_idle(limit: float, share: float = 0.9, window: float = 3.0) -> bool:
    """Wait, at most ``limit`` seconds, until the CPUs are ``share`` idle over ``window`` seconds.

    On a shared machine other people's jobs come and go; a run started in their middle measures them.
    """
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        idle_before, total_before = _cpu_ticks()
        time.sleep(window)
        idle_after, total_after = _cpu_ticks()
        if (idle_after - idle_before) >= share * max(1, total_after - total_before):
            return True
    return False


def seconds(run: Callable[[Path, Path], object], source: Path, out: Path, idle_wait: float,
            busy: list[str]) -> float:
    if not wait_idle(idle_wait):
        busy.append(out.name)
    started = time.perf_counter()
    run(source, out)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1200, help="N: runs of N and 2N inquiries (default 1200)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs of each engine (default 3)")
    parser.add_argument("--pairs", type=Path, default=DEFAULT_PAIRS)
    parser.add_argument("--wait-idle", type=float, default=120,
                        help="seconds to wait, before each run, for the CPUs to be 90%% idle (default 120)")
    args = parser.parse_args()

    entries, queries, _ = load_pairs(args.pairs, None)
    sample = random.Random(0).choices([q.query.replace("\n", " ") for q in queries], k=2 * args.n)
    cores = len(os.sched_getaffinity(0))
    encoder = load_encoder()  # before Ray starts, with the CLI's threads
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        index = tmp / "index"
        build_index(entries, encoder, index, settings={"index_answers": False}, progress=False)
        searcher = Searcher.load(index, encoder)
        half, full = tmp / "half.txt", tmp / "full.txt"
        half.write_text("\n".join(sample[: args.n]) + "\n", encoding="utf-8")
        full.write_text("\n".join(sample) + "\n", encoding="utf-8")
        started = time.perf_counter()
        ray.init(address="local", num_cpus=cores, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.WARNING)
        ray_start = time.perf_counter() - started
        engines = {
            "local engine (1 process, model threads: library default)":
                lambda source, out: classify_file(searcher, source, out, progress=False),
            "Ray, 1 actor": lambda source, out: classify_on_ray(index, source, out, actors=1, progress=False),
            "Ray, 2 actors": lambda source, out: classify_on_ray(index, source, out, actors=2, progress=False),
        }
        loads = [os.getloadavg()[0]]
        rates: dict[str, list[tuple[float, float]]] = {name: [] for name in engines}
        busy: list[str] = []
        for _ in range(args.repeats):
            for number, (name, run) in enumerate(engines.items()):
                short = seconds(run, half, tmp / f"half{number}.csv", args.wait_idle, busy)
                long = seconds(run, full, tmp / f"full{number}.csv", args.wait_idle, busy)
                rates[name].append((2 * args.n / long, args.n / (long - short)))
                loads.append(os.getloadavg()[0])
        ray.shutdown()
        same = (tmp / "full2.csv").read_bytes() == (tmp / "full0.csv").read_bytes()

    medians = {name: (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs))
               for name, runs in rates.items()}
    one_actor = medians["Ray, 1 actor"]
    print(f"\n{args.n} and {2 * args.n} inquiries, Tianchi index ({len(entries)} entries, hybrid), {cores} cores, "
          f"medians of {args.repeats} interleaved runs; local Ray started in {ray_start:.1f} s (not counted); "
          f"1-min load average {min(loads):.1f}-{max(loads):.1f} during the runs; "
          f"{len(busy)} of {6 * args.repeats} runs started on a busy machine")
    print("| engine | end to end, inquiries/s | vs 1 actor | marginal, inquiries/s | vs 1 actor |")
    print("|---|---|---|---|---|")
    for name, (total, marginal) in medians.items():
        print(f"| {name} | {total:.0f} | {total / one_actor[0]:.2f}x | {marginal:.0f} "
              f"| {marginal / one_actor[1]:.2f}x |")
    print(f"\n2 actors vs 1 actor: {medians['Ray, 2 actors'][1] / one_actor[1]:.2f}x marginal, "
          f"{medians['Ray, 2 actors'][0] / one_actor[0]:.2f}x end to end; "
          f"output of 2 actors identical to the local engine's: {same}")


if __name__ == "__main__":
    main()
