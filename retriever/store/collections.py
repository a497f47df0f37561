"""Named collections under one index root, each an index root of its own (versions, CURRENT, manifest).

::

    index/
      CURRENT, versions/          the collection named "default" (a single-collection root, as before)
      collections/<name>/         any other collection: CURRENT, versions/

So an index folder built before collections existed is served, unchanged, as ``default``.
"""
from __future__ import annotations

import re
from pathlib import Path

from ..corpus import FaqEntry
from ..errors import IndexLoadError
from ..files import read_jsonl
from .layout import CURRENT, ENTRIES, VERSIONS
from .versions import current_version, read_manifest

DEFAULT_COLLECTION = "default"
COLLECTIONS = "collections"
# A name is a folder name and a URL segment: nothing that could climb out of the root or need escaping.
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


class CollectionNameError(IndexLoadError):
    """A collection name that is not lower-case letters, digits, '-' and '_'."""


def check_collection_name(name: str) -> str:
    """``name`` if it is a valid collection name, else :class:`CollectionNameError` saying what is allowed."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise CollectionNameError(
            f"invalid collection name {name!r}: use 1-64 lower-case letters, digits, '-' and '_', "
            f"starting with a letter or digit")
    return name


def collection_root(index_root: str | Path, name: str | None) -> Path:
    """The index root of collection ``name`` (None or "default": ``index_root`` itself)."""
    index_root = Path(index_root)
    if name is None or name == DEFAULT_COLLECTION:
        return index_root
    return index_root / COLLECTIONS / check_collection_name(name)


def _is_index_root(folder: Path) -> bool:
    """Published at least once: a collection whose first build is still running is not one yet."""
    return (folder / CURRENT).is_file()


def list_collections(index_root: str | Path) -> dict[str, Path]:
    """Every collection under ``index_root`` that has been built, by name (sorted), with its root."""
    index_root = Path(index_root)
    found = {DEFAULT_COLLECTION: index_root} if _is_index_root(index_root) else {}
    named = index_root / COLLECTIONS
    if named.is_dir():
        for folder in sorted(named.iterdir()):
            if folder.is_dir() and _NAME.fullmatch(folder.name) and _is_index_root(folder):
                found[folder.name] = folder
    return dict(sorted(found.items()))


def describe_unloaded(root: str | Path) -> dict:
    """What a collection's CURRENT manifest says (version, entries, model, default_mode, calibrations by
    mode), without loading its index. ``ready`` is False, with ``problem``, when there is no readable
    manifest to serve."""
    version = current_version(root)
    try:
        manifest = read_manifest(Path(root) / VERSIONS / version) if version else None
    except IndexLoadError as exc:
        return {"ready": False, "version": version, "entries": None, "model": None, "problem": str(exc)}
    if manifest is None:
        return {"ready": False, "version": None, "entries": None, "model": None, "problem": "no CURRENT version"}
    return {"ready": True, "version": version, "entries": manifest.get("counts", {}).get("entries"),
            "model": manifest.get("model"), "default_mode": manifest.get("default_mode"),
            "calibrations": manifest.get("calibration", {}), "problem": None}


def current_entries(root: str | Path) -> tuple[str | None, list[FaqEntry]]:
    """The CURRENT version of a collection and its entries, read from disk without loading its index
    (no vectors, no model): what listing a collection's categories needs."""
    version = current_version(root)
    if not version:
        return None, []
    records = read_jsonl(Path(root) / VERSIONS / version / ENTRIES, IndexLoadError, "index entries")
    return version, [FaqEntry.from_record(record) for _, record in records]
