"""The fast path of a cascade: when the fast model's own ranking is trusted, and how that is learned.

The fast model (``build --fast-model use-m3``) ranks the entries by cosine, best text per
entry. Its first entry is the answer when the gate lets it through: top-1 minus top-2 at
least ``margin`` **and** top-1 at least ``floor``. Everything else goes to the full path
(hybrid, judge, decision as without a fast model): the fast path only ever answers.

The gate is learned at build time for a target ``max_error`` (the share of fast-path
answers that may be wrong), never set by hand:

* ``margin``: the smallest margin whose fast-path answers on the calibration queries were
  wrong at most ``max_error`` of the time. Calibration queries: the corpus's labelled
  in-domain queries, or, without any, each paraphrase of an entry searched against the
  other texts (a paraphrase round).
* ``floor``: the fast model's own no-match threshold (``evaluation.calibrate``, in the pipeline), raised
  above every labelled out-of-domain query the margin would let through, so that the fast
  path answers none of the labelled queries no entry answers.

Pure functions: the Searcher supplies the fast model's rankings.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

FAST, FULL = "fast", "full"  # the path that answered a query
PATHS = (FAST, FULL)
DEFAULT_MAX_ERROR = 0.02  # the target measured in the README's table
# Fewer calibration queries than this and no margin can be trusted: the fast path stays off.
MIN_CALIBRATION = 20
# A fast-path floor sits this far above the highest out-of-domain score it must refuse.
FLOOR_STEP = 1e-6


@dataclass(frozen=True)
class FastRanking:
    """The fast model's best entries for one query: (entry number, cosine, text id), best first."""

    top: list[tuple[int, float, int]]

    @property
    def first(self) -> float | None:
        return self.top[0][1] if self.top else None

    @property
    def margin(self) -> float | None:
        return self.top[0][1] - self.top[1][1] if len(self.top) > 1 else None


@dataclass(frozen=True)
class FastGate:
    """When the fast model answers: margin >= ``margin`` and top-1 >= ``floor``; and what it was learned on."""

    margin: float  # math.inf: the fast path never answers
    floor: float
    max_error: float
    calibrated_on: str  # "labelled queries" | "paraphrase rounds" | "too few queries"
    queries: int  # calibration queries (in-domain)
    out_of_domain: int  # labelled out-of-domain queries the floor was raised against
    fast_share: float  # share of calibration queries the gate lets through (in sample)
    fast_error: float  # share of those answered wrongly (in sample)

    def passes(self, ranking: FastRanking) -> bool:
        margin = ranking.margin
        return margin is not None and margin >= self.margin and ranking.first >= self.floor

    def to_dict(self) -> dict[str, Any]:
        """For the manifest's ``fast_path`` (JSON has no infinity: a closed gate's margin is null)."""
        fields = asdict(self)
        fields["margin"] = None if math.isinf(self.margin) else round(self.margin, 6)
        return {k: round(v, 6) if isinstance(v, float) else v for k, v in fields.items()}

    @classmethod
    def from_dict(cls, fields: dict[str, Any]) -> "FastGate":
        margin = fields.get("margin")
        return cls(**{**fields, "margin": math.inf if margin is None else float(margin)})


def gate_margin(margins: np.ndarray, right: np.ndarray, max_error: float) -> float:
    """The smallest margin whose answers (queries at or above it) are wrong at most ``max_error`` of the time.

    math.inf when no margin is good enough.
    """
    order = np.argsort(-margins, kind="stable")
    wrong = np.cumsum(~right[order])
    taken = np.arange(1, len(order) + 1)
    # Only cut between distinct margins: every query at the cut's margin takes the same path.
    distinct = np.append(margins[order][1:] < margins[order][:-1], True)
    ok = np.flatnonzero((wrong <= max_error * taken) & distinct)
    return float(margins[order][ok[-1]]) if len(ok) else math.inf


def learn_gate(in_domain: Sequence[FastRanking], right: Sequence[bool], out_of_domain: Sequence[FastRanking],
               max_error: float, calibrated_on: str, floor: float) -> FastGate:
    """The gate for ``max_error`` from the calibration queries' rankings.

    ``right``: whether each in-domain query's fast top-1 is its entry. ``floor``: the fast
    model's no-match threshold, raised here above the out-of-domain queries the margin lets through.
    """
    usable = [(r.margin, r.first, ok) for r, ok in zip(in_domain, right) if r.margin is not None]
    if len(usable) < MIN_CALIBRATION:
        return FastGate(math.inf, floor, max_error, "too few queries", len(usable), len(out_of_domain), 0.0, 0.0)
    margins, firsts, rights = (np.array(column) for column in zip(*usable))
    above = firsts >= floor
    margin = gate_margin(margins[above], rights[above], max_error) if above.any() else math.inf
    through = [r.first for r in out_of_domain if r.margin is not None and r.margin >= margin]
    if through:
        floor = max(floor, max(through) + FLOOR_STEP)
    taken = (margins >= margin) & (firsts >= floor)
    error = float(np.mean(~rights[taken])) if taken.any() else 0.0
    return FastGate(margin, floor, max_error, calibrated_on, len(usable), len(out_of_domain),
                    float(np.mean(taken)), error)


def paraphrase_rounds(text_fields: Sequence[str]) -> list[int]:
    """Text ids to search as paraphrase rounds: every paraphrase (against the entry's other texts)."""
    return [text_id for text_id, field in enumerate(text_fields) if field == "paraphrase"]
