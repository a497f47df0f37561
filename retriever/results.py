"""Typed search results and the one place where their JSON shapes are derived.

The HTTP API, the CLI and batch classification all serialise through these
methods; the OpenAPI response models are checked against them in the tests.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Sequence

from .markup import plain_text
from .scoring import ANSWER, NO_MATCH

# What a hit is to its query (the ``role`` of its metadata): the answer of an ``answer`` decision, a
# runner-up of one, a "did you mean" suggestion (ambiguous / no_match), or a candidate only ranked.
ANSWER_ROLE, ALTERNATIVE, SUGGESTION, CANDIDATE = "answer", "alternative", "suggestion", "candidate"
ROLES = (ANSWER_ROLE, ALTERNATIVE, SUGGESTION, CANDIDATE)
MAX_SUGGESTIONS = 3


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


# The same few hundred answers are shown again and again: converted once each.
answer_text = lru_cache(maxsize=4096)(plain_text)


@dataclass(frozen=True)
class Hit:
    """One FAQ entry matching a query, through its best-matching text."""

    faq_id: str
    question: str
    answer: str
    score: float  # what ranks: cosine (dense), lexical_score (lexical) or their fusion (hybrid)
    matched_text: str
    matched_field: str  # "question" | "paraphrase" | "answer"
    category: str | None = None
    tags: tuple[str, ...] = ()
    dense_score: float | None = None  # cosine of query and matched_text
    lexical_score: float | None = None  # BM25 share of the query's IDF found in matched_text
    # The judge's calibrated chance that this entry answers the query (None: not judged).
    confidence: float | None = None
    # Set when the query is closer to one of the entry's negative examples than to its questions:
    # that example. Such an entry is listed but never given as the answer.
    negative_example: str | None = None

    def metadata(self, role: str) -> dict[str, Any]:
        """What a retriever framework (LangChain, LlamaIndex, Dify) keeps beside the text: entry, labels, role."""
        return {"faq_id": self.faq_id, "question": self.question, "category": self.category,
                "tags": list(self.tags), "matched_field": self.matched_field, "role": role}

    @property
    def answer_text(self) -> str:
        """The answer without markup, URLs kept (retriever/markup.py): for channels that cannot show links."""
        return answer_text(self.answer)

    def to_dict(self, role: str = CANDIDATE) -> dict[str, Any]:
        return {
            "faq_id": self.faq_id,
            "question": self.question,
            "answer": self.answer,
            "answer_text": self.answer_text,
            "score": _rounded(self.score),
            "dense_score": _rounded(self.dense_score),
            "lexical_score": _rounded(self.lexical_score),
            "confidence": _rounded(self.confidence),
            "negative_example": self.negative_example,
            "matched_text": self.matched_text,
            "matched_field": self.matched_field,
            "category": self.category,
            "tags": list(self.tags),
            "metadata": self.metadata(role),
        }


@dataclass(frozen=True)
class Suggestion:
    """A "did you mean" entry: its id and standard question, for a link that asks that question."""

    faq_id: str
    question: str

    def to_dict(self) -> dict[str, str]:
        return {"faq_id": self.faq_id, "question": self.question}


def suggestions_for(decision: str, hits: Sequence[Hit], close_score: float | None) -> list[Suggestion]:
    """Up to three entries to offer instead of an answer: none for ``answer``.

    ``ambiguous``: the first hit and the runners-up that are close too; ``no_match``: the hits
    whose cosine (dense_score, or score without one) reaches ``close_score`` — None: the index
    gives no such level, so a no_match has none. A hit the query is closer to a negative example
    of is never offered.
    """
    if decision == ANSWER:
        return []
    if close_score is None and decision == NO_MATCH:
        return []

    def close(position: int, hit: Hit) -> bool:
        if hit.negative_example is not None:
            return False
        if position == 0 and decision != NO_MATCH:
            return True  # the ambiguous query's first hit passed the threshold already
        similarity = hit.dense_score if hit.dense_score is not None else hit.score
        return close_score is not None and similarity >= close_score

    chosen = [hit for position, hit in enumerate(hits) if close(position, hit)]
    return [Suggestion(hit.faq_id, hit.question) for hit in chosen[:MAX_SUGGESTIONS]]


@dataclass(frozen=True)
class SearchResult:
    query: str
    mode: str
    hits: list[Hit]  # best first, at most top_k
    decision: str  # "answer" | "ambiguous" | "no_match"
    threshold: float | None  # score below which the decision is no_match (None: not calibrated)
    margin: float | None  # top-1 minus top-2 score (None with fewer than two entries)
    ambiguity_margin: float | None
    # The judge's calibrated chance that the first hit is the right answer, and the confidence
    # under which the decision is no_match (None: an index without a judge, or a threshold override).
    confidence: float | None = None
    confidence_threshold: float | None = None
    # Which path of a cascade answered: "fast" (the fast model alone, an answer) or "full" (the
    # model that built the index, hybrid, judge); "full" for an index without a fast model.
    path: str = "full"
    # "Did you mean": entries to offer when the decision is ambiguous or no_match (suggestions_for).
    suggestions: list[Suggestion] = field(default_factory=list)

    def role(self, position: int) -> str:
        """What the hit at ``position`` is to this query (one of :data:`ROLES`); runners-up are never the answer."""
        hit = self.hits[position]
        if self.decision == ANSWER:
            return ANSWER_ROLE if position == 0 else ALTERNATIVE
        if any(s.faq_id == hit.faq_id for s in self.suggestions):
            return SUGGESTION
        return CANDIDATE

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of a search result (HTTP API and CLI)."""
        return {
            "query": self.query,
            "mode": self.mode,
            "decision": self.decision,
            "threshold": _rounded(self.threshold),
            "margin": _rounded(self.margin),
            "ambiguity_margin": _rounded(self.ambiguity_margin),
            "confidence": _rounded(self.confidence),
            "confidence_threshold": _rounded(self.confidence_threshold),
            "path": self.path,
            "results": [hit.to_dict(self.role(i)) for i, hit in enumerate(self.hits)],
            "suggestions": [s.to_dict() for s in self.suggestions],
        }

    def classification(self) -> dict[str, Any]:
        """What a batch consumer needs: the entry (or null), score, margin, runner-up."""
        top = self.hits[0] if self.hits else None
        runner_up = self.hits[1] if len(self.hits) > 1 else None
        answered = top is not None and self.decision != NO_MATCH
        return {
            "decision": self.decision,
            "faq_id": top.faq_id if answered else None,
            "question": top.question if answered else None,
            "score": _rounded(top.score) if top else None,
            "confidence": _rounded(self.confidence),
            "margin": _rounded(self.margin),
            "top_faq_id": top.faq_id if top else None,
            "runner_up_faq_id": runner_up.faq_id if runner_up else None,
            "runner_up_score": _rounded(runner_up.score) if runner_up else None,
            "path": self.path,
            "suggestions": [s.to_dict() for s in self.suggestions],
        }
