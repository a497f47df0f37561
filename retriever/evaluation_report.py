"""An HTML page of how the answer decision did on labelled queries: a table and reliability diagrams.

A reliability diagram plots, per confidence bin, the share of first results that were
right against the mean confidence: a calibrated ``confidence`` lies on the diagonal.
"""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Mapping

from .errors import require_extra
from .files import write_text_atomic

# The charts need matplotlib, the optional [reports] extra.
REPORT_FEATURE = "evaluate --report (its charts)"

_ROWS = (("top1", "第一条正确率（条目在库）"), ("answered_right", "回答且正确"), ("confident_wrong", "回答但错误"),
         ("refused_when_absent", "条目缺失时拒答"), ("ambiguous", "存疑"))


def reliability_png(name: str, bins: list[dict]) -> bytes:
    """The reliability diagram of one decision rule, as a PNG."""
    matplotlib = require_extra("matplotlib", REPORT_FEATURE, "reports")

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(figsize=(4.2, 4.2), dpi=100)
    axes.plot([0, 1], [0, 1], color="#9e9e9e", linestyle="--", linewidth=1, label="perfect calibration")
    axes.bar([b["low"] for b in bins], [b["accuracy"] for b in bins], width=[b["high"] - b["low"] for b in bins],
             align="edge", color="#90caf9", edgecolor="#1565c0", label="share right")
    axes.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o", color="#c62828",
              label="mean confidence")
    for b in bins:
        axes.annotate(str(b["queries"]), (b["low"] + 0.005, 0.02), fontsize=7, color="#424242")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.set_xlabel("confidence")
    axes.set_ylabel("first result right")
    axes.set_title(name, fontsize=9)
    axes.legend(loc="upper left", fontsize=7)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


def decision_report_html(results: Mapping[str, Mapping], title: str) -> str:
    """The page: one column per decision rule, one diagram per rule that has a confidence."""
    names = list(results)
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    rows = "".join(f"<tr><td>{label}</td>" + "".join(f"<td>{results[n][key]:.1%}</td>" for n in names) + "</tr>"
                   for key, label in _ROWS)
    rows += "<tr><td>ECE（置信度校准误差）</td>" + "".join(
        f"<td>{'—' if results[n]['ece'] is None else format(results[n]['ece'], '.3f')}</td>" for n in names) + "</tr>"
    figures = "".join(
        f'<figure><img alt="reliability diagram: {html.escape(n)}" src="data:image/png;base64,'
        f'{base64.b64encode(reliability_png(n, results[n]["reliability"])).decode()}"></figure>'
        for n in names if results[n].get("reliability"))
    return f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:70em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:right}}td:first-child{{text-align:left}}
figure{{display:inline-block;margin:1em}}</style></head>
<body><h1>{html.escape(title)}</h1>
<p>各项为占全部测试问题的比例（“条目缺失时拒答”为占条目缺失问题的比例）。可靠性图：每个置信度区间内第一条结果正确的比例；
校准良好时柱顶贴近对角线，区间下方数字为问题数。</p>
<table><tr><th></th>{head}</tr>{rows}</table>
{figures}
</body></html>
"""


def write_decision_report(path: str | Path, results: Mapping[str, Mapping], title: str = "answer decision") -> None:
    write_text_atomic(Path(path), decision_report_html(results, title))
