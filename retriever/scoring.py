"""Pure scoring math: per-entry aggregation, fusion of the two legs, the answer decision."""
from __future__ import annotations

from typing import Sequence

import numpy as np

MODES = ("hybrid", "dense", "lexical")
DEFAULT_MODE = "hybrid"
# Share of lexical_score in the hybrid score. The default model's cosines sit in a
# narrow band (unrelated Chinese ~0.80, paraphrases ~0.95), so a lexical score
# spanning 0..1 must weigh little or it overrides the better leg. Picked on one
# half of the Tianchi categories and confirmed on the other (README).
LEXICAL_WEIGHT = 0.015

ANSWER, AMBIGUOUS, NO_MATCH = "answer", "ambiguous", "no_match"
DECISIONS = (ANSWER, AMBIGUOUS, NO_MATCH)


def fuse(dense: np.ndarray, lexical: np.ndarray, lexical_weight: float = LEXICAL_WEIGHT) -> np.ndarray:
    """Hybrid score: ``(1 - w) * cosine + w * lexical_score``, in the cosine's range."""
    return (1.0 - lexical_weight) * dense + lexical_weight * lexical


def best_per_entry(scores: Sequence[float], text_ids: Sequence[int], text_entry: np.ndarray,
                   top_k: int) -> list[tuple[int, float, int]]:
    """Collapse text hits to the best one per entry.

    Returns up to ``top_k`` ``(entry, score, text_id)`` tuples, best first.
    FAISS pads missing results with id -1; those are skipped.
    """
    scores, text_ids = np.asarray(scores), np.asarray(text_ids)
    if scores.dtype.kind != "f" or text_ids.dtype.kind not in "iu" or np.isnan(scores).any():
        return _best_per_entry_loop(scores, text_ids, text_entry, top_k)  # e.g. NaN: compared as the loop does
    found = text_ids >= 0
    scores, text_ids = scores[found], text_ids[found]
    entries = text_entry[text_ids]
    # Each entry's best text: the highest score, among equal scores the first listed (as the loop keeps it).
    order = np.lexsort((np.arange(len(text_ids)), -scores, entries))
    first = order[np.concatenate([[True], entries[order[1:]] != entries[order[:-1]]])] if len(order) else order
    ranked = first[np.lexsort((entries[first], -scores[first]))][:top_k]  # best first, ties by entry number
    return [(int(entries[i]), float(scores[i]), int(text_ids[i])) for i in ranked]


def _best_per_entry_loop(scores: Sequence[float], text_ids: Sequence[int], text_entry: np.ndarray,
                         top_k: int) -> list[tuple[int, float, int]]:
    """:func:`best_per_entry` one candidate at a time (the reference; it also handles NaN scores)."""
    best: dict[int, tuple[int, float, int]] = {}
    for score, text_id in zip(scores, text_ids):
        if text_id < 0:
            continue
        entry = int(text_entry[text_id])
        if entry not in best or score > best[entry][1]:
            best[entry] = (entry, float(score), int(text_id))
    return sorted(best.values(), key=lambda hit: (-hit[1], hit[0]))[:top_k]


def decide(top_scores: Sequence[float], threshold: float | None, ambiguity_margin: float | None) -> str:
    """``no_match`` below the threshold, ``ambiguous`` when the runner-up is within the margin, else ``answer``."""
    if not top_scores or (threshold is not None and top_scores[0] < threshold):
        return NO_MATCH
    if ambiguity_margin and len(top_scores) > 1 and top_scores[0] - top_scores[1] < ambiguity_margin:
        return AMBIGUOUS
    return ANSWER
