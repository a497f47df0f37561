"""Loading a version: resolve it, read and check the manifest, files, checksums, counts and model."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable, TypeVar

import faiss
import numpy as np

from ..corpus import FaqEntry
from ..encoders import Encoder
from ..errors import IndexLoadError
from ..files import read_jsonl, sha256_file
from ..judge import Judge
from ..normalize import normalize
from .ann import kind_of, read_vector_index
from .layout import (DECISION_CHECKSUM, DECISION_FIELDS, ENTRIES, FAST_VECTORS, JUDGE, LABELLED, LABELLED_VECTORS,
                     MANIFEST, NEGATIVES, NORMALIZE_VERSION, TEXTS, VECTORS, FaqIndex, IndexedText, decision_checksum,
                     negative_examples)
from .versions import read_manifest, resolve_version_dir

T = TypeVar("T")

# Encoders write float32 unit vectors; rounding keeps norms within ~1e-6 of 1. A looser bound
# still catches what matters: NaN, zero or unnormalised vectors score every query as a match.
NORM_TOLERANCE = 1e-3
CHECK_BLOCK = 8192  # vectors read back at a time by check_vectors


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


def check_fast_compatible(manifest: dict[str, Any], fast_encoder: Encoder, where: str | Path = "index") -> None:
    """Refuse a fast model other than the one whose vectors the index holds."""
    recorded = manifest.get("fast_model") or {}
    if recorded.get("model") != fast_encoder.name or recorded.get("dim") != fast_encoder.dim:
        raise IndexLoadError(f"{where}: its fast model is '{recorded.get('model')}' (dim {recorded.get('dim')}), "
                             f"not '{fast_encoder.name}' (dim {fast_encoder.dim}); rebuild the index with "
                             f"--fast-model {fast_encoder.source}")


def check_vectors(vectors: faiss.Index, where: str | Path = "index") -> None:
    """Refuse vectors that are not finite unit vectors (checksums only prove the file is as written)."""
    if vectors.ntotal == 0:
        return
    # In blocks: a copy of all the vectors at once would cost each worker as much as the mapped file.
    non_finite, not_unit = [], []  # per block: (count, first row)
    for start in range(0, vectors.ntotal, CHECK_BLOCK):
        try:
            matrix = vectors.reconstruct_n(start, min(CHECK_BLOCK, vectors.ntotal - start))
        except RuntimeError as exc:
            raise IndexLoadError(f"{where}: cannot read the vectors back to check them ({exc})") from None
        finite = np.isfinite(matrix).all(axis=1)
        if not finite.all():
            non_finite.append((int((~finite).sum()), start + int(np.argmin(finite))))
        off = finite & (np.abs(np.linalg.norm(np.where(finite[:, None], matrix, 0), axis=1) - 1.0) > NORM_TOLERANCE)
        if off.any():
            not_unit.append((int(off.sum()), start + int(np.argmax(off))))
    if non_finite:
        raise IndexLoadError(f"{where}: {sum(c for c, _ in non_finite)} of {vectors.ntotal} vectors contain NaN or "
                             f"infinite values (first at row {non_finite[0][1]}); rebuild the index")
    if not_unit:
        raise IndexLoadError(f"{where}: {sum(c for c, _ in not_unit)} of {vectors.ntotal} vectors are not unit "
                             f"length (first at row {not_unit[0][1]}); rebuild the index")


def _non_finite(value: Any, where: str) -> str | None:
    """The dotted path of the first NaN or infinite number in ``value`` (None: every number is finite)."""
    stack = [(where, value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return path
        if isinstance(item, dict):
            stack.extend((f"{path}.{key}", child) for key, child in item.items())
        elif isinstance(item, list):
            stack.extend((f"{path}[{i}]", child) for i, child in enumerate(item))
    return None


def check_decision_fields(manifest: dict[str, Any], where: str | Path = "index", verify_checksum: bool = True) -> None:
    """Refuse decision parameters (calibration, judge limits, fast-path gate) that were edited or are not finite.

    A NaN threshold would make every decision fail at query time; refused here, it never serves.
    The checksum is verified only when the manifest records one (indexes built before it have none).
    """
    recorded = manifest.get(DECISION_CHECKSUM)
    if verify_checksum and recorded is not None and recorded != decision_checksum(manifest):
        raise IndexLoadError(f"{where}: the manifest's decision parameters ({', '.join(DECISION_FIELDS)}) do not "
                             f"match their checksum (edited or damaged); rebuild the index")
    for name in DECISION_FIELDS:
        bad = _non_finite(manifest.get(name), name)
        if bad is not None:
            raise IndexLoadError(f"{where}: manifest field {bad} is not a finite number (NaN or infinity); "
                                 f"rebuild the index")


# Versions the server's master loaded before forking its workers (preload_index), by folder: the
# manifest as read then, and the index. A worker loading the same content gets these very objects,
# whose pages the fork shares, instead of a private copy; so do the parts derived from them.
_PRELOADED: dict[Path, tuple[bytes, FaqIndex]] = {}
_DERIVED: dict[tuple[int, str], Any] = {}


def preload_index(path: str | Path) -> FaqIndex:
    """Load and keep the version at ``path``: :func:`load_index` of the same content returns this object.

    For the server's master, before it forks (docs/large-collections.md); checked as :func:`load_index` checks.
    """
    folder = resolve_version_dir(path)
    manifest = _manifest_bytes(folder)
    index = load_index(folder)
    if _preloaded(folder) is index:  # preloaded before (a SIGHUP without a new version): kept as it is
        return index
    _PRELOADED.clear()  # one preloaded version at a time: the one the next workers will serve
    _DERIVED.clear()
    if manifest is not None:
        _PRELOADED[folder.resolve()] = (manifest, index)
    return index


def shared_part(index: FaqIndex, name: str, make: Callable[[], T]) -> T:
    """``make()``: made once and kept for a preloaded index (so that forked workers share it), else made anew."""
    kept = _PRELOADED.get(index.path.resolve())
    if kept is None or kept[1] is not index:
        return make()
    key = (id(index), name)
    if key not in _DERIVED:
        _DERIVED[key] = make()
    return _DERIVED[key]


def _manifest_bytes(folder: Path) -> bytes | None:
    try:
        return (folder / MANIFEST).read_bytes()
    except OSError:
        return None


def _preloaded(folder: Path) -> FaqIndex | None:
    """The preloaded index of ``folder`` if its manifest (which checksums every file) is unchanged."""
    kept = _PRELOADED.get(folder.resolve())
    return kept[1] if kept is not None and _manifest_bytes(folder) == kept[0] else None


def load_index(path: str | Path, verify_checksums: bool = True) -> FaqIndex:
    """Load the index version at ``path`` (a version folder or an index root)."""
    folder = resolve_version_dir(path)
    preloaded = _preloaded(folder)
    if preloaded is not None:  # checked when it was preloaded; versions are never changed in place
        return preloaded
    manifest = read_manifest(folder)
    check_decision_fields(manifest, folder, verify_checksums)
    for name, expected in manifest.get("files", {}).items():
        file = folder / name
        if not file.is_file():
            raise IndexLoadError(f"{folder}: file {name} is missing")
        if verify_checksums and sha256_file(file) != expected:
            raise IndexLoadError(f"{folder}: file {name} does not match its checksum (damaged or edited)")
    try:
        vectors = read_vector_index(folder / VECTORS)
        texts = [IndexedText(r["entry"], r["field"], r["text"], r["norm"])
                 for _, r in read_jsonl(folder / TEXTS, IndexLoadError, "index texts")]
        entries = [FaqEntry.from_record(r) for _, r in read_jsonl(folder / ENTRIES, IndexLoadError, "index entries")]
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        raise IndexLoadError(f"{folder}: cannot read index files ({exc})") from None
    counts = manifest.get("counts", {})
    if (vectors.ntotal, len(texts), len(entries)) != (counts.get("vectors"), counts.get("vectors"),
                                                      counts.get("entries")) or vectors.d != manifest.get("dim"):
        raise IndexLoadError(f"{folder}: files disagree with the manifest's counts or dimension")
    recorded = (manifest.get("vector_index") or {}).get("kind", "flat")
    if kind_of(vectors) != recorded:
        raise IndexLoadError(f"{folder}: {VECTORS} holds a {kind_of(vectors)} index, the manifest says {recorded}; "
                             f"rebuild the index")
    check_vectors(vectors, folder)
    negatives, negative_vectors = _load_negatives(folder, manifest, entries)
    labelled, labelled_vectors = _load_labelled(folder, manifest, entries)
    return FaqIndex(folder, manifest, entries, texts, vectors, negatives, negative_vectors,
                    _load_judge(folder, manifest), labelled, labelled_vectors, _load_fast_vectors(folder, manifest))


def _load_fast_vectors(folder: Path, manifest: dict[str, Any]) -> faiss.Index | None:
    """The fast model's vectors, checked like the others (None: an index built without a fast model)."""
    fast_model = manifest.get("fast_model")
    if not fast_model:
        return None
    if FAST_VECTORS not in manifest.get("files", {}):
        raise IndexLoadError(f"{folder}: the manifest names a fast model but lists no {FAST_VECTORS}; "
                             f"rebuild the index")
    try:
        vectors = read_vector_index(folder / FAST_VECTORS)
    except RuntimeError as exc:
        raise IndexLoadError(f"{folder}: cannot read {FAST_VECTORS} ({exc})") from None
    if vectors.ntotal != manifest.get("counts", {}).get("vectors") or vectors.d != fast_model.get("dim"):
        raise IndexLoadError(f"{folder}: {FAST_VECTORS} holds {vectors.ntotal} vectors of dimension {vectors.d}, "
                             f"the manifest says {manifest.get('counts', {}).get('vectors')} of "
                             f"{fast_model.get('dim')}; rebuild the index")
    check_vectors(vectors, f"{folder} ({FAST_VECTORS})")
    return vectors


def _load_negatives(folder: Path, manifest: dict[str, Any], entries: list[FaqEntry]):
    """The negative examples' rows and vectors (none in an index built before they were embedded)."""
    if NEGATIVES not in manifest.get("files", {}):
        return [], None
    rows = negative_examples(entries)
    try:
        vectors = np.load(folder / NEGATIVES, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise IndexLoadError(f"{folder}: cannot read {NEGATIVES} ({exc})") from None
    if vectors.shape != (len(rows), manifest.get("dim")) or not np.isfinite(vectors).all():
        raise IndexLoadError(f"{folder}: {NEGATIVES} holds {vectors.shape[0]} vectors of dimension "
                             f"{vectors.shape[1:] or '?'}, the entries have {len(rows)} negative examples; "
                             f"rebuild the index")
    return rows, vectors.astype(np.float32)


def _load_labelled(folder: Path, manifest: dict[str, Any], entries: list[FaqEntry]):
    """The labelled queries kept beside the judge: (entry number or -1, normalised query) and vectors."""
    if LABELLED not in manifest.get("files", {}):
        return [], None
    numbers = {entry.id: number for number, entry in enumerate(entries)}
    try:
        records = [r for _, r in read_jsonl(folder / LABELLED, IndexLoadError, "labelled queries")]
        labelled = [(numbers[r["faq_id"]] if r["faq_id"] is not None else -1, normalize(r["query"])) for r in records]
        vectors = np.load(folder / LABELLED_VECTORS, allow_pickle=False)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise IndexLoadError(f"{folder}: cannot read the labelled queries ({exc}); rebuild the index") from None
    if vectors.shape != (len(labelled), manifest.get("dim")) or not np.isfinite(vectors).all():
        raise IndexLoadError(f"{folder}: {LABELLED_VECTORS} does not match {LABELLED}; rebuild the index")
    return labelled, vectors.astype(np.float32)


def _load_judge(folder: Path, manifest: dict[str, Any]) -> Judge | None:
    """The stored judge; an index built before the judge has none and keeps its score threshold."""
    if JUDGE not in manifest.get("files", {}):
        return None
    try:
        return Judge.from_dict(json.loads((folder / JUDGE).read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:
        raise IndexLoadError(f"{folder}: cannot use {JUDGE} ({exc}); rebuild the index") from None
