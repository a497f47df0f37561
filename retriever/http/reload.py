"""Zero-downtime index reload: the served searcher, swapped for a newly published version.

A request takes ``holder.current`` once and uses that searcher to the end, so
in-flight requests finish on the old version while new ones get the new one.
A new version is loaded beside the old (checksums, model, dimension) and must
answer a probe query before the swap; a bad one is refused and the old one
keeps serving.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Callable

from ..errors import IndexLoadError
from ..store import VERSIONS, current_version, list_versions, resolve_version_dir
from ..search import Searcher

log = logging.getLogger(__name__)


class ReloadRefused(IndexLoadError):
    """A new index version failed validation; the previous one is still served."""


def probe(searcher: Searcher) -> None:
    """A loaded index must find its own first entry by that entry's question."""
    entry = searcher.index.entries[0]
    hits = searcher.search(entry.question, top_k=5).hits
    if entry.id not in {hit.faq_id for hit in hits}:
        raise ReloadRefused(f"{searcher.index.path}: probe query failed: entry '{entry.id}' not found by its "
                            f"own question")


class SearcherHolder:
    """Holds the searcher being served and swaps it when the index root's CURRENT changes."""

    def __init__(self, index_root: Path | None, load: Callable[[Path], Searcher],
                 searcher: Searcher | None = None) -> None:
        self.index_root = Path(index_root) if index_root is not None else None
        self._load = load
        self._current = searcher
        self._lock = threading.Lock()  # one reload at a time; readers never wait
        self._refused: set[str] = set()
        self._watcher: threading.Thread | None = None
        self._stop = threading.Event()

    @classmethod
    def fixed(cls, searcher: Searcher) -> "SearcherHolder":
        """A holder for one searcher, without an index root to reload from."""
        return cls(None, lambda path: searcher, searcher)

    @property
    def current(self) -> Searcher | None:
        return self._current

    def load_initial(self) -> Searcher:
        """Serve the current version; if it is broken, the newest older version that validates."""
        current = current_version(self.index_root)
        candidates = [current] + [v for v in reversed(list_versions(self.index_root)) if v != current]
        errors = []
        for version in filter(None, candidates):
            try:
                searcher = self._validated(self.index_root / VERSIONS / version)
            except IndexLoadError as exc:
                log.error("index version %s refused: %s", version, exc)
                self._refused.add(version)
                errors.append(str(exc))
                continue
            if version != current:
                log.error("serving older version %s because the current one (%s) is broken", version, current)
            self._current = searcher
            return searcher
        if not errors:  # no versions at all: let resolve_version_dir say how to build one
            self._current = self._validated(resolve_version_dir(self.index_root))
            return self._current
        raise IndexLoadError(f"{self.index_root}: no index version can be served: {'; '.join(errors)}")

    def _validated(self, version_dir: Path) -> Searcher:
        searcher = self._load(version_dir)
        probe(searcher)
        return searcher

    def reload(self) -> dict:
        """Load the version CURRENT names, validate it beside the served one, swap. Raises ReloadRefused."""
        if self.index_root is None:
            raise ReloadRefused("this service was started on a fixed index, not an index folder")
        with self._lock:
            previous = self._current.version if self._current else None
            target = current_version(self.index_root)
            if target is None:
                raise ReloadRefused(f"{self.index_root}: no CURRENT version to load")
            if target == previous:
                return {"version": target, "previous": previous, "changed": False}
            try:
                searcher = self._validated(self.index_root / VERSIONS / target)
            except IndexLoadError as exc:
                self._refused.add(target)
                log.error("reload refused, still serving %s: %s", previous, exc)
                raise ReloadRefused(f"version {target} refused, still serving {previous}: {exc}") from None
            self._current = searcher  # a single reference swap: readers see old or new, never a mix
            self._refused.discard(target)
            log.info("reloaded index: now serving %s (was %s)", target, previous)
            return {"version": target, "previous": previous, "changed": True}

    def watch(self, every_seconds: float) -> None:
        """Check CURRENT every so often and reload when it names another version (not one refused before)."""
        if self.index_root is None or every_seconds <= 0 or self._watcher is not None:
            return

        def loop() -> None:
            while not self._stop.wait(every_seconds):
                target = current_version(self.index_root)
                serving = self._current.version if self._current else None
                if target and target != serving and target not in self._refused:
                    try:
                        self.reload()
                    except IndexLoadError:
                        pass  # logged by reload(); the old version keeps serving

        self._watcher = threading.Thread(target=loop, name="index-watcher", daemon=True)
        self._watcher.start()

    def stop(self) -> None:
        self._stop.set()
