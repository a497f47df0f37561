"""Zero-downtime index reload: the served searcher, swapped for a newly published version.

A request takes ``holder.current`` once and uses that searcher to the end, so
in-flight requests finish on the old version while new ones get the new one.
A new version is loaded beside the old (checksums, model, dimension) and must
answer a probe query before the swap; a bad one is refused and the old one
keeps serving.

A version is known by its content (:func:`version_identity`), not its folder name:
a renamed copy of the served version is the same version. A worker that has no
index (the folder vanished, every version is broken) answers 503 and keeps trying.
The workers of one server coordinate through a runtime folder (:class:`WorkerGroup`):
``POST /admin/reload`` in one worker reaches the others, and says what each serves.
"""
from __future__ import annotations

import atexit
import hashlib
import json
import logging
import os
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, TypeVar

from .encoders import preload_shared
from .errors import IndexLoadError
from .files import write_text_atomic
from .search import Searcher
from .store import MANIFEST, VERSIONS, current_version, list_versions, read_manifest, resolve_version_dir
from .store.ann import set_search_threads
from .store.collections import DEFAULT_COLLECTION, list_collections
from .store.load import preload_index

log = logging.getLogger(__name__)
T = TypeVar("T")

TICK_SECONDS = 0.5  # how soon a worker notices another worker's admin reload
RECOVER_SECONDS = 2.0  # how often a worker without an index tries to load one, poll or no poll
WAIT_FOR_WORKERS_SECONDS = 20.0  # how long an admin reload waits for the other workers to follow


class ReloadRefused(IndexLoadError):
    """A new index version failed validation; the previous one is still served.

    ``public`` is the message without the server's file paths, for HTTP responses.
    """

    def __init__(self, message: str, public: str | None = None) -> None:
        super().__init__(message)
        self.public = public or message


def without_paths(message: str, index_root: Path | None) -> str:
    """``message`` with the index folder's path left out: a client need not learn the server's layout."""
    if index_root is None:
        return message
    for root in {str(index_root.resolve()), str(index_root)}:
        message = message.replace(root + os.sep, "").replace(root, "the index folder")
    return message


def version_identity(version_dir: Path) -> str:
    """The version's content identity: the digest of its manifest, which holds every file's checksum."""
    try:
        return hashlib.sha256((Path(version_dir) / MANIFEST).read_bytes()).hexdigest()[:16]
    except OSError as exc:
        raise IndexLoadError(f"{version_dir}: no readable {MANIFEST} ({exc.strerror or exc})") from None


def first_servable(index_root: Path, load: Callable[[Path], T], quiet: bool = False) -> tuple[str, T]:
    """``(version, load(its folder))`` for the version CURRENT names or, if ``load`` refuses it, the newest
    older one it accepts (each refusal logged unless ``quiet``). Raises IndexLoadError naming every refusal."""
    current = current_version(index_root)
    candidates = [current] + [v for v in reversed(list_versions(index_root)) if v != current]
    errors = []
    for version in filter(None, candidates):
        try:
            loaded = load(index_root / VERSIONS / version)
        except IndexLoadError as exc:
            if not quiet:
                log.error("index version %s refused: %s", version, exc)
            errors.append(str(exc))
            continue
        if version != current:
            log.error("serving older version %s because the current one (%s) is broken", version, current)
        return version, loaded
    if not errors:  # no versions at all: let resolve_version_dir say how to build one
        folder = resolve_version_dir(index_root)
        return folder.name, load(folder)
    raise IndexLoadError(f"{index_root}: no index version can be served: {'; '.join(errors)}")


def probe(searcher: Searcher) -> None:
    """A loaded index must find its own first entry by that entry's question (the first valid today:
    an entry outside its dates is never found, by design)."""
    kept = searcher.validity.kept(searcher.clock())
    valid = [number for number in range(len(searcher.index.entries)) if kept is None or kept[number]]
    if not valid:
        return  # every entry is outside its dates today: nothing can be asked
    entry = searcher.index.entries[valid[0]]
    hits = searcher.search(entry.question, top_k=5).hits
    if entry.id not in {hit.faq_id for hit in hits}:
        raise ReloadRefused(f"{searcher.index.path}: probe query failed: entry '{entry.id}' not found by its "
                            f"own question")


class _ModelNamed:
    """Stands for the index's model by name and dimension, without loading it: the server's master never
    runs a model (the threads of its runtime would not survive the fork)."""

    def __init__(self, manifest: dict[str, Any]) -> None:
        self.name, self.dim, self.source = manifest.get("model"), manifest.get("dim"), manifest.get("model_source")

    def encode_queries(self, texts):
        raise RuntimeError("the server's master preloads indexes and never embeds")

    encode_passages = encode_queries


def preload_for_workers(index_root: str | Path, default: str | None = None) -> str | None:
    """In the server's master, before it forks: load the default collection's servable version with
    everything a Searcher derives from it (texts, BM25, the judge's lookups), so that every worker
    that loads the same version shares these pages instead of building its own copy.

    Returns the version preloaded; None when there is nothing to preload (the workers then load
    and report on their own). FAISS is limited to one thread here first: the master must not
    start OpenMP threads that the fork would not carry over.
    """
    set_search_threads(1)
    roots = list_collections(index_root)
    name = default or (next(iter(roots)) if len(roots) == 1 else DEFAULT_COLLECTION)
    if name not in roots:
        return None

    models = []  # the model of each version tried; the last one is the one preloaded

    def load(folder: Path) -> Searcher:
        model = _ModelNamed(read_manifest(folder))
        models.append(model.source)
        return Searcher(preload_index(folder), model, cascade=False)

    try:
        version, _ = first_servable(roots[name], load, quiet=True)
    except IndexLoadError as exc:
        log.info("nothing preloaded before the workers start: %s", exc)
        return None
    preload_shared(models[-1])
    log.info("preloaded collection %s version %s for the workers to share", name, version)
    return version


class WorkerGroup:
    """The workers of one server, coordinated through files in a runtime folder the master made.

    ``generation``: a token the worker that receives ``POST /admin/reload`` rewrites; every
    worker reloads when it changes. ``workers/<pid>.json``: what each worker serves.
    """

    def __init__(self, folder: str | Path, size: int) -> None:
        self.folder = Path(folder)
        self.size = size  # workers the server runs
        self.pid = os.getpid()
        (self.folder / "workers").mkdir(parents=True, exist_ok=True)
        self._written: dict | None = None
        atexit.register(self.leave)

    def generation(self) -> str:
        try:
            return (self.folder / "generation").read_text(encoding="utf-8")
        except OSError:
            return ""

    def announce(self) -> str:
        """A new generation: every worker reloads within a tick. Returns its token."""
        token = f"{time.time_ns()}-{self.pid}"
        write_text_atomic(self.folder / "generation", token)
        return token

    def report(self, status: dict[str, Any]) -> None:
        """Publish this worker's status (rewritten only when it changed). Never fails: serving matters more."""
        if status == self._written:
            return
        try:
            write_text_atomic(self.folder / "workers" / f"{self.pid}.json", json.dumps(status, ensure_ascii=False))
        except OSError as exc:
            log.error("cannot publish this worker's status in %s (%s); admin reloads will not see it",
                      self.folder, exc)
        self._written = status

    def statuses(self) -> list[dict[str, Any]]:
        """The status of every live worker, by pid; files of workers that died (kill -9) are removed."""
        found = []
        for path in sorted((self.folder / "workers").glob("*.json")):
            try:
                status = json.loads(path.read_text(encoding="utf-8"))
                os.kill(status["pid"], 0)
            except ProcessLookupError:
                path.unlink(missing_ok=True)
                continue
            except (OSError, ValueError, KeyError):
                continue  # being replaced, or not ours to judge
            found.append(status)
        return found

    def leave(self) -> None:
        (self.folder / "workers" / f"{self.pid}.json").unlink(missing_ok=True)
        self._written = None  # a holder made again later (a collection loaded again) must publish anew


class SearcherHolder:
    """Holds the searcher being served and swaps it when the index root's CURRENT names other content."""

    def __init__(self, index_root: Path | None, load: Callable[[Path], Searcher],
                 searcher: Searcher | None = None, group: WorkerGroup | None = None) -> None:
        self.index_root = Path(index_root) if index_root is not None else None
        self._load = load
        self._current = searcher
        self._identity: str | None = None
        self._lock = threading.Lock()  # one reload at a time; readers never wait
        self._refused: set[tuple[str, str | None]] = set()  # (version, identity) the poller will not retry
        self._problem: str | None = None  # why the last load failed, for the worker's status
        self.outcomes: Counter[str] = Counter()  # reloads by outcome: changed, unchanged, refused
        self.group = group
        self._seen_generation = group.generation() if group else ""
        self._watcher: threading.Thread | None = None
        self._stop = threading.Event()
        # Loaded on first use (a named collection): only the workers that loaded it answer a group reload.
        self.lazy = False

    @classmethod
    def fixed(cls, searcher: Searcher) -> "SearcherHolder":
        """A holder for one searcher, without an index root to reload from."""
        return cls(None, lambda path: searcher, searcher)

    @property
    def current(self) -> Searcher | None:
        return self._current

    @property
    def problem(self) -> str | None:
        """Why the last load failed (with the server's paths), or None."""
        return self._problem

    def stale_anywhere(self) -> bool:
        """CURRENT names other content than this worker, or another worker of the group, serves.

        Cheap (a manifest digest and the group's status files): a reload of many collections
        touches only those for which this is true.
        """
        target = current_version(self.index_root) if self.index_root is not None else None
        if target is None:
            return self.index_root is not None
        try:
            identity = version_identity(self.index_root / VERSIONS / target)
        except IndexLoadError:
            return True  # let the reload say what is wrong with it
        others = self.group.statuses() if self.group else []
        return identity != self._identity or any(s.get("identity") != identity for s in others)

    def load_initial(self, quiet: bool = False) -> Searcher:
        """Serve the current version; if it is broken, the newest older version that validates."""
        try:
            _, (searcher, identity) = first_servable(self.index_root, self._identified, quiet)
        except IndexLoadError as exc:
            self._problem = str(exc)
            raise
        self._current, self._identity, self._problem = searcher, identity, None
        return searcher

    def start(self, every_seconds: float) -> None:
        """Load what can be served (if nothing can, answer 503 and keep trying), then :meth:`watch`."""
        try:
            self.load_initial()
        except IndexLoadError as exc:
            log.error("no index can be served yet; answering 503 not_ready until one loads: %s", exc)
        self._report()
        self.watch(every_seconds)

    def _identified(self, version_dir: Path) -> tuple[Searcher, str]:
        identity = version_identity(version_dir)
        searcher = self._load(version_dir)
        probe(searcher)
        return searcher, identity

    def reload(self) -> dict:
        """Load the version CURRENT names, validate it beside the served one, swap. Raises ReloadRefused."""
        if self.index_root is None:
            raise ReloadRefused("this service was started on a fixed index, not an index folder")
        with self._lock:
            try:
                outcome = self._reload_locked()
            except ReloadRefused:
                self.outcomes["refused"] += 1
                raise
            self.outcomes["changed" if outcome["changed"] else "unchanged"] += 1
            return outcome

    def _reload_locked(self) -> dict:
        previous = self._current.version if self._current else None
        target = current_version(self.index_root)
        if target is None:
            raise ReloadRefused(f"{self.index_root}: no CURRENT version to load (still serving {previous})",
                                f"the index folder has no CURRENT version to load (still serving {previous})")
        identity = None
        try:
            identity = version_identity(self.index_root / VERSIONS / target)
            if identity == self._identity:
                return {"version": previous, "previous": previous, "changed": False}
            searcher, identity = self._identified(self.index_root / VERSIONS / target)
        except IndexLoadError as exc:
            self._refused.add((target, identity))
            self._problem = f"version {target} refused: {exc}"
            log.error("reload refused, still serving %s: %s", previous, exc)
            message = f"version {target} refused, still serving {previous}: {exc}"
            raise ReloadRefused(message, without_paths(message, self.index_root)) from None
        self._current, self._identity, self._problem = searcher, identity, None  # one swap: old or new, never a mix
        log.info("reloaded index: now serving %s (was %s)", searcher.version, previous)
        return {"version": searcher.version, "previous": previous, "changed": True}

    def reload_everywhere(self) -> dict:
        """:meth:`reload` here, then in every worker of the group; the outcome says what each one serves.

        ``all_workers`` is true only when every worker the server runs reported serving this
        worker's version within ``WAIT_FOR_WORKERS_SECONDS``.
        """
        outcome = self.reload()
        if self.group is None:
            return outcome
        token = self.group.announce()
        self._seen_generation = token
        self._report()
        deadline = time.monotonic() + WAIT_FOR_WORKERS_SECONDS
        while True:
            statuses = self.group.statuses()
            answered = [s for s in statuses if s.get("generation") == token]
            expected = len(statuses) if self.lazy else self.group.size
            if len(answered) >= expected or time.monotonic() > deadline:
                break
            self._stop.wait(0.1)
        workers = [{key: s.get(key) for key in ("pid", "version", "ready", "problem")} for s in statuses]
        for worker in workers:
            worker["problem"] = worker["problem"] and without_paths(worker["problem"], self.index_root)
        same = [s for s in statuses if s.get("identity") == self._identity]
        everywhere = len(same) >= (len(statuses) if self.lazy else self.group.size) and len(same) == len(statuses)
        return {**outcome, "workers": workers, "all_workers": everywhere}

    def status(self) -> dict[str, Any]:
        """What this worker serves, as the group's status files hold it."""
        return {"pid": os.getpid(), "version": self._current.version if self._current else None,
                "identity": self._identity, "ready": self._current is not None, "problem": self._problem,
                "generation": self._seen_generation}

    def _report(self) -> None:
        if self.group is not None:
            self.group.report(self.status())

    def serving(self) -> dict[str, Any]:
        """What CURRENT names and what each worker serves; ``all_workers``: every live worker serves CURRENT."""
        current = current_version(self.index_root) if self.index_root is not None else None
        mine = self.status()
        others = [s for s in self.group.statuses() if s.get("pid") != mine["pid"]] if self.group else []
        workers = [{"pid": s.get("pid"), "version": s.get("version")} for s in [mine, *others]]
        return {"current": current, "workers": workers,
                "all_workers": current is not None and all(w["version"] == current for w in workers)}

    def watch(self, every_seconds: float) -> None:
        """Keep this worker's index current in a background thread.

        Every ``every_seconds`` (0: never) it reloads when CURRENT names other content (not content
        refused before); within ``TICK_SECONDS`` when another worker of the group was told to
        reload; and while it has no index, it tries to load one every ``RECOVER_SECONDS``.
        """
        if self.index_root is None or self._watcher is not None:
            return
        tick = min(every_seconds, TICK_SECONDS) if every_seconds > 0 else TICK_SECONDS
        self._watcher = threading.Thread(target=self._watch_loop, args=(every_seconds, tick), name="index-watcher",
                                         daemon=True)
        self._watcher.start()

    def _watch_loop(self, every_seconds: float, tick: float) -> None:
        next_poll = time.monotonic() + every_seconds
        next_recovery = next_converge = time.monotonic() + RECOVER_SECONDS
        while not self._stop.wait(tick):
            now = time.monotonic()
            generation = self.group.generation() if self.group else ""
            try:
                if generation != self._seen_generation:  # another worker was told to reload
                    self._seen_generation = generation
                    if self._current is None:
                        self._recover()
                    else:
                        self._reload_logged()
                elif self._current is None:
                    if now >= next_recovery:
                        next_recovery = now + RECOVER_SECONDS
                        self._recover()
                elif every_seconds > 0 and now >= next_poll:
                    next_poll = now + every_seconds
                    if self._current_differs():
                        self._reload_logged()
                elif now >= next_converge:
                    next_converge = now + RECOVER_SECONDS
                    if self._group_moved_on():
                        self._reload_logged()
                self._report()
            except Exception:  # noqa: BLE001 - the watcher must outlive any one failure, which it logs
                log.exception("index watcher: unexpected failure; still serving %s",
                              self._current.version if self._current else "nothing")

    def _recover(self) -> None:
        """A worker without an index: load one if one can be served now (errors logged once each)."""
        problem = self._problem
        try:
            with self._lock:
                self.load_initial(quiet=True)
        except IndexLoadError:
            if self._problem != problem:
                log.error("still no index can be served: %s", self._problem)
            return
        log.info("index loaded: now serving %s", self._current.version)

    def _current_differs(self) -> bool:
        target = current_version(self.index_root)
        if target is None:
            return False
        try:
            identity = version_identity(self.index_root / VERSIONS / target)
        except IndexLoadError:
            identity = None
        return identity != self._identity and (target, identity) not in self._refused

    def _group_moved_on(self) -> bool:
        """Another live worker serves what CURRENT names and this one does not: follow it, poll or no poll.

        A publish cut short at the swap (its worker killed after CURRENT changed) leaves the
        replacement worker on the new version and the others on the old; this ends the mix.
        """
        if self.group is None or not self._current_differs():
            return False
        try:
            identity = version_identity(self.index_root / VERSIONS / current_version(self.index_root))
        except (IndexLoadError, TypeError):
            return False
        return any(s.get("identity") == identity for s in self.group.statuses() if s.get("pid") != os.getpid())

    def _reload_logged(self) -> None:
        try:
            self.reload()
        except IndexLoadError:
            pass  # logged and counted by reload(); the old version keeps serving

    def stop(self) -> None:
        self._stop.set()
