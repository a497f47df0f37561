"""Search: embed and tokenise a query, score texts, keep the best text per FAQ entry, decide."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .encoders import Encoder
from .errors import QueryError
from .store import FaqIndex, check_compatible, load_index
from .lexical import LexicalIndex, Tokenizer
from .normalize import normalize
from .results import Hit, SearchResult
from .scoring import DEFAULT_MODE, LEXICAL_WEIGHT, MODES, best_per_entry, decide, fuse

# Lexical candidates taken per query in hybrid mode, beside the dense ones.
LEXICAL_CANDIDATES = 50


def _top_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` highest scores, in no particular order (linear time; ranking comes later)."""
    if k >= len(scores):
        return np.arange(len(scores))
    return np.argpartition(-scores, k - 1)[:k]


class Searcher:
    """Answers queries against one loaded index with the model that built it."""

    def __init__(self, index: FaqIndex, encoder: Encoder, mode: str | None = None,
                 lexical_weight: float = LEXICAL_WEIGHT) -> None:
        check_compatible(index.manifest, encoder, index.path)
        self.index = index
        self.encoder = encoder
        self.mode = mode or index.manifest.get("default_mode", DEFAULT_MODE)
        self.lexical_weight = lexical_weight
        if self.mode not in MODES:
            raise QueryError(f"unknown mode '{self.mode}'; use one of {', '.join(MODES)}")
        self._text_entry = index.text_entry
        # Enough text hits to be sure of the true top-k entries: every entry owns at most this many texts.
        self._texts_per_entry = int(np.bincount(self._text_entry).max()) if len(self._text_entry) else 1
        # Texts are stored entry by entry: entry e owns texts [starts[e], starts[e + 1]).
        self._entry_starts = np.searchsorted(self._text_entry, np.arange(len(index.entries) + 1))
        tokenizer = Tokenizer.from_config(index.manifest.get("lexical", {}).get("tokenizer", {}))
        self.lexical = LexicalIndex([t.norm for t in index.texts], tokenizer)

    @classmethod
    def load(cls, index_path: str | Path, encoder: Encoder, mode: str | None = None) -> "Searcher":
        return cls(load_index(index_path), encoder, mode)

    @property
    def version(self) -> str:
        return self.index.manifest.get("version", "")

    def calibration(self, mode: str | None = None) -> dict[str, Any]:
        return self.index.manifest.get("calibration", {}).get(mode or self.mode, {})

    def info(self) -> dict[str, Any]:
        """Facts about the served index, for health checks."""
        manifest = self.index.manifest
        return {
            "version": self.version,
            "model": manifest.get("model"),
            "dim": manifest.get("dim"),
            "entries": manifest["counts"]["entries"],
            "vectors": manifest["counts"]["vectors"],
            "built_at": manifest.get("built_at"),
            "corpus_checksum": manifest.get("corpus_checksum"),
            "mode": self.mode,
            "calibration": self.calibration(),
        }

    def search(self, query: str, top_k: int = 5, *, mode: str | None = None,
               threshold: float | None = None) -> SearchResult:
        """The ``top_k`` best entries for ``query``, best first, and the answer decision."""
        return self.search_many([query], top_k, mode=mode, threshold=threshold)[0]

    def search_many(self, queries: Sequence[str], top_k: int = 5, *, mode: str | None = None,
                    threshold: float | None = None) -> list[SearchResult]:
        """Like :meth:`search` for many queries, with one model call for all of them.

        ``threshold`` overrides the calibrated no-match threshold.
        """
        mode = mode or self.mode
        if mode not in MODES:
            raise QueryError(f"unknown mode '{mode}'; use one of {', '.join(MODES)}")
        if top_k < 1:
            raise QueryError("top_k must be at least 1")
        for position, query in enumerate(queries):
            try:
                query.encode("utf-8")
            except UnicodeEncodeError:
                raise QueryError(f"query #{position + 1} is not valid Unicode text "
                                 f"(bytes that were not UTF-8, or unpaired surrogates)") from None
        normalised = [normalize(q) for q in queries]
        for position, text in enumerate(normalised):
            if not text:
                raise QueryError(f"query #{position + 1} is empty after normalisation")
        calibration = self.calibration(mode)
        threshold = calibration.get("threshold") if threshold is None else threshold
        ambiguity_margin = calibration.get("ambiguity_margin")
        depth = max(top_k, 2)  # the runner-up is needed for the margin
        scored = self._score(normalised, mode, depth)
        results = []
        for query, (text_ids, score, dense, lexical) in zip(queries, scored):
            top = best_per_entry(score, text_ids, self._text_entry, depth)
            position = {int(t): i for i, t in enumerate(text_ids)}
            hits = [self._hit(entry, value, text_id,
                              None if dense is None else float(dense[position[text_id]]),
                              None if lexical is None else float(lexical[position[text_id]]))
                    for entry, value, text_id in top]
            scores = [h.score for h in hits]
            results.append(SearchResult(
                query=query, mode=mode, hits=hits[:top_k],
                decision=decide(scores, threshold, ambiguity_margin), threshold=threshold,
                margin=scores[0] - scores[1] if len(scores) > 1 else None, ambiguity_margin=ambiguity_margin))
        return results

    def _score(self, normalised: list[str], mode: str, depth: int):
        """Per query: candidate text ids and their (ranking, dense, lexical) scores."""
        k = min(self.index.vectors.ntotal, depth * self._texts_per_entry)
        if mode == "lexical":
            out = []
            for text in normalised:
                lexical = self.lexical.scores(text)
                ids = _top_indices(lexical, k)
                out.append((ids, lexical[ids], None, lexical[ids]))
            return out
        query_vectors = self.encoder.encode_queries(normalised)
        dense_scores, dense_ids = self.index.vectors.search(query_vectors, k)
        if mode == "dense":
            return [(ids, scores, scores, None) for scores, ids in zip(dense_scores, dense_ids)]
        out = []
        for vector, ids, text in zip(query_vectors, dense_ids, normalised):
            lexical_all = self.lexical.scores(text)
            lexical_top = _top_indices(lexical_all, max(k, LEXICAL_CANDIDATES))
            # Every text of every candidate entry, so each entry's best text is really found.
            entries = np.unique(self._text_entry[np.concatenate([ids[ids >= 0], lexical_top])])
            candidates = np.concatenate([np.arange(self._entry_starts[e], self._entry_starts[e + 1])
                                         for e in entries])
            dense = self.index.vectors.reconstruct_batch(candidates) @ vector
            lexical = lexical_all[candidates]
            out.append((candidates, fuse(dense, lexical, self.lexical_weight), dense, lexical))
        return out

    def _hit(self, entry_number: int, score: float, text_id: int, dense: float | None,
             lexical: float | None) -> Hit:
        entry = self.index.entries[entry_number]
        text = self.index.texts[text_id]
        return Hit(entry.id, entry.question, entry.answer, score, text.text, text.field,
                   entry.category, entry.tags, dense, lexical)
