"""An HTML report of a classification run, for FAQ editors (in Chinese, their language).

Read from the finished output file in one streaming pass, so a resumed run is
reported whole and memory stays bounded: per-entry counts, decision shares, a
score histogram (matplotlib PNG embedded), and the most frequent unmatched
inquiries (exact counts while they fit, heavy hitters past that). Those inquiries are shown
with their personal data masked (:mod:`retriever.privacy`), whatever the output file holds.
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

from ..errors import require_extra
from ..files import write_text_atomic
from ..normalize import normalize
from ..privacy import DEFAULT_MASKER, Masker

# The histogram needs matplotlib, the optional [reports] extra.
REPORT_FEATURE = "classify --report (its histogram)"

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


DECISION_LABELS = {"answer": "已回答", "ambiguous": "需确认", "no_match": "未匹配"}
DECISION_COLOURS = {"answer": "#2e7d32", "ambiguous": "#f9a825", "no_match": "#c62828"}
# Fonts with Chinese glyphs, in order of preference (Debian's fonts-wqy-microhei first).
CJK_FONTS = ("WenQuanYi Micro Hei", "Noto Sans CJK SC", "Source Han Sans SC", "Microsoft YaHei", "PingFang SC",
             "SimHei")
AXIS_PADDING = 0.02


def axis_range(scores: Iterable[float], threshold: float | None = None) -> tuple[float, float]:
    """The x-axis of the histogram: every score shown, and the threshold too, whatever the scores.

    A run's scores ended at 0.88 while its threshold was 0.922: the threshold line was off the chart.
    """
    values = [float(v) for v in scores] + ([float(threshold)] if threshold is not None else [])
    if not values:
        return 0.0, 1.0
    return min(values) - AXIS_PADDING, max(values) + AXIS_PADDING


def _cjk_font() -> str | None:
    font_manager = require_extra("matplotlib.font_manager", REPORT_FEATURE, "reports")

    installed = {font.name for font in font_manager.fontManager.ttflist}
    return next((name for name in CJK_FONTS if name in installed), None)


def histogram_png(data: ReportData, threshold: float | None = None) -> bytes:
    """The score histogram by decision, with the threshold line; Chinese labels when a CJK font is installed
    (without one, the chart has numbers only and the page's legend below it says what is what)."""
    matplotlib = require_extra("matplotlib", REPORT_FEATURE, "reports")

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    font = _cjk_font()
    with plt.rc_context({"font.sans-serif": [font, "DejaVu Sans"]} if font else {}):
        figure, axes = plt.subplots(figsize=(8, 3.2), dpi=100)
        centres = (HISTOGRAM_BINS[:-1] + HISTOGRAM_BINS[1:]) / 2
        bottom = np.zeros(len(centres))
        shown = [centres[i] for i in range(len(centres)) if any(c[i] for c in data.histogram.values())]
        for decision, label in DECISION_LABELS.items():
            counts = data.histogram.get(decision)
            if counts is not None:
                axes.bar(centres, counts, width=HISTOGRAM_BINS[1], bottom=bottom, color=DECISION_COLOURS[decision],
                         label=label)
                bottom += counts
        if threshold is not None:
            axes.axvline(threshold, color="black", linestyle="--", linewidth=1, label=f"阈值 {threshold:.3f}")
        axes.set_xlim(*axis_range(shown, threshold))
        if font:
            axes.set_xlabel("最高相似度")
            axes.set_ylabel("咨询数")
            axes.legend()
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        plt.close(figure)
    return buffer.getvalue()


def _legend(threshold: float | None) -> str:
    swatches = "".join(f'<span class=key><i style="background:{DECISION_COLOURS[d]}"></i>{label}</span>'
                       for d, label in DECISION_LABELS.items())
    line = f"<span class=key><i class=line></i>阈值 {threshold:.3f}（最高相似度低于它即为未匹配）</span>" \
        if threshold is not None else ""
    return f"<p class=legend>横轴：最高相似度；纵轴：咨询数。{swatches}{line}</p>"


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
<style>body{{font-family:system-ui,"PingFang SC","Microsoft YaHei","Noto Sans CJK SC",sans-serif;max-width:60em;
margin:2em auto;padding:0 1em}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:left}}
td.n{{text-align:right}}.legend .key{{margin-left:1em;white-space:nowrap}}
.legend i{{display:inline-block;width:.9em;height:.9em;margin-right:.3em;vertical-align:-.1em}}
.legend i.line{{width:0;border-left:2px dashed #000}}</style></head><body>
<h1>{html.escape(title)}</h1>
<p>共分类 {data.rows} 条咨询：{DECISION_LABELS["answer"]} {share("answer")}，{DECISION_LABELS["ambiguous"]}
{share("ambiguous")}，{DECISION_LABELS["no_match"]} {share("no_match")}。</p>
<h2>相似度分布</h2>
<img alt="各决定的最高相似度直方图" src="data:image/png;base64,{png}">
{_legend(threshold)}
<h2>各条目的咨询量（已回答或需确认）</h2>
<table><tr><th>条目编号</th><th>标准问题</th><th>咨询数</th></tr>{entry_rows}</table>
<h2>最常见的未匹配咨询</h2>
<p>可作为新条目或相似问题的候选（在工作台 /admin 中处理）。</p>
<table><tr><th>咨询内容</th><th>次数</th></tr>{unmatched_rows}</table>
</body></html>
"""


def write_report(records: Iterable[dict], path: str | Path, title: str = "分类报告",
                 threshold: float | None = None, masker: Masker = DEFAULT_MASKER) -> ReportData:
    """Write the HTML report for ``records`` to ``path`` atomically; return what it counted.

    The inquiries' texts are masked by ``masker`` before they are counted (the default masks).
    """
    data = collect({**record, "text": masker(record.get("text") or "")} for record in records)
    write_text_atomic(Path(path), render(data, title, threshold))
    return data
