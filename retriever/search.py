"""Search: embed and tokenise a query, score texts, keep the best text per FAQ entry, decide.

An index built with a fast model (``build --fast-model``) is searched as a cascade: the fast
model ranks first and answers when its gate (retriever/cascade.py) lets it; every other query
goes to the full path, which is the search of an index without a fast model.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from pathlib import Path
from typing import Any, Callable, Sequence

import faiss
import numpy as np

from .cascade import FAST, FastGate, FastRanking
from .encoders import Encoder, EncoderCache
from .errors import EncoderError, IndexLoadError, QueryError
from .filters import EntryFilter
from .store import FaqIndex, check_compatible, check_fast_compatible, load_index
from .store.ann import apply_search_threads, describe as describe_vector_index, exact_vectors, search_vectors
from .store.load import shared_part
from .lexical import LexicalIndex, Tokenizer
from .normalize import normalize
from .judge import FEATURES, JUDGED, Candidate, MemoryCosines, JudgeContext, LeftOut, Verdict, candidate_features, closer_to_negatives
from .results import Hit, SearchResult, suggestions_for
from .scoring import ANSWER, DEFAULT_MODE, LEXICAL_WEIGHT, MODES, NO_MATCH, best_per_entry, decide, fuse
from .validity import Clock, ValiditySchedule, zone_clock

# Lexical candidates taken per query in hybrid mode, beside the dense ones.
LEXICAL_CANDIDATES = 50
JUDGED_MODE = "hybrid"  # the judge is trained on, and applies to, hybrid candidates
# Fast models, one per process, shared by every collection and reload. One thread each: the fast
# model runs one text per call (retriever/encoders/use_m3.py), too small a job to split.
_FAST_MODELS = EncoderCache(threads=1)


def shared_fast_model(source: str) -> Encoder:
    """The process's fast model ``source`` (``"use-m3"``), loaded on first use."""
    return _FAST_MODELS.get(source)


# "Did you mean" under the threshold: a query is close to an entry when their cosine reaches what
# the FAQ's own entries reach with one another. Per entry, the best cosine of its standard question
# to a text of another entry; the level is the 10th percentile of those (9 entries in 10 have a
# neighbour this close). Derived from the index, so it holds without labelled queries. Measured
# (python -m benchmarks.suggestions): seed corpus 0.926, its out-of-domain queries 0.84-0.92 get none,
# the 注销 near-domain ones do; Tianchi 0.936, off-topic queries at most 0.905.
NEIGHBOUR_PERCENTILE = 10
NEIGHBOUR_SAMPLE = 256  # entries measured (evenly spaced): the level of a large FAQ at a bounded cost


def neighbour_similarity(vectors: faiss.Index, text_entry: np.ndarray, question_rows: np.ndarray,
                         texts_per_entry: int) -> float | None:
    """The cosine at which this FAQ's entries resemble one another (see NEIGHBOUR_PERCENTILE).

    ``question_rows``: the vector row of each entry's standard question. None with fewer than two entries.
    """
    if len(question_rows) < 2:
        return None
    sample = question_rows[np.unique(np.linspace(0, len(question_rows) - 1, NEIGHBOUR_SAMPLE).astype(np.int64))]
    queries = np.ascontiguousarray(vectors.reconstruct_batch(sample), dtype=np.float32)
    # One text more than any entry owns: at least one result belongs to another entry.
    scores, ids = vectors.search(queries, min(vectors.ntotal, texts_per_entry + 1))
    nearest = [max(score for score, text in zip(row_scores, row_ids)
                   if text >= 0 and text_entry[text] != text_entry[row])
               for row, row_scores, row_ids in zip(sample, scores, ids)]
    return float(np.percentile(nearest, NEIGHBOUR_PERCENTILE))


def _top_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` highest scores, in no particular order (linear time; ranking comes later)."""
    if k >= len(scores):
        return np.arange(len(scores))
    return np.argpartition(-scores, k - 1)[:k]


class Searcher:
    """Answers queries against one loaded index with the model that built it."""

    def __init__(self, index: FaqIndex, encoder: Encoder, mode: str | None = None,
                 lexical_weight: float = LEXICAL_WEIGHT, *, cascade: bool = True,
                 load_fast: Callable[[str], Encoder] = shared_fast_model, gate: FastGate | None = None,
                 clock: Clock | None = None, tokenizer: Tokenizer | None = None) -> None:
        """``cascade`` False: the full path only, even for an index with a fast model. ``load_fast``
        gives the fast model by its source name; ``gate`` replaces the one calibrated at build time.
        ``clock`` gives today's date for the entries' validity dates (default: the system's, Asia/Shanghai).
        ``tokenizer`` replaces the index's own (the draft's remembers tokens: retriever/editorial/draft.py)."""
        check_compatible(index.manifest, encoder, index.path)
        self.clock = clock or zone_clock()
        self.validity = ValiditySchedule.of_entries(index.entries)
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
        self._own_tokenizer = tokenizer is None  # then BM25 and the judge's lookups are the index's own
        tokenizer = tokenizer or Tokenizer.from_config(index.manifest.get("lexical", {}).get("tokenizer", {}))
        self.lexical = self._derived("lexical", lambda: LexicalIndex([t.norm for t in index.texts], tokenizer))
        self.judge = index.judge
        self._judge_context: JudgeContext | None = None
        self._memory: faiss.Index | None = None  # the labelled queries, for the judge
        if self.judge is not None or index.negatives:
            self.judge_context  # built now, so that no query pays for it
        self.fast_encoder, self.fast_gate = self._fast_path(cascade, load_fast, gate)
        # The fast path never answers with an entry that has negative examples: only the full path checks them.
        self._guarded_entries = frozenset(entry for entry, _, _ in index.negatives)
        # Exact vectors: the level needs, per sampled question, a text of another entry among the results.
        self.close_similarity = self._derived("close_similarity", lambda: neighbour_similarity(
            exact_vectors(index.vectors), self._text_entry, self._question_rows(), self._texts_per_entry))

    def _derived(self, name: str, make: Callable[[], Any]) -> Any:
        """``make()``, or for an index the server's master preloaded, the one it made before the fork (shared
        by every worker, store/load.py ``shared_part``)."""
        return shared_part(self.index, name, make) if self._own_tokenizer else make()

    def _fast_path(self, cascade: bool, load_fast: Callable[[str], Encoder], gate: FastGate | None):
        """The fast model and its gate (None, None: no cascade). The model without a gate only ranks."""
        fast_model = self.index.manifest.get("fast_model")
        if not cascade or not fast_model or self.index.fast_vectors is None:
            return None, None
        try:
            fast_encoder = load_fast(fast_model.get("model_source"))
        except EncoderError as exc:
            raise IndexLoadError(f"{self.index.path}: this index answers with its fast model "
                                 f"'{fast_model.get('model_source')}' first, and it cannot be loaded: {exc}") from None
        check_fast_compatible(self.index.manifest, fast_encoder, self.index.path)
        if gate is None and self.index.manifest.get("fast_path"):
            gate = FastGate.from_dict(self.index.manifest["fast_path"])
        return fast_encoder, gate

    def _question_rows(self) -> np.ndarray:
        """The vector row of each entry's standard question (its first text)."""
        rows = [t for t, text in enumerate(self.index.texts) if text.field == "question"]
        return np.asarray(rows, dtype=np.int64)

    def _suggestions(self, decision: str, hits: list[Hit], mode: str):
        """Suggestions for a full-path result (cosine levels do not apply to lexical scores)."""
        return suggestions_for(decision, hits, self.close_similarity if mode != "lexical" else None)

    @property
    def cascade(self) -> bool:
        """Whether queries go to the fast model first (not with a gate that lets nothing through)."""
        return self.fast_encoder is not None and self.fast_gate is not None and math.isfinite(self.fast_gate.margin)

    def without_judge(self) -> "Searcher":
        """The same index and model deciding by the score threshold alone (as before the judge)."""
        return Searcher(dataclasses.replace(self.index, judge=None), self.encoder, self.mode, self.lexical_weight,
                        cascade=self.cascade, load_fast=lambda _: self.fast_encoder, gate=self.fast_gate,
                        clock=self.clock)

    @property
    def text_entry(self) -> np.ndarray:
        """The entry number of every indexed text."""
        return self._text_entry

    @property
    def texts_per_entry(self) -> int:
        """The most texts any entry owns."""
        return self._texts_per_entry

    @property
    def judge_context(self) -> JudgeContext:
        """The judge's per-index lookups (entry vocabularies, IDF, negative examples)."""
        if self._judge_context is None:
            self._judge_context = self._derived("judge_context", lambda: JudgeContext(
                self.index.texts, len(self.index.entries), self.lexical.tokenizer,
                [(entry, norm) for entry, _, norm in self.index.negatives], self.index.labelled))
        return self._judge_context

    @classmethod
    def load(cls, index_path: str | Path, encoder: Encoder, mode: str | None = None, **cascade: Any) -> "Searcher":
        """The index at ``index_path``; ``cascade``: the keyword options of the constructor (cascade, load_fast)."""
        return cls(load_index(index_path), encoder, mode, **cascade)

    @property
    def version(self) -> str:
        return self.index.manifest.get("version", "")

    @functools.cached_property
    def entry_ids(self) -> frozenset[str]:
        """The ids of the entries this index holds."""
        return frozenset(entry.id for entry in self.index.entries)

    def validity_epoch(self) -> int:
        """Which stretch between the corpus's date boundaries today is in: answers change only with it
        (an answer cache keys on it; 0 for a corpus without dates)."""
        return self.validity.epoch(self.clock()) if self.validity.dated else 0

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
            # How no_match was learned: labelled queries, the corpus itself, or both (with the counts).
            "calibration_source": manifest.get("calibration_source"),
            "judge": self.index.manifest.get("judge") if self.judge is not None else None,
            "fast_model": manifest["fast_model"].get("model") if self.cascade else None,
            "fast_path": self.fast_gate.to_dict() if self.cascade else None,
            "vector_index": describe_vector_index(manifest),  # flat or HNSW, its recall, FAISS threads
        }

    def search(self, query: str, top_k: int = 5, *, mode: str | None = None, threshold: float | None = None,
               entry_filter: EntryFilter | None = None) -> SearchResult:
        """The ``top_k`` best entries for ``query``, best first, and the answer decision."""
        return self.search_many([query], top_k, mode=mode, threshold=threshold, entry_filter=entry_filter)[0]

    def search_many(self, queries: Sequence[str], top_k: int = 5, *, mode: str | None = None,
                    threshold: float | None = None, entry_filter: EntryFilter | None = None) -> list[SearchResult]:
        """Like :meth:`search` for many queries, with one model call for all of them.

        ``threshold`` overrides the calibrated no-match threshold. ``entry_filter`` keeps only the
        entries it accepts: ranking, top-k and the decision are computed among them alone.
        With a cascade, the fast model ranks every query in ``mode`` hybrid (no threshold override,
        no filter) first; the full path then runs once for the queries its gate did not let through.
        """
        mode = mode or self.mode
        normalised = self._checked(queries, mode, top_k)
        apply_search_threads()  # FAISS's thread count is per thread: this request thread gets the service's
        today = self.clock()  # one day for the whole call: a batch straddling midnight is answered alike
        fast = self._fast_answers(queries, normalised, mode, top_k, today) \
            if self.cascade and mode == JUDGED_MODE and threshold is None and entry_filter is None \
            else [None] * len(queries)
        rest = [i for i, result in enumerate(fast) if result is None]
        if not rest:
            return fast
        full = iter(self._full_search([queries[i] for i in rest], [normalised[i] for i in rest], top_k, mode,
                                      threshold, entry_filter, today))
        return [result if result is not None else next(full) for result in fast]

    @staticmethod
    def _checked(queries: Sequence[str], mode: str, top_k: int) -> list[str]:
        """The normalised queries, or a QueryError saying what is wrong with the request."""
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
        return normalised

    def _fast_answers(self, queries: Sequence[str], normalised: list[str], mode: str,
                      top_k: int, today) -> list[SearchResult | None]:
        """The fast path's result for every query its gate lets through; None for the others.

        A ranking that involves an entry outside its dates goes to the full path, which masks it out first."""
        rankings = self.fast_rankings(self.fast_encoder.encode_queries(normalised), max(top_k, 2))
        gate, kept = self.fast_gate, self.validity.kept(today)
        return [SearchResult(query=query, mode=mode, decision=ANSWER, threshold=gate.floor, margin=ranking.margin,
                             ambiguity_margin=gate.margin, path=FAST,
                             hits=[self._hit(entry, score, text_id, score, None, today=today)
                                   for entry, score, text_id in ranking.top[:top_k]])
                if gate.passes(ranking) and ranking.top[0][0] not in self._guarded_entries
                and (kept is None or all(kept[entry] for entry, _, _ in ranking.top[:max(top_k, 2)])) else None
                for query, ranking in zip(queries, rankings)]

    def fast_rankings(self, vectors: np.ndarray, depth: int,
                      exclude: Sequence[int] | None = None) -> list[FastRanking]:
        """The fast model's best ``depth`` entries for each query vector (from its own vectors of the texts).

        ``exclude[i]``: a text id query ``i`` must not match (a paraphrase searched as a query).
        """
        fast_vectors = self.index.fast_vectors
        k = min(fast_vectors.ntotal, depth * self._texts_per_entry + (exclude is not None))
        if k == 0 or not len(vectors):
            return [FastRanking([]) for _ in vectors]
        scores, ids = fast_vectors.search(np.ascontiguousarray(vectors, dtype=np.float32), k)
        rankings = []
        for row, (row_scores, row_ids) in enumerate(zip(scores, ids)):
            if exclude is not None:
                kept = row_ids != exclude[row]
                row_scores, row_ids = row_scores[kept], row_ids[kept]
            rankings.append(FastRanking(best_per_entry(row_scores, row_ids, self._text_entry, depth)))
        return rankings

    def _full_search(self, queries: Sequence[str], normalised: list[str], top_k: int, mode: str,
                     threshold: float | None, entry_filter: EntryFilter | None, today) -> list[SearchResult]:
        """The search of an index without a fast model: hybrid (or the mode asked), judge, decision."""
        calibration = self.calibration(mode)
        judging = self.judge is not None and mode == JUDGED_MODE and threshold is None
        threshold = calibration.get("threshold") if threshold is None else threshold
        ambiguity_margin = calibration.get("ambiguity_margin")
        depth = max(top_k, 2)  # the runner-up is needed for the margin
        if mode == JUDGED_MODE and (self.judge is not None or self.index.negatives):
            depth = max(depth, self.judge.judged if self.judge else JUDGED)
        results = []
        for query, text, (text_ids, score, dense, lexical, vector) in zip(
                queries, normalised, self._score(normalised, mode, depth, self._left_out(entry_filter, today))):
            top = best_per_entry(score, text_ids, self._text_entry, depth)
            position = {int(t): i for i, t in enumerate(text_ids)}
            verdict = self._verdict(text, vector, top, text_ids, dense, lexical) \
                if mode == JUDGED_MODE and self._judge_context is not None and top else None
            hits = [self._hit(entry, value, text_id,
                              None if dense is None else float(dense[position[text_id]]),
                              None if lexical is None else float(lexical[position[text_id]]),
                              *(verdict.marks(i) if verdict else (None, None)), today=today)
                    for i, (entry, value, text_id) in enumerate(top)]
            if verdict is not None:
                hits = [hits[i] for i in verdict.order]
            scores = [h.score for h in hits]
            margin = scores[0] - scores[1] if len(scores) > 1 else None
            if judging and verdict is not None:
                decision = verdict.decision(self.judge, scores[0]) if scores else NO_MATCH
            else:
                decision = decide(scores, threshold, ambiguity_margin)
            if hits and hits[0].negative_example is not None:
                decision = NO_MATCH  # never answer with an entry the query is closer to a negative of
            results.append(SearchResult(
                query=query, mode=mode, hits=hits[:top_k], decision=decision, threshold=threshold, margin=margin,
                ambiguity_margin=ambiguity_margin, confidence=verdict.confidence if judging and verdict else None,
                confidence_threshold=self.judge.threshold if judging else None,
                suggestions=self._suggestions(decision, hits, mode)))
        return results

    def _verdict(self, text: str, vector: np.ndarray, top: list[tuple[int, float, int]], text_ids: np.ndarray,
                 dense: np.ndarray, lexical: np.ndarray) -> Verdict:
        """What the judge makes of the first candidates (and which of them are closer to a negative)."""
        judged = top[:self.judge.judged if self.judge else JUDGED]
        candidates = [Candidate(entry, value, text_id) for entry, value, text_id in judged]
        features, closest = self.judge_features(text, vector, candidates, text_ids, dense, lexical)
        blocked = closer_to_negatives(features)
        negatives = [self.index.negatives[row][1] if row is not None and flag else None
                     for row, flag in zip(closest, blocked)]
        if self.judge is None:
            return Verdict(list(range(len(top))), None, negatives, None)
        probabilities = np.where(blocked, 0.0, self.judge.probabilities(features))
        order = self.judge.order(features, probabilities) + list(range(len(judged), len(top)))
        return Verdict(order, probabilities, negatives, self.judge.confidence(probabilities))

    def judge_features(self, text: str, vector: np.ndarray, candidates: list[Candidate], text_ids: np.ndarray,
                       dense: np.ndarray, lexical: np.ndarray, left_out: LeftOut | None = None,
                       left_out_negative: int | None = None):
        """Judge features of ``candidates`` and, per candidate, the row of its closest negative example.

        ``text_ids``/``dense``/``lexical`` are the query's scored texts. For the judge's
        training, ``left_out`` says what to treat as not indexed and ``left_out_negative``
        is a negative example that must not count as one.
        """
        context = self.judge_context
        if not candidates:
            return np.zeros((0, len(FEATURES))), []
        query = context.query_view(text)
        dense_all = np.full(len(self.index.texts), np.nan)
        lexical_all = np.full(len(self.index.texts), np.nan)
        dense_all[text_ids], lexical_all[text_ids] = dense, lexical
        nearest, closest = [], []
        for candidate in candidates:
            rows = context.negatives_about(candidate.entry, query)
            if left_out_negative is not None:
                rows = rows[rows != left_out_negative]
            if not len(rows):
                nearest.append(None)
                closest.append(None)
                continue
            cosines = self.index.negative_vectors[rows] @ vector
            best = int(np.argmax(cosines))
            nearest.append(float(cosines[best]))
            closest.append(int(rows[best]))
        features = candidate_features(context, query, candidates, dense_all, lexical_all, nearest,
                                      self._memory_cosines(vector), left_out)
        return features, closest

    def _memory_cosines(self, vector: np.ndarray) -> MemoryCosines | None:
        """Cosine of the query to every labelled query the index keeps, closest first (None: it keeps none).

        Through a flat FAISS index: for one query it is a plain loop, where a BLAS product of a
        few thousand rows starts its threads and cost 5 ms a search on 2 busy cores (measured).
        """
        vectors = self.index.labelled_vectors
        if vectors is None or not len(vectors):
            return None
        if self._memory is None or self._memory.ntotal != len(vectors):
            self._memory = faiss.IndexFlatIP(vectors.shape[1])
            self._memory.add(np.ascontiguousarray(vectors, dtype=np.float32))
        scores, rows = self._memory.search(np.ascontiguousarray(vector, dtype=np.float32)[None, :], len(vectors))
        return MemoryCosines(scores[0].astype(np.float64), rows[0])

    def _left_out(self, entry_filter: EntryFilter | None, today) -> np.ndarray | None:
        """Per text, whether its entry is out: excluded by ``entry_filter`` or outside its dates on ``today``
        (None: every text is in). The date mask is cached per date interval (retriever/validity.py)."""
        valid = self.validity.kept(today)
        if entry_filter is None and valid is None:
            return None
        kept = np.ones(len(self.index.entries), dtype=bool) if valid is None else valid.copy()
        if entry_filter is not None:
            kept &= np.fromiter((bool(entry_filter(e)) for e in self.index.entries), dtype=bool,
                                count=len(self.index.entries))
        return ~kept[self._text_entry]

    def _lexical_scores(self, text: str, left_out: np.ndarray | None) -> np.ndarray:
        scores = self.lexical.scores(text)
        if left_out is not None:
            scores = np.where(left_out, -1.0, scores).astype(np.float32)  # below any kept text's score
        return scores

    def _dense_search(self, query_vectors: np.ndarray, k: int, left_out: np.ndarray | None):
        """FAISS top ``k`` texts per query, among the kept texts only (never a filtered top-k; store/ann.py)."""
        return search_vectors(self.index.vectors, query_vectors, k, left_out)

    def _score(self, normalised: list[str], mode: str, depth: int, left_out: np.ndarray | None = None):
        """Per query: candidate text ids, their (ranking, dense, lexical) scores, and the query vector.

        ``left_out`` (a mask over texts) leaves texts out as if they were not indexed.
        """
        available = self.index.vectors.ntotal if left_out is None else int((~left_out).sum())
        k = min(available, depth * self._texts_per_entry)
        if k == 0:  # a filter that keeps nothing: nothing to rank
            empty = np.zeros(0, dtype=np.int64)
            return [(empty, np.zeros(0), np.zeros(0), np.zeros(0), None) for _ in normalised]
        if mode == "lexical":
            out = []
            for text in normalised:
                lexical = self._lexical_scores(text, left_out)
                ids = _top_indices(lexical, k)
                out.append((ids, lexical[ids], None, lexical[ids], None))
            return out
        query_vectors = self.encoder.encode_queries(normalised)
        dense_scores, dense_ids = self._dense_search(query_vectors, k, left_out)
        if mode == "dense":
            return [(ids, scores, scores, None, vector)
                    for scores, ids, vector in zip(dense_scores, dense_ids, query_vectors)]
        return [(*self.hybrid_candidates(vector, ids, self._lexical_scores(text, left_out), k, left_out), vector)
                for vector, ids, text in zip(query_vectors, dense_ids, normalised)]

    def hybrid_candidates(self, vector: np.ndarray, dense_ids: np.ndarray, lexical_all: np.ndarray, k: int,
                          left_out: np.ndarray | None = None):
        """Every text of the entries among the dense top ids and the lexical top; their fused, dense, lexical scores.

        ``left_out`` (a mask over texts, for the judge's training) drops texts as if they were not indexed.
        """
        lexical_top = _top_indices(lexical_all, max(k, LEXICAL_CANDIDATES))
        if left_out is not None:
            lexical_top = lexical_top[~left_out[lexical_top]]
        # Every text of every candidate entry, so each entry's best text is really found.
        entries = np.unique(self._text_entry[np.concatenate([dense_ids[dense_ids >= 0], lexical_top])])
        candidates = self._texts_of(entries)
        if left_out is not None:
            candidates = candidates[~left_out[candidates]]
        dense = self.index.vectors.reconstruct_batch(candidates) @ vector if len(candidates) else np.zeros(0)
        lexical = lexical_all[candidates]
        return candidates, fuse(dense, lexical, self.lexical_weight), dense, lexical

    def _texts_of(self, entries: np.ndarray) -> np.ndarray:
        """The text ids of ``entries`` (ascending entry numbers), entry by entry: each entry's texts are
        one run from ``_entry_starts``, so the runs are laid end to end without a loop over the entries."""
        starts = self._entry_starts[entries]
        counts = self._entry_starts[entries + 1] - starts
        run_offsets = np.cumsum(counts) - counts  # where each entry's run starts in the result
        return np.repeat(starts - run_offsets, counts) + np.arange(int(counts.sum()), dtype=np.int64)

    def _hit(self, entry_number: int, score: float, text_id: int, dense: float | None,
             lexical: float | None, confidence: float | None = None, negative_example: str | None = None, *,
             today) -> Hit:
        entry = self.index.entries[entry_number]
        text = self.index.texts[text_id]
        answer = self.validity.answer(entry_number, entry.answer, today)  # the version in force today
        return Hit(entry.id, entry.question, answer, score, text.text, text.field,
                   entry.category, entry.tags, dense, lexical, confidence, negative_example)
