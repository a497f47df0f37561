import pytest

from retriever.errors import CorpusError
from retriever.lexical import LexicalIndex, Tokenizer, lucene_idf


def test_tokens_are_search_mode_without_stopwords_and_punctuation():
    tokens = Tokenizer()("一级建造师注销进度怎么查询?")
    assert {"建造师", "注销", "进度", "查询"} <= set(tokens)
    assert "怎么" not in tokens and "?" not in tokens


def test_user_words_and_synonyms(tmp_path):
    (tmp_path / "userdict.txt").write_text("# words kept whole\n强制注销 10 n\n", encoding="utf-8")
    (tmp_path / "synonyms.yaml").write_text("一级建造师: [一建, 壹建]\n注销: [注消]\n", encoding="utf-8")
    tokenizer = Tokenizer.from_corpus_dir(tmp_path)
    assert "强制注销" in tokenizer("办理强制注销")
    assert tokenizer("一建注消") == ["一级建造师", "注销"]
    rebuilt = Tokenizer.from_config(tokenizer.config())
    assert rebuilt("一建注消") == ["一级建造师", "注销"]


@pytest.mark.parametrize("text, message", [("- a\n- b\n", "expected a mapping"), ("注销: 注消\n", "list of non-empty")])
def test_bad_synonyms_are_refused(tmp_path, text, message):
    (tmp_path / "synonyms.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(CorpusError, match=message):
        Tokenizer.from_corpus_dir(tmp_path)


def test_lexical_score_is_bounded_and_penalises_unknown_words():
    index = LexicalIndex(["注销进度查询", "手机号被绑定", "证书恢复"], Tokenizer())
    exact = index.scores("注销进度查询")
    assert exact.argmax() == 0 and exact.max() > 0.9  # a little under 1: longer than the average text
    assert all(0.0 <= s <= 1.0 for s in exact)
    # Half the query's words are unknown to the corpus: the score drops well below an exact match.
    partial = index.scores("注销进度 天气 预报")
    assert partial.argmax() == 0 and partial.max() < 0.6
    assert index.scores("今天天气").max() == 0.0


def test_idf_matches_lucene():
    assert lucene_idf(0, 10) == pytest.approx(3.0910, abs=1e-4)  # ln(1 + 10.5 / 0.5)
    assert lucene_idf(10, 10) == pytest.approx(0.0465, abs=1e-4)  # ln(1 + 0.5 / 10.5)


def test_full_match_in_an_average_length_text_scores_one():
    """Checks the normalisation against bm25s' own scoring: equal lengths, one occurrence -> exactly 1."""
    index = LexicalIndex(["注销", "进度", "查询", "绑定"], Tokenizer())
    assert index.scores("注销").tolist() == pytest.approx([1.0, 0.0, 0.0, 0.0])
    assert index.scores("注销进度").tolist() == pytest.approx([0.5, 0.5, 0.0, 0.0])
