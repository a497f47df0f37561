"""The embedding cache: vectors kept beside the index, keyed by model, kind and normalised text; appends
that a crash cannot corrupt; compaction; shared by everyone in a process who asks for the same folder."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from retriever.normalize import normalize
from retriever.store.embedding_cache import EMBEDDINGS, VECTORS_FILE, EmbeddingCache, model_slug

TEXTS = ["一级建造师怎么注销注册", "注销流程", "網上怎麼辦理註銷手續", "注销需要在哪个系统上申请"]


class Counting:
    """The real encoder, counting the texts it is asked to embed (per kind)."""

    def __init__(self, inner) -> None:
        self.inner, self.name, self.source, self.dim = inner, inner.name, inner.source, inner.dim
        self.calls: list[tuple[str, list[str]]] = []

    def encode_queries(self, texts):
        self.calls.append(("query", list(texts)))
        return self.inner.encode_queries(texts)

    def encode_passages(self, texts):
        self.calls.append(("passage", list(texts)))
        return self.inner.encode_passages(texts)

    @property
    def embedded(self) -> list[str]:
        return [text for _, texts in self.calls for text in texts]


@pytest.fixture()
def counting(encoder):
    return Counting(encoder)


def test_vectors_are_the_models_own_and_embedded_once(tmp_path, encoder, counting):
    cache = EmbeddingCache(counting, tmp_path / "c", progress=False)
    vectors = cache.vectors(TEXTS + TEXTS[:1], "query")
    assert vectors.dtype == np.float32 and vectors.shape == (5, encoder.dim)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    expected = encoder.encode_queries([normalize(t) for t in TEXTS])
    np.testing.assert_allclose(vectors[:4], expected, atol=1e-6)  # a batch changes a vector by ~4e-8 at most
    np.testing.assert_array_equal(vectors[4], vectors[0])
    assert sorted(counting.embedded) == sorted(normalize(t) for t in TEXTS)  # the repeat not embedded again
    # the traditional spelling is normalised first: asking for its simplified form is a hit
    assert cache.normalised_vectors([normalize(TEXTS[2])], "query").tolist() == [vectors[2].tolist()]
    assert len(counting.embedded) == 4


def test_kinds_are_separate_keys(tmp_path, encoder, counting):
    cache = EmbeddingCache(counting, tmp_path / "c", progress=False)
    query, passage = cache.vectors(TEXTS[:1], "query"), cache.vectors(TEXTS[:1], "passage")
    assert [kind for kind, _ in counting.calls] == ["query", "passage"]
    assert not np.array_equal(query, passage)  # "query: " and "passage: " prefixes give other vectors
    np.testing.assert_array_equal(passage, encoder.encode_passages([normalize(TEXTS[0])]))
    with pytest.raises(ValueError, match="kind must be one of query, passage"):
        cache.vectors(TEXTS[:1], "answer")


def test_a_new_process_reads_them_back_without_embedding(tmp_path, encoder, counting):
    folder = tmp_path / "c"
    first = EmbeddingCache(encoder, folder, progress=False).vectors(TEXTS, "query")
    again = EmbeddingCache(counting, folder, progress=False)  # another object: reads the file
    assert len(again) == len(TEXTS)
    np.testing.assert_array_equal(again.vectors(TEXTS, "query"), first)
    assert counting.calls == [] and again.embedded == 0 and again.hits == len(TEXTS)


def test_for_index_lives_under_the_index_root_and_is_shared(tmp_path, encoder):
    cache = EmbeddingCache.for_index(tmp_path, encoder, progress=False)
    assert cache.folder == (tmp_path / EMBEDDINGS / model_slug(encoder.name)).resolve()
    assert EmbeddingCache.for_index(tmp_path, encoder) is cache  # the build's gate sees what calibration embedded
    cache.vectors(TEXTS[:2], "query")
    recorded = json.loads((cache.folder / "model.json").read_text(encoding="utf-8"))
    assert recorded == {"model": encoder.name, "dim": encoder.dim}
    assert model_slug("a/b c") != model_slug("a-b-c")  # readable, and never two models in one folder


def test_turned_off_it_writes_nothing(tmp_path, counting):
    cache = EmbeddingCache.for_index(tmp_path, counting, enabled=False, progress=False)
    cache.vectors(TEXTS, "query")
    cache.vectors(TEXTS, "query")
    assert not (tmp_path / EMBEDDINGS).exists()
    assert len(counting.embedded) == len(TEXTS)  # still once each within the object


@pytest.mark.parametrize("damage", ["cut", "garbage", "flipped"])
def test_a_torn_tail_is_ignored_and_cut_off_by_the_next_append(tmp_path, encoder, counting, damage):
    folder = tmp_path / "c"
    EmbeddingCache(encoder, folder, progress=False).vectors(TEXTS[:3], "query")
    path = folder / VECTORS_FILE
    size = path.stat().st_size
    record = size // 3
    data = path.read_bytes()
    if damage == "cut":  # a crash in the middle of the last record
        path.write_bytes(data[:size - record // 2])
    elif damage == "garbage":  # a header and nothing after it
        path.write_bytes(data + b"EVC1\x00\x00\x00")
    else:  # a bit of the last vector changed: its CRC does not check
        path.write_bytes(data[:size - 40] + bytes([data[size - 40] ^ 1]) + data[size - 39:])
    reopened = EmbeddingCache(counting, folder, progress=False)
    survivors = 3 if damage == "garbage" else 2
    assert len(reopened) == survivors
    vectors = reopened.vectors(TEXTS, "query")  # the lost one and a new one are embedded, and appended
    assert len(counting.embedded) == 4 - survivors
    np.testing.assert_allclose(vectors, encoder.encode_queries([normalize(t) for t in TEXTS]), atol=1e-6)
    clean = EmbeddingCache(encoder, folder, progress=False)
    assert len(clean) == 4  # the torn tail was cut before the append: every record reads again


def test_compaction_keeps_what_is_used_and_readers_follow(tmp_path, encoder, counting):
    folder = tmp_path / "c"
    cache = EmbeddingCache(encoder, folder, progress=False)
    reader = EmbeddingCache(counting, folder, progress=False)
    cache.vectors(TEXTS, "query")
    keep = {("query", normalize(t)) for t in TEXTS[:2]}
    assert cache.compact(keep) == 2
    assert len(EmbeddingCache(encoder, folder, progress=False)) == 2
    reader.vectors(TEXTS[:2], "query")  # sees the compacted file (a new inode), reads it whole
    assert counting.calls == []
    reader.vectors(TEXTS[2:3], "query")
    assert counting.embedded == [normalize(TEXTS[2])]
    assert cache.compact_if_large(keep) == 0  # 3 records for 2 used: under the bound


def test_appends_from_two_objects_interleave_without_loss(tmp_path, encoder):
    folder = tmp_path / "c"
    one, two = EmbeddingCache(encoder, folder, progress=False), EmbeddingCache(encoder, folder, progress=False)
    one.vectors(TEXTS[:2], "query")
    two.vectors(TEXTS[1:4], "query")  # it had not read the file since: TEXTS[1] is read, not embedded
    assert two.embedded == 2
    one.vectors(TEXTS[3:], "passage")
    assert len(EmbeddingCache(encoder, folder, progress=False)) == 5
    assert os.path.getsize(folder / VECTORS_FILE) % 4 == 0  # records stay 4-byte aligned


def test_worker_processes_embed_what_this_process_would(tmp_path, encoder, monkeypatch):
    """Both cores: texts spread over two processes (each loading the model by name, one thread),
    in order, with the vectors this process computes."""
    import retriever.store.embedding_cache as module

    monkeypatch.setattr(module, "PARALLEL_MIN_TEXTS", 1)
    texts = [f"{t}（第{n}问）" for n in range(10) for t in TEXTS]
    cache = EmbeddingCache(encoder, tmp_path / "c", progress=False, batch_size=8, workers=2)
    try:
        vectors = cache.vectors(texts, "query")
        assert cache._parallel._pool is not None  # the workers did it
    finally:
        cache.close()
    np.testing.assert_allclose(vectors, encoder.encode_queries([normalize(t) for t in texts]), atol=1e-6)
    assert len(EmbeddingCache(encoder, tmp_path / "c", progress=False)) == len(texts)


def test_tokens_are_remembered_across_builds_and_a_torn_line_is_skipped(tmp_path):
    from retriever.lexical import Tokenizer
    from retriever.store.token_cache import TokenCache

    config = {"user_words": ["一建"], "synonyms": {}}
    texts = [normalize(t) for t in TEXTS] + ["一建注销怎么弄"]
    cache = TokenCache.for_index(tmp_path, config)
    assert [cache(t) for t in texts] == [Tokenizer.from_config(config)(t) for t in texts]
    assert "一建" in cache(texts[-1])  # the user word kept whole, as the index's own tokenizer does
    cache.save()
    path = cache.path
    del cache
    with open(path, "a", encoding="utf-8") as handle:
        handle.write('["半行')  # a crash in the middle of an append
    again = TokenCache.for_index(tmp_path, config)
    assert again.stored == len(texts)
    again("新的问题")
    again.save()
    assert TokenCache(config, path).stored == len(texts) + 1  # the torn line stays one skipped line
    assert TokenCache.for_index(tmp_path, {"user_words": [], "synonyms": {}}).path != path  # per settings
