"""The layout of an index root and what a loaded version holds.

::

    index/
      CURRENT                  name of the version being served (replaced atomically)
      versions/<version>/
        manifest.json          what built it, counts, checksums of the files below
        vectors.faiss          one L2-normalised vector per text, inner product = cosine
        texts.jsonl            per vector: entry number, field, original and normalised text
        entries.jsonl          the FAQ entries

A version folder is written under a temporary name and renamed when complete,
then ``CURRENT`` is replaced: a reader sees the old version or the new one,
never a half-written one.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from ..corpus import FaqEntry

FORMAT_VERSION = 1
NORMALIZE_VERSION = 1
MANIFEST = "manifest.json"
VECTORS = "vectors.faiss"
TEXTS = "texts.jsonl"
ENTRIES = "entries.jsonl"
CURRENT = "CURRENT"
VERSIONS = "versions"
QUERY_FIELDS = ("question", "paraphrase")  # encoded as queries; "answer" as a passage


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

    @property
    def text_entry(self) -> np.ndarray:
        return np.fromiter((t.entry for t in self.texts), dtype=np.int64, count=len(self.texts))
