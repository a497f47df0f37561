"""The collections a service serves: one hot-reloading holder per collection, found under one index root.

Collections appear and disappear while serving: :meth:`CollectionRegistry.refresh` (run by the
watcher) starts a holder for each new collection folder and stops the holders of removed ones.
Each holder reloads, rolls back and refuses broken versions on its own, so one collection's bad
build never touches the others.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Callable

from .errors import IndexLoadError, RetrieverError
from .reload import SearcherHolder
from .encoders import EncoderCache
from .search import Searcher
from .store import read_manifest
from .store.collections import DEFAULT_COLLECTION, check_collection_name, list_collections

log = logging.getLogger(__name__)


class UnknownCollection(RetrieverError):
    """A collection name that the service does not serve."""

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"no collection '{name}'; collections: {', '.join(known) or 'none'}")
        self.name, self.known = name, known


class CollectionRegistry:
    """Holders by collection name, plus which one ``/v1/search`` and ``/v1/classify`` serve."""

    def __init__(self, index_root: Path | None, make_holder: Callable[[str, Path], SearcherHolder],
                 default: str | None = None, poll_seconds: float = 0.0) -> None:
        self.index_root = Path(index_root) if index_root is not None else None
        self._make_holder = make_holder
        self._default = check_collection_name(default) if default else None
        self._poll_seconds = poll_seconds
        self._holders: dict[str, SearcherHolder] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    @classmethod
    def open(cls, index_root: str | Path, encoders: EncoderCache, *, model: str | None = None, mode: str | None = None,
             default: str | None = None, poll_seconds: float = 0.0,
             holder_options: Callable[[str], dict[str, Any]] | None = None) -> "CollectionRegistry":
        """Every collection under ``index_root``, each version served with the model that built it.

        Collections built with the same model share one encoder (``encoders``). ``holder_options``
        gives extra keyword arguments for each collection's :class:`SearcherHolder` by name. ``model``
        forces one model for all (an index built by another is then refused, as ever).
        """
        def load(version_dir: Path) -> Searcher:
            source = model or read_manifest(version_dir).get("model_source")
            return Searcher.load(version_dir, encoders.get(source), mode)

        def make_holder(name: str, root: Path) -> SearcherHolder:
            return SearcherHolder(root, load, **(holder_options(name) if holder_options else {}))

        registry = cls(index_root, make_holder, default, poll_seconds)
        registry.refresh()
        return registry

    @classmethod
    def single(cls, holder: SearcherHolder, name: str = DEFAULT_COLLECTION) -> "CollectionRegistry":
        """One collection, already held (a fixed searcher, or one index root)."""
        registry = cls(None, lambda name, root: holder)
        registry._holders[name] = holder
        return registry

    @classmethod
    def fixed(cls, searcher: Searcher) -> "CollectionRegistry":
        return cls.single(SearcherHolder.fixed(searcher))

    def refresh(self) -> None:
        """Start holders for collections that appeared, stop those of collections that were removed."""
        if self.index_root is None:
            return
        # Nothing servable at all (say the index folder was deleted): hold the root as the default
        # collection anyway, so the service answers 503 not_ready and recovers when an index appears.
        found = list_collections(self.index_root) or {DEFAULT_COLLECTION: self.index_root}
        with self._lock:
            # The default collection is the root itself: if its files vanish, its holder answers 503
            # and recovers when an index appears; only named collections come and go.
            for name in set(self._holders) - set(found) - {DEFAULT_COLLECTION}:
                log.info("collection %s removed: no longer served", name)
                self._holders.pop(name).stop()
            for name, root in found.items():
                if name not in self._holders:
                    holder = self._make_holder(name, root)
                    holder.start(self._poll_seconds)  # a broken one answers 503 until it can load
                    self._holders[name] = holder
                    log.info("collection %s: serving %s", name, holder.current.version if holder.current else "nothing yet")

    def watch(self) -> None:
        """Look for added and removed collections every poll interval (0: only at start)."""
        if self.index_root is None or self._poll_seconds <= 0 or self._watcher is not None:
            return

        def loop() -> None:
            while not self._stop.wait(self._poll_seconds):
                try:
                    self.refresh()
                except (OSError, IndexLoadError):
                    log.exception("collection scan failed; serving the collections known before")

        self._watcher = threading.Thread(target=loop, name="collection-watcher", daemon=True)
        self._watcher.start()

    def stop(self) -> None:
        self._stop.set()
        for holder in list(self._holders.values()):
            holder.stop()

    def names(self) -> list[str]:
        return sorted(self._holders)

    def holders(self) -> dict[str, SearcherHolder]:
        return dict(self._holders)

    def holder(self, name: str | None = None) -> SearcherHolder:
        """The holder of ``name`` (None: the default collection); :class:`UnknownCollection` otherwise."""
        name = name or self.default_name()
        holder = self._holders.get(name)
        if holder is None:
            raise UnknownCollection(name, self.names())
        return holder

    def default_name(self) -> str:
        """The configured default, else ``default``, else the only collection."""
        if self._default:
            return self._default
        names = self.names()
        if DEFAULT_COLLECTION in names or not names:
            return DEFAULT_COLLECTION
        return names[0] if len(names) == 1 else DEFAULT_COLLECTION

    def describe(self) -> list[dict[str, Any]]:
        """Per collection: name, entries, version, model, mode, calibration (None fields while not ready)."""
        out = []
        for name, holder in sorted(self._holders.items()):
            searcher = holder.current
            info = searcher.info() if searcher else {}
            out.append({"name": name, "ready": searcher is not None, "entries": info.get("entries"),
                        "version": info.get("version"), "model": info.get("model"), "mode": info.get("mode"),
                        "calibration": info.get("calibration")})
        return out
