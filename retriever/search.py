"""Search: embed a query, find the nearest texts, keep the best text per FAQ entry."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .encoder import Encoder
from .errors import QueryError
from .index import FaqIndex, check_compatible, load_index
from .normalize import normalize


@dataclass(frozen=True)
class Hit:
    """One FAQ entry matching a query, through its best-matching text."""

    faq_id: str
    question: str
    answer: str
    score: float  # cosine similarity of the query and matched_text
    matched_text: str
    matched_field: str  # "question" | "paraphrase" | "answer"
    category: str | None = None
    tags: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "faq_id": self.faq_id,
            "question": self.question,
            "answer": self.answer,
            "score": round(self.score, 6),
            "matched_text": self.matched_text,
            "matched_field": self.matched_field,
            "category": self.category,
            "tags": list(self.tags),
        }


def best_per_entry(scores: Sequence[float], text_ids: Sequence[int], text_entry: np.ndarray,
                   top_k: int) -> list[tuple[int, float, int]]:
    """Collapse text hits (best first) to the best one per entry.

    Returns up to ``top_k`` ``(entry, score, text_id)`` tuples, best first.
    FAISS pads missing results with id -1; those are skipped.
    """
    best: dict[int, tuple[int, float, int]] = {}
    for score, text_id in zip(scores, text_ids):
        if text_id < 0:
            continue
        entry = int(text_entry[text_id])
        if entry not in best or score > best[entry][1]:
            best[entry] = (entry, float(score), int(text_id))
    return sorted(best.values(), key=lambda hit: (-hit[1], hit[0]))[:top_k]


class Searcher:
    """Answers queries against one loaded index with the model that built it."""

    def __init__(self, index: FaqIndex, encoder: Encoder) -> None:
        check_compatible(index.manifest, encoder, index.path)
        self.index = index
        self.encoder = encoder
        self._text_entry = index.text_entry
        # Enough text hits to be sure of the true top-k entries: every entry owns at most this many texts.
        self._texts_per_entry = int(np.bincount(self._text_entry).max()) if len(self._text_entry) else 1

    @classmethod
    def load(cls, index_path: str | Path, encoder: Encoder) -> "Searcher":
        return cls(load_index(index_path), encoder)

    def info(self) -> dict[str, Any]:
        """Facts about the served index, for health checks."""
        manifest = self.index.manifest
        return {
            "version": manifest.get("version"),
            "model": manifest.get("model"),
            "dim": manifest.get("dim"),
            "entries": manifest["counts"]["entries"],
            "vectors": manifest["counts"]["vectors"],
            "built_at": manifest.get("built_at"),
            "corpus_checksum": manifest.get("corpus_checksum"),
        }

    def search(self, query: str, top_k: int = 5) -> list[Hit]:
        """The ``top_k`` best entries for ``query``, best first."""
        return self.search_many([query], top_k)[0]

    def search_many(self, queries: Sequence[str], top_k: int = 5) -> list[list[Hit]]:
        """Like :meth:`search` for many queries, with one model call for all of them."""
        if top_k < 1:
            raise QueryError("top_k must be at least 1")
        normalised = [normalize(q) for q in queries]
        for position, text in enumerate(normalised):
            if not text:
                raise QueryError(f"query #{position + 1} is empty after normalisation")
        query_vectors = self.encoder.encode_queries(normalised)
        k = min(self.index.vectors.ntotal, top_k * self._texts_per_entry)
        scores, text_ids = self.index.vectors.search(query_vectors, k)
        return [[self._hit(entry, score, text_id)
                 for entry, score, text_id in best_per_entry(row_scores, row_ids, self._text_entry, top_k)]
                for row_scores, row_ids in zip(scores, text_ids)]

    def _hit(self, entry_number: int, score: float, text_id: int) -> Hit:
        entry = self.index.entries[entry_number]
        text = self.index.texts[text_id]
        return Hit(entry.id, entry.question, entry.answer, score, text.text, text.field,
                   entry.category, entry.tags)
