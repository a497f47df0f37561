import json
import math
import shutil

import pytest

from conftest import SEED_CORPUS
from retriever.corpus import load_corpus
from retriever.errors import IndexLoadError
from retriever.store import (CURRENT, build_index, current_version, entry_texts, is_up_to_date,
                             list_versions, load_index)
from retriever.search import Searcher
from retriever.store.embedding_cache import EmbeddingCache

SMALL = [
    {"id": "pw", "question": "忘记密码怎么办", "paraphrases": ["密码找回", "忘記密碼"], "answer": "点击找回密码。"},
    {"id": "tax", "question": "个人所得税怎么申报", "paraphrases": ["个税申报"], "answer": "在个税APP申报。"},
]


@pytest.fixture()
def small_entries(tmp_path):
    path = tmp_path / "small.jsonl"
    path.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in SMALL), encoding="utf-8")
    return load_corpus(path)


class FailingEncoder:
    """The real encoder, failing on its second call: a crash in the middle of a build."""

    def __init__(self, inner):
        self.inner, self.calls = inner, 0
        self.name, self.source, self.dim = inner.name, inner.source, inner.dim

    def encode_queries(self, texts):
        self.calls += 1
        if self.calls > 1:
            raise RuntimeError("simulated crash while embedding")
        return self.inner.encode_queries(texts)

    encode_passages = encode_queries


def test_seed_index_manifest_describes_the_build(seed_index, encoder):
    index = load_index(seed_index)
    manifest = index.manifest
    assert manifest["model"] == encoder.name and manifest["dim"] == 384
    assert manifest["counts"] == {"entries": 6, "vectors": len(index.texts)}
    assert manifest["counts"]["vectors"] >= 6 * 12  # question + >=10 paraphrases + answer
    # The judge and the labelled queries it compares with are artifacts too (retriever/judge.py).
    assert set(manifest["files"]) == {"vectors.faiss", "texts.jsonl", "entries.jsonl", "judge.json",
                                      "labelled.jsonl", "labelled.npy", "conflicts.json"}
    assert manifest["built_at"] and manifest["corpus_checksum"]
    assert {t.field for t in index.texts} == {"question", "paraphrase", "answer"}


def test_entry_texts_keep_one_copy_of_a_repeated_text(small_entries):
    entries = [small_entries[0].__class__(id="x", question="忘记密码怎么办", answer="a",
                                          paraphrases=("忘記密碼怎麼辦", "密码找回"))]
    texts = entry_texts(entries)
    assert [(t.field, t.norm) for t in texts] == [
        ("question", "忘记密码怎么办"), ("paraphrase", "密码找回"), ("answer", "a")]


def test_build_publishes_a_new_version_and_keeps_the_previous(tmp_path, small_entries, encoder):
    first = build_index(small_entries, encoder, tmp_path / "idx", progress=False)
    second = build_index(small_entries, encoder, tmp_path / "idx", progress=False)
    assert list_versions(tmp_path / "idx") == sorted([first.name, second.name])
    assert current_version(tmp_path / "idx") == second.name
    assert not list((tmp_path / "idx" / "versions").glob(".building-*"))


def test_old_versions_are_pruned(tmp_path, small_entries, encoder):
    built = [build_index(small_entries, encoder, tmp_path / "idx", progress=False, keep_versions=2).name
             for _ in range(4)]
    assert list_versions(tmp_path / "idx") == built[-2:]
    assert current_version(tmp_path / "idx") == built[-1]


def test_crash_mid_build_leaves_previous_index_serving(tmp_path, small_entries, encoder):
    root = tmp_path / "idx"
    good = build_index(small_entries, encoder, root, progress=False)
    failing = FailingEncoder(encoder)
    with pytest.raises(RuntimeError, match="simulated crash"):
        # a cache in memory: the root's own holds every vector already, and this build must embed
        build_index(small_entries, failing, root, progress=False, cache=EmbeddingCache(failing, None, progress=False))
    assert current_version(root) == good.name
    assert list_versions(root) == [good.name]
    assert not list((root / "versions").glob(".building-*"))
    assert Searcher.load(root, encoder).search("忘记密码", 1).hits[0].faq_id == "pw"


def test_up_to_date_tracks_corpus_and_model(tmp_path, small_entries, encoder):
    root = tmp_path / "idx"
    assert not is_up_to_date(root, small_entries, encoder.name)
    build_index(small_entries, encoder, root, progress=False)
    assert is_up_to_date(root, small_entries, encoder.name)
    assert not is_up_to_date(root, small_entries[:1], encoder.name)
    assert not is_up_to_date(root, small_entries, "another-model")


def test_missing_index_says_how_to_build_one(tmp_path):
    with pytest.raises(IndexLoadError, match="no index here.*faq-retriever build --corpus"):
        load_index(tmp_path)


def test_current_pointing_at_a_missing_version(tmp_path, small_entries, encoder):
    root = tmp_path / "idx"
    version = build_index(small_entries, encoder, root, progress=False)
    shutil.rmtree(version)
    with pytest.raises(IndexLoadError, match="names version .* which is missing"):
        load_index(root)


@pytest.mark.parametrize("damage, message", [
    (lambda v: v.joinpath("vectors.faiss").write_bytes(v.joinpath("vectors.faiss").read_bytes()[:100]),
     "vectors.faiss does not match its checksum"),
    (lambda v: v.joinpath("entries.jsonl").unlink(), "entries.jsonl is missing"),
    (lambda v: v.joinpath("manifest.json").write_text("{not json"), "unreadable manifest"),
])
def test_damaged_index_is_refused(tmp_path, small_entries, encoder, damage, message):
    version = build_index(small_entries, encoder, tmp_path / "idx", progress=False)
    damage(version)
    with pytest.raises(IndexLoadError, match=message):
        load_index(tmp_path / "idx")


def test_index_of_another_model_or_dimension_is_refused(tmp_path, small_entries, encoder):
    version = build_index(small_entries, encoder, tmp_path / "idx", progress=False)
    manifest_path = version / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps({**manifest, "model": "sentence-transformers/bge-small-zh"}))
    with pytest.raises(IndexLoadError, match=r"built with model 'sentence-transformers/bge-small-zh' \(dim 384\), "
                                             r"but the service runs model 'e5-onnx-int8-smooth.*' \(dim 384\)"):
        Searcher.load(version, encoder)
    manifest_path.write_text(json.dumps(manifest))
    other_dim = FailingEncoder(encoder)
    other_dim.dim = 512
    with pytest.raises(IndexLoadError, match=r"\(dim 384\), but the service runs model .* \(dim 512\)"):
        Searcher.load(version, other_dim)
    manifest_path.write_text(json.dumps({**manifest, "dim": 512}))
    with pytest.raises(IndexLoadError, match="disagree with the manifest's counts or dimension"):
        load_index(version)


def test_seed_corpus_folder_builds_and_the_pointer_file_is_plain_text(tmp_path, encoder):
    root = tmp_path / "idx"
    version = build_index(load_corpus(SEED_CORPUS), encoder, root, progress=False)
    assert (root / CURRENT).read_text().strip() == version.name


def test_if_stale_rebuilds_when_labelled_queries_or_settings_change(tmp_path, encoder):
    from retriever.pipeline import build_from_corpus

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "faq.jsonl").write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in SMALL),
                                      encoding="utf-8")
    (corpus / "labelled.jsonl").write_text('{"query": "密码忘了", "faq_id": "pw"}\n'
                                           '{"query": "天气", "faq_id": null}\n', encoding="utf-8")
    root = tmp_path / "idx"
    first = build_from_corpus(corpus, root, encoder, progress=False)
    assert first.version_dir is not None and first.labelled_path == corpus / "labelled.jsonl"
    manifest = json.loads((first.version_dir / "manifest.json").read_text())
    assert set(manifest["calibration"]) == {"hybrid", "dense", "lexical"}
    # Two labelled queries are too few to calibrate on alone: the corpus's own rounds top them up.
    assert manifest["calibration_source"]["kind"] == "both"
    assert manifest["calibration_source"]["labelled_in_domain"] == 1
    assert manifest["calibration"]["hybrid"]["labelled_queries"] > 2
    assert build_from_corpus(corpus, root, encoder, if_stale=True, progress=False).version_dir is None
    assert build_from_corpus(corpus, root, encoder, if_stale=True, mode="dense", progress=False).version_dir
    with open(corpus / "labelled.jsonl", "a", encoding="utf-8") as handle:
        handle.write('{"query": "个税", "faq_id": "tax"}\n')
    assert build_from_corpus(corpus, root, encoder, if_stale=True, mode="dense", progress=False).version_dir


def test_answers_can_be_left_out_of_the_index(tmp_path, small_entries, encoder):
    version = build_index(small_entries, encoder, tmp_path / "idx", settings={"index_answers": False},
                          progress=False)
    index = load_index(version)
    assert {t.field for t in index.texts} == {"question", "paraphrase"}
    assert index.manifest["index_answers"] is False


def _rewrite_vectors(version_dir, change):
    """Replace the stored vectors by ``change(matrix)`` and rewrite the checksum to match: only the numbers lie."""
    import faiss

    from retriever.files import sha256_file

    path = version_dir / "vectors.faiss"
    stored = faiss.read_index(str(path))
    matrix = change(stored.reconstruct_n(0, stored.ntotal).copy())
    replaced = faiss.IndexFlatIP(stored.d)
    replaced.add(matrix)
    faiss.write_index(replaced, str(path))
    manifest_path = version_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["files"]["vectors.faiss"] = sha256_file(path)
    manifest_path.write_text(json.dumps(manifest))


def _all_nan(matrix):
    matrix[:] = float("nan")
    return matrix


def _one_infinite(matrix):
    matrix[3, 0] = float("inf")
    return matrix


def _one_zero(matrix):
    matrix[2] = 0.0
    return matrix


def _unnormalised(matrix):
    return matrix * 2.0


@pytest.mark.parametrize("change, message", [
    (_all_nan, r"(\d+) of \1 vectors contain NaN or infinite values \(first at row 0\)"),
    (_one_infinite, r"1 of \d+ vectors contain NaN or infinite values \(first at row 3\)"),
    (_one_zero, r"1 of \d+ vectors are not unit length \(first at row 2\)"),
    (_unnormalised, r"(\d+) of \1 vectors are not unit length"),
])
def test_vectors_that_are_not_finite_unit_vectors_are_refused(tmp_path, small_entries, encoder, change, message):
    version = build_index(small_entries, encoder, tmp_path / "idx", progress=False)
    _rewrite_vectors(version, change)
    with pytest.raises(IndexLoadError, match=message + ".*rebuild the index"):
        load_index(tmp_path / "idx")


def test_a_nan_version_is_refused_by_reload_and_the_old_one_serves(tmp_path, small_entries, encoder):
    from retriever.reload import ReloadRefused, SearcherHolder

    root = tmp_path / "idx"
    good = build_index(small_entries, encoder, root, progress=False)
    holder = SearcherHolder(root, lambda folder: Searcher.load(folder, encoder))
    holder.load_initial()
    bad = build_index(small_entries, encoder, root, progress=False)
    _rewrite_vectors(bad, _all_nan)
    with pytest.raises(ReloadRefused, match=f"still serving {good.name}.*contain NaN"):
        holder.reload()
    assert holder.current.version == good.name
    assert math.isfinite(holder.current.search("今天天气怎么样", 1).hits[0].score)
