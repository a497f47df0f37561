"""The layout of an index root and what a loaded version holds.

::

    index/
      CURRENT                  name of the version being served (replaced atomically)
      versions/<version>/
        manifest.json          what built it, counts, checksums of the files below
        vectors.faiss          one L2-normalised vector per text, inner product = cosine
        texts.jsonl            per vector: entry number, field, original and normalised text
        entries.jsonl          the FAQ entries
        negatives.npy          one vector per negative example (entries' ``negatives``), if any
        judge.json             the second-stage judge and its calibration (see retriever/judge.py), if trained
        labelled.jsonl         the labelled queries the build calibrated on, and their vectors in
        labelled.npy           labelled.npy: the judge compares queries with them
        conflicts.json         what the build's conflict check found: texts two entries share (let through
                               with --allow-conflicts), paraphrases nearer another entry
                               (retriever/corpus/conflicts.py)
        nearest.json           each paraphrase's nearest own and other text, for the next build's conflict
                               check (retriever/corpus/nearest.py); a cache, not checked when loading
        fast_vectors.faiss     with a fast model (``build --fast-model``): one vector per text from it,
                               same rows as vectors.faiss; the manifest's ``fast_model`` names the model
                               and ``fast_path`` holds the gate calibrated at build time (retriever/cascade.py)

A version folder is written under a temporary name and renamed when complete,
then ``CURRENT`` is replaced: a reader sees the old version or the new one,
never a half-written one.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from ..corpus import FaqEntry
from ..corpus.conflicts import CONFLICTS_FILE
from ..judge import Judge
from ..normalize import normalize

FORMAT_VERSION = 1
NORMALIZE_VERSION = 2  # 2: invisible characters (U+200B, U+FEFF, soft hyphen, bidi controls) removed
MANIFEST = "manifest.json"
VECTORS = "vectors.faiss"
TEXTS = "texts.jsonl"
ENTRIES = "entries.jsonl"
NEGATIVES = "negatives.npy"
JUDGE = "judge.json"
LABELLED = "labelled.jsonl"
LABELLED_VECTORS = "labelled.npy"
FAST_VECTORS = "fast_vectors.faiss"
CONFLICTS = CONFLICTS_FILE
CURRENT = "CURRENT"
VERSIONS = "versions"
# Encoded as queries (negative examples too: they are questions); "answer" as a passage.
QUERY_FIELDS = ("question", "paraphrase", "negative")
# The manifest fields that decide answers (thresholds, margins, the judge's limits, the fast path's
# gate), and the key under which the manifest records their checksum: the file checksums cannot see them.
DECISION_FIELDS = ("calibration", "calibration_source", "judge", "fast_path")
DECISION_CHECKSUM = "decision_checksum"


def decision_checksum(manifest: dict[str, Any]) -> str:
    """sha256 of the manifest's decision fields as canonical JSON (whatever keys they hold; absent ones too)."""
    fields = {name: manifest[name] for name in DECISION_FIELDS if name in manifest}
    canonical = json.dumps(fields, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def with_decision_checksum(manifest: dict[str, Any]) -> dict[str, Any]:
    """``manifest`` with the checksum of its decision fields recorded (call on every manifest write)."""
    return {**manifest, DECISION_CHECKSUM: decision_checksum(manifest)}


@dataclass(frozen=True)
class IndexedText:
    entry: int  # position in the entry table
    field: str  # "question" | "paraphrase" | "answer"
    text: str  # as written in the corpus, shown to users
    norm: str  # normalize(text): what was embedded

@dataclass
class FaqIndex:
    """A loaded index version: entries, the text behind every vector, and the FAISS index."""

    path: Path
    manifest: dict[str, Any]
    entries: list[FaqEntry]
    texts: list[IndexedText]
    vectors: faiss.Index
    # Per negative example: (entry number, text as written, normalised text), and its vector row.
    negatives: list[tuple[int, str, str]] = field(default_factory=list)
    negative_vectors: np.ndarray | None = None
    judge: Judge | None = None  # None: an index built before the judge, or without one
    # Labelled queries: (entry number, or -1 when no entry answers it; normalised query), and vectors.
    labelled: list[tuple[int, str]] = field(default_factory=list)
    labelled_vectors: np.ndarray | None = None
    # The fast model's vectors of the same texts (None: an index built without a fast model).
    fast_vectors: faiss.Index | None = None

    @property
    def text_entry(self) -> np.ndarray:
        return np.fromiter((t.entry for t in self.texts), dtype=np.int64, count=len(self.texts))


def negative_examples(entries: list[FaqEntry]) -> list[tuple[int, str, str]]:
    """``(entry number, text, normalised text)`` of every negative example, each once per entry.

    The rows of ``negatives.npy``, in this order.
    """
    rows = []
    for number, entry in enumerate(entries):
        seen: set[str] = set()
        for text in entry.negatives:
            norm = normalize(text)
            if norm not in seen:
                seen.add(norm)
                rows.append((number, text, norm))
    return rows
