"""The versions of an index root: which exist, which is CURRENT, their manifests; publish, prune, roll back."""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from typing import Any

from ..errors import IndexLoadError
from ..files import write_text_atomic
from .layout import CURRENT, FORMAT_VERSION, MANIFEST, VERSIONS


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



def publish(out_root: str | Path, version: str) -> None:
    """Make ``version`` the one served: ``CURRENT`` replaced atomically."""
    write_text_atomic(Path(out_root) / CURRENT, version + "\n")


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
                             f"build one with: faq-retriever build --corpus corpus/ --out {path}")
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


def rollback(index_root: str | Path, to: str | None = None) -> tuple[str, str | None]:
    """Point CURRENT at ``to`` or at the version published before the current one. Returns (new, old)."""
    index_root = Path(index_root)
    versions = list_versions(index_root)
    current = current_version(index_root)
    if to is None:
        older = [v for v in versions if current is None or v < current]
        if not older:
            raise IndexLoadError(f"{index_root}: no version older than {current} to roll back to "
                                 f"(versions: {', '.join(versions) or 'none'})")
        to = older[-1]
    elif to not in versions:
        raise IndexLoadError(f"{index_root}: no version '{to}' (versions: {', '.join(versions) or 'none'})")
    read_manifest(index_root / VERSIONS / to)  # refuse a folder that is not an index
    publish(index_root, to)
    return to, current
