"""A rebuild that changed few entries takes over the served version's judge and thresholds; past the
share of changed entries (summed over rebuilds), with other settings, or with --retrain it learns them again."""
from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from retriever import cli
from retriever.corpus import load_corpus
from retriever.pipeline import build_from_corpus
from retriever.search import Searcher
from retriever.store import read_manifest
from retriever.store import decision_reuse
from retriever.store.decision_reuse import changed_entries, reusable_decisions, settings_digest
from retriever.store.layout import DECISION_FIELDS, JUDGE

from conftest import SEED_CORPUS

EDITS = [("手机号被别人绑定了", "我的手机号被别人绑定了怎么改回来"),
         ("不小心把证书注销了", "我一不小心把建造师证书给注销掉了")]


def _corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "corpus"
    folder.mkdir()
    shutil.copy(SEED_CORPUS / "seed.yaml", folder)
    return folder


def _edit(corpus: Path, number: int) -> None:
    old, new = EDITS[number]
    path = corpus / "seed.yaml"
    text = path.read_text(encoding="utf-8")
    assert text.count(f"- {old}\n") == 1, old
    path.write_text(text.replace(f"- {old}\n", f"- {new}\n"), encoding="utf-8")


def _decisions(root: Path) -> tuple[dict, bytes]:
    manifest = read_manifest(root)
    version = root / "versions" / manifest["version"]
    return {name: manifest.get(name) for name in DECISION_FIELDS}, (version / JUDGE).read_bytes()


@pytest.fixture(scope="module")
def built(tmp_path_factory, encoder):
    """The seed corpus (self-calibrated), built once: its decisions learned by itself."""
    tmp_path = tmp_path_factory.mktemp("reuse")
    corpus = _corpus(tmp_path)
    root = tmp_path / "index"
    build_from_corpus(corpus, root, encoder, progress=False)
    return corpus, root


def _copy(built, tmp_path: Path) -> tuple[Path, Path]:
    corpus, root = built
    shutil.copytree(corpus, tmp_path / "corpus")
    shutil.copytree(root, tmp_path / "index")
    return tmp_path / "corpus", tmp_path / "index"


def test_entries_changed_counts_edits_additions_and_removals_not_order():
    entries = load_corpus(SEED_CORPUS / "seed.yaml")
    records = [entry.to_record() for entry in entries]
    assert changed_entries(json.loads(json.dumps(records)), reversed(entries)) == 0
    edited = [replace(entries[0], paraphrases=(*entries[0].paraphrases, "再问一遍"))] + entries[1:]
    assert changed_entries(records, edited) == 1
    assert changed_entries(records, entries[1:] + [replace(entries[0], id="brand-new")]) == 2


def test_a_build_records_that_it_learned_its_decisions(built):
    _, root = built
    manifest = read_manifest(root)
    assert manifest["decisions_learned"]["version"] == manifest["version"]
    assert manifest["decisions_learned"]["reused"] is False
    assert {"calibration", "judge"} <= set(manifest["build_stages"])


def test_the_default_share_relearns_when_one_of_the_seeds_entries_changed(built, tmp_path, encoder):
    corpus, root = _copy(built, tmp_path)
    _edit(corpus, 0)
    entries = load_corpus(corpus)
    settings = read_manifest(root)["decisions_learned"]["settings"]
    assert len(entries) < 100  # one edit is more than 1% of them
    assert reusable_decisions(root, entries, settings) is None
    taken = reusable_decisions(root, entries, settings, max_share=1 / len(entries))
    assert (taken.changed, taken.learned_in) == (1, read_manifest(root)["version"])


def test_few_changes_take_the_decisions_over_until_their_sum_passes_the_share(built, tmp_path, encoder, monkeypatch):
    corpus, root = _copy(built, tmp_path)
    first = read_manifest(root)
    entries = len(load_corpus(corpus))
    monkeypatch.setattr(decision_reuse, "MAX_CHANGED_SHARE", 1.5 / entries)  # one changed entry, not two
    before = _decisions(root)

    _edit(corpus, 0)
    build_from_corpus(corpus, root, encoder, progress=False)
    second = read_manifest(root)
    assert second["decisions_learned"] == {"version": first["version"], "entries_changed_since": 1,
                                           "settings": first["decisions_learned"]["settings"], "reused": True}
    assert "judge" not in second["build_stages"]
    assert _decisions(root) == before  # thresholds, margins and the judge, byte for byte
    # the new version answers by its new paraphrase with the judge it took over
    result = Searcher.load(root, encoder).search(EDITS[0][1], 1)
    assert (result.hits[0].faq_id, result.hits[0].matched_text) == ("cancel-03", EDITS[0][1])
    assert result.decision == "answer"

    _edit(corpus, 1)  # two entries changed since the decisions were learned: more than the share
    build_from_corpus(corpus, root, encoder, progress=False)
    third = read_manifest(root)
    assert third["decisions_learned"]["version"] == third["version"]
    assert third["decisions_learned"]["reused"] is False and "judge" in third["build_stages"]


def test_other_settings_or_retrain_learn_again(built, tmp_path, encoder, monkeypatch):
    corpus, root = _copy(built, tmp_path)
    monkeypatch.setattr(decision_reuse, "MAX_CHANGED_SHARE", 0.5)
    served = read_manifest(root)
    assert served["decisions_learned"]["settings"] == settings_digest(encoder.name, served_settings(root))
    build_from_corpus(corpus, root, encoder, progress=False, retrain=True)
    assert read_manifest(root)["decisions_learned"]["reused"] is False
    build_from_corpus(corpus, root, encoder, progress=False, mode="dense")  # another default mode
    assert read_manifest(root)["decisions_learned"]["version"] == read_manifest(root)["version"]
    shutil.copy(SEED_CORPUS / "labelled.jsonl", corpus)  # labelled queries now: calibrated on them
    build_from_corpus(corpus, root, encoder, progress=False, mode="dense")
    manifest = read_manifest(root)
    assert manifest["decisions_learned"]["reused"] is False
    assert manifest["calibration_source"]["labelled_in_domain"] > 0


def served_settings(root: Path) -> dict:
    """The settings the seed build used, as build_from_corpus makes them (a corpus without labelled queries)."""
    from retriever.pipeline import _build_settings

    return _build_settings(root.parent / "corpus", "hybrid", True, [], True, None, 0.0)


def test_the_cli_says_what_it_took_over_and_retrain_learns_again(built, tmp_path, monkeypatch, capsys):
    corpus, root = _copy(built, tmp_path)
    monkeypatch.setattr(decision_reuse, "MAX_CHANGED_SHARE", 0.5)
    _edit(corpus, 0)
    model = read_manifest(root)["model_source"]
    assert cli.main(["build", "--corpus", str(corpus), "--out", str(root), "--model", model, "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "judge and thresholds taken over from version" in out and "1 entries changed" in out
    _edit(corpus, 1)
    assert cli.main(["build", "--corpus", str(corpus), "--out", str(root), "--model", model, "--quiet",
                     "--retrain"]) == 0
    out = capsys.readouterr().out
    assert "judge trained in" in out and "taken over" not in out
