"""Evaluation and calibration on labelled queries: ``{"query": ..., "faq_id": ... | null}``.

``faq_id`` null means no entry answers the query (out of domain): the service
should say ``no_match``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from tqdm.auto import tqdm

from .errors import CorpusError
from .scoring import AMBIGUOUS, ANSWER

RANK_DEPTH = 50  # ranks beyond this count as not found (reciprocal rank 0)


@dataclass(frozen=True)
class LabelledQuery:
    query: str
    faq_id: str | None


@dataclass(frozen=True)
class Outcome:
    """What the searcher did with one labelled query."""

    labelled: LabelledQuery
    rank: int | None  # 1-based rank of the gold entry, None if absent or out of domain
    top_scores: tuple[float, ...]  # best score first; at least two where the index has two entries
    top_id: str | None
    decision: str | None = None  # what the searcher decided ("answer", "ambiguous", "no_match")
    confidence: float | None = None  # the judge's confidence in the first result (None: no judge)


def read_labelled(path: str | Path, known_ids: set[str] | None = None) -> list[LabelledQuery]:
    """Read a labelled-queries JSON Lines file; every problem names the line."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise CorpusError(f"{path}: cannot read labelled queries ({exc})") from None
    queries = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CorpusError(f"{path}:{number}: invalid JSON ({exc.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get("query"), str) or not record["query"].strip():
            raise CorpusError(f"{path}:{number}: needs a non-empty string 'query'")
        faq_id = record.get("faq_id")
        if faq_id is not None and not isinstance(faq_id, str):
            raise CorpusError(f"{path}:{number}: 'faq_id' must be a string or null")
        if faq_id is not None and known_ids is not None and faq_id not in known_ids:
            raise CorpusError(f"{path}:{number}: faq_id '{faq_id}' is not in the index")
        queries.append(LabelledQuery(record["query"], faq_id))
    if not queries:
        raise CorpusError(f"{path}: no labelled queries")
    return queries


def run(searcher, labelled: Sequence[LabelledQuery], mode: str | None = None, batch_size: int = 64,
        progress: bool = True) -> list[Outcome]:
    """Search every labelled query (in batches, with a progress bar)."""
    depth = min(RANK_DEPTH, len(searcher.index.entries))
    outcomes = []
    with tqdm(total=len(labelled), desc="evaluating", unit="query", disable=not progress) as bar:
        for start in range(0, len(labelled), batch_size):
            batch = labelled[start:start + batch_size]
            for item, result in zip(batch, searcher.search_many([q.query for q in batch], depth, mode=mode)):
                ids = [hit.faq_id for hit in result.hits]
                rank = ids.index(item.faq_id) + 1 if item.faq_id in ids else None
                outcomes.append(Outcome(item, rank, tuple(h.score for h in result.hits[:2]),
                                        ids[0] if ids else None, result.decision, result.confidence))
            bar.update(len(batch))
    return outcomes


def ranking_metrics(ranks: Sequence[int | None], ks: Sequence[int] = (1, 3, 5)) -> dict[str, float]:
    """Recall@k and MRR over in-domain queries (``None`` = gold entry not retrieved)."""
    if not ranks:
        return {**{f"recall@{k}": 0.0 for k in ks}, "mrr": 0.0, "queries": 0}
    metrics = {f"recall@{k}": sum(1 for r in ranks if r is not None and r <= k) / len(ranks) for k in ks}
    metrics["mrr"] = sum(1.0 / r for r in ranks if r is not None) / len(ranks)
    metrics["queries"] = len(ranks)
    return metrics


def answer_rates(top1: np.ndarray, in_domain: np.ndarray, threshold: float) -> dict[str, float]:
    """Precision, recall and F1 of 'answered' (top-1 score >= threshold) against 'should be answered'."""
    answered = top1 >= threshold
    true_pos = int(np.sum(answered & in_domain))
    precision = true_pos / int(answered.sum()) if answered.any() else 1.0
    recall = true_pos / int(in_domain.sum()) if in_domain.any() else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    out_domain = ~in_domain
    return {
        "threshold": float(threshold),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "in_domain_refused": float(np.mean(~answered[in_domain])) if in_domain.any() else 0.0,
        "out_of_domain_caught": float(np.mean(~answered[out_domain])) if out_domain.any() else 0.0,
    }


def expected_calibration_error(confidence: Sequence[float], right: Sequence[bool], bins: int = 10) -> float:
    """Mean gap between confidence and accuracy over equal-width confidence bins, weighted by bin size."""
    confidence, right = np.asarray(confidence, dtype=float), np.asarray(right, dtype=float)
    if not len(confidence):
        return 0.0
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    return float(sum(abs(confidence[which == b].mean() - right[which == b].mean()) * np.sum(which == b)
                     for b in range(bins) if np.any(which == b)) / len(confidence))


def reliability(confidence: Sequence[float], right: Sequence[bool], bins: int = 10) -> list[dict[str, float]]:
    """Per equal-width confidence bin: queries, mean confidence, share right (a reliability diagram)."""
    confidence, right = np.asarray(confidence, dtype=float), np.asarray(right, dtype=float)
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    return [{"low": b / bins, "high": (b + 1) / bins, "queries": int(np.sum(which == b)),
             "confidence": float(confidence[which == b].mean()), "accuracy": float(right[which == b].mean())}
            for b in range(bins) if np.any(which == b)]


def decision_metrics(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """What the decisions did, as shares of all queries unless named otherwise.

    ``answered_right``: decision ``answer`` with the right entry first. ``confident_wrong``:
    decision ``answer`` with a wrong entry first, or for a query no entry answers.
    ``refused_when_absent``: of the queries no entry answers, the share not answered
    (``no_match`` or ``ambiguous``). ``ece``: expected calibration error of ``confidence``
    as the chance that the first result is right (None without a judge).
    """
    right = np.array([o.labelled.faq_id is not None and o.top_id == o.labelled.faq_id for o in outcomes])
    answered = np.array([o.decision == ANSWER for o in outcomes])
    absent = np.array([o.labelled.faq_id is None for o in outcomes])
    confidences = [o.confidence for o in outcomes]
    judged = bool(outcomes) and all(c is not None for c in confidences)
    return {
        "queries": len(outcomes),
        "absent": int(absent.sum()),
        "top1": float(np.mean(right[~absent])) if (~absent).any() else 0.0,
        "answered_right": float(np.mean(answered & right)) if len(outcomes) else 0.0,
        "confident_wrong": float(np.mean(answered & ~right)) if len(outcomes) else 0.0,
        "refused_when_absent": float(np.mean(~answered[absent])) if absent.any() else 0.0,
        "ambiguous": float(np.mean([o.decision == AMBIGUOUS for o in outcomes])) if len(outcomes) else 0.0,
        "ece": expected_calibration_error(confidences, right) if judged else None,
        "reliability": reliability(confidences, right) if judged else None,
    }


def threshold_sweep(top1: np.ndarray, in_domain: np.ndarray, steps: int = 11) -> list[dict[str, float]]:
    """:func:`answer_rates` at evenly spaced thresholds across the observed top-1 scores."""
    low, high = float(np.min(top1)), float(np.max(top1))
    return [answer_rates(top1, in_domain, t) for t in np.linspace(low, high, steps)]


def _midpoints(values: np.ndarray) -> np.ndarray:
    unique = np.unique(values)
    return np.concatenate([[unique[0]], (unique[:-1] + unique[1:]) / 2, [unique[-1] + 1e-6]])


def calibrate(outcomes: Sequence[Outcome], max_refused: float = 0.05, max_flagged: float = 0.10) -> dict:
    """Recommend a no-match threshold and an ambiguity margin.

    Threshold: best separation (out-of-domain caught minus in-domain refused) among
    thresholds that refuse at most ``max_refused`` of in-domain queries. Margin: among
    answered in-domain queries, best separation of wrong top-1 from right top-1 by
    top-1 minus top-2, flagging at most ``max_flagged`` of the right ones.
    """
    top1 = np.array([o.top_scores[0] for o in outcomes])
    in_domain = np.array([o.labelled.faq_id is not None for o in outcomes])
    best_t, best_j = float(np.min(top1[in_domain])) if in_domain.any() else float(np.min(top1)), -np.inf
    for t in _midpoints(top1):
        rates = answer_rates(top1, in_domain, t)
        j = rates["out_of_domain_caught"] - rates["in_domain_refused"]
        if rates["in_domain_refused"] <= max_refused and j > best_j:
            best_t, best_j = float(t), j

    answered = [o for o in outcomes if o.labelled.faq_id is not None and o.top_scores[0] >= best_t
                and len(o.top_scores) > 1]
    gaps = np.array([o.top_scores[0] - o.top_scores[1] for o in answered])
    wrong = np.array([o.top_id != o.labelled.faq_id for o in answered])
    best_m, best_gain = 0.0, 0.0
    if wrong.any() and (~wrong).any():
        for m in _midpoints(gaps):
            flagged_right = float(np.mean(gaps[~wrong] < m))
            gain = float(np.mean(gaps[wrong] < m)) - flagged_right
            if flagged_right <= max_flagged and gain > best_gain:
                best_m, best_gain = float(m), gain
    rates = answer_rates(top1, in_domain, best_t)
    return {
        "threshold": round(best_t, 6),
        "ambiguity_margin": round(best_m, 6),
        "labelled_queries": len(outcomes),
        "in_domain_refused": round(rates["in_domain_refused"], 4),
        "out_of_domain_caught": round(rates["out_of_domain_caught"], 4),
    }


def cross_validated(outcomes: Sequence[Outcome], folds: int = 5, max_refused: float = 0.05,
                    max_flagged: float = 0.10) -> dict[str, float]:
    """Refusal rates of a threshold calibrated without the queries it is applied to.

    Query i falls in fold i % folds; each fold is judged by the threshold
    calibrated on the others. An honest estimate where :func:`calibrate`'s own
    rates are in-sample.
    """
    refused = caught = in_count = out_count = 0
    for fold in range(folds):
        held_out = [o for i, o in enumerate(outcomes) if i % folds == fold]
        rest = [o for i, o in enumerate(outcomes) if i % folds != fold]
        if not held_out or not any(o.labelled.faq_id for o in rest):
            continue
        threshold = calibrate(rest, max_refused, max_flagged)["threshold"]
        for o in held_out:
            below = o.top_scores[0] < threshold
            if o.labelled.faq_id is None:
                out_count += 1
                caught += below
            else:
                in_count += 1
                refused += below
    return {"folds": folds,
            "in_domain_refused": round(refused / in_count, 4) if in_count else 0.0,
            "out_of_domain_caught": round(caught / out_count, 4) if out_count else 0.0}


def report(outcomes: Sequence[Outcome]) -> dict:
    """Ranking metrics, threshold sweep and calibration for one run."""
    ranks = [o.rank for o in outcomes if o.labelled.faq_id is not None]
    top1 = np.array([o.top_scores[0] for o in outcomes])
    in_domain = np.array([o.labelled.faq_id is not None for o in outcomes])
    return {
        "ranking": ranking_metrics(ranks),
        "in_domain": int(in_domain.sum()),
        "out_of_domain": int((~in_domain).sum()),
        "sweep": threshold_sweep(top1, in_domain),
        "calibration": calibrate(outcomes),
        "cross_validated": cross_validated(outcomes),
        "decisions": decision_metrics(outcomes),
    }


def calibrate_index(index_dir: str | Path, encoder, labelled: Sequence[LabelledQuery],
                    progress: bool = True) -> dict[str, dict]:
    """Calibration of every retrieval mode on the (unpublished) index at ``index_dir``."""
    from .store import load_index
    from .scoring import MODES
    from .search import Searcher

    searcher = Searcher(load_index(index_dir), encoder)
    return {mode: calibrate(run(searcher, labelled, mode=mode, progress=progress)) for mode in MODES}
