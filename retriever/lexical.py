"""The lexical leg: BM25 (bm25s) over jieba tokens of normalised text.

``lexical_score`` is the BM25 score of a text divided by the score a text of
average length would get for containing each query token once, capped at 1:
roughly the share of the query's information found in the text. Tokens the corpus never uses count in that sum with the highest
IDF, so a query about something else scores low even if it shares a word or two.
"""
from __future__ import annotations

import functools
import json
import logging
import math
import re
import threading
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import bm25s
import jieba
import numpy as np
import yaml

from .errors import CorpusError
from .normalize import normalize

USER_WORDS_FILE = "userdict.txt"
SYNONYMS_FILE = "synonyms.yaml"
# Function words that carry no topic; BM25's IDF would weigh them low anyway,
# but they would still inflate the coverage denominator of short queries.
STOPWORDS = frozenset("的 了 吗 呢 吧 啊 呀 么 是 我 你 他 她 它 我们 你们 在 和 与 及 或 就 都 也 还 又 "
                      "这 那 这个 那个 一个 请问 请 一下 怎么 怎么样 怎样 如何 什么 哪里 哪儿 为什么 能 "
                      "可以 要 会 有 没有 吗 嘛 哦 呗 得 地 着 过 把 被 让 给 对 从 到".split())
_NO_CONTENT = re.compile(r"^[\W_]+$")
jieba.setLogLevel(logging.WARNING)
logging.getLogger("bm25s").setLevel(logging.WARNING)


def load_synonyms(path: Path) -> dict[str, str]:
    """Read ``canonical: [variant, ...]`` pairs into a variant -> canonical map (normalised)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise CorpusError(f"{path}: cannot read synonyms ({exc})") from None
    if not isinstance(data, dict):
        raise CorpusError(f"{path}: expected a mapping 'canonical: [variants]'")
    mapping = {}
    for canonical, variants in data.items():
        if not isinstance(canonical, str) or not isinstance(variants, list) \
                or not all(isinstance(v, str) and v.strip() for v in variants):
            raise CorpusError(f"{path}: '{canonical}' must map to a list of non-empty strings")
        for variant in variants:
            mapping[normalize(variant).lower()] = normalize(canonical).lower()
    return mapping


def read_user_words(path: Path) -> list[str]:
    """Words (one a line, jieba's user-dictionary format: the first column) to keep whole."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise CorpusError(f"{path}: cannot read user words ({exc})") from None
    return [normalize(line.split()[0]) for line in lines if line.strip() and not line.startswith("#")]


class Tokenizer:
    """jieba search-mode tokens of normalised, lower-cased text, stopwords dropped, synonyms mapped."""

    def __init__(self, user_words: Iterable[str] = (), synonyms: Mapping[str, str] | None = None) -> None:
        self.user_words = sorted(set(user_words))
        self.synonyms = dict(synonyms or {})
        # jieba's dictionary takes ~0.7 s to load: loaded on the first text, which a rebuild whose
        # tokens all come from the token cache never asks for.
        self._jieba: jieba.Tokenizer | None = None
        self._loading = threading.Lock()

    def _segmenter(self) -> jieba.Tokenizer:
        with self._loading:
            if self._jieba is None:
                segmenter = jieba.Tokenizer()
                segmenter.initialize()
                # Variants and canonical forms must survive segmentation as single tokens.
                for word in {*self.user_words, *self.synonyms, *self.synonyms.values()}:
                    segmenter.add_word(word)
                self._jieba = segmenter
            return self._jieba

    @classmethod
    def from_corpus_dir(cls, corpus: str | Path) -> "Tokenizer":
        """The tokenizer configured by ``userdict.txt`` / ``synonyms.yaml`` beside the corpus, if any."""
        return cls.from_config(corpus_tokenizer_config(corpus))

    def config(self) -> dict:
        return {"user_words": self.user_words, "synonyms": self.synonyms}

    @classmethod
    def from_config(cls, config: Mapping) -> "Tokenizer":
        """The tokenizer an index was built with (shared: jieba takes ~0.5 s to set up)."""
        return _cached_tokenizer(json.dumps(dict(config), ensure_ascii=False, sort_keys=True))

    def __call__(self, normalised_text: str) -> list[str]:
        tokens = []
        for token in (self._jieba or self._segmenter()).lcut_for_search(normalised_text.lower()):
            token = token.strip()
            if not token or token in STOPWORDS or _NO_CONTENT.match(token):
                continue
            tokens.append(self.synonyms.get(token, token))
        return tokens


def corpus_tokenizer_config(corpus: str | Path) -> dict:
    """The tokenizer settings of a corpus (``userdict.txt`` / ``synonyms.yaml`` beside it, if any), as
    :meth:`Tokenizer.config` gives them, without setting jieba up."""
    folder = Path(corpus)
    folder = folder if folder.is_dir() else folder.parent
    words = read_user_words(folder / USER_WORDS_FILE) if (folder / USER_WORDS_FILE).is_file() else []
    synonyms = load_synonyms(folder / SYNONYMS_FILE) if (folder / SYNONYMS_FILE).is_file() else {}
    return {"user_words": sorted(set(words)), "synonyms": dict(synonyms)}


@functools.lru_cache(maxsize=8)
def _cached_tokenizer(config_json: str) -> Tokenizer:
    config = json.loads(config_json)
    return Tokenizer(config.get("user_words", ()), config.get("synonyms", {}))


def lucene_idf(doc_freq: int, num_docs: int) -> float:
    """BM25 IDF as bm25s computes it with method 'lucene'."""
    return math.log(1 + (num_docs - doc_freq + 0.5) / (doc_freq + 0.5))


class LexicalIndex:
    """BM25 over the index's texts (same order as the vectors)."""

    def __init__(self, texts: Sequence[str], tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        corpus_tokens = [tokenizer(text) for text in texts]
        self._bm25 = bm25s.BM25(method="lucene")
        self._bm25.index(corpus_tokens, show_progress=False)
        num_docs = len(corpus_tokens)
        doc_freq: dict[str, int] = {}
        for tokens in corpus_tokens:
            for token in set(tokens):
                doc_freq[token] = doc_freq.get(token, 0) + 1
        self._idf = {token: lucene_idf(df, num_docs) for token, df in doc_freq.items()}
        self._unknown_idf = lucene_idf(0, num_docs)
        self.num_docs = num_docs

    def scores(self, normalised_query: str) -> np.ndarray:
        """``lexical_score`` of the query against every text, in [0, 1]."""
        tokens = list(dict.fromkeys(self.tokenizer(normalised_query)))  # once each, in order
        known = [t for t in tokens if t in self._idf]
        if not known:
            return np.zeros(self.num_docs, dtype=np.float32)
        raw = np.asarray(self._bm25.get_scores(known), dtype=np.float32)
        # bm25s' Lucene variant scores a term idf * tf / (tf + k1 * length_norm): a single
        # occurrence in an average-length text earns idf / (k1 + 1). Scale that to 1.
        full_match = sum(self._idf.get(t, self._unknown_idf) for t in tokens) / (self._bm25.k1 + 1)
        return np.minimum(raw / full_match, 1.0)
