#!/usr/bin/env python
"""Build speed: a cold build of a large corpus, then a rebuild after editing one entry, one run each.

The corpus is generated deterministically from the Tianchi nCoV pairs (../shared, evaluation only,
never shipped): each distinct ``query1`` is an entry (one label-1 ``query2`` its paraphrase, a
generated answer), repeated under city prefixes (北京：..., 上海：...) until there are ``--entries``;
labelled queries are other label-1 ``query2`` of prefix-free entries, plus out-of-domain questions.

Each build runs in a child process (``faq-retriever build``), so its CPU time and peak RSS are its
own (``resource.getrusage(RUSAGE_CHILDREN)``); stage times come from the build's own log lines.

Usage: python -m benchmarks.build_speed [--entries 20000] [--labelled 300] [--out DIR] [--keep]
                                        [--baseline SRC]   # also time another source tree (today's code)
                                        [--build-option=--embed-workers=1]
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from retriever.normalize import normalize

REPO = Path(__file__).resolve().parent.parent
DEFAULT_PAIRS = REPO.parent / "shared" / "benchmarks" / "tianchi_ncov" / "pairs.csv"
PREFIXES = ("", "北京", "上海", "广州", "深圳", "武汉", "成都", "杭州", "南京", "西安", "重庆", "天津", "苏州",
            "长沙", "郑州", "沈阳", "青岛", "厦门", "昆明", "合肥")
OUT_OF_DOMAIN = ("怎么办理{}的护照", "{}今天天气怎么样", "{}公积金贷款怎么申请", "去{}的高铁票在哪里买",
                 "{}的驾照到期了怎么换", "{}哪里可以办理结婚登记")


def tianchi_groups(pairs: Path) -> list[tuple[str, str, list[str]]]:
    """(category, query1, its label-1 query2s) per distinct query1, in file order; no text (once
    normalised) twice, so that the build's conflict check passes."""
    with open(pairs, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    questions = {normalize(row["query1"]) for row in rows}
    groups: dict[str, tuple[str, str, list[str]]] = {}
    used: set[str] = set()
    for row in rows:
        key = normalize(row["query1"])
        if key not in groups:
            groups[key] = (row["category"], row["query1"], [])
            used.add(key)
        paraphrase = normalize(row["query2"])
        if row["label"] == "1" and paraphrase not in used and paraphrase not in questions:
            used.add(paraphrase)
            groups[key][2].append(row["query2"])
    return list(groups.values())


def _prefixed(prefix: str, text: str) -> str:
    return f"{prefix}：{text}" if prefix else text


def make_corpus(folder: Path, entries: int, labelled: int, pairs: Path = DEFAULT_PAIRS) -> Path:
    """Write ``faq.jsonl`` (``entries`` entries) and ``labelled.jsonl`` into ``folder``; returns ``folder``."""
    groups = tianchi_groups(pairs)
    if entries > len(groups) * len(PREFIXES):
        raise SystemExit(f"error: at most {len(groups) * len(PREFIXES)} entries can be generated")
    folder.mkdir(parents=True, exist_ok=True)
    records, queries = [], []
    for number in range(entries):
        base, prefix = number % len(groups), PREFIXES[number // len(groups)]
        category, question, paraphrases = groups[base]
        record = {"id": f"e{number:06d}", "category": category, "question": _prefixed(prefix, question),
                  "paraphrases": [_prefixed(prefix, p) for p in paraphrases[:1]],
                  "answer": f"关于“{_prefixed(prefix, question)}”：请参阅{prefix or '本站'}{category}专题第{base + 1}条说明，"
                            f"或咨询当地卫生健康部门。"}
        records.append(record)
        if not prefix and len(paraphrases) > 1 and len(queries) < labelled * 5 // 6:
            queries.append({"query": paraphrases[1], "faq_id": record["id"]})
    for number in range(labelled - len(queries)):
        template = OUT_OF_DOMAIN[number % len(OUT_OF_DOMAIN)]
        queries.append({"query": template.format(PREFIXES[1 + number // len(OUT_OF_DOMAIN) % (len(PREFIXES) - 1)]),
                        "faq_id": None})
    _write_jsonl(folder / "faq.jsonl", records)
    _write_jsonl(folder / "labelled.jsonl", queries)
    return folder


def edit_one_entry(folder: Path, number: int = 7) -> str:
    """Change one paraphrase of entry ``number`` (as an editor would); returns the new text."""
    path = folder / "faq.jsonl"
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    record = records[number % len(records)]
    record["paraphrases"] = [record["paraphrases"][0] + "（已更新）"] if record["paraphrases"] else ["新的说法"]
    _write_jsonl(path, records)
    return record["paraphrases"][0]


def _write_jsonl(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")


# --- timing builds ----------------------------------------------------------------------------------

STAGES = ("embed", "calibration", "judge", "gate")


def timed_build(corpus: Path, out: Path, source: Path = REPO, extra: tuple[str, ...] = ()) -> dict:
    """One ``build`` in a child process: wall time, CPU %, peak RSS, stage times from its manifest."""
    env = {**os.environ, "PYTHONPATH": str(source)}
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as log:
        child = subprocess.Popen([sys.executable, "-m", "retriever", "build", "--corpus", str(corpus), "--out",
                                  str(out), "--quiet", *extra], env=env, stdout=log, stderr=log, cwd=source)
        # wait4: this build's own usage (with its embedding workers), not every child's so far
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
        if child.returncode:
            log.seek(0)
            raise SystemExit(f"error: build failed ({child.returncode}):\n{log.read()}")
    cpu = usage.ru_utime + usage.ru_stime
    manifest = json.loads((out / "versions" / (out / "CURRENT").read_text().strip() / "manifest.json").read_text())
    judge = manifest.get("judge") or {}
    # ru_maxrss: the largest of the build's processes (itself, or one of its workers)
    return {"wall": wall, "cpu": 100 * cpu / wall, "rss_mb": usage.ru_maxrss / 1024,
            # today's code records no stages; its judge's summary has the judge's seconds
            "stages": manifest.get("build_stages") or ({"judge": judge["seconds"]} if "seconds" in judge else {}),
            "embedded": (manifest.get("embedding_cache") or {}).get("embedded"),
            "thresholds": {"judge": judge.get("threshold"),
                           "hybrid": (manifest.get("calibration") or {}).get("hybrid", {}).get("threshold")}}


def _row(name: str, result: dict, cold: float) -> str:
    stages = result["stages"]
    cells = [f"{stages[s]:.1f}" if s in stages else "–" for s in STAGES]
    embedded = "–" if result["embedded"] is None else f"{result['embedded']:,}"
    return (f"| {name} | {result['wall']:.1f} | {100 * result['wall'] / cold:.0f}% | {' | '.join(cells)} | "
            f"{embedded} | {result['cpu']:.0f}% | {result['rss_mb']:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=20000)
    parser.add_argument("--labelled", type=int, default=300)
    parser.add_argument("--pairs", type=Path, default=DEFAULT_PAIRS)
    parser.add_argument("--out", type=Path, help="work folder (default: a temporary one, removed)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--baseline", type=Path, help="another source tree to time the same builds with")
    parser.add_argument("--build-option", action="append", default=[],
                        help="passed to this tree's builds, e.g. --build-option=--embed-workers=1")
    args = parser.parse_args()
    work = args.out or Path(tempfile.mkdtemp(prefix="build-speed-"))
    try:
        corpus = make_corpus(work / "corpus", args.entries, args.labelled, args.pairs)
        trees = [("this tree", REPO)] + ([("baseline", args.baseline.resolve())] if args.baseline else [])
        rows = []
        for name, source in trees:
            index = work / f"index-{name.replace(' ', '-')}"
            make_corpus(corpus, args.entries, args.labelled, args.pairs)
            extra = tuple(args.build_option) if source == REPO else ()
            cold = timed_build(corpus, index, source, extra)
            edit_one_entry(corpus)
            again = timed_build(corpus, index, source, extra)
            rows += [_row(f"{name}: cold", cold, cold["wall"]), _row(f"{name}: one entry edited", again, cold["wall"])]
            print(f"{name}: decision fields {cold['thresholds']} (cold), {again['thresholds']} (rebuild)",
                  file=sys.stderr)
        print(f"\n{args.entries:,} entries, {args.labelled} labelled queries, {os.cpu_count()} cores "
              f"(one run each; timings on a shared machine are noisy)\n")
        print("| build | wall s | of cold | embed s | calibration s | judge s | gate s | texts embedded | CPU | "
              "peak RSS MB |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        print("\n".join(rows))
    finally:
        if not args.keep and not args.out:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
