import json

import pytest

from conftest import SEED_CORPUS

from retriever.errors import QueryError
from retriever.normalize import normalize

# Citizen-style queries written for the tests, none of them in the corpus.
UNSEEN_QUERIES = [
    ("注销进度怎么查", "cancel-02"),
    ("注销进度在哪查", "cancel-02"),
    ("我的注销申请办好了没有", "cancel-02"),
    ("註銷辦理進度怎麼看", "cancel-02"),
    ("注销审批到哪了", "cancel-02"),
    ("提交注销后企业确认了就算注销完成吗", "cancel-02"),
    ("一建证书怎么注销", "cancel-01"),
    ("建造师注册注销怎么申请", "cancel-01"),
    ("注销在网上怎么操作", "cancel-01"),
    ("注銷手續怎麼辦理", "cancel-01"),
    ("注销要扫码人脸识别吗，具体步骤", "cancel-01"),
    ("手机号被人占用了", "cancel-03"),
    ("提示手机号已被别人绑定请确认", "cancel-03"),
    ("手機號被綁定了怎麼辦", "cancel-03"),
    ("我的手机号码显示被其他人员绑定", "cancel-03"),
    ("手机号需要重置找谁", "cancel-03"),
    ("证书注销了还能恢复吗", "cancel-04"),
    ("误操作把注册注销了怎么办", "cancel-04"),
    ("注銷錯了可以撤銷嗎", "cancel-04"),
    ("注销后反悔了怎么办", "cancel-04"),
    ("不小心注消了", "cancel-04"),
    ("单位不给我办注销怎么办", "cancel-05"),
    ("跟公司解除劳动关系了公司不注销", "cancel-05"),
    ("证书失效无法注销", "cancel-05"),
    ("原公司不配合办理注销手续", "cancel-05"),
    ("離職後公司不幫忙註銷", "cancel-05"),
    ("建造师死亡了企业怎么注销", "cancel-06"),
    ("人失踪了注册怎么办注销", "cancel-06"),
    ("員工去世了註冊怎麼註銷", "cancel-06"),
    ("本人过世了公司如何给他注销", "cancel-06"),
]


# Out-of-domain queries, also outside corpus/labelled.jsonl: other services, the exam, small talk.
OUT_OF_DOMAIN = ["北京明天天气预报", "身份证丢了去哪补办", "一建证书挂靠多少钱一年", "建造师继续教育在哪里学习",
                 "房产证怎么过户", "交通违章怎么查询", "养老保险缴费基数", "结婚登记需要什么材料",
                 "一建报名照片要求", "电脑蓝屏了怎么办", "新办营业执照的流程", "周末带孩子去哪里玩"]


def test_unseen_queries_are_not_in_the_corpus(searcher):
    corpus_texts = {t.norm for t in searcher.index.texts}
    labelled = {json.loads(line)["query"] for line in (SEED_CORPUS / "labelled.jsonl").open(encoding="utf-8")}
    assert not [q for q, _ in UNSEEN_QUERIES + [(q, None) for q in OUT_OF_DOMAIN] if q in labelled]
    assert not [q for q, _ in UNSEEN_QUERIES if normalize(q) in corpus_texts]


def test_top1_on_unseen_citizen_queries(searcher):
    """The issue asks >= 18 of 20 (90%); we hold the same rate over 30 queries."""
    for mode in ("hybrid", "dense"):
        results = searcher.search_many([q for q, _ in UNSEEN_QUERIES], top_k=1, mode=mode)
        misses = [(q, want, r.hits[0].faq_id) for (q, want), r in zip(UNSEEN_QUERIES, results)
                  if r.hits[0].faq_id != want]
        assert len(UNSEEN_QUERIES) - len(misses) >= 0.9 * len(UNSEEN_QUERIES), (mode, misses)


def test_calibrated_decision_on_queries_outside_the_calibration_set(searcher):
    """Out of sample: >= 80% of out-of-domain queries refused, <= 5% of in-domain ones."""
    in_domain = searcher.search_many([q for q, _ in UNSEEN_QUERIES], top_k=1)
    refused = [r.query for r in in_domain if r.decision == "no_match"]
    assert len(refused) <= 0.05 * len(in_domain), refused
    out = searcher.search_many(OUT_OF_DOMAIN, top_k=1)
    caught = [r.query for r in out if r.decision == "no_match"]
    assert len(caught) >= 0.8 * len(out), [r.query for r in out if r.decision != "no_match"]


def test_threshold_override_and_result_fields(searcher):
    result = searcher.search("今天天气怎么样", top_k=1)
    assert result.decision == "no_match" and result.threshold == searcher.calibration()["threshold"]
    assert len(result.hits) == 1 and result.margin is not None  # runner-up still used for the margin
    forced = searcher.search("今天天气怎么样", top_k=1, threshold=0.0)
    assert forced.decision in ("answer", "ambiguous") and forced.threshold == 0.0


def test_search_many_equals_search_one_by_one(searcher):
    queries = [q for q, _ in UNSEEN_QUERIES[:5]]
    for mode in ("hybrid", "dense", "lexical"):
        together = searcher.search_many(queries, top_k=3, mode=mode)
        for query, result in zip(queries, together):
            alone = searcher.search(query, 3, mode=mode).hits
            assert [h.faq_id for h in result.hits] == [h.faq_id for h in alone]
            assert [h.score for h in result.hits] == pytest.approx([h.score for h in alone], abs=1e-5)


def test_one_hit_per_entry_best_first(searcher):
    hits = searcher.search("注销", top_k=50).hits
    assert len(hits) == 6  # every entry once, even though each owns many vectors
    assert len({h.faq_id for h in hits}) == 6
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    # Entries 5 and 6 share an answer; both remain findable on their own.
    assert {"cancel-05", "cancel-06"} <= {h.faq_id for h in hits}


def test_hit_carries_the_matched_text_and_field(searcher):
    hit = searcher.search("注销进度查询", 1, mode="dense").hits[0]
    assert hit.faq_id == "cancel-02"
    assert hit.matched_field == "paraphrase" and hit.matched_text == "注销进度查询"
    assert hit.score == hit.dense_score == pytest.approx(1.0, abs=1e-3)  # same text, same vector
    assert hit.lexical_score is None
    hybrid = searcher.search("注销进度查询", 1).hits[0]
    assert hybrid.lexical_score == pytest.approx(1.0)  # every query token found
    assert hybrid.score == pytest.approx(0.97 * hybrid.dense_score + 0.03 * hybrid.lexical_score)
    assert hit.question == "注销手续进度如何查询?" and hit.answer.startswith("登录“中国建造师网”")
    assert hit.to_dict()["tags"] == ["进度查询"]


def test_traditional_query_equals_its_simplified_form(searcher):
    traditional = searcher.search("註銷進度怎麼查", 3).hits
    simplified = searcher.search("注销进度怎么查", 3).hits
    assert [(h.faq_id, round(h.score, 5)) for h in traditional] == [(h.faq_id, round(h.score, 5)) for h in simplified]


def test_blank_query_after_normalisation_is_refused(searcher):
    with pytest.raises(QueryError, match="empty after normalisation"):
        searcher.search("\u3000 ")


def test_text_that_is_not_unicode_is_refused(searcher):
    with pytest.raises(QueryError, match="query #2 is not valid Unicode text"):
        searcher.search_many(["注销", "\udcff\udcfe注销"])  # how Python keeps non-UTF-8 bytes of argv


