"""Building a version: the texts of every entry, their vectors, the manifest; published atomically."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import faiss
import numpy as np
from tqdm.auto import tqdm

from ..corpus import FaqEntry, corpus_checksum
from ..encoders import Encoder
from ..errors import IndexLoadError
from ..files import sha256_file, write_jsonl
from ..normalize import normalize
from .ann import build_vector_index
from .embedding_cache import EmbeddingCache
from .layout import (CONFLICTS, ENTRIES, FAST_VECTORS, FORMAT_VERSION, JUDGE, LABELLED, LABELLED_VECTORS, MANIFEST, NEGATIVES,
                     NORMALIZE_VERSION, QUERY_FIELDS, TEXTS, VECTORS, VERSIONS, IndexedText, negative_examples,
                     with_decision_checksum)
from .versions import prune_versions, publish, read_manifest


def entry_texts(entries: list[FaqEntry], index_answers: bool = True) -> list[IndexedText]:
    """Every text to embed: question, paraphrases and (unless told not to) answer of each entry.

    A text whose normalised form repeats within the same entry and role is kept once.
    """
    texts = []
    for number, entry in enumerate(entries):
        seen: set[tuple[bool, str]] = set()
        fields = [("question", entry.question)] + [("paraphrase", p) for p in entry.paraphrases]
        if index_answers:
            fields.append(("answer", entry.answer))
        for field_name, text in fields:
            norm = normalize(text)
            key = (field_name in QUERY_FIELDS, norm)
            if key not in seen:
                seen.add(key)
                texts.append(IndexedText(number, field_name, text, norm))
    return texts

def embed_texts(texts: list[IndexedText], encoder: Encoder, batch_size: int = 64,
                progress: bool = True, desc: str = "embedding", cache: EmbeddingCache | None = None) -> np.ndarray:
    """Vectors for ``texts`` in order, encoded in batches with a progress bar; through ``cache`` (only
    the texts it has not seen are embedded) when given."""
    vectors = np.zeros((len(texts), encoder.dim), dtype=np.float32)
    by_role = {
        True: [i for i, t in enumerate(texts) if t.field in QUERY_FIELDS],
        False: [i for i, t in enumerate(texts) if t.field not in QUERY_FIELDS],
    }
    if cache is not None:
        for is_query, positions in by_role.items():
            if positions:
                vectors[positions] = cache.normalised_vectors([texts[i].norm for i in positions],
                                                              "query" if is_query else "passage", desc)
        return vectors
    with tqdm(total=len(texts), desc=desc, unit="text", disable=not progress) as bar:
        for is_query, positions in by_role.items():
            encode = encoder.encode_queries if is_query else encoder.encode_passages
            for start in range(0, len(positions), batch_size):
                batch = positions[start:start + batch_size]
                vectors[batch] = encode([texts[i].norm for i in batch])
                bar.update(len(batch))
    return vectors

def build_index(entries: list[FaqEntry], encoder: Encoder, out_root: str | Path, *,
                settings: dict[str, Any] | None = None, batch_size: int = 64, progress: bool = True,
                keep_versions: int = 5, finalize: Callable[[Path], dict] | None = None,
                fast_encoder: Encoder | None = None, cache: EmbeddingCache | None = None) -> Path:
    """Embed ``entries``, write a new version under ``out_root`` and make it current.

    ``settings`` (``index_answers``, ``default_mode``, ``tokenizer``) go into the
    manifest; any other key (say, a checksum of the calibration queries) only
    counts in ``build_inputs``, which decides staleness. ``finalize``, given the complete staging folder, may return more
    manifest fields (the calibration) before the version is published.
    ``fast_encoder`` (the cascade's fast model) embeds every text a second time, into
    ``fast_vectors.faiss``; the manifest's ``fast_model`` records it.
    ``cache``: the vectors already computed (store/embedding_cache.py); by default the one under
    ``out_root``, so only texts no earlier build embedded are embedded.
    Returns the version folder. On any failure the previous version stays current.
    """
    settings = with_defaults(settings)
    out_root = Path(out_root)
    versions = out_root / VERSIONS
    versions.mkdir(parents=True, exist_ok=True)
    checksum = corpus_checksum(entries)
    # Microseconds keep name order = build order, which pruning and rollback rely on.
    version = f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S.%fZ}-{checksum[:8]}"
    staging = versions / f".building-{version}"
    staging.mkdir()
    if cache is None:
        cache = EmbeddingCache.for_index(out_root, encoder, progress=progress, batch_size=batch_size)
    try:
        texts, vector_index = _write_artifacts(staging, entries, cache, settings, progress)
        if fast_encoder is not None:
            fast_cache = EmbeddingCache.for_index(out_root, fast_encoder, enabled=cache.folder is not None,
                                                  progress=progress, batch_size=batch_size)
            _write_fast_vectors(staging, texts, fast_cache, progress)
        manifest = _manifest(staging, version, checksum, entries, len(texts), vector_index, encoder, settings,
                             fast_encoder)
        _write_manifest(staging, manifest)
        if finalize is not None:  # it may add artifacts (the judge): checksum them too
            manifest = {**manifest, **finalize(staging)}
            _write_manifest(staging, {**manifest, "files": artifact_checksums(staging)})
        final = versions / version
        os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    publish(out_root, version)
    prune_versions(out_root, keep=keep_versions)
    return final


def _manifest(staging: Path, version: str, checksum: str, entries: list[FaqEntry], vectors: int,
              vector_index: dict[str, Any], encoder: Encoder, settings: dict[str, Any],
              fast_encoder: Encoder | None) -> dict[str, Any]:
    """The new version's manifest, before ``finalize`` adds the calibration."""
    manifest = {
        "format_version": FORMAT_VERSION,
        "version": version,
        "model": encoder.name,
        "model_source": encoder.source,
        "dim": encoder.dim,
        "normalize_version": NORMALIZE_VERSION,
        "corpus_checksum": checksum,
        "counts": {"entries": len(entries), "vectors": vectors},
        "vector_index": vector_index,  # flat or HNSW, and its measured recall (store/ann.py)
        "index_answers": settings["index_answers"],
        "default_mode": settings["default_mode"],
        "lexical": {"tokenizer": settings["tokenizer"]},
        "build_inputs": build_inputs(checksum, encoder.name, settings),
        "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "files": artifact_checksums(staging),
    }
    if fast_encoder is not None:
        manifest["fast_model"] = {"model": fast_encoder.name, "model_source": fast_encoder.source,
                                  "dim": fast_encoder.dim}
    return manifest


def _write_artifacts(staging: Path, entries: list[FaqEntry], cache: EmbeddingCache, settings: dict[str, Any],
                     progress: bool) -> tuple[list[IndexedText], dict[str, Any]]:
    """The vectors, texts, entries and negative examples of a version, into ``staging``; returns the texts
    and the manifest's ``vector_index`` record (``settings["ann_min_vectors"]``: see store/ann.py)."""
    texts = entry_texts(entries, settings["index_answers"])
    vectors = embed_texts(texts, cache.encoder, progress=progress, cache=cache)
    faiss_index, vector_index = build_vector_index(vectors, [i for i, t in enumerate(texts) if t.field in QUERY_FIELDS],
                                                   settings.get("ann_min_vectors"), progress)
    faiss.write_index(faiss_index, str(staging / VECTORS))
    write_jsonl(staging / TEXTS, ({"entry": t.entry, "field": t.field, "text": t.text, "norm": t.norm}
                                  for t in texts))
    write_jsonl(staging / ENTRIES, (e.to_record() for e in entries))
    negatives = negative_examples(entries)
    if negatives:  # embedded as queries: they are questions, compared with questions
        np.save(staging / NEGATIVES, embed_texts([IndexedText(e, "negative", t, n) for e, t, n in negatives],
                                                 cache.encoder, progress=progress, cache=cache))
    return texts, vector_index


def _write_fast_vectors(staging: Path, texts: list[IndexedText], fast_cache: EmbeddingCache, progress: bool) -> None:
    """The fast model's vector of every text, rows in the order of vectors.faiss."""
    fast_encoder = fast_cache.encoder
    vectors = embed_texts(texts, fast_encoder, progress=progress, desc=f"embedding ({fast_encoder.source})",
                          cache=fast_cache)
    faiss_index = faiss.IndexFlatIP(fast_encoder.dim)
    faiss_index.add(vectors)
    faiss.write_index(faiss_index, str(staging / FAST_VECTORS))


# The publish gate's outcome of every labelled query on this version (retriever/gate.py): the next
# build's gate compares with them instead of loading and searching this version again.
GATE_OUTCOMES = "gate_outcomes.json"


def artifact_checksums(folder: Path) -> dict[str, str]:
    """sha256 of every artifact the version holds, checked when it loads."""
    return {name: sha256_file(folder / name) for name in (VECTORS, TEXTS, ENTRIES, NEGATIVES, LABELLED,
                                                          LABELLED_VECTORS, JUDGE, FAST_VECTORS, CONFLICTS,
                                                          GATE_OUTCOMES)
            if (folder / name).is_file()}

def record_artifacts(folder: Path, fields: dict[str, Any] | None = None) -> None:
    """Re-checksum the artifacts of a staging folder in its manifest (after more were added to it),
    with ``fields`` added to it, so that loading it before publication sees them too."""
    manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    _write_manifest(folder, {**manifest, **(fields or {}), "files": artifact_checksums(folder)})

DEFAULT_SETTINGS = {"index_answers": True, "default_mode": "hybrid", "tokenizer": {}}

def with_defaults(settings: dict[str, Any] | None) -> dict[str, Any]:
    return {**DEFAULT_SETTINGS, **(settings or {})}

def _write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    manifest = with_decision_checksum(manifest)  # whatever decision fields this write adds, covered
    (folder / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")

def build_inputs(checksum: str, model_name: str, settings: dict[str, Any]) -> str:
    """A digest of everything a build depends on (``checksum``: the corpus's): equal digests, equal indexes."""
    inputs = {"corpus": checksum, "model": model_name, "normalize": NORMALIZE_VERSION,
              "format": FORMAT_VERSION, **settings}
    return hashlib.sha256(json.dumps(inputs, ensure_ascii=False, sort_keys=True).encode()).hexdigest()

def is_up_to_date(out_root: str | Path, entries: list[FaqEntry], model_name: str,
                  settings: dict[str, Any] | None = None) -> bool:
    """True when the current version was built from this corpus content, model and settings."""
    try:
        manifest = read_manifest(out_root)
    except IndexLoadError:
        return False
    return manifest.get("build_inputs") == build_inputs(corpus_checksum(entries), model_name, with_defaults(settings))
