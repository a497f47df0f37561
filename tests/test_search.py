import numpy as np
import pytest

from retriever.errors import QueryError
from retriever.search import best_per_entry

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


def test_unseen_queries_are_not_in_the_corpus(searcher):
    corpus_texts = {t.norm for t in searcher.index.texts}
    from retriever.normalize import normalize

    assert not [q for q, _ in UNSEEN_QUERIES if normalize(q) in corpus_texts]


def test_top1_on_unseen_citizen_queries(searcher):
    """The issue asks >= 18 of 20 (90%); we hold the same rate over 30 queries."""
    results = searcher.search_many([q for q, _ in UNSEEN_QUERIES], top_k=1)
    misses = [(q, want, hits[0].faq_id) for (q, want), hits in zip(UNSEEN_QUERIES, results)
              if hits[0].faq_id != want]
    assert len(UNSEEN_QUERIES) - len(misses) >= 0.9 * len(UNSEEN_QUERIES), misses


def test_search_many_equals_search_one_by_one(searcher):
    queries = [q for q, _ in UNSEEN_QUERIES[:5]]
    together = searcher.search_many(queries, top_k=3)
    for query, hits in zip(queries, together):
        alone = searcher.search(query, 3)
        assert [h.faq_id for h in hits] == [h.faq_id for h in alone]
        assert [h.score for h in hits] == pytest.approx([h.score for h in alone], abs=1e-5)


def test_one_hit_per_entry_best_first(searcher):
    hits = searcher.search("注销", top_k=50)
    assert len(hits) == 6  # every entry once, even though each owns many vectors
    assert len({h.faq_id for h in hits}) == 6
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    # Entries 5 and 6 share an answer; both remain findable on their own.
    assert {"cancel-05", "cancel-06"} <= {h.faq_id for h in hits}


def test_hit_carries_the_matched_text_and_field(searcher):
    hit = searcher.search("注销进度查询", 1)[0]
    assert hit.faq_id == "cancel-02"
    assert hit.matched_field == "paraphrase" and hit.matched_text == "注销进度查询"
    assert hit.score == pytest.approx(1.0, abs=1e-3)  # the same text embeds to the same vector
    assert hit.question == "注销手续进度如何查询?" and hit.answer.startswith("登录“中国建造师网”")
    assert hit.to_dict()["tags"] == ["进度查询"]


def test_traditional_query_equals_its_simplified_form(searcher):
    traditional = searcher.search("註銷進度怎麼查", 3)
    simplified = searcher.search("注销进度怎么查", 3)
    assert [(h.faq_id, round(h.score, 5)) for h in traditional] == [(h.faq_id, round(h.score, 5)) for h in simplified]


def test_blank_query_after_normalisation_is_refused(searcher):
    with pytest.raises(QueryError, match="empty after normalisation"):
        searcher.search("\u3000 ")


def test_best_per_entry_collapses_and_orders():
    text_entry = np.array([0, 0, 1, 1, 2])
    scores = [0.9, 0.8, 0.85, 0.7, 0.95, 0.1]
    ids = [0, 1, 2, 3, 4, -1]  # -1: FAISS padding
    assert best_per_entry(scores, ids, text_entry, top_k=2) == [(2, 0.95, 4), (0, 0.9, 0)]
    assert best_per_entry(scores, ids, text_entry, top_k=10) == [(2, 0.95, 4), (0, 0.9, 0), (1, 0.85, 2)]
    assert best_per_entry([], [], text_entry, top_k=3) == []
