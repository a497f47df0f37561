"""The second-stage judge: does the top entry really answer the query?

A cosine threshold cannot tell "the same question" from "the same words about another
certificate" (二级建造师怎么注销 against a 一级建造师 entry scores 0.95), so each of the first
candidates is described by features of the query and the entry — cosines to the matched
text, the standard question and the answer, lexical share, margins, character overlap, the
tokens found on one side only (with weight on levels, numbers, certificate kinds and
negation), closeness to the entry's negative examples and to the labelled queries the build
was given — and a logistic regression trained at build time (:mod:`retriever.judge_training`)
turns them into a probability. A calibration curve fitted on held-out predictions maps the
first candidate's probability to ``confidence``: the chance that the first result is right.

The judge may also reorder the first candidates: a second weight vector over the same
features, fitted listwise (which candidate of a query is the right one), ranks them when
held-out queries showed it puts the right entry first more often than the score order.

Everything here is plain numpy at query time: the models are weight vectors and the
calibration a monotone curve, stored as JSON in the index version (``judge.json``).
"""
from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .lexical import lucene_idf
from .scoring import AMBIGUOUS, ANSWER, NO_MATCH

JUDGE_FORMAT = 2  # 2: boosted trees may replace the logistic weights; a listwise ranker may reorder
READABLE_FORMATS = (1, 2)  # a format-1 judge (no ranker) still loads; a build with --if-stale retrains it
JUDGED = 5  # candidates the judge scores (and may reorder) per query
QUESTION_FIELDS = ("question", "paraphrase")  # the texts that are questions (answers are not)

# Words that change what is asked while the rest of the sentence stays the same.
_LEVEL = re.compile(r"[一二三四五六七八九十\d]+级|[一二三][建造]|初级|中级|高级|副高|正高|特级|[甲乙丙]级|[甲乙丙]类")
_LEVEL_HINT = re.compile(r"[级建造高类]")  # every match of _LEVEL holds one of these
_LEVEL_ALIASES = {"一建": "一级", "二建": "二级", "三建": "三级", "一造": "一级", "二造": "二级"}
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_NEGATION = re.compile(r"[不没未无非别勿]")
# Tokens naming a kind of certificate, profession, registration or exam (安全员, 建造师, 初始注册).
_KIND = re.compile(r"^..*(师|员|证|证书|执照|资格|注册|考试|职称)$")
_CHAR = re.compile(r"[\w]", re.UNICODE)

FEATURES = (
    "score",  # the ranking score of the entry's best text
    "dense_best",  # highest cosine to any of the entry's texts
    "dense_question",  # cosine to the standard question
    "dense_answer",  # cosine to the answer (0 when answers are not indexed)
    "dense_top3",  # mean of the entry's three best question/paraphrase cosines: support, not one lucky text
    "lexical_best",
    "gap_other",  # score minus the best other candidate's (the margin, for the first)
    "dense_gap_other",
    "rank",
    "char_cover_query",  # share of the query's characters in the matched text
    "char_cover_text",  # share of the matched text's characters in the query
    "char_cover_entry",  # share of the query's characters anywhere in the entry's questions
    "length_ratio",  # log of query length over matched-text length
    "query_only_idf",  # share of the query's IDF in tokens the entry's questions never use
    "query_unknown_idf",  # share of the query's IDF in tokens no indexed text uses
    "text_only_idf",  # share of the matched text's IDF in tokens the query lacks
    "level_query_only",  # levels (一级, 二建, 高级) the query names and none of the entry's texts do
    "level_unknown",  # levels the query names and no indexed text does
    "level_text_only",  # levels the matched text names and the query does not
    "number_query_only",
    "number_text_only",
    "kind_query_only",  # certificate / profession / registration kinds the entry's questions never name
    "kind_unknown",  # ... that no indexed text names
    "negation_query_only",
    "negation_text_only",
    "has_negatives",
    "negative_gap",  # best cosine to the entry's negatives minus best to its own questions (0 without negatives)
    # The labelled queries the build calibrated on, as memory: the closest one labelled with this
    # entry, with no entry (a question the FAQ does not answer) and with another entry; each as
    # cosine minus dense_best, character-bigram overlap with the query, and whether there is one.
    "memory_same", "memory_same_overlap", "has_memory_same",
    "memory_unanswerable", "memory_unanswerable_overlap", "has_memory_unanswerable",
    "memory_other", "memory_other_overlap", "has_memory_other",
    "nearest_is_entry",  # the single closest labelled query is labelled with this entry
    "nearest_is_unanswerable",  # ... with no entry
)


def levels(text: str) -> frozenset[str]:
    """Levels and grades in ``text``: ``二级建造师`` -> {``二级``}; ``一建`` reads as ``一级``."""
    if not _LEVEL_HINT.search(text):  # most texts: one character class is far cheaper than _LEVEL's alternatives
        return frozenset()
    return frozenset(_LEVEL_ALIASES.get(m, m) for m in _LEVEL.findall(text))


def _bigrams(text: str) -> frozenset[str]:
    return _bigrams_of(_CHAR.findall(text.lower()))


def _bigrams_of(chars: list[str]) -> frozenset[str]:
    return frozenset(map(operator.add, chars, chars[1:])) or frozenset(chars)


def _overlap(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / max(len(a | b), 1)


def _union(sets) -> frozenset:
    return frozenset().union(*sets)


@dataclass(frozen=True)
class TextView:
    """What the features need of one indexed text (or of the query)."""

    chars: frozenset[str]
    tokens: frozenset[str]
    levels: frozenset[str]
    numbers: frozenset[str]
    kinds: frozenset[str]
    negated: bool
    length: int
    bigrams: frozenset[str]

    @classmethod
    def of(cls, norm: str, tokens: Sequence[str]) -> "TextView":
        tokens = frozenset(tokens)
        chars = _CHAR.findall(norm.lower())  # once for both sets: an index has tens of thousands of texts
        return cls(frozenset(chars), tokens, levels(norm), frozenset(_NUMBER.findall(norm)),
                   frozenset(t for t in tokens if _KIND.match(t)), bool(_NEGATION.search(norm)), len(norm),
                   _bigrams_of(chars))


@dataclass(frozen=True)
class EntryWords:
    """The words of an entry's questions and paraphrases (levels: of all its texts, the answer too)."""

    chars: frozenset[str]
    tokens: frozenset[str]
    levels: frozenset[str]
    numbers: frozenset[str]

    @classmethod
    def of(cls, questions: Sequence[TextView], everything: Sequence[TextView]) -> "EntryWords":
        return cls(_union(v.chars for v in questions), _union(v.tokens for v in questions),
                   _union(v.levels for v in everything), _union(v.numbers for v in everything))


@dataclass(frozen=True)
class EntryProfile:
    """One entry as the judge sees it: which texts are its questions, what words they use."""

    text_ids: np.ndarray  # every indexed text of the entry
    question_ids: np.ndarray  # its question and paraphrases
    question_id: int
    answer_id: int  # -1 when answers are not indexed
    words: EntryWords
    negative_rows: np.ndarray  # rows of the negative-example vectors


class JudgeContext:
    """Per-index lookups for the features, built once when an index is loaded."""

    def __init__(self, texts: Sequence[Any], entry_count: int, tokenize: Callable[[str], list[str]],
                 negatives: Sequence[tuple[int, str]] = (), memory: Sequence[tuple[int, str]] = ()) -> None:
        self.tokenize = tokenize
        self.negative_views = [TextView.of(norm, tokenize(norm)) for _, norm in negatives]
        # Labelled queries: entry number (-1: no entry answers it) and character bigrams.
        self.memory_entries = np.array([entry for entry, _ in memory], dtype=np.int64)
        self.memory_bigrams = [_bigrams(text) for _, text in memory]
        self.views = [TextView.of(t.norm, tokenize(t.norm)) for t in texts]
        self.fields = [t.field for t in texts]
        self.doc_freq: dict[str, int] = {}
        for view in self.views:
            for token in view.tokens:
                self.doc_freq[token] = self.doc_freq.get(token, 0) + 1
        self.idf = {token: lucene_idf(df, len(texts)) for token, df in self.doc_freq.items()}
        self.unknown_idf = lucene_idf(0, max(len(texts), 1))
        self.level_freq: dict[str, int] = {}
        for view in self.views:
            for level in view.levels:
                self.level_freq[level] = self.level_freq.get(level, 0) + 1
        by_entry: list[list[int]] = [[] for _ in range(entry_count)]
        for i, text in enumerate(texts):
            by_entry[text.entry].append(i)
        rows_of: list[list[int]] = [[] for _ in range(entry_count)]
        for row, (entry, _) in enumerate(negatives):
            rows_of[entry].append(row)
        self.profiles = [self._profile(np.array(ids, dtype=np.int64), np.array(rows, dtype=np.int64))
                         for ids, rows in zip(by_entry, rows_of)]

    def _profile(self, ids: np.ndarray, negative_rows: np.ndarray) -> EntryProfile:
        questions = np.array([i for i in ids if self.fields[i] in QUESTION_FIELDS], dtype=np.int64)
        answers = [i for i in ids if self.fields[i] == "answer"]
        first_question = next((i for i in ids if self.fields[i] == "question"), questions[0] if len(questions) else -1)
        return EntryProfile(ids, questions, int(first_question), int(answers[0]) if answers else -1,
                            self.entry_words(questions, ids), negative_rows)

    def entry_words(self, questions: np.ndarray, ids: np.ndarray) -> EntryWords:
        return EntryWords.of([self.views[i] for i in questions], [self.views[i] for i in ids])

    def negatives_about(self, entry: int, query: TextView) -> np.ndarray:
        """Rows of ``entry``'s negative examples that could be the query's question.

        One naming a level or a certificate kind that neither the query nor the entry names
        (二级建造师… for a query about 建造师 in a 一级 entry) asks something else: the cosine
        alone cannot see that.
        """
        profile = self.profiles[entry]
        words = profile.words
        return np.array([row for row in profile.negative_rows
                         if not (self.negative_views[row].levels - query.levels - words.levels)
                         and not (self.negative_views[row].kinds - query.kinds - words.tokens)], dtype=np.int64)

    def query_view(self, norm: str) -> TextView:
        return TextView.of(norm, self.tokenize(norm))

    def idf_share(self, tokens: frozenset[str], missing: frozenset[str]) -> float:
        """Share of the IDF of ``tokens`` carried by those in ``missing``."""
        # fsum: exact, so the same in every process whatever order the set iterates in (hash seeds differ):
        # a last-bit difference here changed the judge a build trained (thresholds 0.510 vs 0.458).
        total = math.fsum(self.idf.get(t, self.unknown_idf) for t in tokens)
        return math.fsum(self.idf.get(t, self.unknown_idf) for t in missing) / total if total else 0.0


class LeftOut:
    """What the judge's training hides: texts treated as not indexed, what the index then does not
    know, a labelled query left out of the memory, and an entry whose labelled queries then count
    as unanswerable (the entry is treated as missing)."""

    def __init__(self, context: JudgeContext, mask: np.ndarray, memory_row: int | None = None,
                 missing_entry: int | None = None) -> None:
        self.mask = mask
        self.memory_row = memory_row
        self.missing_entry = missing_entry
        self.token_count: dict[str, int] = {}
        self.level_count: dict[str, int] = {}
        for i in np.flatnonzero(mask):
            for token in context.views[i].tokens:
                self.token_count[token] = self.token_count.get(token, 0) + 1
            for level in context.views[i].levels:
                self.level_count[level] = self.level_count.get(level, 0) + 1


@dataclass(frozen=True)
class MemoryCosines:
    """A query's cosines to the labelled queries, closest first."""

    cosines: np.ndarray
    rows: np.ndarray  # the labelled query of each cosine

    @classmethod
    def of(cls, cosines: np.ndarray) -> "MemoryCosines":
        order = np.argsort(-cosines, kind="stable")
        return cls(cosines[order], order)


class Memory:
    """One query against the labelled queries: the closest one per label (after what training hides)."""

    def __init__(self, context: JudgeContext, query: TextView, nearest: MemoryCosines | None,
                 left_out: LeftOut | None = None) -> None:
        self.context, self.query = context, query
        self.cosines = np.zeros(len(context.memory_entries))
        self.order = np.zeros(0, dtype=np.int64)  # rows, closest first
        if nearest is not None:
            self.cosines[nearest.rows] = nearest.cosines
            self.order = nearest.rows
        labels = context.memory_entries
        if left_out is not None and left_out.missing_entry is not None:
            labels = np.where(labels == left_out.missing_entry, -1, labels)
        if left_out is not None and left_out.memory_row is not None:
            self.order = self.order[self.order != left_out.memory_row]
        self.nearest = int(labels[self.order[0]]) if len(self.order) else -2  # -2: no memory
        # Each label's closest row, found by its first position in closeness order.
        self.labels, self.first = np.unique(labels[self.order], return_index=True)
        entries = self.labels >= 0
        two = np.argsort(self.first[entries], kind="stable")[:2]
        self.entry_order = [int(x) for x in self.labels[entries][two]]  # the two closest entries' labels

    def row_of(self, label: int) -> int | None:
        """Row of the closest labelled query with ``label``, or None."""
        at = int(np.searchsorted(self.labels, label))
        if at < len(self.labels) and self.labels[at] == label:
            return int(self.order[self.first[at]])
        return None

    def _closest(self, row: int | None, dense_best: float) -> tuple[float, float, float]:
        if row is None:
            return 0.0, 0.0, 0.0
        return (float(self.cosines[row]) - dense_best,
                _overlap(self.query.bigrams, self.context.memory_bigrams[row]), 1.0)

    def features(self, entry: int, dense_best: float) -> tuple[float, ...]:
        """Closest labelled query of ``entry``, unanswerable, of another entry; is the nearest of ``entry`` / none."""
        other = next((label for label in self.entry_order if label != entry), None)
        return (*self._closest(self.row_of(entry), dense_best), *self._closest(self.row_of(-1), dense_best),
                *self._closest(None if other is None else self.row_of(other), dense_best),
                float(self.nearest == entry), float(self.nearest == -1))


def _unknown(items: frozenset[str], freq: Mapping[str, int], left: Mapping[str, int]) -> frozenset[str]:
    return frozenset(t for t in items if freq.get(t, 0) - left.get(t, 0) <= 0)


@dataclass(frozen=True)
class Candidate:
    """One candidate entry of one query, as scored by the search."""

    entry: int
    score: float
    text_id: int  # its best text


def _best(values: np.ndarray) -> float:
    values = values[~np.isnan(values)]
    return float(values.max()) if len(values) else 0.0


def candidate_features(context: JudgeContext, query: TextView, candidates: Sequence[Candidate],
                       dense: np.ndarray, lexical: np.ndarray, negative_cos: Sequence[float | None],
                       memory_cos: MemoryCosines | None = None, left_out: LeftOut | None = None) -> np.ndarray:
    """One row of :data:`FEATURES` per candidate.

    ``dense`` and ``lexical`` hold the query's scores for every indexed text (NaN where a
    text was not scored or is left out); ``negative_cos`` the best cosine to each
    candidate's negative examples (None when it has none); ``memory_cos`` the cosines to
    the labelled queries; ``left_out`` (training) what to treat as absent.
    """
    memory = Memory(context, query, memory_cos, left_out)
    scores = np.array([c.score for c in candidates])
    dense_best = np.array([_best(dense[context.profiles[c.entry].text_ids]) for c in candidates])
    best_other_score, best_other_dense = _best_of_others(scores), _best_of_others(dense_best)
    token_left = left_out.token_count if left_out else {}
    unknown_tokens = _unknown(query.tokens, context.doc_freq, token_left)
    unknown_levels = _unknown(query.levels, context.level_freq, left_out.level_count if left_out else {})
    rows = []
    for rank, (candidate, neg) in enumerate(zip(candidates, negative_cos)):
        profile = context.profiles[candidate.entry]
        words = profile.words
        if left_out is not None and left_out.mask[profile.text_ids].any():
            keep = ~left_out.mask
            words = context.entry_words(profile.question_ids[keep[profile.question_ids]],
                                        profile.text_ids[keep[profile.text_ids]])
        text = context.views[candidate.text_id]
        question_cos = dense[profile.question_ids]
        question_cos = np.sort(question_cos[~np.isnan(question_cos)])[::-1]
        own_best = float(question_cos[0]) if len(question_cos) else dense_best[rank]
        rows.append((
            candidate.score,
            dense_best[rank],
            _value(dense, profile.question_id),
            _value(dense, profile.answer_id),
            float(question_cos[:3].mean()) if len(question_cos) else 0.0,
            _best(lexical[profile.text_ids]),
            candidate.score - best_other_score[rank],
            dense_best[rank] - best_other_dense[rank],
            float(rank),
            len(query.chars & text.chars) / max(len(query.chars), 1),
            len(query.chars & text.chars) / max(len(text.chars), 1),
            len(query.chars & words.chars) / max(len(query.chars), 1),
            math.log((query.length + 1) / (text.length + 1)),
            context.idf_share(query.tokens, query.tokens - words.tokens),
            context.idf_share(query.tokens, unknown_tokens),
            context.idf_share(text.tokens, text.tokens - query.tokens),
            float(len(query.levels - words.levels)),
            float(len(unknown_levels)),
            float(len(text.levels - query.levels)),
            float(len(query.numbers - words.numbers)),
            float(len(text.numbers - query.numbers)),
            float(len(query.kinds - words.tokens)),
            float(len(query.kinds & unknown_tokens)),
            float(query.negated and not text.negated),
            float(text.negated and not query.negated),
            float(neg is not None),
            (neg - own_best) if neg is not None else 0.0,
            *memory.features(candidate.entry, dense_best[rank]),
        ))
    return np.array(rows, dtype=np.float64).reshape(len(candidates), len(FEATURES))


def _best_of_others(values: np.ndarray) -> np.ndarray:
    """Per position, the largest of the other values (the value itself when it is alone)."""
    if len(values) < 2:
        return values.copy()
    order = np.argsort(-values, kind="stable")
    return np.where(np.arange(len(values)) == order[0], values[order[1]], values[order[0]])


def _value(scores: np.ndarray, text_id: int) -> float:
    if text_id < 0 or np.isnan(scores[text_id]):
        return 0.0
    return float(scores[text_id])


def closer_to_negatives(features: np.ndarray) -> np.ndarray:
    """Per candidate: is the query closer to the entry's negative examples than to its own questions?

    Such an entry must not be given as the answer (it may still be listed, marked).
    """
    column = FEATURES.index("negative_gap")
    return (features[:, FEATURES.index("has_negatives")] > 0) & (features[:, column] > 0)


@dataclass(frozen=True)
class Verdict:
    """What the judge made of one query's first candidates (indices are positions in the score order)."""

    order: list[int]  # the candidates' positions, in the order to show them
    probabilities: np.ndarray | None  # the judge's raw probability per judged candidate (None: no judge)
    negatives: list[str | None]  # per judged candidate: the negative example it is closer to, if any
    confidences: np.ndarray | None  # calibrated probability per judged candidate

    def marks(self, position: int) -> tuple[float | None, str | None]:
        """(confidence, negative example) of the candidate at ``position`` for its hit."""
        judged = position < len(self.negatives)
        confidence = float(self.confidences[position]) if judged and self.confidences is not None else None
        return confidence, self.negatives[position] if judged else None

    @property
    def confidence(self) -> float | None:
        if self.confidences is None or not len(self.confidences):
            return None
        return float(self.confidences[self.order[0]])

    def decision(self, judge: "Judge", top_score: float) -> str:
        """The judge's decision for the first hit (whose ranking score is ``top_score``)."""
        if self.probabilities is None or not len(self.probabilities):
            return NO_MATCH
        top = self.order[0]
        second = self.order[1] if len(self.order) > 1 and self.order[1] < len(self.probabilities) else None
        return judge.decide(self.confidence, None if second is None else float(self.probabilities[second]),
                            float(self.probabilities[top]), top_score)


@dataclass(frozen=True)
class TreeEnsemble:
    """Boosted trees as flat arrays (tree x node), evaluated in numpy: the judge's model when trees
    measured better than the logistic regression on held-out queries (see judge_training)."""

    baseline: float
    feature: np.ndarray  # int, the feature a node splits on
    threshold: np.ndarray  # a row goes left when its feature is <= the threshold
    left: np.ndarray
    right: np.ndarray
    value: np.ndarray  # a leaf's contribution to the log-odds
    leaf: np.ndarray  # bool
    depth: int  # the deepest leaf: steps enough for every row to reach one

    def __post_init__(self) -> None:
        # Flat lookups for log_odds: node ids over all trees, and per node its two children
        # (a leaf's children are itself, so a row that reached a leaf stays there).
        trees, width = self.feature.shape
        start = (np.arange(trees) * width)[:, None]
        own = start + np.arange(width)[None, :]
        children = np.stack([np.where(self.leaf, own, start + self.left), np.where(self.leaf, own, start + self.right)],
                            axis=-1)
        object.__setattr__(self, "_flat", (start.ravel(), self.feature.ravel(), self.threshold.ravel(),
                                           children.ravel(), self.value.ravel()))

    def log_odds(self, features: np.ndarray) -> np.ndarray:
        """Every row down every tree at once, one level per step."""
        start, feature, threshold, children, value = self._flat
        rows = np.arange(len(features))[:, None]
        node = np.broadcast_to(start, (len(features), len(start)))
        for _ in range(self.depth):
            right = features[rows, feature[node]] > threshold[node]
            node = children[2 * node + right]
        return self.baseline + value[node].sum(axis=1)

    def to_dict(self) -> dict[str, Any]:
        return {"baseline": self.baseline, "depth": self.depth,
                **{name: getattr(self, name).tolist() for name in _TREE_ARRAYS}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TreeEnsemble":
        arrays = {name: np.asarray(data[name], dtype=kind) for name, kind in _TREE_ARRAYS.items()}
        trees = cls(float(data["baseline"]), depth=int(data["depth"]), **arrays)
        shape = trees.feature.shape
        if len(shape) != 2 or any(a.shape != shape for a in arrays.values()) or trees.depth < 0 \
                or (trees.feature.size and (trees.feature.min() < 0 or trees.feature.max() >= len(FEATURES)
                                            or min(trees.left.min(), trees.right.min()) < 0
                                            or max(trees.left.max(), trees.right.max()) >= shape[1])):
            raise ValueError("judge trees have the wrong shape")
        return trees


_TREE_ARRAYS = {"feature": np.int64, "threshold": np.float64, "left": np.int64, "right": np.int64,
                "value": np.float64, "leaf": bool}


@dataclass(frozen=True)
class Judge:
    """A fitted judge: standardisation, logistic weights, a calibration curve and the decision limits."""

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float
    curve_x: np.ndarray  # raw probability -> confidence, monotone, linear in between
    curve_y: np.ndarray
    threshold: float | None  # confidence below which the decision is no_match (None: not calibrated)
    ambiguity_margin: float  # top-1 minus top-2 judge probability under which the decision is ambiguous
    reorder: bool  # rank the judged candidates by the judge (its ranker, or for format 1 its probability)
    judged: int = JUDGED
    summary: Mapping[str, Any] | None = None  # how it was trained and how well it did, for the manifest
    # Ranking score under which nothing is answered: the judge decides among look-alikes; far
    # below any right answer it has seen, the cosine is the better witness (None: no floor).
    score_floor: float | None = None
    # Listwise ranking weights over the raw features (None: rank by probability, as format 1 did).
    rank_weights: np.ndarray | None = None
    trees: TreeEnsemble | None = None  # boosted trees in place of the logistic weights (None: logistic)

    def order(self, features: np.ndarray, probabilities: np.ndarray) -> list[int]:
        """Positions of the judged candidates in the order to show them (the score order unless reordering).

        A candidate the query is closer to a negative of (probability 0) goes after the others.
        """
        if not self.reorder:
            return list(range(len(probabilities)))
        key = probabilities if self.rank_weights is None else \
            np.where(probabilities > 0, features @ self.rank_weights, -np.inf)
        return [int(i) for i in np.argsort(-key, kind="stable")]  # stable: ties keep the score order

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """The judge's raw probability that each candidate answers its query."""
        z = self.trees.log_odds(features) if self.trees is not None \
            else ((features - self.mean) / self.scale) @ self.weights + self.bias
        return 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))

    def confidence(self, probability: float | np.ndarray) -> float | np.ndarray:
        """The calibrated chance that a candidate with this raw probability is right."""
        return np.interp(probability, self.curve_x, self.curve_y)

    def decide(self, confidence: float, runner_up_probability: float | None, top_probability: float,
               top_score: float) -> str:
        if self.threshold is not None and confidence < self.threshold:
            return NO_MATCH
        if self.score_floor is not None and top_score < self.score_floor:
            return NO_MATCH
        if self.ambiguity_margin and runner_up_probability is not None \
                and top_probability - runner_up_probability < self.ambiguity_margin:
            return AMBIGUOUS
        return ANSWER

    def to_dict(self) -> dict[str, Any]:
        return {"format": JUDGE_FORMAT, "features": list(FEATURES), "judged": self.judged, "reorder": self.reorder,
                "mean": self.mean.tolist(), "scale": self.scale.tolist(), "weights": self.weights.tolist(),
                "bias": self.bias, "curve": {"x": self.curve_x.tolist(), "y": self.curve_y.tolist()},
                "threshold": self.threshold, "ambiguity_margin": self.ambiguity_margin,
                "score_floor": self.score_floor, "summary": dict(self.summary or {}),
                "rank_weights": None if self.rank_weights is None else self.rank_weights.tolist(),
                "trees": None if self.trees is None else self.trees.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Judge":
        """Rebuild a stored judge; ``ValueError`` names what is wrong with it."""
        if not isinstance(data, Mapping) or data.get("format") not in READABLE_FORMATS:
            raise ValueError(f"judge format {data.get('format') if isinstance(data, Mapping) else data!r}, "
                             f"this retriever reads formats {', '.join(map(str, READABLE_FORMATS))}")
        if list(data.get("features", ())) != list(FEATURES):
            raise ValueError("the judge was trained on other features than this retriever computes")
        try:
            arrays = [np.asarray(data[k], dtype=np.float64) for k in ("mean", "scale", "weights")]
            curve_x = np.asarray(data["curve"]["x"], dtype=np.float64)
            curve_y = np.asarray(data["curve"]["y"], dtype=np.float64)
            threshold = None if data["threshold"] is None else float(data["threshold"])
            floor = None if data.get("score_floor") is None else float(data["score_floor"])
            ranker = None if data.get("rank_weights") is None else np.asarray(data["rank_weights"], dtype=np.float64)
            trees = None if data.get("trees") is None else TreeEnsemble.from_dict(data["trees"])
            judge = cls(*arrays, float(data["bias"]), curve_x, curve_y, threshold, float(data["ambiguity_margin"]),
                        bool(data["reorder"]), int(data["judged"]), data.get("summary") or {}, floor, ranker, trees)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"judge fields missing or malformed ({exc})") from None
        if any(a.shape != (len(FEATURES),) for a in arrays) or curve_x.shape != curve_y.shape or not len(curve_x) \
                or np.any(judge.scale <= 0) or judge.judged < 1 \
                or (ranker is not None and ranker.shape != (len(FEATURES),)):
            raise ValueError("judge arrays have the wrong shape")
        numbers = {"mean": judge.mean, "scale": judge.scale, "weights": judge.weights, "bias": judge.bias,
                   "curve": np.concatenate([curve_x, curve_y]), "threshold": threshold,
                   "ambiguity_margin": judge.ambiguity_margin, "score_floor": floor, "rank_weights": ranker,
                   "trees": None if trees is None else np.concatenate([[trees.baseline], trees.threshold.ravel(),
                                                                        trees.value.ravel()])}
        bad = [name for name, value in numbers.items() if value is not None and not np.isfinite(value).all()]
        if bad:  # NaN would make every judged search fail; refused at load, the version never serves
            raise ValueError(f"judge values are not finite numbers (NaN or infinity) in: {', '.join(bad)}")
        return judge
