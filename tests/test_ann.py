"""The approximate index of large collections: chosen at build time, its recall measured and recorded,
shown in /healthz, filters still exact, one FAISS thread per search in a started worker.

The collections here are small: the size from which a graph is built is lowered for them
(``ann_min_vectors``); benchmarks/large_collection.py measures the real sizes.
"""
from __future__ import annotations

import dataclasses
import json
import urllib.request

import faiss
import numpy as np
import pytest

from conftest import REPO, SEED_CORPUS, running_server
from retriever.corpus import load_corpus
from retriever.errors import IndexLoadError
from retriever.evaluation import read_labelled
from retriever.filters import metadata_filter
from retriever.http import create_app
from retriever.normalize import normalize
from retriever.search import Searcher
from retriever.store import ann, build_index, load_index, read_manifest
from retriever.store.layout import MANIFEST

COLLECTIONS = REPO / "tests" / "data" / "collections"
SMALL_THRESHOLD = 50  # vectors: the three test corpora together hold about 130


@pytest.fixture(scope="module")
def entries():
    return [*load_corpus(SEED_CORPUS), *load_corpus(COLLECTIONS / "shebao.yaml"),
            *load_corpus(COLLECTIONS / "gongjijin.yaml")]


@pytest.fixture(scope="module")
def hnsw_root(tmp_path_factory, entries, encoder):
    root = tmp_path_factory.mktemp("hnsw-index")
    build_index(entries, encoder, root, settings={"ann_min_vectors": SMALL_THRESHOLD}, progress=False)
    return root


@pytest.fixture(scope="module")
def hnsw_searcher(hnsw_root, encoder):
    return Searcher.load(hnsw_root, encoder)


@pytest.fixture(scope="module")
def flat_searcher(hnsw_searcher):
    """The same version searched exactly: its vectors copied into a flat index."""
    index = hnsw_searcher.index
    flat = faiss.IndexFlatIP(index.vectors.d)
    flat.add(index.vectors.reconstruct_n(0, index.vectors.ntotal))
    return Searcher(dataclasses.replace(index, vectors=flat), hnsw_searcher.encoder)


@pytest.fixture(scope="module")
def query_vectors(encoder):
    labelled = read_labelled(SEED_CORPUS / "labelled.jsonl")
    return encoder.encode_queries([normalize(q.query) for q in labelled])


def test_a_large_index_is_built_as_hnsw_with_its_recall_in_the_manifest(hnsw_root, hnsw_searcher):
    record = read_manifest(hnsw_root)["vector_index"]
    assert record["kind"] == "hnsw" and record["ann_min_vectors"] == SMALL_THRESHOLD
    assert record["recall"] >= ann.RECALL_TARGET and record["recall_at"] == 10
    assert record["ef_search"] in ann.EF_SEARCH_STEPS and record["m"] == ann.HNSW_M
    assert record["recall_queries"] > 50  # every question and paraphrase of the corpus (fewer than 1,000)
    graph = faiss.downcast_index(hnsw_searcher.index.vectors)
    assert isinstance(graph, faiss.IndexHNSWFlat) and graph.hnsw.efSearch == record["ef_search"]


def test_a_collection_below_the_default_size_stays_flat(hnsw_searcher):
    vectors = hnsw_searcher.index.vectors.reconstruct_n(0, hnsw_searcher.index.vectors.ntotal)
    index, record = ann.build_vector_index(vectors, range(len(vectors)))
    assert record == {"kind": "flat", "ann_min_vectors": ann.ANN_MIN_VECTORS} and ann.kind_of(index) == "flat"
    assert ann.describe({})["kind"] == "flat"  # a version built before the record was kept


def test_recall_against_flat_on_labelled_queries(hnsw_searcher, query_vectors):
    graph = hnsw_searcher.index.vectors
    exact = ann.exact_vectors(graph)
    kth = exact.search(query_vectors, 10)[0][:, -1]
    found = graph.search(query_vectors, 10)[0]
    recall = float(np.mean([(row >= k - 1e-6).sum() / 10 for row, k in zip(found, kth)]))
    assert recall >= 0.99


@pytest.mark.parametrize("mode", ["hybrid", "dense"])
def test_search_answers_as_flat_search_does(hnsw_searcher, flat_searcher, mode):
    queries = [q.query for q in read_labelled(SEED_CORPUS / "labelled.jsonl")[:20]]
    got = hnsw_searcher.search_many(queries, top_k=5, mode=mode)
    expected = flat_searcher.search_many(queries, top_k=5, mode=mode)
    for query, mine, exact in zip(queries, got, expected):
        assert [h.faq_id for h in mine.hits] == [h.faq_id for h in exact.hits], query
        assert mine.decision == exact.decision


@pytest.mark.parametrize("overfetch_max", [ann.OVERFETCH_MAX, 0], ids=["graph-overfetch", "exact-among-kept"])
@pytest.mark.parametrize("categories,tags", [(["社保卡"], None), (["注销注册"], None), (None, ["缴费"]),
                                             (["住房公积金", "社保缴费"], None)])
def test_filtered_search_returns_every_hit(hnsw_searcher, flat_searcher, entries, monkeypatch, overfetch_max,
                                           categories, tags):
    monkeypatch.setattr(ann, "OVERFETCH_MAX", overfetch_max)
    keeps = metadata_filter(categories, tags)
    wanted = {e.id for e in entries if keeps(e)}
    assert wanted  # the case filters something real
    for mode in ("hybrid", "dense"):
        got = hnsw_searcher.search("社保卡丢了怎么办", top_k=len(entries), mode=mode, entry_filter=keeps)
        expected = flat_searcher.search("社保卡丢了怎么办", top_k=len(entries), mode=mode, entry_filter=keeps)
        assert {h.faq_id for h in got.hits} == wanted
        assert [h.faq_id for h in got.hits] == [h.faq_id for h in expected.hits]


def test_search_vectors_leaves_rows_out_exactly(hnsw_searcher, query_vectors):
    graph = hnsw_searcher.index.vectors
    left_out = np.zeros(graph.ntotal, dtype=bool)
    left_out[::3] = True
    _, ids = ann.search_vectors(graph, query_vectors, 10, left_out)
    _, exact_ids = ann.search_among(graph, query_vectors, 10, np.flatnonzero(~left_out))
    assert not left_out[ids[ids >= 0]].any()
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, exact_ids)]) >= 0.99


def test_threshold_zero_or_unreached_recall_keeps_flat(hnsw_searcher, monkeypatch):
    vectors = hnsw_searcher.index.vectors.reconstruct_n(0, hnsw_searcher.index.vectors.ntotal)
    index, record = ann.build_vector_index(vectors, range(len(vectors)), 0)
    assert record == {"kind": "flat", "ann_min_vectors": 0} and index.ntotal == len(vectors)
    monkeypatch.setattr(ann, "RECALL_TARGET", 1.01)  # no graph can reach it
    index, record = ann.build_vector_index(vectors, range(len(vectors)), SMALL_THRESHOLD)
    assert record["kind"] == "flat" and "recall@10" in record["reason"] and ann.kind_of(index) == "flat"


def test_a_manifest_that_names_another_kind_is_refused(hnsw_root, tmp_path):
    version = load_index(hnsw_root).path
    copy = tmp_path / version.name
    copy.mkdir()
    for file in version.iterdir():
        (copy / file.name).write_bytes(file.read_bytes())
    manifest = json.loads((copy / MANIFEST).read_text(encoding="utf-8"))
    manifest["vector_index"] = {"kind": "flat"}
    (copy / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(IndexLoadError, match="holds a hnsw index, the manifest says flat; rebuild the index"):
        load_index(copy)


def test_healthz_shows_the_vector_index(hnsw_searcher):
    body = create_app(hnsw_searcher).test_client().get("/healthz").get_json()
    shown = body["index"]["vector_index"]
    assert shown["kind"] == "hnsw" and shown["recall"] >= 0.99 and shown["ef_search"] in ann.EF_SEARCH_STEPS


def test_a_started_worker_searches_with_one_faiss_thread(hnsw_root):
    """/healthz reports the FAISS thread count of the request thread that answers it."""
    with running_server(hnsw_root, workers=1) as (url, _):
        with urllib.request.urlopen(url + "/healthz", timeout=30) as response:
            shown = json.load(response)["index"]["vector_index"]
        query = urllib.request.quote("社保卡丢了怎么办")
        with urllib.request.urlopen(f"{url}/v1/search?q={query}", timeout=30) as response:
            hits = json.load(response)["results"]
    assert shown["kind"] == "hnsw" and shown["search_threads"] == 1
    assert hits[0]["faq_id"] == "sb-03"
