"""The collections a service serves, found under one index root, each loaded on first use.

Every collection with a CURRENT version is known (listed from the folders and their manifests,
nothing loaded); a collection's index is loaded the first time a request names it, into a
hot-reloading :class:`SearcherHolder` of its own. The default collection is loaded at start and
kept; any other is unloaded when unused for ``idle_seconds`` or when more than ``max_loaded``
are loaded (least recently used first), and loaded again, at its current version, when next used.
So memory grows with the collections in use, not with those on disk (docs/collections-at-scale.md).

Collections appear and disappear while serving: :meth:`CollectionRegistry.refresh` (run by the
watcher) learns the new ones and unloads the removed ones. Each loaded holder reloads, rolls back
and refuses broken versions on its own, so one collection's bad build never touches the others.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import Counter, OrderedDict
from pathlib import Path
from typing import Any, Callable

from .errors import IndexLoadError, RetrieverError
from .reload import (WAIT_FOR_WORKERS_SECONDS, ReloadRefused, SearcherHolder, WorkerGroup, version_identity,
                     without_paths)
from .encoders import EncoderCache
from .scoring import DEFAULT_MODE
from .search import Searcher
from .store import VERSIONS, read_manifest
from .store.collections import DEFAULT_COLLECTION, check_collection_name, describe_unloaded, list_collections
from .validity import Clock

log = logging.getLogger(__name__)
SWEEP_SECONDS = 30.0  # the longest the watcher sleeps between looks for idle collections


class UnknownCollection(RetrieverError):
    """A collection name that the service does not serve."""

    def __init__(self, name: str, known: list[str]) -> None:
        shown = known if len(known) <= 20 else known[:20] + [f"... ({len(known)} in all)"]
        super().__init__(f"no collection '{name}'; collections: {', '.join(shown) or 'none'}")
        self.name, self.known = name, known


class CollectionRegistry:
    """Collection roots by name, the holders of those loaded, and which one ``/v1/search`` serves."""

    def __init__(self, index_root: Path | None, make_holder: Callable[[str, Path], SearcherHolder],
                 default: str | None = None, poll_seconds: float = 0.0, *, idle_seconds: float = 0.0,
                 max_loaded: int = 0, clock: Callable[[], float] = time.monotonic) -> None:
        self.index_root = Path(index_root) if index_root is not None else None
        self._make_holder = make_holder
        self._default = check_collection_name(default) if default else None
        self._poll_seconds = poll_seconds
        self.idle_seconds = idle_seconds  # 0: never unloaded for idleness
        self.max_loaded = max_loaded  # 0: no bound
        self._clock = clock
        self._roots: dict[str, Path] = {}
        self._loaded: OrderedDict[str, SearcherHolder] = OrderedDict()  # least recently used first
        self._last_used: dict[str, float] = {}
        self._outcomes: dict[str, Counter[str]] = {}  # reloads by outcome, per collection, across unloads
        self._load_locks: dict[str, threading.Lock] = {}  # one first load per collection at a time
        self._lock = threading.Lock()  # guards the dicts above; never held while an index loads
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self.mode: str | None = None  # the mode every collection is served in (None: each index's default)
        self.loads: int = 0
        self._group_of: Callable[[str], WorkerGroup | None] = lambda name: None  # the workers sharing reloads  # indexes loaded since start (first uses, and uses after an unload)

    @classmethod
    def open(cls, index_root: str | Path, encoders: EncoderCache, *, model: str | None = None, mode: str | None = None,
             default: str | None = None, poll_seconds: float = 0.0,
             holder_options: Callable[[str], dict[str, Any]] | None = None, idle_seconds: float = 0.0,
             max_loaded: int = 0, clock: Callable[[], float] = time.monotonic,
             validity_clock: Clock | None = None) -> "CollectionRegistry":
        """Every collection under ``index_root``, each version served with the model that built it.

        Only the default collection is loaded now; the others on first use. Collections built with the
        same model share one encoder (``encoders``). ``holder_options`` gives extra keyword arguments
        for each collection's :class:`SearcherHolder` by name (asked once per name: a collection loaded
        again gets the same ones). ``model`` forces one model for all (an index built by another is
        then refused, as ever). ``validity_clock`` gives today's date for the entries' validity dates
        (default: the system's in Asia/Shanghai).
        """
        def load(version_dir: Path) -> Searcher:
            source = model or read_manifest(version_dir).get("model_source")
            return Searcher.load(version_dir, encoders.get(source), mode, clock=validity_clock)

        options: dict[str, dict[str, Any]] = {}

        def options_of(name: str) -> dict[str, Any]:
            if name not in options:
                options[name] = holder_options(name) if holder_options else {}
            return options[name]

        def make_holder(name: str, root: Path) -> SearcherHolder:
            return SearcherHolder(root, load, **options_of(name))

        registry = cls(index_root, make_holder, default, poll_seconds, idle_seconds=idle_seconds,
                       max_loaded=max_loaded, clock=clock)
        registry.mode = mode
        registry._group_of = lambda name: options_of(name).get("group")
        registry.refresh()
        if registry.default_name() in registry._roots:
            registry.holder(registry.default_name())  # ready at once for /v1/search; kept loaded
        return registry

    @classmethod
    def single(cls, holder: SearcherHolder, name: str = DEFAULT_COLLECTION) -> "CollectionRegistry":
        """One collection, already held (a fixed searcher, or one index root)."""
        registry = cls(None, lambda name, root: holder)
        registry._roots[name] = holder.index_root or Path()
        registry._loaded[name] = holder
        return registry

    @classmethod
    def fixed(cls, searcher: Searcher) -> "CollectionRegistry":
        return cls.single(SearcherHolder.fixed(searcher))

    # --- what is on disk --------------------------------------------------------------------------

    def refresh(self) -> None:
        """Learn the collections that appeared; unload and forget those that were removed."""
        if self.index_root is None:
            return
        # Nothing servable at all (say the index folder was deleted): hold the root as the default
        # collection anyway, so the service answers 503 not_ready and recovers when an index appears.
        found = list_collections(self.index_root) or {DEFAULT_COLLECTION: self.index_root}
        with self._lock:
            # The default collection is the root itself: if its files vanish, its holder answers 503
            # and recovers when an index appears; only named collections come and go.
            removed = set(self._roots) - set(found) - {DEFAULT_COLLECTION}
            for name in removed:
                log.info("collection %s removed: no longer served", name)
                self._roots.pop(name)
            added = set(found) - set(self._roots)
            self._roots.update(found)
            stopped = [self._forget(name) for name in removed if name in self._loaded]
        for holder in stopped:
            self._unload(holder)
        if added:
            log.info("collections known: %d (%d new); loaded on first use", len(self._roots), len(added))

    def watch(self) -> None:
        """In a background thread: look for added and removed collections every poll interval (0: only
        at start), and unload the collections idle for longer than ``idle_seconds``."""
        if self.index_root is None or self._watcher is not None:
            return
        ticks = [t for t in (self._poll_seconds, self.idle_seconds / 4, SWEEP_SECONDS) if t > 0]
        if self._poll_seconds <= 0 and self.idle_seconds <= 0:
            return
        tick = min(ticks)

        def loop() -> None:
            next_scan = time.monotonic() + self._poll_seconds
            while not self._stop.wait(tick):
                try:
                    if self._poll_seconds > 0 and time.monotonic() >= next_scan:
                        next_scan = time.monotonic() + self._poll_seconds
                        self.refresh()
                    self.evict_idle()
                except (OSError, IndexLoadError):
                    log.exception("collection scan failed; serving the collections known before")

        self._watcher = threading.Thread(target=loop, name="collection-watcher", daemon=True)
        self._watcher.start()

    def stop(self) -> None:
        self._stop.set()
        for holder in list(self._loaded.values()):
            holder.stop()

    def names(self) -> list[str]:
        """Every collection known, loaded or not."""
        return sorted(self._roots)

    def holders(self) -> dict[str, SearcherHolder]:
        """The holders of the collections loaded now."""
        return dict(self._loaded)

    def root(self, name: str) -> Path:
        """The index root of collection ``name``; :class:`UnknownCollection` otherwise."""
        try:
            return self._roots[name]
        except KeyError:
            raise UnknownCollection(name, self.names()) from None

    # --- loading and unloading ---------------------------------------------------------------------

    def holder(self, name: str | None = None) -> SearcherHolder:
        """The holder of ``name`` (None: the default collection), loaded now if it was not.

        :class:`UnknownCollection` for a name not served. A collection that cannot be loaded still
        gets a holder: it answers 503 (its ``problem`` says why) and keeps trying, as at start.
        """
        name = name or self.default_name()
        holder = self._touch(name)
        if holder is not None:
            return holder
        root = self.root(name)
        with self._lock:
            load_lock = self._load_locks.setdefault(name, threading.Lock())
        with load_lock:  # concurrent first requests: one loads, the others wait and share it
            holder = self._touch(name)
            if holder is not None:
                return holder
            holder = self._make_holder(name, root)
            holder.lazy = name != self.default_name()
            # Reload counts outlive an unload: /metrics adds what they grew by since last seen.
            holder.outcomes = self._outcomes.setdefault(name, holder.outcomes)
            holder.start(self._poll_seconds)  # a broken one answers 503 until it can load
            with self._lock:
                self.loads += 1
                self._loaded[name] = holder
                self._last_used[name] = self._clock()
                over = self._over_bound()
        log.info("collection %s loaded: serving %s (%d loaded)", name,
                 holder.current.version if holder.current else "nothing yet", len(self._loaded))
        for evicted in over:
            self._unload(evicted)
        self.evict_idle()
        return holder

    def loaded(self, name: str) -> bool:
        return name in self._loaded

    def _touch(self, name: str) -> SearcherHolder | None:
        with self._lock:
            holder = self._loaded.get(name)
            if holder is not None:
                self._loaded.move_to_end(name)
                self._last_used[name] = self._clock()
            return holder

    def _evictable(self) -> list[str]:
        """Loaded collections that may be unloaded, least recently used first (never the default)."""
        if self.index_root is None:
            return []
        default = self.default_name()
        return [name for name in self._loaded if name != default]

    def _over_bound(self) -> list[SearcherHolder]:
        """Forget the least recently used collections beyond ``max_loaded``; their holders, to unload.
        Called with the lock held."""
        if self.max_loaded <= 0:
            return []
        excess = len(self._loaded) - self.max_loaded
        return [self._forget(name) for name in self._evictable()[:max(excess, 0)]]

    def evict_idle(self) -> list[str]:
        """Unload the collections unused for ``idle_seconds`` or more; their names."""
        if self.idle_seconds <= 0:
            return []
        now = self._clock()
        with self._lock:
            idle = [name for name in self._evictable() if now - self._last_used.get(name, now) >= self.idle_seconds]
            holders = [self._forget(name) for name in idle]
        for holder in holders:
            self._unload(holder)
        if idle:
            log.info("collections unloaded after %.0f s unused: %s", self.idle_seconds, ", ".join(idle))
        return idle

    def _forget(self, name: str) -> SearcherHolder:
        self._last_used.pop(name, None)
        return self._loaded.pop(name)

    @staticmethod
    def _unload(holder: SearcherHolder) -> None:
        """Stop its watcher and leave its worker group; requests still on it finish, then it is freed."""
        holder.stop()
        if holder.group is not None:
            holder.group.leave()

    # --- what the service says about them -----------------------------------------------------------

    def default_name(self) -> str:
        """The configured default, else ``default``, else the only collection."""
        if self._default:
            return self._default
        names = self._roots
        if DEFAULT_COLLECTION in names or not names:
            return DEFAULT_COLLECTION
        return next(iter(names)) if len(names) == 1 else DEFAULT_COLLECTION

    def ready(self) -> tuple[bool, str]:
        """Whether requests can be served, and why not: the default collection loaded, or (no default
        among several) at least one collection known."""
        default = self.default_name()
        if default in self._roots:
            holder = self.holder(default)
            if holder.current is None:
                problem = without_paths(holder.problem, holder.index_root) if holder.problem else "loading"
                return False, f"the default collection '{default}' is not loaded yet: {problem}"
            return True, holder.current.version
        if self._roots:
            return True, f"{len(self._roots)} collections"
        return False, "no collection is built yet"

    def describe(self) -> list[dict[str, Any]]:
        """Per collection: name, loaded, ready, entries, version, model, mode, calibration.

        A collection not loaded is described from its manifest (mode and calibration then None):
        listing never loads an index.
        """
        out = []
        for name, root in sorted(self._roots.items()):
            holder = self._loaded.get(name)
            searcher = holder.current if holder is not None else None
            if searcher is not None:
                info = searcher.info()
                ready = True
            elif holder is not None:  # loaded, but nothing servable (yet)
                info, ready = {}, False
            else:
                info = self._manifest_facts(root)
                ready = info["ready"]
            out.append({"name": name, "loaded": searcher is not None, "ready": ready, "entries": info.get("entries"),
                        "version": info.get("version"), "model": info.get("model"), "mode": info.get("mode"),
                        "calibration": info.get("calibration")})
        return out

    def _manifest_facts(self, root: Path) -> dict[str, Any]:
        """An unloaded collection's facts, with the mode and calibration it would be served with."""
        info = describe_unloaded(root)
        if info["ready"]:
            mode = self.mode or info["default_mode"] or DEFAULT_MODE
            info.update(mode=mode, calibration=info["calibrations"].get(mode, {}))
        return info

    def reload_changed(self) -> dict[str, dict[str, Any]]:
        """Reload, in every worker, the loaded collections whose CURRENT (or another worker's version)
        differs; the others are left alone. Outcome by name; those not loaded here are loaded at
        their CURRENT version on first use, and say so."""
        outcomes: dict[str, dict[str, Any]] = {}
        for name in self.names():
            holder = self._loaded.get(name)
            if holder is None:
                outcomes[name] = self._reload_elsewhere(name)
                continue
            served = holder.current.version if holder.current else None
            try:
                if holder.stale_anywhere():
                    outcomes[name] = holder.reload_everywhere()
                else:
                    outcomes[name] = {"version": served, "previous": served, "changed": False}
            except ReloadRefused as exc:  # one collection's bad version leaves the others reloaded
                outcomes[name] = {"error": "reload_refused", "message": exc.public}
        return outcomes

    def _reload_elsewhere(self, name: str) -> dict[str, Any]:
        """A collection this worker has not loaded: tell the workers that did to reload it, if they serve
        other content than CURRENT names, and wait for them."""
        info = describe_unloaded(self._roots[name])
        outcome = {"version": info["version"], "changed": False, "loaded": False}
        group = self._group_of(name)
        if group is None or not info["ready"]:
            return outcome
        try:
            identity = version_identity(self._roots[name] / VERSIONS / info["version"])
        except IndexLoadError:
            return outcome
        if all(s.get("identity") == identity for s in group.statuses()):
            return outcome
        group.announce()
        deadline = time.monotonic() + WAIT_FOR_WORKERS_SECONDS
        while time.monotonic() < deadline and not self._stop.is_set():
            statuses = group.statuses()
            if all(s.get("identity") == identity for s in statuses):
                return {**outcome, "changed": True, "all_workers": True}
            self._stop.wait(0.1)
        return {**outcome, "changed": True, "all_workers": False}
