"""Index artifacts: build, publish atomically, load and check.

Layout of an index root::

    index/
      CURRENT                  name of the version being served (replaced atomically)
      versions/<version>/
        manifest.json          what built it, counts, checksums of the files below
        vectors.faiss          one L2-normalised vector per text, inner product = cosine
        texts.jsonl            per vector: entry number, field, original and normalised text
        entries.jsonl          the FAQ entries

A version folder is written under a temporary name and renamed when complete,
then ``CURRENT`` is replaced: a reader sees the old version or the new one,
never a half-written one.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

import faiss
import numpy as np
from tqdm.auto import tqdm

from .corpus import FaqEntry, corpus_checksum
from .encoders import Encoder
from .errors import IndexLoadError
from .normalize import normalize

FORMAT_VERSION = 1
# Bump when normalize() changes behaviour: indexes built before are then stale.
NORMALIZE_VERSION = 1
MANIFEST = "manifest.json"
VECTORS = "vectors.faiss"
TEXTS = "texts.jsonl"
ENTRIES = "entries.jsonl"
CURRENT = "CURRENT"
VERSIONS = "versions"
QUERY_FIELDS = ("question", "paraphrase")  # encoded as queries; "answer" as a passage


@dataclass(frozen=True)
class IndexedText:
    entry: int  # position in the entry table
    field: str  # "question" | "paraphrase" | "answer"
    text: str  # as written in the corpus, shown to users
    norm: str  # normalize(text): what was embedded


@dataclass
class FaqIndex:
    """A loaded index version: entries, the text behind every vector, and the FAISS index."""

    path: Path
    manifest: dict[str, Any]
    entries: list[FaqEntry]
    texts: list[IndexedText]
    vectors: faiss.Index

    @property
    def text_entry(self) -> np.ndarray:
        return np.fromiter((t.entry for t in self.texts), dtype=np.int64, count=len(self.texts))


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
                progress: bool = True) -> np.ndarray:
    """Vectors for ``texts`` in order, encoded in batches with a progress bar."""
    vectors = np.zeros((len(texts), encoder.dim), dtype=np.float32)
    by_role = {
        True: [i for i, t in enumerate(texts) if t.field in QUERY_FIELDS],
        False: [i for i, t in enumerate(texts) if t.field not in QUERY_FIELDS],
    }
    with tqdm(total=len(texts), desc="embedding", unit="text", disable=not progress) as bar:
        for is_query, positions in by_role.items():
            encode = encoder.encode_queries if is_query else encoder.encode_passages
            for start in range(0, len(positions), batch_size):
                batch = positions[start:start + batch_size]
                vectors[batch] = encode([texts[i].norm for i in batch])
                bar.update(len(batch))
    return vectors


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_jsonl(path: Path, records: Iterable[dict]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def _read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def write_text_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so that readers see the old or the new content, never a part."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def build_index(entries: list[FaqEntry], encoder: Encoder, out_root: str | Path, *,
                settings: dict[str, Any] | None = None, batch_size: int = 64, progress: bool = True,
                keep_versions: int = 5, finalize: Callable[[Path], dict] | None = None) -> Path:
    """Embed ``entries``, write a new version under ``out_root`` and make it current.

    ``settings`` (``index_answers``, ``default_mode``, ``tokenizer``) go into the
    manifest; any other key (say, a checksum of the calibration queries) only
    counts in ``build_inputs``, which decides staleness. ``finalize``, given the complete staging folder, may return more
    manifest fields (the calibration) before the version is published.
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
    try:
        texts = entry_texts(entries, settings["index_answers"])
        vectors = embed_texts(texts, encoder, batch_size=batch_size, progress=progress)
        faiss_index = faiss.IndexFlatIP(encoder.dim)
        faiss_index.add(vectors)
        faiss.write_index(faiss_index, str(staging / VECTORS))
        _write_jsonl(staging / TEXTS, ({"entry": t.entry, "field": t.field, "text": t.text,
                                        "norm": t.norm} for t in texts))
        _write_jsonl(staging / ENTRIES, (e.to_record() for e in entries))
        manifest = {
            "format_version": FORMAT_VERSION,
            "version": version,
            "model": encoder.name,
            "model_source": encoder.source,
            "dim": encoder.dim,
            "normalize_version": NORMALIZE_VERSION,
            "corpus_checksum": checksum,
            "counts": {"entries": len(entries), "vectors": len(texts)},
            "index_answers": settings["index_answers"],
            "default_mode": settings["default_mode"],
            "lexical": {"tokenizer": settings["tokenizer"]},
            "build_inputs": build_inputs(entries, encoder.name, settings),
            "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "files": {name: _sha256(staging / name) for name in (VECTORS, TEXTS, ENTRIES)},
        }
        _write_manifest(staging, manifest)
        if finalize is not None:
            _write_manifest(staging, {**manifest, **finalize(staging)})
        final = versions / version
        os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    write_text_atomic(out_root / CURRENT, version + "\n")
    prune_versions(out_root, keep=keep_versions)
    return final


DEFAULT_SETTINGS = {"index_answers": True, "default_mode": "hybrid", "tokenizer": {}}


def with_defaults(settings: dict[str, Any] | None) -> dict[str, Any]:
    return {**DEFAULT_SETTINGS, **(settings or {})}


def _write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    (folder / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def build_inputs(entries: list[FaqEntry], model_name: str, settings: dict[str, Any]) -> str:
    """A digest of everything a build depends on: equal digests, equal indexes."""
    inputs = {"corpus": corpus_checksum(entries), "model": model_name, "normalize": NORMALIZE_VERSION,
              "format": FORMAT_VERSION, **settings}
    return hashlib.sha256(json.dumps(inputs, ensure_ascii=False, sort_keys=True).encode()).hexdigest()


def list_versions(out_root: str | Path) -> list[str]:
    """Published version names, oldest first."""
    versions = Path(out_root) / VERSIONS
    if not versions.is_dir():
        return []
    return sorted(p.name for p in versions.iterdir() if p.is_dir() and not p.name.startswith("."))


def current_version(out_root: str | Path) -> str | None:
    try:
        return (Path(out_root) / CURRENT).read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None


def prune_versions(out_root: str | Path, keep: int) -> None:
    """Delete all but the newest ``keep`` versions (never the current one) and stale staging folders."""
    out_root = Path(out_root)
    current = current_version(out_root)
    for name in list_versions(out_root)[:-keep] if keep > 0 else []:
        if name != current:
            shutil.rmtree(out_root / VERSIONS / name, ignore_errors=True)
    for staging in (out_root / VERSIONS).glob(".building-*"):
        if time.time() - staging.stat().st_mtime > 24 * 3600:  # a crashed build, not a running one
            shutil.rmtree(staging, ignore_errors=True)


def resolve_version_dir(path: str | Path) -> Path:
    """The version folder that ``path`` designates: a version folder itself, or an index root."""
    path = Path(path)
    if (path / MANIFEST).is_file():
        return path
    version = current_version(path)
    if version is None:
        raise IndexLoadError(f"{path}: no index here (no {MANIFEST} or {CURRENT}); "
                             f"build one with: python scripts/build_index.py --corpus corpus/ --out {path}")
    folder = path / VERSIONS / version
    if not (folder / MANIFEST).is_file():
        raise IndexLoadError(f"{path}: {CURRENT} names version '{version}', which is missing")
    return folder


def read_manifest(path: str | Path) -> dict[str, Any]:
    folder = resolve_version_dir(path)
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise IndexLoadError(f"{folder / MANIFEST}: unreadable manifest ({exc})") from None
    if manifest.get("format_version") != FORMAT_VERSION:
        raise IndexLoadError(f"{folder}: index format {manifest.get('format_version')!r}, "
                             f"this version of the retriever reads format {FORMAT_VERSION}; rebuild it")
    return manifest


def check_compatible(manifest: dict[str, Any], encoder: Encoder, where: str | Path = "index") -> None:
    """Refuse an index whose vectors were made by another model or have another dimension."""
    if manifest.get("model") != encoder.name or manifest.get("dim") != encoder.dim:
        raise IndexLoadError(
            f"{where}: built with model '{manifest.get('model')}' (dim {manifest.get('dim')}), "
            f"but the service runs model '{encoder.name}' (dim {encoder.dim}); "
            f"rebuild the index with this model or start the service with the index's model")
    if manifest.get("normalize_version") != NORMALIZE_VERSION:
        raise IndexLoadError(f"{where}: built with text normalisation v{manifest.get('normalize_version')}, "
                             f"this retriever uses v{NORMALIZE_VERSION}; rebuild the index")


def load_index(path: str | Path, verify_checksums: bool = True) -> FaqIndex:
    """Load the index version at ``path`` (a version folder or an index root)."""
    folder = resolve_version_dir(path)
    manifest = read_manifest(folder)
    for name, expected in manifest.get("files", {}).items():
        file = folder / name
        if not file.is_file():
            raise IndexLoadError(f"{folder}: file {name} is missing")
        if verify_checksums and _sha256(file) != expected:
            raise IndexLoadError(f"{folder}: file {name} does not match its checksum (damaged or edited)")
    try:
        vectors = faiss.read_index(str(folder / VECTORS))
        texts = [IndexedText(r["entry"], r["field"], r["text"], r["norm"]) for r in _read_jsonl(folder / TEXTS)]
        entries = [FaqEntry.from_record(r) for r in _read_jsonl(folder / ENTRIES)]
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        raise IndexLoadError(f"{folder}: cannot read index files ({exc})") from None
    counts = manifest.get("counts", {})
    if (vectors.ntotal, len(texts), len(entries)) != (counts.get("vectors"), counts.get("vectors"),
                                                      counts.get("entries")) or vectors.d != manifest.get("dim"):
        raise IndexLoadError(f"{folder}: files disagree with the manifest's counts or dimension")
    return FaqIndex(folder, manifest, entries, texts, vectors)


def is_up_to_date(out_root: str | Path, entries: list[FaqEntry], model_name: str,
                  settings: dict[str, Any] | None = None) -> bool:
    """True when the current version was built from this corpus content, model and settings."""
    try:
        manifest = read_manifest(out_root)
    except IndexLoadError:
        return False
    return manifest.get("build_inputs") == build_inputs(entries, model_name, with_defaults(settings))
