"""Calibration data from the FAQ itself, for a corpus that arrives without labelled queries.

An FAQ imported from a spreadsheet has questions, paraphrases and answers, and no record of what
citizens asked. The build then learns when to refuse from three kinds of rounds:

* paraphrase: a question or paraphrase searched without itself and without the texts of its entry
  that say the same thing (identical or near-identical once normalised: an answer that repeats its
  question is one text with it, never a query and its own answer) -> must find its entry;
* absent: an entry's question searched without the whole entry, as a question the FAQ does not
  answer -> must be refused;
* off-topic: a bundled question of another domain (retriever/data/offtopic_zh.yaml) -> must be
  refused, used only where it does not match this FAQ: a topic whose keywords its questions use is
  left out (a 公积金 FAQ must not learn to refuse 公积金), and so is a question that the model places
  as close to an entry as that entry's own paraphrases are.

The score threshold of every mode is calibrated on these rounds here; the judge learns from the same
kinds of rounds (retriever/judge_training.py).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Sequence

import numpy as np
import yaml

from .evaluation import LabelledQuery, Outcome, calibrate, cross_validated
from .judge import QUESTION_FIELDS
from .normalize import normalize
from .scoring import MODES, best_per_entry, fuse

MAX_ROUNDS = 2000  # paraphrase rounds and absent rounds each: enough for a threshold, bounded for 100k entries
NEAR_DUPLICATE = 0.9  # character-bigram Dice at which two texts of one entry say the same thing
# An off-topic question at least as close to an entry as this share of the paraphrase rounds that found
# their entry is treated as one this FAQ answers, and not used as a negative.
OFFTOPIC_GUARD_QUANTILE = 0.25
# Without labelled queries the no-match limits are chosen on corpus rounds, on which right answers look
# surer than citizens' queries do (Tianchi half A: 10% of right answers flagged ambiguous in the rounds,
# 19% of real ones): a smaller share of right answers may be flagged. Chosen on Tianchi half A only.
SELF_MAX_REFUSED = 0.05
SELF_MAX_FLAGGED = 0.04
CHUNK = 512
TOP_ENTRIES = 5  # entries kept per round: the first two decide, the rank of the right one is reported
# Marks and modal particles that do not change what is asked (你好吗 / 你好).
_FILLER = re.compile(r"[\W_吗呢啊呀吧哦嘛么]+")


@dataclass(frozen=True)
class OfftopicTopic:
    topic: str
    keywords: tuple[str, ...]
    questions: tuple[str, ...]


def load_offtopic(path=None) -> list[OfftopicTopic]:
    """The bundled off-topic questions (or those of ``path``, the same YAML shape)."""
    if path is None:
        text = resources.files("retriever").joinpath("data/offtopic_zh.yaml").read_text(encoding="utf-8")
    else:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    return [OfftopicTopic(t["topic"], tuple(map(str, t.get("keywords") or ())), tuple(map(str, t["questions"])))
            for t in yaml.safe_load(text)["topics"]]


def topics_about(topics: Sequence[OfftopicTopic], questions: Sequence[str]) -> list[str]:
    """The topics whose keywords one of the FAQ's (normalised) questions uses: this FAQ is about them."""
    joined = "\n".join(questions)
    return [t.topic for t in topics if any(normalize(k) in joined for k in t.keywords)]


def _bigrams(text: str) -> set[str]:
    core = _FILLER.sub("", text)
    return {core[i:i + 2] for i in range(len(core) - 1)} or {core}


def same_text_groups(entries: np.ndarray, norms: Sequence[str]) -> np.ndarray:
    """Per text, a group number shared by the texts of its entry that say the same thing.

    Same thing: equal once marks and modal particles are dropped, or character-bigram Dice of at
    least :data:`NEAR_DUPLICATE`. Texts of different entries never share a group.
    """
    groups = np.arange(len(norms))
    bigrams = [_bigrams(n) for n in norms]
    starts = np.flatnonzero(np.r_[True, entries[1:] != entries[:-1]]) if len(norms) else []
    for start, stop in zip(starts, list(starts[1:]) + [len(norms)]):
        for i in range(start, stop):
            for j in range(start, i):
                if groups[j] != j:
                    continue
                a, b = bigrams[i], bigrams[j]
                if a == b or 2 * len(a & b) / (len(a) + len(b)) >= NEAR_DUPLICATE:
                    groups[i] = j
                    break
    return groups


@dataclass
class Rounds:
    """The self-calibration rounds of one index: which texts are asked, and what each hides."""

    paraphrases: np.ndarray  # text ids searched without their group (must find their entry)
    absent: np.ndarray  # text ids searched without their whole entry (must be refused)
    offtopic: list[str] = field(default_factory=list)  # normalised questions to refuse
    offtopic_vectors: np.ndarray | None = None
    groups: np.ndarray | None = None  # same_text_groups of the index's texts
    dropped_topics: list[str] = field(default_factory=list)
    dropped_questions: list[str] = field(default_factory=list)

    def hidden(self, text_entry: np.ndarray, text_id: int, kind: str) -> np.ndarray:
        """The texts treated as not indexed when ``text_id`` is asked as a round of ``kind``."""
        if kind == "absent":
            return text_entry == text_entry[text_id]
        return self.groups == self.groups[text_id]

    def counts(self) -> dict[str, int]:
        return {"paraphrases": len(self.paraphrases), "absent": len(self.absent), "offtopic": len(self.offtopic),
                "offtopic_dropped": len(self.dropped_questions)}


def plan_rounds(index, rng: np.random.Generator, max_rounds: int = MAX_ROUNDS) -> Rounds:
    """Which texts become paraphrase rounds (paraphrases that say something else than their entry's
    question and answer) and absent rounds (every entry's standard question, when there are two or more)."""
    text_entry = index.text_entry
    fields = np.array([t.field for t in index.texts])
    groups = same_text_groups(text_entry, [t.norm for t in index.texts])
    # A paraphrase round hides its group; one that says what its entry's question or answer says would
    # leave the entry without them, which no real query meets: such texts are asked only as absent rounds.
    anchored = np.zeros(len(groups), dtype=bool)
    anchored[groups[np.isin(fields, ("question", "answer"))]] = True
    paraphrases = np.flatnonzero((fields == "paraphrase") & ~anchored[groups])
    absent = np.flatnonzero(fields == "question") if len(index.entries) > 1 else np.zeros(0, dtype=np.int64)
    sample = lambda ids: np.sort(rng.choice(ids, max_rounds, replace=False)) if len(ids) > max_rounds else ids  # noqa: E731
    return Rounds(sample(paraphrases), sample(absent), groups=groups)


def add_offtopic(rounds: Rounds, searcher, topics: Sequence[OfftopicTopic], encoder) -> None:
    """The bundled questions this FAQ does not answer, embedded, into ``rounds`` (see the module doc)."""
    index = searcher.index
    about = set(topics_about(topics, [t.norm for t in index.texts if t.field in QUESTION_FIELDS]))
    rounds.dropped_topics = sorted(about)
    texts = list(dict.fromkeys(normalize(q) for t in topics if t.topic not in about for q in t.questions))
    texts = [t for t in texts if t]
    vectors = encoder.encode_queries(texts) if texts else np.zeros((0, index.vectors.d), dtype=np.float32)
    matrix = index.vectors.reconstruct_n(0, index.vectors.ntotal)
    asked = np.array([t.field in QUESTION_FIELDS for t in index.texts])
    closest = (vectors @ matrix[asked].T).max(axis=1) if len(texts) and asked.any() else np.zeros(len(texts))
    guard = _paraphrase_closeness(rounds, searcher, matrix)
    keep = closest < guard
    rounds.offtopic = [t for t, k in zip(texts, keep) if k]
    rounds.offtopic_vectors = vectors[keep]
    rounds.dropped_questions = [t for t, k in zip(texts, keep) if not k]


def _paraphrase_closeness(rounds: Rounds, searcher, matrix: np.ndarray) -> float:
    """How close a paraphrase round that found its entry is to it (a low quantile): an off-topic question
    as close as that is one this FAQ may well answer."""
    outcomes = _corpus_outcomes(searcher, rounds, matrix, rounds.paraphrases, "paraphrase", ("dense",))["dense"]
    right = [o.top_scores[0] for o in outcomes if o.rank == 1]
    return float(np.quantile(right, OFFTOPIC_GUARD_QUANTILE)) if right else np.inf


def _corpus_outcomes(searcher, rounds: Rounds, matrix: np.ndarray, text_ids: np.ndarray, kind: str,
                     modes: Sequence[str] = MODES) -> dict[str, list[Outcome]]:
    """Per mode, the outcome of each corpus round of ``kind`` (its hidden texts left out)."""
    index = searcher.index
    ids = [e.id for e in index.entries]
    outcomes: dict[str, list[Outcome]] = {mode: [] for mode in modes}
    for start in range(0, len(text_ids), CHUNK):
        chunk = text_ids[start:start + CHUNK]
        for text_id, dense in zip(chunk, matrix[chunk] @ matrix.T):
            text = index.texts[text_id]
            hidden = rounds.hidden(searcher.text_entry, int(text_id), kind)
            gold = ids[text.entry] if kind == "paraphrase" else None
            for mode, outcome in _outcome(searcher, ids, text.norm, dense, hidden, gold, modes).items():
                outcomes[mode].append(outcome)
    return outcomes


def _outcome(searcher, ids: Sequence[str], text: str, dense: np.ndarray, hidden: np.ndarray | None,
             gold: str | None, modes: Sequence[str]) -> dict[str, Outcome]:
    """One query's top entries (``ids``: every entry's id) in each of ``modes`` over every text not ``hidden``."""
    lexical = searcher.lexical.scores(text) if set(modes) - {"dense"} else None
    k = min(len(dense), TOP_ENTRIES * searcher.texts_per_entry)
    out = {}
    for mode in modes:
        scores = dense if mode == "dense" else lexical if mode == "lexical" else \
            fuse(dense, lexical, searcher.lexical_weight)
        if hidden is not None:
            scores = np.where(hidden, -np.inf, scores)
        candidates = np.argpartition(-scores, k - 1)[:k]
        candidates = candidates[np.isfinite(scores[candidates])]
        top = best_per_entry(scores[candidates], candidates, searcher.text_entry, TOP_ENTRIES)
        ranked = [ids[entry] for entry, _, _ in top]
        rank = ranked.index(gold) + 1 if gold in ranked else None
        out[mode] = Outcome(LabelledQuery(text, gold), rank, tuple(s for _, s, _ in top[:2]) or (0.0,),
                            ranked[0] if ranked else None)
    return out


def mode_outcomes(searcher, rounds: Rounds) -> dict[str, list[Outcome]]:
    """Per mode, every self-calibration round searched: paraphrases, absent entries, off-topic."""
    index = searcher.index
    matrix = index.vectors.reconstruct_n(0, index.vectors.ntotal)
    outcomes = _corpus_outcomes(searcher, rounds, matrix, rounds.paraphrases, "paraphrase")
    for mode, more in _corpus_outcomes(searcher, rounds, matrix, rounds.absent, "absent").items():
        outcomes[mode] += more
    ids = [e.id for e in index.entries]
    if rounds.offtopic:
        for text, dense in zip(rounds.offtopic, rounds.offtopic_vectors @ matrix.T):
            for mode, outcome in _outcome(searcher, ids, text, dense, None, None, MODES).items():
                outcomes[mode].append(outcome)
    return outcomes


def calibrate_modes(searcher, rounds: Rounds, labelled_outcomes: dict[str, list[Outcome]] | None = None) -> dict:
    """Every mode's threshold and margin on the rounds (and the labelled queries' outcomes, if given),
    each with its cross-validated refusal rates (queries judged by a threshold fitted without them)."""
    calibration = {}
    for mode, outcomes in mode_outcomes(searcher, rounds).items():
        outcomes += list((labelled_outcomes or {}).get(mode, ()))
        calibration[mode] = {**calibrate(outcomes, SELF_MAX_REFUSED, SELF_MAX_FLAGGED),
                             "cross_validated": cross_validated(outcomes, 5, SELF_MAX_REFUSED, SELF_MAX_FLAGGED)}
    return calibration
