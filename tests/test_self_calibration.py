"""An FAQ with no labelled queries calibrates its no-match decision on itself (retriever/self_calibration.py).

The off-topic questions asked here are written for these tests: none of them is in the bundled set
the build calibrates with (checked below), so a refusal is learned, not remembered.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from retriever.pipeline import build_from_corpus, calibration_kind
from retriever.evaluation import LabelledQuery
from retriever.search import Searcher
from retriever.self_calibration import load_offtopic, same_text_groups, topics_about
from retriever.store import load_index

REPO = Path(__file__).resolve().parent.parent

# Asked of the seed FAQ (一级建造师), which must refuse them all.
OFF_TOPIC = ["明天广州下不下雨", "帮我订一张去杭州的火车票", "红烧鱼怎么做", "你是谁开发的", "股市今天涨了吗",
             "孩子发烧三十九度怎么办", "怎么申请信用卡", "猫为什么喜欢晒太阳"]
# Questions citizens ask about the seed FAQ's entries, in words none of its texts use as such.
IN_DOMAIN = {"我想把一建的注册注销掉，怎么弄": "cancel-01", "注销申请交上去了，在哪看办到哪一步": "cancel-02"}

HOUSING_FUND = [
    {"id": "gjj-01", "question": "住房公积金怎么提取？",
     "paraphrases": ["公积金提取流程", "怎么把公积金取出来", "提取公积金需要什么材料"],
     "answer": "登录公积金网上服务大厅，选择提取业务，上传材料后提交，审核通过后转入本人银行卡。"},
    {"id": "gjj-02", "question": "公积金贷款最高能贷多少？",
     "paraphrases": ["公积金贷款额度", "用公积金买房能贷多少钱", "公积金贷款上限是多少"],
     "answer": "单人最高贷款额度为50万元，夫妻双方缴存的最高为80万元，并不超过账户余额的15倍。"},
    {"id": "gjj-03", "question": "离职后公积金账户怎么处理？",
     "paraphrases": ["辞职了公积金怎么办", "换工作公积金要转吗", "离职以后公积金封存了怎么办"],
     "answer": "离职后账户会封存，新单位开户后可办理转移；符合条件的也可以申请销户提取。"},
    {"id": "gjj-04", "question": "公积金缴存比例是多少？",
     "paraphrases": ["公积金每月交多少", "单位和个人各交百分之几的公积金", "公积金缴费比例怎么定"],
     "answer": "单位和职工的缴存比例各为5%至12%，由单位在此范围内自行确定。"},
]


def _build(corpus: Path, out: Path, encoder, **options) -> Searcher:
    outcome = build_from_corpus(corpus, out, encoder, progress=False, **options)
    return Searcher(load_index(outcome.version_dir), encoder)


def _write_jsonl(folder: Path, records: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "faq.jsonl", "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return folder


@pytest.fixture(scope="module")
def unlabelled_seed(tmp_path_factory, encoder) -> Searcher:
    """The seed corpus without its labelled queries: what a user's own FAQ looks like."""
    folder = tmp_path_factory.mktemp("unlabelled")
    shutil.copy(REPO / "corpus" / "seed.yaml", folder / "seed.yaml")
    return _build(folder, tmp_path_factory.mktemp("unlabelled-index"), encoder)


def test_the_test_questions_are_not_the_bundled_ones():
    bundled = {q for topic in load_offtopic() for q in topic.questions}
    assert not set(OFF_TOPIC) & bundled
    assert len(bundled) >= 150 and all(topic.questions for topic in load_offtopic())


def test_an_faq_without_labelled_queries_refuses_off_topic_and_answers_its_own(unlabelled_seed):
    source = unlabelled_seed.index.manifest["calibration_source"]
    assert source["kind"] == "self" and source["labelled_in_domain"] == 0
    assert source["paraphrases"] > 0 and source["absent"] == 6 and source["offtopic"] > 100
    assert unlabelled_seed.judge is not None and unlabelled_seed.judge.threshold is not None
    for query in OFF_TOPIC:
        assert unlabelled_seed.search(query).decision == "no_match", query
    for query, faq_id in IN_DOMAIN.items():
        result = unlabelled_seed.search(query)
        assert result.hits[0].faq_id == faq_id and result.decision == "answer", (query, result.decision)
    # Every mode has a threshold of its own (the judge decides hybrid; dense and lexical use these).
    for mode in ("hybrid", "dense", "lexical"):
        calibration = unlabelled_seed.calibration(mode)
        assert calibration["threshold"] is not None and calibration["cross_validated"]["folds"] == 5
    assert unlabelled_seed.search("明天广州下不下雨", mode="dense").decision == "no_match"


def test_health_says_how_the_index_was_calibrated(unlabelled_seed):
    info = unlabelled_seed.info()
    assert info["calibration_source"]["kind"] == "self"
    held_out = info["calibration_source"]["held_out"]
    assert set(held_out) >= {"answered_right", "refused_when_unanswerable", "confident_wrong", "rounds"}
    assert held_out["refused_when_unanswerable"] > 0.5


def test_the_build_says_how_it_calibrated(tmp_path, capsys):
    from retriever.cli import main

    shutil.copy(REPO / "corpus" / "seed.yaml", tmp_path / "seed.yaml")
    assert main(["build", "--corpus", str(tmp_path), "--out", str(tmp_path / "index"), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "calibrated (self) on the corpus itself" in printed and "held-out check" in printed
    assert "never no_match" not in printed


def test_a_housing_fund_faq_does_not_learn_to_refuse_housing_fund_questions(tmp_path, encoder):
    searcher = _build(_write_jsonl(tmp_path / "gjj", HOUSING_FUND), tmp_path / "index", encoder)
    source = searcher.index.manifest["calibration_source"]
    assert "公积金" in source["offtopic_topics_left_out"]
    bundled = {q for t in load_offtopic() if t.topic == "公积金" for q in t.questions}
    assert "住房公积金怎么提取" in bundled  # the bundled question that this FAQ answers
    result = searcher.search("住房公积金怎么提取")
    assert result.hits[0].faq_id == "gjj-01" and result.decision == "answer"
    assert searcher.search("今晚的足球比赛几点开始").decision == "no_match"


def test_topics_are_left_out_by_their_keywords():
    topics = load_offtopic()
    about = topics_about(topics, ["公积金怎么提取", "医保卡丢了怎么补办"])
    assert "公积金" in about and "社保医保" in about and "天气" not in about


def test_near_identical_texts_of_one_entry_are_one_text():
    entries = np.array([0, 0, 0, 1, 1])
    norms = ["注销流程是什么?", "注销流程是什么", "注销需要多久", "注销流程是什么", "怎么查进度"]
    groups = same_text_groups(entries, norms)
    assert groups[0] == groups[1] != groups[2]
    assert groups[3] != groups[0]  # the same words in another entry are another text
    assert groups[3] != groups[4]


def test_the_judge_declines_to_reorder_when_answers_repeat_their_questions(tmp_path, encoder):
    """No paraphrases, answers equal to questions: every held-out round would be its own answer."""
    questions = ["注销手续操作流程是怎样的", "注销申请提交后怎么查进度", "手机号码换了怎么修改", "注册证书丢了怎么补办",
                 "变更执业单位要多久", "初始注册需要哪些材料", "继续教育在哪里报名", "延续注册什么时候办理",
                 "个人信息填错了怎么更正", "注册审批结果在哪里看", "聘用企业不同意注销怎么办", "注销后还能重新注册吗"]
    records = [{"id": f"q{i:02d}", "question": q, "answer": q} for i, q in enumerate(questions)]
    searcher = _build(_write_jsonl(tmp_path / "degenerate", records), tmp_path / "index", encoder)
    summary = searcher.index.manifest["judge"]
    assert summary["rounds"]["present"] == 0  # no round could be found by a text other than its own copy
    assert summary["reorder"] is False and searcher.judge.reorder is False
    for i, question in enumerate(questions[:4]):
        assert searcher.search(question).hits[0].faq_id == f"q{i:02d}"


def test_a_few_labelled_queries_are_topped_up_and_enough_stand_alone():
    few = [LabelledQuery("注销流程", "cancel-01"), LabelledQuery("天气", None)]
    enough = [LabelledQuery(f"q{i}", "a") for i in range(20)] + [LabelledQuery(f"o{i}", None) for i in range(10)]
    assert calibration_kind([], True) == "self"
    assert calibration_kind(few, True) == "both"
    assert calibration_kind(enough, True) == "labelled"
    assert calibration_kind([], False) == "none" and calibration_kind(few, False) == "labelled"


def test_the_seed_corpus_with_its_labelled_queries_calibrates_on_them(searcher):
    assert searcher.index.manifest["calibration_source"]["kind"] == "labelled"
    assert searcher.index.manifest["calibration_source"]["labelled_in_domain"] == 42


def test_without_self_calibration_an_unlabelled_faq_never_refuses(tmp_path, encoder):
    shutil.copy(REPO / "corpus" / "seed.yaml", tmp_path / "seed.yaml")
    searcher = _build(tmp_path, tmp_path / "index", encoder, self_calibration=False)
    assert searcher.index.manifest["calibration_source"]["kind"] == "none"
    assert "calibration" not in searcher.index.manifest
    assert searcher.search("明天广州下不下雨").decision != "no_match"
