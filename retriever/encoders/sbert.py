"""Any sentence-transformers model, by local path (or by a name already in the local cache)."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import EncoderError, require_extra
from .base import as_unit_rows


class SentenceTransformerEncoder:
    """Any sentence-transformers model, by local path or by name already in the HF cache.

    Uses the model's own ``query`` / ``document`` prompts when its config defines them.
    """

    def __init__(self, model_name_or_path: str, batch_size: int = 64, threads: int | None = None) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        torch = require_extra("torch", "a sentence-transformers model", "sbert")
        SentenceTransformer = require_extra("sentence_transformers", "a sentence-transformers model",
                                            "sbert").SentenceTransformer
        try:
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
        return as_unit_rows(self._model.encode_query(list(texts), batch_size=self._batch_size))

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        return as_unit_rows(self._model.encode_document(list(texts), batch_size=self._batch_size))


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
