"""Training the judge at build time, from the corpus itself and its labelled queries.

Examples are rounds of "a query, its first candidates, which of them is right":

* every question and paraphrase against the index without that one text (its entry is
  right), and against the index without its whole entry (nothing is right: the case of a
  question the FAQ does not answer, which a hotline cannot see in the corpus otherwise;
  that entry's labelled queries then count as unanswerable too);
* every negative example (its entry is wrong; the example itself is left out of the
  negatives the features look at);
* the labelled queries, when the corpus has them (each left out of the memory the
  features compare with);
* for every right answer, copies naming a level or certificate kind no text names: wrong.

The judge's model is boosted trees or a logistic regression, whichever has the lower log
loss on held-out predictions. A second, listwise model over the same features (a
conditional logit: which candidate of a query is the right one) may reorder the candidates.
Calibration, the no-match threshold, the ambiguity margin and the choice of model and of
reordering are made on held-out predictions: labelled queries predicted by models trained
without their fold (or, without labelled queries, corpus questions predicted without their
entry's fold).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from tqdm.auto import tqdm

from .evaluation import LabelledQuery
from .judge import FEATURES, JUDGED, QUESTION_FIELDS, Candidate, Judge, LeftOut, TreeEnsemble, closer_to_negatives
from .normalize import normalize
from .scoring import best_per_entry
from .self_calibration import SELF_MAX_FLAGGED, SELF_MAX_REFUSED, Rounds, same_text_groups

FOLDS = 5
MAX_CORPUS_QUERIES = 4000  # corpus questions used per round type; enough for a 20-weight model
ISOTONIC_MIN = 200  # calibration points below which a logistic (Platt) curve is fitted instead
MAX_REFUSED = 0.05  # share of right first answers the threshold may refuse
MAX_FLAGGED = 0.10  # share of right first answers the ambiguity margin may flag
CHUNK = 256
FLOOR_QUANTILE = 0.01  # right first answers the score floor may refuse
RANK_C = 0.1  # inverse L2 strength of the listwise ranker (on standardised features)
RANK_KINDS = ("present", "labelled", "negative")  # rounds that show which candidate is right
# Boosted trees (scikit-learn's histogram GBM): measured on the Tianchi split, seeds 0-2, against
# the logistic regression: 0.3-0.5 point fewer confident-wrong answers at equal or more answered.
TREES = {"learning_rate": 0.05, "max_iter": 200, "max_leaf_nodes": 15, "l2_regularization": 1.0}
MIN_TREE_ROWS = 200  # candidates below which only the logistic regression is tried

Model = Callable[[np.ndarray], np.ndarray]  # features -> the raw probability of each candidate


@dataclass
class Round:
    """One query's judged candidates, their features and labels."""

    features: np.ndarray  # (candidates, FEATURES)
    labels: np.ndarray  # 1 where the candidate is a right answer
    kind: str  # "present" | "absent" | "negative" | "labelled" | "offtopic" | "contrast"
    fold: int


def train_judge(searcher, labelled: Sequence[LabelledQuery] = (), *, progress: bool = True,
                seed: int = 0, self_rounds: Rounds | None = None, workers: int = 1) -> Judge:
    """Fit the judge of ``searcher``'s index (which must not have one yet).

    ``self_rounds`` (retriever/self_calibration.py): the build calibrates on the corpus itself, so
    the off-topic questions are rounds too, and the no-match limits are chosen on the held-out
    corpus rounds (with the labelled queries, if any) instead of on the labelled queries alone.
    ``workers`` > 1: the boosted trees (the full fit and one per fold) are fitted on that many
    processes, each on one thread: the same trees, sooner.
    """
    from threadpoolctl import threadpool_limits  # scikit-learn's own dependency

    # Small matrix products: BLAS threads only contend with each other (and the encoder), measured 5x slower.
    with threadpool_limits(1):
        return _train(searcher, labelled, progress, seed, self_rounds, workers)


def _train(searcher, labelled: Sequence[LabelledQuery], progress: bool, seed: int,
           self_rounds: Rounds | None, workers: int = 1) -> Judge:
    rng = np.random.default_rng(seed)
    groups = self_rounds.groups if self_rounds is not None and self_rounds.groups is not None else \
        same_text_groups(searcher.text_entry, [t.norm for t in searcher.index.texts])
    rounds = _corpus_rounds(searcher, rng, progress, groups) + _negative_rounds(searcher) \
        + _labelled_rounds(searcher, labelled) + _offtopic_rounds(searcher, self_rounds)
    rounds += _contrastive_copies(rounds)
    has_labelled = any(r.kind == "labelled" for r in rounds)
    trained = [r for r in rounds if len(r.labels)]
    params = _fit(trained)
    rank_weights = _fit_ranker(rounds)
    kinds = _held_out_kinds(has_labelled, self_rounds is not None)
    rankers = _fold_rankers(rounds, kinds)
    held_out = _held_out_predictions(rounds, kinds, lambda train: _logistic(_fit(train, params)), rankers)
    trees, losses = None, {"logistic": _log_loss(held_out)}
    if sum(len(r.labels) for r in trained) >= MIN_TREE_ROWS:
        splits = [_fold_split(rounds, kinds, fold) for fold in range(FOLDS)]
        full, *by_fold = _fit_all_trees([trained] + [train if train and test else [] for train, test in splits], workers)
        held_by_trees = _held_out_predictions(rounds, kinds, lambda train: None, rankers,
                                              [_boosted(fitted) for fitted in by_fold])
        losses["trees"] = _log_loss(held_by_trees)
        if losses["trees"] < losses["logistic"]:  # kept only if it measures better on held-out queries
            trees, held_out = full, held_by_trees
    # Only labelled queries can show that reordering helps: on corpus rounds it measured +3 points held
    # out and -0.9 on real queries (Tianchi, no labelled queries), so without them the score order stays.
    reorder = rank_weights is not None and _reorder_helps([h for h in held_out if h.kind == "labelled"])
    curve_x, curve_y = _calibration_curve(held_out, reorder)
    confidences = np.interp([h.top(reorder)[0] for h in held_out], curve_x, curve_y)
    threshold, margin = (None, 0.0)
    if has_labelled or self_rounds is not None:
        limits = (MAX_REFUSED, MAX_FLAGGED) if has_labelled else (SELF_MAX_REFUSED, SELF_MAX_FLAGGED)
        threshold, margin = _decision_limits(held_out, confidences, reorder, *limits)
    mean, scale, weights, bias = params
    floor = _score_floor(rounds, ("labelled",) if has_labelled else ("present",) if self_rounds is not None else ())
    summary = {**_summary(rounds, held_out, reorder, threshold, margin, floor),
               "decided_on": list(kinds),
               "held_out_decisions": _held_out_rates(held_out, confidences, reorder, threshold, margin, kinds),
               "model": "trees" if trees is not None else "logistic",
               "held_out_log_loss": {name: round(value, 4) for name, value in losses.items()}}
    return Judge(mean, scale, weights, bias, curve_x, curve_y, threshold, margin, reorder, JUDGED, summary, floor,
                 rank_weights if reorder else None, trees)


# --- examples ---------------------------------------------------------------------------------------


def _judge_round(searcher, text: str, vector: np.ndarray, dense_ids: np.ndarray, lexical_all: np.ndarray,
                 k: int, hidden: LeftOut | None = None, left_out_negative: int | None = None):
    """The judged candidates of one query (entry numbers) and their features, with ``hidden`` hidden."""
    text_ids, fused, dense, lexical = searcher.hybrid_candidates(vector, dense_ids, lexical_all, k,
                                                                 None if hidden is None else hidden.mask)
    top = best_per_entry(fused, text_ids, searcher.text_entry, JUDGED)
    candidates = [Candidate(entry, value, text_id) for entry, value, text_id in top]
    if not candidates:
        return [], np.zeros((0, len(FEATURES)))
    features, _ = searcher.judge_features(text, vector, candidates, text_ids, dense, lexical, hidden,
                                          left_out_negative)
    return [c.entry for c in candidates], features


def _dense_top(scores: np.ndarray, k: int) -> np.ndarray:
    k = min(k, len(scores))
    return np.argpartition(-scores, k - 1)[:k]


def _held_out_kinds(has_labelled: bool, self_calibrated: bool) -> tuple[str, ...]:
    """The rounds whose held-out predictions choose calibration, reordering and the no-match limits."""
    if self_calibrated:
        return ("labelled",) * has_labelled + ("present", "absent", "offtopic")
    return ("labelled",) if has_labelled else ("present", "absent")


def _corpus_rounds(searcher, rng: np.random.Generator, progress: bool, groups: np.ndarray) -> list[Round]:
    """Each (sampled) question and paraphrase without itself, and without its entry.

    "Without itself" hides every text of its entry that says the same (``groups``,
    retriever/self_calibration.py): an answer repeating its question would make the round trivial.
    A text that says what its entry's question or answer says is asked only without its entry: the
    features read those two by name, and a missing one would mark the right entry.
    """
    index, context = searcher.index, searcher.judge_context
    text_entry = searcher.text_entry
    query_ids = np.array([i for i, t in enumerate(index.texts) if t.field in QUESTION_FIELDS], dtype=np.int64)
    if len(query_ids) > MAX_CORPUS_QUERIES:
        query_ids = np.sort(rng.choice(query_ids, MAX_CORPUS_QUERIES, replace=False))
    matrix = index.vectors.reconstruct_n(0, index.vectors.ntotal)
    k = min(len(matrix), max(2, JUDGED) * searcher.texts_per_entry)
    anchors = _question_and_answer(searcher)
    rounds = []
    for start in tqdm(range(0, len(query_ids), CHUNK), desc="judge: corpus questions", unit="batch",
                      disable=not progress):
        chunk = query_ids[start:start + CHUNK]
        all_dense = matrix[chunk] @ matrix.T
        for text_id, dense_row in zip(chunk, all_dense):
            entry = int(text_entry[text_id])
            text, vector = index.texts[text_id].norm, matrix[text_id]
            lexical_all = searcher.lexical.scores(text)
            own = text_entry == entry
            same = groups == groups[text_id]
            hide = {"present": LeftOut(context, same),
                    "absent": LeftOut(context, own, missing_entry=entry)}  # its labelled queries: unanswerable
            for kind, hidden in hide.items():
                if kind == "present" and (same[anchors[entry]].any() or not (own & ~same).any()):
                    continue  # its question or answer would be missing (a mark no query has), or nothing is left
                row = np.where(hidden.mask, -np.inf, dense_row)
                entries, features = _judge_round(searcher, text, vector, _dense_top(row, k),
                                                 np.where(hidden.mask, 0.0, lexical_all), k, hidden)
                labels = np.array([e == entry for e in entries], dtype=np.float64) if kind == "present" \
                    else np.zeros(len(entries))
                rounds.append(Round(features, labels, kind, entry % FOLDS))
    return rounds


def _question_and_answer(searcher) -> list[np.ndarray]:
    """Per entry, the text ids of its standard question and answer (features read them by name)."""
    anchors: list[list[int]] = [[] for _ in searcher.index.entries]
    for text_id, text in enumerate(searcher.index.texts):
        if text.field in ("question", "answer"):
            anchors[text.entry].append(text_id)
    return [np.array(ids, dtype=np.int64) for ids in anchors]


def _negative_rounds(searcher) -> list[Round]:
    """Each negative example against the whole index: its entry is wrong for it."""
    index = searcher.index
    if not index.negatives:
        return []
    asked = {}  # a negative that is also a question of another entry is right there
    for text in index.texts:
        if text.field in QUESTION_FIELDS:
            asked.setdefault(text.norm, set()).add(text.entry)
    k = min(index.vectors.ntotal, max(2, JUDGED) * searcher.texts_per_entry)
    rounds = []
    vectors = index.negative_vectors
    _, all_ids = index.vectors.search(vectors, k)
    for row, ((entry, _, norm), vector, dense_ids) in enumerate(zip(index.negatives, vectors, all_ids)):
        entries, features = _judge_round(searcher, norm, vector, dense_ids, searcher.lexical.scores(norm), k,
                                         left_out_negative=row)
        labels = np.array([e in asked.get(norm, ()) and e != entry for e in entries], dtype=np.float64)
        rounds.append(Round(features, labels, "negative", entry % FOLDS))
    return rounds


def _labelled_rounds(searcher, labelled: Sequence[LabelledQuery]) -> list[Round]:
    """Each labelled query against the whole index (out-of-domain ones: nothing is right)."""
    if not labelled:
        return []
    index = searcher.index
    ids = {entry.id: number for number, entry in enumerate(index.entries)}
    texts = [normalize(q.query) for q in labelled]
    vectors = searcher.encoder.encode_queries(texts)
    k = min(index.vectors.ntotal, max(2, JUDGED) * searcher.texts_per_entry)
    _, all_ids = index.vectors.search(vectors, k)
    rounds = []
    nothing = np.zeros(len(index.texts), dtype=bool)
    for position, (query, text, vector, dense_ids) in enumerate(zip(labelled, texts, vectors, all_ids)):
        # The query itself is in the memory (the build stored it): leave it out, as an unseen query would be.
        hidden = LeftOut(searcher.judge_context, nothing, memory_row=position) if index.labelled else None
        entries, features = _judge_round(searcher, text, vector, dense_ids, searcher.lexical.scores(text), k, hidden)
        gold = ids.get(query.faq_id, -1)
        rounds.append(Round(features, np.array([e == gold for e in entries], dtype=np.float64), "labelled",
                            position % FOLDS))
    return rounds


def _offtopic_rounds(searcher, self_rounds: Rounds | None) -> list[Round]:
    """Each bundled off-topic question this FAQ does not answer, against the whole index: nothing is right."""
    if self_rounds is None or not self_rounds.offtopic:
        return []
    index = searcher.index
    k = min(index.vectors.ntotal, max(2, JUDGED) * searcher.texts_per_entry)
    vectors = np.ascontiguousarray(self_rounds.offtopic_vectors, dtype=np.float32)
    _, all_ids = index.vectors.search(vectors, k)
    rounds = []
    for position, (text, vector, dense_ids) in enumerate(zip(self_rounds.offtopic, vectors, all_ids)):
        entries, features = _judge_round(searcher, text, vector, dense_ids, searcher.lexical.scores(text), k)
        rounds.append(Round(features, np.zeros(len(entries)), "offtopic", position % FOLDS))
    return rounds


def _contrastive_copies(rounds: Sequence[Round]) -> list[Round]:
    """For every right answer, copies asking about a level or a certificate kind that no text of the
    index names (二级 in a 一级 FAQ, 安全员 in a 建造师 FAQ): wrong, whatever the cosines say.

    A small FAQ rarely shows such questions, yet they are the look-alikes a hotline must not
    answer; the copies give the judge that prior (see FEATURES: level_*, kind_*).
    """
    shifts = [{"level_query_only": 1.0, "level_unknown": 1.0}, {"kind_query_only": 1.0, "kind_unknown": 1.0}]
    copies = []
    for r in rounds:
        if r.kind not in ("present", "labelled") or not r.labels.any():
            continue
        right = r.features[r.labels == 1][:1]
        for shift in shifts:
            copy = right.copy()
            for name, value in shift.items():
                copy[0, FEATURES.index(name)] += value
            copies.append(Round(copy, np.zeros(1), "contrast", r.fold))
    return copies


# --- fitting ----------------------------------------------------------------------------------------


def _fit(rounds: Sequence[Round], start: tuple | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Standardisation and logistic weights fitted on every candidate of ``rounds``.

    ``start``: a fit on similar rounds to start from (the held-out folds start from the full fit).
    """
    from sklearn.linear_model import LogisticRegression  # only builds need scikit-learn loaded

    features = np.concatenate([r.features for r in rounds])
    labels = np.concatenate([r.labels for r in rounds])
    mean = features.mean(axis=0)
    scale = features.std(axis=0)
    scale[scale < 1e-9] = 1.0
    if labels.min() == labels.max():  # one class only (a corpus of one entry): a constant judge
        return mean, scale, np.zeros(len(FEATURES)), float(np.log((labels.mean() + 1e-3) / (1 - labels.mean() + 1e-3)))
    model = LogisticRegression(C=1.0, max_iter=2000, warm_start=start is not None)
    if start is not None:  # the same solution, expressed in this standardisation
        start_mean, start_scale, start_weights, start_bias = start
        model.coef_ = (start_weights / start_scale * scale)[None, :]
        model.intercept_ = np.array([start_bias - np.sum(start_weights * (start_mean - mean) / start_scale)])
    model.fit((features - mean) / scale, labels)
    return mean, scale, model.coef_[0].astype(np.float64), float(model.intercept_[0])


# Candidates below which the trees are fitted in this process (starting workers costs seconds).
PARALLEL_TREE_ROWS = 20000


def _fit_all_trees(groups: list[list[Round]], workers: int) -> list[TreeEnsemble | None]:
    """:func:`_fit_trees` of each group of rounds (None for an empty one), on ``workers`` processes when large."""
    rows = sum(len(r.labels) for group in groups for r in group)
    if workers <= 1 or rows < PARALLEL_TREE_ROWS:
        return [_fit_trees(group) if group else None for group in groups]
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    # spawn: a fork of a process whose OpenMP runtime runs (the model's) can hang
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        return list(pool.map(_fit_trees_one_thread, groups))


def _fit_trees_one_thread(rounds: Sequence[Round]) -> TreeEnsemble | None:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return _fit_trees(rounds) if rounds else None


def _fit_trees(rounds: Sequence[Round]) -> TreeEnsemble | None:
    """Boosted trees on every candidate of ``rounds``, as flat arrays (None: one class only)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    features = np.concatenate([r.features for r in rounds])
    labels = np.concatenate([r.labels for r in rounds])
    if labels.min() == labels.max():
        return None
    model = HistGradientBoostingClassifier(**TREES, early_stopping=False, random_state=0).fit(features, labels)
    nodes = [predictor.nodes for (predictor,) in model._predictors]  # one tree per iteration (two classes)
    width = max(len(n) for n in nodes)

    def padded(field: str, dtype) -> np.ndarray:
        out = np.zeros((len(nodes), width), dtype=dtype)
        for i, n in enumerate(nodes):
            out[i, :len(n)] = n[field]
        return out

    leaf = padded("is_leaf", bool)
    return TreeEnsemble(float(np.ravel(model._baseline_prediction)[0]), padded("feature_idx", np.int64),
                        padded("num_threshold", np.float64), padded("left", np.int64), padded("right", np.int64),
                        np.where(leaf, padded("value", np.float64), 0.0), leaf,
                        int(max(n["depth"].max() for n in nodes)))


def _logistic(params) -> Model:
    mean, scale, weights, bias = params
    return lambda features: _sigmoid(((features - mean) / scale) @ weights + bias)


def _boosted(trees: TreeEnsemble | None) -> Model:
    return (lambda features: _sigmoid(trees.log_odds(features))) if trees is not None \
        else (lambda features: np.full(len(features), 0.5))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))


def _log_loss(held_out: Sequence["HeldOut"]) -> float:
    """Mean log loss of the first candidate's held-out probability (the one the decision is about)."""
    if not held_out:
        return float("inf")
    p = np.clip([h.probabilities[0] for h in held_out], 1e-6, 1 - 1e-6)
    y = np.array([h.labels[0] for h in held_out])
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def _fit_ranker(rounds: Sequence[Round]) -> np.ndarray | None:
    """Listwise ranking weights over the raw features, or None without rounds to learn from.

    A conditional logit: per round, the softmax over its candidates of ``features @ w``
    should pick the right one; L2-penalised, on standardised features.
    """
    from scipy.optimize import minimize  # scikit-learn's own dependency

    lists = [r for r in rounds if r.kind in RANK_KINDS and len(r.labels) > 1 and r.labels.any()]
    if len(lists) < 2:
        return None
    width = max(len(r.labels) for r in lists)
    features = np.zeros((len(lists), width, len(FEATURES)))
    padding = np.full((len(lists), width), -np.inf)  # candidates a round does not have
    for i, r in enumerate(lists):
        features[i, :len(r.labels)], padding[i, :len(r.labels)] = r.features, 0.0
    present = np.isfinite(padding)
    mean, scale = features[present].mean(axis=0), features[present].std(axis=0)
    scale[scale < 1e-9] = 1.0
    features = np.where(present[..., None], (features - mean) / scale, 0.0)
    right = np.array([int(np.flatnonzero(r.labels)[0]) for r in lists])
    rows = np.arange(len(lists))

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = features @ w + padding
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        total = p.sum(axis=1)
        p /= total[:, None]
        gradient = np.einsum("nk,nkd->d", p, features) - features[rows, right].sum(axis=0) + w / RANK_C
        return float(np.log(total).sum() - z[rows, right].sum() + 0.5 * w @ w / RANK_C), gradient

    w = minimize(loss, np.zeros(len(FEATURES)), jac=True, method="L-BFGS-B").x
    return w / scale  # on raw features (the mean only shifts every candidate alike)


@dataclass
class HeldOut:
    """A held-out round with the probabilities of a judge that never saw it."""

    probabilities: np.ndarray  # per candidate, in score order; 0 where closer to a negative
    labels: np.ndarray
    in_domain: bool
    ranks: np.ndarray | None = None  # the held-out ranker's score per candidate (None: rank by probability)
    kind: str = "labelled"  # the round's kind (Round.kind)

    def order(self, reorder: bool) -> np.ndarray:
        if not reorder:
            return np.arange(len(self.labels))
        key = self.probabilities if self.ranks is None else np.where(self.probabilities > 0, self.ranks, -np.inf)
        return np.argsort(-key, kind="stable")

    def top(self, reorder: bool) -> tuple[float, float | None, bool]:
        """(probability of the first candidate, of the second, is the first right)."""
        order = self.order(reorder)
        second = float(self.probabilities[order[1]]) if len(order) > 1 else None
        return float(self.probabilities[order[0]]), second, bool(self.labels[order[0]])


def _predict(model: Model, features: np.ndarray) -> np.ndarray:
    return np.where(closer_to_negatives(features), 0.0, model(features))


def _fold_split(rounds: Sequence[Round], kinds: tuple[str, ...], fold: int) -> tuple[list[Round], list[Round]]:
    """The rounds a fold's model learns from, and the rounds of ``kinds`` it predicts."""
    train = [r for r in rounds if len(r.labels) and not (r.kind in kinds and r.fold == fold)]
    return train, [r for r in rounds if len(r.labels) and r.kind in kinds and r.fold == fold]


def _fold_rankers(rounds: Sequence[Round], kinds: tuple[str, ...]) -> list[np.ndarray | None]:
    """Per fold, the listwise ranker fitted without it."""
    return [_fit_ranker(_fold_split(rounds, kinds, fold)[0]) for fold in range(FOLDS)]


def _held_out_predictions(rounds: Sequence[Round], kinds: tuple[str, ...], fit: Callable[[list[Round]], Model],
                          rankers: Sequence[np.ndarray | None],
                          fitted: Sequence[Model] | None = None) -> list[HeldOut]:
    """Predictions for every round of ``kinds``, each by a model ``fit`` without that round's fold
    (or ``fitted[fold]``, fitted so already), and the scores of ``rankers``, one per fold, fitted the same way.

    A corpus question's fold is its entry's, so "without its entry" is really unseen.
    """
    held = []
    for fold in range(FOLDS):
        train, test = _fold_split(rounds, kinds, fold)
        if not test or not train:
            continue
        model, rank_weights = (fit(train) if fitted is None else fitted[fold]), rankers[fold]
        held += [HeldOut(_predict(model, r.features), r.labels, r.kind == "present" or bool(r.labels.any()),
                         None if rank_weights is None else r.features @ rank_weights, r.kind)
                 for r in test]
    return held


def _calibration_curve(held_out: Sequence[HeldOut], reorder: bool) -> tuple[np.ndarray, np.ndarray]:
    """Raw probability of the first candidate (in the order shown) -> chance it is right: isotonic,
    or Platt on few points."""
    from sklearn.isotonic import IsotonicRegression
    from sklearn.linear_model import LogisticRegression

    if not held_out:
        grid = np.linspace(0.0, 1.0, 11)
        return grid, grid
    tops = [h.top(reorder) for h in held_out]
    x = np.array([t[0] for t in tops])
    y = np.array([t[2] for t in tops], dtype=np.float64)
    if y.min() == y.max():
        return np.array([0.0, 1.0]), np.array([y[0], y[0]])
    if len(x) >= ISOTONIC_MIN:
        isotonic = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(x, y)
        return (np.asarray(isotonic.X_thresholds_, dtype=np.float64),
                np.asarray(isotonic.y_thresholds_, dtype=np.float64))
    logit = lambda p: np.log(np.clip(p, 1e-6, 1 - 1e-6) / (1 - np.clip(p, 1e-6, 1 - 1e-6)))  # noqa: E731
    platt = LogisticRegression(C=1.0).fit(logit(x)[:, None], y)
    grid = np.linspace(0.0, 1.0, 101)
    return grid, platt.predict_proba(logit(grid)[:, None])[:, 1]


def _reorder_helps(held_out: Sequence[HeldOut]) -> bool:
    """Reorder by the ranker only if, on held-out queries, that puts the right entry first more often
    than the score order, by at least one query and 0.5% of them (a smaller gain is a coin flip)."""
    in_domain = [h for h in held_out if h.in_domain]
    by_judge = sum(h.top(True)[2] for h in in_domain)
    by_score = sum(h.top(False)[2] for h in in_domain)
    return bool(in_domain) and by_judge - by_score >= max(1.0, 0.005 * len(in_domain))


def _decision_limits(held_out: Sequence[HeldOut], confidences: np.ndarray, reorder: bool,
                     max_refused: float = MAX_REFUSED, max_flagged: float = MAX_FLAGGED) -> tuple[float, float]:
    """The no-match threshold on confidence and the ambiguity margin, chosen on held-out predictions.

    As for the score threshold (:func:`retriever.evaluation.calibrate`), with "right first
    answer" in place of "in domain": the threshold refusing most wrong-or-unanswerable
    first answers minus right ones, refusing at most ``max_refused`` of the right ones;
    then the margin of top-1 minus top-2 probability separating wrong from right the same
    way among the answered, flagging at most ``max_flagged`` of the right ones.
    """
    tops = [h.top(reorder) for h in held_out]
    right = np.array([t[2] for t in tops], dtype=bool)
    gaps = np.array([t[0] - t[1] if t[1] is not None else np.inf for t in tops])
    best_t, best_gain = 0.0, -np.inf
    for t in _midpoints(np.concatenate([[0.0], confidences])):
        refused = confidences < t
        right_refused = refused[right].mean() if right.any() else 0.0
        gain = (refused[~right].mean() if (~right).any() else 0.0) - right_refused
        if right_refused <= max_refused and gain > best_gain:
            best_t, best_gain = float(t), gain
    answered = (confidences >= best_t) & np.isfinite(gaps)
    good = right[answered]
    best_m, best_gain = 0.0, 0.0
    if good.any() and (~good).any():
        for m in _midpoints(gaps[answered]):
            flagged = gaps[answered] < m
            gain = flagged[~good].mean() - flagged[good].mean()
            if flagged[good].mean() <= max_flagged and gain > best_gain:
                best_m, best_gain = float(m), gain
    return float(best_t), float(best_m)


def _score_floor(rounds: Sequence[Round], kinds: tuple[str, ...]) -> float | None:
    """A low percentile of the ranking scores of right first answers among the rounds of ``kinds``
    (the labelled queries, or without them the corpus's held-out paraphrases)."""
    column = FEATURES.index("score")
    scores = [r.features[0, column] for r in rounds if r.kind in kinds and len(r.labels) and r.labels[0]]
    return float(np.quantile(scores, FLOOR_QUANTILE)) if scores else None


def _held_out_rates(held_out: Sequence[HeldOut], confidences: np.ndarray, reorder: bool, threshold: float | None,
                    margin: float, kinds: tuple[str, ...]) -> dict:
    """What the chosen limits do to the held-out rounds: in-domain answered right, the rest refused."""
    if threshold is None or not held_out:
        return {}
    tops = [h.top(reorder) for h in held_out]
    answered = np.array([c >= threshold and (t[1] is None or t[0] - t[1] >= margin)
                         for c, t in zip(confidences, tops)])
    right = np.array([t[2] for t in tops])
    inside = np.array([h.in_domain for h in held_out])
    return {"rounds": len(held_out), "kinds": list(kinds),
            "answered_right": round(float(np.mean(answered[inside] & right[inside])), 4) if inside.any() else None,
            "refused_when_unanswerable": round(float(np.mean(~answered[~inside])), 4) if (~inside).any() else None,
            "confident_wrong": round(float(np.mean(answered & ~right)), 4)}


def _midpoints(values: np.ndarray) -> np.ndarray:
    """Candidate cut points halfway between distinct values (a rounded cut never lands on a plateau)."""
    unique = np.unique(values)
    return np.concatenate([[unique[0]], (unique[:-1] + unique[1:]) / 2])


def _summary(rounds: Sequence[Round], held_out: Sequence[HeldOut], reorder: bool, threshold: float | None,
             margin: float, floor: float | None) -> dict:
    """For the manifest: the examples, the held-out top-1 by score and by judge, the limits chosen.

    Nothing that differs between two builds of the same corpus (no timing: the manifest's
    ``build_stages`` has it), so that their decision fields and checksum are equal."""
    in_domain = [h for h in held_out if h.in_domain]

    def top1(by_judge: bool) -> float | None:
        return round(float(np.mean([h.top(by_judge)[2] for h in in_domain])), 4) if in_domain else None

    return {
        "rounds": {kind: sum(1 for r in rounds if r.kind == kind)
                   for kind in ("present", "absent", "negative", "labelled", "offtopic", "contrast")},
        "held_out": len(held_out),
        "held_out_top1_by_score": top1(False),
        "held_out_top1_by_judge": top1(True),
        "reorder": reorder,
        "threshold": None if threshold is None else round(threshold, 6),
        "ambiguity_margin": round(margin, 6),
        "score_floor": None if floor is None else round(floor, 6),
    }
