"""Pure math, checked by hand: aggregation, fusion, decisions, evaluation metrics, calibration."""
import numpy as np
import pytest

from retriever.evaluation import LabelledQuery, Outcome, answer_rates, calibrate, ranking_metrics
from retriever.scoring import AMBIGUOUS, ANSWER, NO_MATCH, best_per_entry, decide, fuse


def test_best_per_entry_collapses_and_orders():
    text_entry = np.array([0, 0, 1, 1, 2])
    scores = [0.9, 0.8, 0.85, 0.7, 0.95, 0.1]
    ids = [0, 1, 2, 3, 4, -1]  # -1: FAISS padding
    assert best_per_entry(scores, ids, text_entry, top_k=2) == [(2, 0.95, 4), (0, 0.9, 0)]
    assert best_per_entry(scores, ids, text_entry, top_k=10) == [(2, 0.95, 4), (0, 0.9, 0), (1, 0.85, 2)]
    assert best_per_entry([], [], text_entry, top_k=3) == []


def test_fuse_weights_the_two_legs():
    dense, lexical = np.array([0.9, 0.8]), np.array([0.0, 1.0])
    assert fuse(dense, lexical, 0.03) == pytest.approx([0.873, 0.806])
    assert fuse(dense, lexical, 0.0) == pytest.approx(dense)
    assert fuse(dense, lexical, 1.0) == pytest.approx(lexical)


@pytest.mark.parametrize("scores, threshold, margin, expected", [
    ([0.95, 0.90], 0.9, 0.02, ANSWER),
    ([0.95, 0.94], 0.9, 0.02, AMBIGUOUS),
    ([0.89, 0.70], 0.9, 0.02, NO_MATCH),
    ([0.95, 0.94], None, None, ANSWER),  # not calibrated: never refuses
    ([0.95], 0.9, 0.02, ANSWER),  # a one-entry index has no runner-up
    ([], 0.9, 0.02, NO_MATCH),
])
def test_decide(scores, threshold, margin, expected):
    assert decide(scores, threshold, margin) == expected


def test_ranking_metrics_by_hand():
    # ranks 1, 2, 4 and one miss: R@1 1/4, R@3 2/4, R@5 3/4, MRR (1 + 1/2 + 1/4 + 0) / 4
    metrics = ranking_metrics([1, 2, 4, None])
    assert metrics == {"recall@1": 0.25, "recall@3": 0.5, "recall@5": 0.75, "mrr": pytest.approx(0.4375),
                       "queries": 4}


def test_answer_rates_by_hand():
    top1 = np.array([0.95, 0.92, 0.85, 0.91, 0.80])
    in_domain = np.array([True, True, True, False, False])
    rates = answer_rates(top1, in_domain, 0.9)
    # answered: 0.95, 0.92 (in) and 0.91 (out) -> precision 2/3, recall 2/3
    assert rates["precision"] == pytest.approx(2 / 3) and rates["recall"] == pytest.approx(2 / 3)
    assert rates["f1"] == pytest.approx(2 / 3)
    assert rates["in_domain_refused"] == pytest.approx(1 / 3) and rates["out_of_domain_caught"] == 0.5


def _outcome(faq_id, top_id, s1, s2):
    rank = 1 if faq_id == top_id else (2 if faq_id else None)
    return Outcome(LabelledQuery("q", faq_id), rank, (s1, s2), top_id)


def test_calibrate_separates_out_of_domain_and_flags_close_calls():
    outcomes = [
        _outcome("a", "a", 0.96, 0.90), _outcome("b", "b", 0.95, 0.88), _outcome("a", "a", 0.94, 0.85),
        _outcome("b", "b", 0.93, 0.86), _outcome("a", "a", 0.97, 0.80), _outcome("b", "b", 0.92, 0.84),
        _outcome("a", "a", 0.95, 0.87), _outcome("b", "b", 0.96, 0.89), _outcome("a", "a", 0.94, 0.86),
        _outcome("a", "b", 0.93, 0.925),  # wrong top-1, runner-up very close
        _outcome(None, "a", 0.85, 0.80), _outcome(None, "b", 0.88, 0.87), _outcome(None, "a", 0.80, 0.79),
    ]
    result = calibrate(outcomes)
    # Every in-domain top-1 is >= 0.92, every out-of-domain one <= 0.88: the midpoint 0.90 splits them.
    assert result["threshold"] == pytest.approx(0.90)
    assert result["in_domain_refused"] == 0.0 and result["out_of_domain_caught"] == 1.0
    # The wrong answer's gap is 0.005, the right ones' gaps are >= 0.06: flagged, none of them.
    assert 0.005 < result["ambiguity_margin"] <= 0.06
    assert result["labelled_queries"] == 13


def test_calibrate_never_refuses_more_than_five_percent_of_in_domain():
    in_domain = [_outcome("a", "a", 0.80 + i / 100, 0.5) for i in range(20)]  # 0.80 .. 0.99
    out_domain = [_outcome(None, "a", 0.95, 0.5)] * 5  # indistinguishable by score
    result = calibrate(in_domain + out_domain)
    assert result["in_domain_refused"] <= 0.05
    assert result["ambiguity_margin"] == 0.0  # no wrong answers: nothing to flag


def test_cross_validation_judges_each_fold_with_a_threshold_from_the_others():
    from retriever.evaluation import cross_validated

    # Ten in-domain queries at 0.95 and five out-of-domain at 0.80: any fold's threshold separates them.
    outcomes = [_outcome("a", "a", 0.95, 0.5)] * 10 + [_outcome(None, "a", 0.80, 0.5)] * 5
    assert cross_validated(outcomes) == {"folds": 5, "in_domain_refused": 0.0, "out_of_domain_caught": 1.0}
    # One out-of-domain query scores like the in-domain ones: it is never caught.
    mixed = outcomes[:-1] + [_outcome(None, "a", 0.96, 0.5)]
    assert cross_validated(mixed)["out_of_domain_caught"] == pytest.approx(0.8)
