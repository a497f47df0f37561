"""Each paraphrase's nearest text of its own entry and of any other entry: what the conflict check
reports (retriever/corpus/conflicts.py), computed in blocks or taken over from the previous version.

A full table is one matrix product of the paraphrases against every question and paraphrase:
20,000 entries (40,000 texts) take ~4 s of both cores, most of a rebuild's own work once the judge
is taken over. After an edit nearly every paraphrase has the same texts around it, so a build reads
the served version's table (``nearest.json``, written by the same model) and, for each paraphrase
of an unchanged entry whose nearest other text still exists, compares it only with the texts added
since: its nearest other text is the old one or one of them. Paraphrases of changed entries, and
those whose nearest other text is gone, are computed afresh.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np
from tqdm.auto import tqdm

from ..files import write_text_atomic

NEAREST_FILE = "nearest.json"
ASKING_FIELDS = ("question", "paraphrase")  # texts an entry answers
# Rows of paraphrases compared at once: a 512 x 40,000 float32 block is 80 MB.
CHUNK_ROWS = 512


class IndexedTextLike(Protocol):
    entry: int  # position in the entry list
    field: str
    text: str
    norm: str


@dataclass(frozen=True)
class NearestTable:
    """Per paraphrase (``probes``, rows of the texts): the row and cosine of its nearest own text and of
    its nearest text of another entry (row -1 and cosine -inf when there is none)."""

    probes: np.ndarray
    own: np.ndarray
    own_cosine: np.ndarray
    other: np.ndarray
    other_cosine: np.ndarray


class _Asking:
    """The questions and paraphrases of ``texts`` ordered by entry, so that a text's own are one slice."""

    def __init__(self, texts: Sequence[IndexedTextLike], vectors: np.ndarray, entry_ids: Sequence[str]) -> None:
        asking = np.fromiter((i for i, t in enumerate(texts) if t.field in ASKING_FIELDS), dtype=np.int64)
        owner = np.fromiter((texts[i].entry for i in asking), dtype=np.int64, count=len(asking))
        order = np.argsort(owner, kind="stable")  # already so when texts come entry by entry
        self.rows, self.entry = asking[order], owner[order]
        self.matrix = np.ascontiguousarray(vectors[self.rows], dtype=np.float32)
        self.first = np.searchsorted(self.entry, self.entry, "left")
        self.after = np.searchsorted(self.entry, self.entry, "right")
        self.keys = [(entry_ids[texts[i].entry], texts[i].norm) for i in self.rows]
        self.probes = np.flatnonzero(np.fromiter((texts[i].field == "paraphrase" for i in self.rows), dtype=bool,
                                                 count=len(self.rows)) & (self.after - self.first > 1))


def nearest_texts(texts: Sequence[IndexedTextLike], vectors: np.ndarray, entry_ids: Sequence[str],
                  previous: dict[str, Any] | None = None, progress: bool = False) -> NearestTable:
    """The table of ``texts`` (``vectors``: one unit row each); ``previous``: the served version's
    record (:func:`read_nearest`) to take what has not changed from."""
    asking = _Asking(texts, vectors, entry_ids)
    count = len(asking.probes)
    own, other = np.full(count, -1, dtype=np.int64), np.full(count, -1, dtype=np.int64)
    own_cosine, other_cosine = np.full(count, -np.inf, np.float32), np.full(count, -np.inf, np.float32)
    kept = _kept(asking, previous) if previous else {}
    for at, (mine, mine_cosine, theirs, theirs_cosine) in kept.items():
        own[at], own_cosine[at], other[at], other_cosine[at] = mine, mine_cosine, theirs, theirs_cosine
    if kept:
        _compare_with_added(asking, previous, np.fromiter(kept, dtype=np.int64), other, other_cosine)
    fresh = np.array([at for at in range(count) if at not in kept], dtype=np.int64)
    for start in tqdm(range(0, len(fresh), CHUNK_ROWS), desc="conflict check", unit="block", disable=not progress):
        places = fresh[start:start + CHUNK_ROWS]
        block = asking.probes[places]
        similar = asking.matrix[block] @ asking.matrix.T
        own[places], own_cosine[places] = _own_best(similar, block, asking.first, asking.after)
        other[places] = similar.argmax(axis=1)  # own texts were set to -inf by _own_best
        other_cosine[places] = similar[np.arange(len(block)), other[places]]
    other[other_cosine == -np.inf] = -1
    rows = asking.rows
    return NearestTable(rows[asking.probes], rows[own], own_cosine, np.where(other >= 0, rows[other], -1), other_cosine)


def _kept(asking: _Asking, previous: dict[str, Any]) -> dict[int, tuple[int, float, int, float]]:
    """Probes (places in ``asking.probes``) whose previous nearest texts still hold: their entry unchanged
    and their nearest other text still there. Values: positions in ``asking`` and cosines."""
    position = {key: at for at, key in enumerate(asking.keys)}
    before = previous["asking"]
    changed = {key for key in position if key not in before} | (before - position.keys())
    touched = {entry for entry, _ in changed}
    kept = {}
    for place, probe in enumerate(asking.probes):
        entry, norm = asking.keys[probe]
        found = previous["probes"].get((entry, norm))
        if found is None or entry in touched:
            continue
        own_norm, own_cosine, other_key, other_cosine = found
        other_at = position.get(other_key, -1) if other_key is not None else -1
        if (entry, own_norm) not in position or (other_key is not None and other_at < 0):
            continue
        kept[place] = (position[(entry, own_norm)], own_cosine, other_at, other_cosine)
    return kept


def _compare_with_added(asking: _Asking, previous: dict[str, Any], kept: np.ndarray, other: np.ndarray,
                        other_cosine: np.ndarray) -> None:
    """Raise the kept probes' nearest other text to an added text that is nearer (none is of their entry)."""
    added = np.array([at for at, key in enumerate(asking.keys) if key not in previous["asking"]], dtype=np.int64)
    if not len(added):
        return
    for start in range(0, len(kept), CHUNK_ROWS):
        places = kept[start:start + CHUNK_ROWS]
        similar = asking.matrix[asking.probes[places]] @ asking.matrix[added].T
        best = similar.argmax(axis=1)
        cosine = similar[np.arange(len(places)), best]
        nearer = cosine > other_cosine[places]
        other[places[nearer]], other_cosine[places[nearer]] = added[best[nearer]], cosine[nearer]


def _own_best(similar: np.ndarray, block: np.ndarray, first: np.ndarray, after: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each probe row of ``similar``: its nearest own text (not itself) and that cosine; its own
    texts' cells (columns ``first..after`` of the probe) are then set to -inf, leaving the others."""
    best = np.empty(len(block), dtype=np.int64)
    cosine = np.empty(len(block), dtype=np.float32)
    for i, probe in enumerate(block):
        low, high = first[probe], after[probe]
        own = similar[i, low:high].copy()
        own[probe - low] = -np.inf
        best[i] = low + int(own.argmax())
        cosine[i] = own[best[i] - low]
        similar[i, low:high] = -np.inf
    return best, cosine


# --- the table in a version folder -----------------------------------------------------------------


def write_nearest(folder: Path, table: NearestTable, texts: Sequence[IndexedTextLike], entry_ids: Sequence[str],
                  model: str) -> None:
    """``nearest.json`` in ``folder``: the table by (entry id, normalised text), for the next build."""
    def key(row: int) -> list[str] | None:
        return [entry_ids[texts[row].entry], texts[row].norm] if row >= 0 else None

    record = {"model": model,
              "asking": [key(i) for i, t in enumerate(texts) if t.field in ASKING_FIELDS],
              "probes": [[*key(p), texts[o].norm, float(oc), key(t), float(tc) if t >= 0 else None]
                         for p, o, oc, t, tc in zip(table.probes.tolist(), table.own.tolist(),
                                                    table.own_cosine.tolist(), table.other.tolist(),
                                                    table.other_cosine.tolist())]}
    write_text_atomic(folder / NEAREST_FILE, json.dumps(record, ensure_ascii=False, separators=(",", ":")))


def read_nearest(folder: Path | None, model: str) -> dict[str, Any] | None:
    """The table a version folder holds, if it was made by ``model`` and reads back; else None (computed afresh)."""
    if folder is None:
        return None
    try:
        record = json.loads((folder / NEAREST_FILE).read_text(encoding="utf-8"))
        if record.get("model") != model:
            return None
        probes = {(entry, norm): (own, own_cosine, tuple(other) if other else None,
                                  other_cosine if other_cosine is not None else float("-inf"))
                  for entry, norm, own, own_cosine, other, other_cosine in record["probes"]}
        return {"asking": {tuple(key) for key in record["asking"]}, "probes": probes}
    except (OSError, ValueError, TypeError, KeyError):
        return None
