"""From a corpus folder to a published, calibrated index: what ``build`` does."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .corpus import load_corpus
from .encoders import Encoder
from .evaluation import calibrate_index, read_labelled
from .store import build_index, is_up_to_date
from .lexical import Tokenizer
from .scoring import DEFAULT_MODE

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
                      progress: bool = True) -> BuildOutcome:
    """Validate the corpus, embed it, calibrate on the labelled queries (if any), publish.

    ``labelled_path`` defaults to ``labelled.jsonl`` beside the corpus. With
    ``if_stale``, nothing is built when the current version has the same inputs.
    """
    entries = load_corpus(corpus)
    labelled_path = Path(labelled_path) if labelled_path else default_labelled_path(corpus)
    labelled = read_labelled(labelled_path, {e.id for e in entries}) if labelled_path else []
    settings = {"index_answers": index_answers, "default_mode": mode,
                "tokenizer": Tokenizer.from_corpus_dir(corpus).config(),
                "labelled": [[q.query, q.faq_id] for q in labelled]}
    if if_stale and is_up_to_date(out, entries, encoder.name, settings):
        return BuildOutcome(None, len(entries), labelled_path)

    def calibrate(staging: Path) -> dict:
        return {"calibration": calibrate_index(staging, encoder, labelled, progress=progress)}

    version_dir = build_index(entries, encoder, out, settings=settings, batch_size=batch_size,
                              progress=progress, keep_versions=keep_versions,
                              finalize=calibrate if labelled else None)
    return BuildOutcome(version_dir, len(entries), labelled_path)
