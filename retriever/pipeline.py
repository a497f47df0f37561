"""From a corpus folder to a published, calibrated index: what ``build`` does."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .corpus import load_corpus
from .encoders import Encoder
from .evaluation import calibrate, read_labelled, run
from .files import write_jsonl, write_text_atomic
from .normalize import normalize
from .judge import JUDGE_FORMAT
from .judge_training import train_judge
from .search import Searcher
from .store import build_index, is_up_to_date, load_index, record_artifacts
from .store.layout import JUDGE, LABELLED, LABELLED_VECTORS
from .lexical import Tokenizer
from .scoring import DEFAULT_MODE, MODES

LABELLED_FILE = "labelled.jsonl"


@dataclass(frozen=True)
class BuildOutcome:
    version_dir: Path | None  # None when the index was already up to date
    entries: int
    labelled_path: Path | None


def default_labelled_path(corpus: str | Path) -> Path | None:
    """``labelled.jsonl`` in the corpus folder, if there is one."""
    corpus = Path(corpus)
    path = (corpus if corpus.is_dir() else corpus.parent) / LABELLED_FILE
    return path if path.is_file() else None


def build_from_corpus(corpus: str | Path, out: str | Path, encoder: Encoder, *, mode: str = DEFAULT_MODE,
                      index_answers: bool = True, labelled_path: str | Path | None = None,
                      if_stale: bool = False, batch_size: int = 64, keep_versions: int = 5,
                      progress: bool = True, check: Callable[[Path, dict], dict] | None = None) -> BuildOutcome:
    """Validate the corpus, embed it, calibrate on the labelled queries (if any), publish.

    ``labelled_path`` defaults to ``labelled.jsonl`` beside the corpus. With
    ``if_stale``, nothing is built when the current version has the same inputs.
    ``check`` (the publish gate, :mod:`retriever.gate`) gets the complete staging folder and its
    new manifest fields before publication: it may add fields, or raise to refuse the version.
    """
    entries = load_corpus(corpus)
    labelled_path = Path(labelled_path) if labelled_path else default_labelled_path(corpus)
    labelled = read_labelled(labelled_path, {e.id for e in entries}) if labelled_path else []
    settings = {"index_answers": index_answers, "default_mode": mode,
                "tokenizer": Tokenizer.from_corpus_dir(corpus).config(),
                "labelled": [[q.query, q.faq_id] for q in labelled],
                "judge": JUDGE_FORMAT}  # an index built before the judge is stale
    if if_stale and is_up_to_date(out, entries, encoder.name, settings):
        return BuildOutcome(None, len(entries), labelled_path)

    def finalize(staging: Path) -> dict:
        fields = finalize_version(staging, encoder, labelled, progress)
        return {**fields, **check(staging, fields)} if check else fields

    version_dir = build_index(entries, encoder, out, settings=settings, batch_size=batch_size,
                              progress=progress, keep_versions=keep_versions, finalize=finalize)
    return BuildOutcome(version_dir, len(entries), labelled_path)


def finalize_version(staging: Path, encoder: Encoder, labelled: list, progress: bool = True) -> dict:
    """Calibrate every mode on the labelled queries (if any) and train the judge into the staging folder.

    Returns the manifest fields to add. The labelled queries are embedded once for all of it.
    """
    memo = QueryMemo(encoder)
    index = load_index(staging)
    searcher = Searcher(index, memo)
    fields: dict = {}
    if labelled:
        fields["calibration"] = {mode: calibrate(run(searcher, labelled, mode=mode, progress=progress))
                                 for mode in MODES}
        keep_labelled(staging, index, labelled, memo)
    if len(index.entries) > 1:
        judge = train_judge(Searcher(index, memo), labelled, progress=progress)  # one that sees the labelled queries
        write_text_atomic(staging / JUDGE, json.dumps(judge.to_dict(), ensure_ascii=False) + "\n")
        fields["judge"] = dict(judge.summary or {})
    record_artifacts(staging)  # a check of the staging version (the publish gate) then sees them
    return fields


def keep_labelled(staging: Path, index, labelled: list, encoder: Encoder) -> None:
    """Store the labelled queries and their vectors in the version, and give them to ``index``."""
    numbers = {entry.id: number for number, entry in enumerate(index.entries)}
    texts = [normalize(q.query) for q in labelled]
    vectors = encoder.encode_queries(texts)
    write_jsonl(staging / LABELLED, ({"query": q.query, "faq_id": q.faq_id} for q in labelled))
    np.save(staging / LABELLED_VECTORS, vectors)
    index.labelled = [(numbers[q.faq_id] if q.faq_id is not None else -1, text) for q, text in zip(labelled, texts)]
    index.labelled_vectors = vectors


class QueryMemo:
    """An encoder that embeds each query text once (calibration and judge training ask for the same ones)."""

    def __init__(self, inner: Encoder) -> None:
        self.inner, self.name, self.source, self.dim = inner, inner.name, inner.source, inner.dim
        self._vectors: dict[str, np.ndarray] = {}

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self._vectors]
        if missing:
            self._vectors.update(zip(missing, self.inner.encode_queries(missing)))
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        return np.stack([self._vectors[t] for t in texts])

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self.inner.encode_passages(texts)
