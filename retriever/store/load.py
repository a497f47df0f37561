"""Loading a version: resolve it, read and check the manifest, files, checksums, counts and model."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import faiss

from ..corpus import FaqEntry
from ..encoders import Encoder
from ..errors import IndexLoadError
from ..files import read_jsonl, sha256_file
from .layout import ENTRIES, NORMALIZE_VERSION, TEXTS, VECTORS, FaqIndex, IndexedText
from .versions import read_manifest, resolve_version_dir



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
        if verify_checksums and sha256_file(file) != expected:
            raise IndexLoadError(f"{folder}: file {name} does not match its checksum (damaged or edited)")
    try:
        vectors = faiss.read_index(str(folder / VECTORS))
        texts = [IndexedText(r["entry"], r["field"], r["text"], r["norm"])
                 for _, r in read_jsonl(folder / TEXTS, IndexLoadError, "index texts")]
        entries = [FaqEntry.from_record(r) for _, r in read_jsonl(folder / ENTRIES, IndexLoadError, "index entries")]
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        raise IndexLoadError(f"{folder}: cannot read index files ({exc})") from None
    counts = manifest.get("counts", {})
    if (vectors.ntotal, len(texts), len(entries)) != (counts.get("vectors"), counts.get("vectors"),
                                                      counts.get("entries")) or vectors.d != manifest.get("dim"):
        raise IndexLoadError(f"{folder}: files disagree with the manifest's counts or dimension")
    return FaqIndex(folder, manifest, entries, texts, vectors)
