"""The per-query path made cheaper gives the same bits: token ids, query vectors, candidates and results.

Each shortcut is compared with the code it replaced (kept here as the reference) on the seed index and
the tokenizer's edge cases; any difference would change rankings, scores or decisions.
"""
from __future__ import annotations

import json
import struct
from array import array

import numpy as np
import pytest

from conftest import SEED_CORPUS
from retriever.encoders.e5_tokenizer import E5Tokenizer
from test_onnx_encoder import LONG_TEXT, MODEL_FILE, seed_texts

_FLOAT32 = struct.Struct("<f")


def reference_content_ids(tokenizer: E5Tokenizer, text: str) -> list[int]:
    """The Viterbi as it was written first: each sum rounded to float32 by a struct round trip."""
    def f32(value: float) -> float:
        return _FLOAT32.unpack(_FLOAT32.pack(value))[0]

    chars = tokenizer.normalise(text)
    n = len(chars)
    best = array("f", [-1e30]) * (n + 1)
    best[0] = 0.0
    piece_at, start_at = [0] * (n + 1), [0] * (n + 1)
    for i in range(n):
        if best[i] <= -1e29:
            continue
        for end in range(i + 1, min(n, i + tokenizer._longest.get(chars[i], 0)) + 1):
            index = tokenizer._ids.get(chars[i:end])
            if index is not None and (score := f32(best[i] + tokenizer._scores[index])) > best[end]:
                best[end], piece_at[end], start_at[end] = score, index, i
        if (score := f32(best[i] + tokenizer._unk_score)) > best[i + 1]:
            best[i + 1], piece_at[i + 1], start_at[i + 1] = score, tokenizer.unk, i
    tokens, at = [], n
    while at > 0:
        tokens.append(piece_at[at])
        at = start_at[at]
    return tokens[::-1]


@pytest.fixture(scope="module")
def tokenizer() -> E5Tokenizer:
    return E5Tokenizer.from_file(MODEL_FILE)


def test_token_ids_equal_the_struct_rounding_viterbi(tokenizer):
    texts = seed_texts() + ["xxxx", "哈哈哈哈", "aaaaaaaaaaaa", "。。。", "1111 2222 3333"]
    for text in texts:
        for prefixed in ("query: " + text, "passage: " + text):
            assert tokenizer.content_ids(prefixed) == reference_content_ids(tokenizer, prefixed), prefixed[:40]


def test_one_window_queries_get_the_general_paths_bits(encoder):
    texts = seed_texts()
    assert encoder.name.startswith("e5-onnx-int8-smooth")
    tokenizer = encoder._tokenizer
    for text in texts:
        ids = tokenizer.query_ids(text)
        general = encoder._encode_windows([ids])
        if len(ids) > encoder._window:
            assert text == LONG_TEXT  # two windows: the general path only
            continue
        fast = encoder.encode_queries([text])
        assert fast.dtype == general.dtype == np.float32 and fast.shape == general.shape == (1, 384)
        assert np.array_equal(fast, general), text[:40]
    passages = encoder.encode_passages(texts[:6])  # one call for several texts: the general path, unchanged
    assert passages.shape == (6, 384)


def entry_runs(searcher, entries: np.ndarray) -> np.ndarray:
    """The candidate texts as hybrid_candidates gathered them first: one np.arange per entry."""
    starts = searcher._entry_starts
    return np.concatenate([np.arange(starts[e], starts[e + 1]) for e in entries] or [np.zeros(0, dtype=np.int64)])


def test_texts_of_entries_equal_each_entrys_run(searcher):
    per_entry = np.diff(searcher._entry_starts)
    assert per_entry.max() > 1 and per_entry.min() >= 1  # paraphrases: several texts per entry
    rng = np.random.default_rng(0)
    count = len(searcher.index.entries)
    subsets = [np.zeros(0, dtype=np.int64), np.arange(count), np.array([0]), np.array([count - 1])]
    subsets += [np.unique(rng.integers(0, count, size=size)) for size in (1, 2, 3, 5, 8) for _ in range(20)]
    for entries in subsets:
        expected, got = entry_runs(searcher, entries), searcher._texts_of(entries)
        assert got.dtype == expected.dtype == np.int64 and np.array_equal(got, expected), entries


@pytest.mark.parametrize("mode", ["hybrid", "dense", "lexical"])
def test_search_results_equal_those_of_the_replaced_code(searcher, monkeypatch, mode):
    import retriever.search
    from retriever.scoring import _best_per_entry_loop

    queries = [json.loads(line)["query"] for line in
               (SEED_CORPUS / "labelled.jsonl").read_text(encoding="utf-8").splitlines()][:40]
    queries += ["今天天气怎么样", "注销", "手机号 被占用"]
    now = [searcher.search(query, top_k=5, mode=mode).to_dict() for query in queries]
    encoder, tokenizer = searcher.encoder, searcher.encoder._tokenizer
    # Every shortcut swapped for the code it replaced: the struct-rounding Viterbi, the general windowing
    # path, one np.arange per entry, the per-entry loop.
    monkeypatch.setattr(tokenizer, "content_ids", lambda text: reference_content_ids(tokenizer, text))
    monkeypatch.setattr(encoder, "_encode_one_window", lambda content: encoder._encode_windows([content]))
    monkeypatch.setattr(searcher, "_texts_of", lambda entries: entry_runs(searcher, entries))
    monkeypatch.setattr(retriever.search, "best_per_entry", _best_per_entry_loop)
    before = [searcher.search(query, top_k=5, mode=mode).to_dict() for query in queries]
    assert now == before
    assert {result["decision"] for result in now} >= {"answer", "no_match"}


def test_best_per_entry_equals_the_loop_on_ties_pads_and_nan():
    from retriever.scoring import _best_per_entry_loop, best_per_entry

    rng = np.random.default_rng(1)
    text_entry = np.repeat(np.arange(40), rng.integers(1, 4, size=40))
    cases = [([], [], 5), ([0.5, 0.5], [-1, -1], 3), ([0.9, 0.9, 0.9], [0, 1, 2], 3), ([0.0, -0.0], [0, 1], 2)]
    for _ in range(300):
        size = int(rng.integers(1, 40))
        scores = rng.choice([0.1, 0.5, 0.5, 0.9, -np.inf], size=size) if rng.random() < 0.3 else rng.random(size)
        ids = rng.choice(len(text_entry), size=size, replace=False)
        ids[rng.random(size) < 0.1] = -1  # FAISS's padding
        cases.append((scores.astype(rng.choice([np.float32, np.float64])), ids, int(rng.integers(1, 12))))
    cases.append((np.array([0.3, np.nan, 0.7], dtype=np.float32), np.array([0, 1, 2]), 3))
    for scores, ids, top_k in cases:
        expected = _best_per_entry_loop(scores, ids, text_entry, top_k)
        assert best_per_entry(scores, ids, text_entry, top_k) == expected, (scores, ids)
        assert best_per_entry(list(scores), list(ids), text_entry, top_k) == expected


def test_levels_and_bigrams_equal_their_direct_definitions():
    """The judge's per-text lookups (built for every indexed text at load) take shortcuts: the same sets."""
    from retriever.judge import _CHAR, _LEVEL, _LEVEL_ALIASES, TextView, levels

    texts = seed_texts() + ["一建和二建有什么区别", "高级工程师副高正高", "甲级资质乙类", "特级教师", "三造", "12级台风",
                            "", "abc", "建", "造价", "类别", "二级建造师报名", "無級別"]
    for text in texts:
        assert levels(text) == frozenset(_LEVEL_ALIASES.get(m, m) for m in _LEVEL.findall(text)), text
        chars = _CHAR.findall(text.lower())
        view = TextView.of(text, [])
        assert view.chars == frozenset(chars)
        assert view.bigrams == (frozenset(a + b for a, b in zip(chars, chars[1:])) or frozenset(chars))
