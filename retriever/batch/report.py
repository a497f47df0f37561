"""An HTML report of a classification run, for FAQ editors.

Read from the finished output file in one streaming pass, so a resumed run is
reported whole and memory stays bounded: per-entry counts, decision shares, a
score histogram (matplotlib PNG embedded), and the most frequent unmatched
inquiries (exact counts while they fit, heavy hitters past that).
"""
from __future__ import annotations

import base64
import html
import io
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from ..files import write_text_atomic
from ..normalize import normalize

HISTOGRAM_BINS = np.linspace(0.0, 1.0, 401)  # 0.0025 wide: the default model's scores crowd 0.8-1.0
MAX_TRACKED_UNMATCHED = 50_000  # distinct unmatched texts counted before the rarest are dropped


@dataclass
class ReportData:
    decisions: Counter = field(default_factory=Counter)
    per_entry: Counter = field(default_factory=Counter)
    questions: dict[str, str] = field(default_factory=dict)
    histogram: dict[str, np.ndarray] = field(default_factory=dict)
    unmatched: Counter = field(default_factory=Counter)
    unmatched_example: dict[str, str] = field(default_factory=dict)
    rows: int = 0

    def add(self, record: dict) -> None:
        self.rows += 1
        decision = record["decision"]
        self.decisions[decision] += 1
        if record.get("faq_id"):
            self.per_entry[record["faq_id"]] += 1
            self.questions.setdefault(record["faq_id"], record.get("question") or "")
        if record.get("score") is not None:
            counts = self.histogram.setdefault(decision, np.zeros(len(HISTOGRAM_BINS) - 1, dtype=np.int64))
            counts[min(max(int(record["score"] * (len(HISTOGRAM_BINS) - 1)), 0), len(counts) - 1)] += 1
        if decision == "no_match":
            key = normalize(record.get("text") or "")
            self.unmatched[key] += 1
            self.unmatched_example.setdefault(key, record.get("text") or "")
            if len(self.unmatched) > MAX_TRACKED_UNMATCHED:
                self._forget_rarest()

    def _forget_rarest(self) -> None:
        keep = dict(self.unmatched.most_common(MAX_TRACKED_UNMATCHED // 2))
        self.unmatched = Counter(keep)
        self.unmatched_example = {k: self.unmatched_example[k] for k in keep}


def collect(records: Iterable[dict]) -> ReportData:
    data = ReportData()
    for record in records:
        data.add(record)
    return data


def histogram_png(data: ReportData, threshold: float | None = None) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 3.2), dpi=100)
    centres = (HISTOGRAM_BINS[:-1] + HISTOGRAM_BINS[1:]) / 2
    bottom = np.zeros(len(centres))
    colours = {"answer": "#2e7d32", "ambiguous": "#f9a825", "no_match": "#c62828"}
    shown = [centres[i] for i in range(len(centres)) if any(c[i] for c in data.histogram.values())]
    for decision in ("answer", "ambiguous", "no_match"):
        counts = data.histogram.get(decision)
        if counts is not None:
            axes.bar(centres, counts, width=HISTOGRAM_BINS[1], bottom=bottom, color=colours[decision],
                     label=decision)
            bottom += counts
    if threshold is not None:
        axes.axvline(threshold, color="black", linestyle="--", linewidth=1, label=f"threshold {threshold:.3f}")
    if shown:
        axes.set_xlim(max(min(shown) - 0.02, 0), min(max(shown) + 0.02, 1))
    axes.set_xlabel("top score")
    axes.set_ylabel("inquiries")
    axes.legend()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


def render(data: ReportData, title: str, threshold: float | None = None) -> str:
    def share(decision: str) -> str:
        return f"{data.decisions[decision]} ({data.decisions[decision] / data.rows:.1%})" if data.rows else "0"

    entry_rows = "".join(
        f"<tr><td>{html.escape(faq_id)}</td><td>{html.escape(data.questions.get(faq_id, ''))}</td>"
        f"<td class=n>{count}</td></tr>" for faq_id, count in data.per_entry.most_common())
    unmatched_rows = "".join(
        f"<tr><td>{html.escape(data.unmatched_example[key])}</td><td class=n>{count}</td></tr>"
        for key, count in data.unmatched.most_common(20))
    png = base64.b64encode(histogram_png(data, threshold)).decode("ascii")
    return f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:left}}
td.n{{text-align:right}}</style></head><body>
<h1>{html.escape(title)}</h1>
<p>{data.rows} inquiries classified: answered {share("answer")}, ambiguous {share("ambiguous")},
no match {share("no_match")}.</p>
<h2>Score distribution</h2>
<img alt="histogram of top scores by decision" src="data:image/png;base64,{png}">
<h2>Inquiries per FAQ entry (answered or ambiguous)</h2>
<table><tr><th>faq_id</th><th>question</th><th>inquiries</th></tr>{entry_rows}</table>
<h2>Most frequent unmatched inquiries</h2>
<p>Candidates for a new FAQ entry or a new paraphrase.</p>
<table><tr><th>inquiry</th><th>times</th></tr>{unmatched_rows}</table>
</body></html>
"""


def write_report(records: Iterable[dict], path: str | Path, title: str = "Classification report",
                 threshold: float | None = None) -> ReportData:
    """Write the HTML report for ``records`` to ``path`` atomically; return what it counted."""
    data = collect(records)
    write_text_atomic(Path(path), render(data, title, threshold))
    return data
