"""Hit counts per entry: how often it was the answer, how often marked 没帮助, when it last answered.

Every worker counts in memory and writes its own totals to ``<folder>/<host>-<pid>-<random>.json`` (atomically,
at most every :data:`FLUSH_SECONDS`, and when it exits); readers sum every file, so the counts cover
all workers and survive restarts, and no query ever rewrites a big file. When a worker starts, the files
of workers of this host that are gone are folded into ``base.json`` (under a lock; the base lists what
it folded, so a crash between writing it and deleting them counts nothing twice).

Only entry ids, counts and times are kept: never a query's text.
"""
from __future__ import annotations

import atexit
import fcntl
import json
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from ..files import write_text_atomic

log = logging.getLogger(__name__)
FLUSH_SECONDS = 5.0
BASE = "base.json"
LOCK = ".lock"


@dataclass
class EntryHits:
    hits: int = 0  # searches it answered (decision answer, first hit)
    unhelpful: int = 0  # 没帮助 feedback on it
    last_hit: float | None = None  # Unix time of the latest answer

    def add(self, other: EntryHits) -> None:
        self.hits += other.hits
        self.unhelpful += other.unhelpful
        if other.last_hit is not None and (self.last_hit is None or other.last_hit > self.last_hit):
            self.last_hit = other.last_hit

    def to_list(self) -> list:
        return [self.hits, self.unhelpful, self.last_hit]

    @classmethod
    def from_list(cls, value: list) -> EntryHits:
        hits, unhelpful, last_hit = value
        return cls(int(hits), int(unhelpful), None if last_hit is None else float(last_hit))


Counts = dict[str, dict[str, EntryHits]]  # collection -> entry id -> counts


class HitCounter:
    """This process's counts, written to its own file in ``folder``; :meth:`totals` sums every file."""

    def __init__(self, folder: str | Path, *, flush_seconds: float = FLUSH_SECONDS,
                 clock: Callable[[], float] = time.time, name: str | None = None) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.flush_seconds = flush_seconds
        self.clock = clock
        # host-pid-token: a pid is reused (a container's workers get the same small pids after a restart)
        self.path = self.folder / f"{name or f'{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}'}.json"
        self._counts: Counts = {}
        self._lock = threading.Lock()
        self._dirty = False
        self._timer: threading.Timer | None = None
        fold_finished_workers(self.folder)
        atexit.register(self.flush)

    def record_answer(self, collection: str, faq_id: str) -> None:
        """``faq_id`` answered a query (decision answer, first hit)."""
        now = self.clock()
        with self._lock:
            counts = self._entry(collection, faq_id)
            counts.hits += 1
            counts.last_hit = now
        self._changed()

    def record_unhelpful(self, collection: str, faq_id: str) -> None:
        """Someone marked ``faq_id``'s answer 没帮助."""
        with self._lock:
            self._entry(collection, faq_id).unhelpful += 1
        self._changed()

    def _entry(self, collection: str, faq_id: str) -> EntryHits:
        return self._counts.setdefault(collection, {}).setdefault(faq_id, EntryHits())

    def _changed(self) -> None:
        """Schedule a write within ``flush_seconds`` (one timer at a time: a busy worker writes once per period)."""
        with self._lock:
            self._dirty = True
            if self._timer is not None:
                return
            if self.flush_seconds <= 0:
                timer = None
            else:
                timer = self._timer = threading.Timer(self.flush_seconds, self.flush)
                timer.daemon = True
        if timer is None:
            self.flush()
        else:
            timer.start()

    def flush(self) -> None:
        """Write this process's totals to its file (atomically); a failure is logged, the counts kept."""
        with self._lock:
            self._timer = None
            if not self._dirty:
                return
            text = json.dumps(_encoded(self._counts), ensure_ascii=False, separators=(",", ":"))
            self._dirty = False
        try:
            write_text_atomic(self.path, text)
        except OSError as exc:
            self._dirty = True
            log.warning("hit counts not written to %s: %s", self.path, exc.strerror or exc)

    def close(self) -> None:
        """Write the counts now; nothing is written at exit any more (the folder may be gone by then)."""
        self.flush()
        atexit.unregister(self.flush)

    def totals(self, collection: str) -> dict[str, EntryHits]:
        """Every worker's counts for ``collection``, summed (this one's as they are now)."""
        self.flush()
        return read_totals(self.folder).get(collection, {})


def open_counter(folder: str | Path | None) -> HitCounter | None:
    """This process's counter in ``folder`` (None: counting off); None with a warning where it cannot be written."""
    if not folder:
        return None
    try:
        return HitCounter(folder)
    except OSError as exc:  # a read-only data folder: the service answers, it does not count
        log.warning("hit counts are off: %s cannot be written (%s)", folder, exc.strerror or exc)
        return None


def _encoded(counts: Counts) -> dict:
    return {collection: {faq_id: c.to_list() for faq_id, c in entries.items()} for collection, entries in counts.items()}


def _decoded(record: dict) -> Counts:
    return {collection: {faq_id: EntryHits.from_list(value) for faq_id, value in entries.items()}
            for collection, entries in record.items()}


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("hit counts in %s not read: %s", path, exc)
        return {}


def _added(into: Counts, counts: Counts) -> None:
    for collection, entries in counts.items():
        target = into.setdefault(collection, {})
        for faq_id, value in entries.items():
            target.setdefault(faq_id, EntryHits()).add(value)


def read_totals(folder: str | Path) -> Counts:
    """The sum of the base and of every worker file the base has not folded in yet."""
    folder = Path(folder)
    base = _read(folder / BASE)
    folded = set(base.get("folded", ()))
    totals: Counts = {}
    try:
        _added(totals, _decoded(base.get("counts", {})))
    except (TypeError, ValueError):
        log.warning("hit counts in %s not read: not counts", folder / BASE)
    for path in sorted(folder.glob("*.json")):
        if path.name == BASE or path.name in folded:
            continue
        try:
            _added(totals, _decoded(_read(path)))
        except (TypeError, ValueError, AttributeError):
            log.warning("hit counts in %s not read: not counts", path)
    return totals


def fold_finished_workers(folder: Path, alive: Callable[[int], bool] | None = None) -> list[str]:
    """Fold the files of this host's workers that have exited into ``base.json``; the names folded."""
    alive = alive or _alive
    host = socket.gethostname()
    with open(folder / LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        base = _read(folder / BASE)
        for name in base.get("folded", ()):  # counted already: a crash came before they were deleted
            (folder / name).unlink(missing_ok=True)
        done = [p for p in sorted(folder.glob(f"{host}-*.json")) if not alive(_pid(p.name, host))]
        if done:
            counts = _decoded(base.get("counts", {}))
            for path in done:
                _added(counts, _decoded(_read(path)))
            write_text_atomic(folder / BASE, json.dumps({"counts": _encoded(counts), "folded": [p.name for p in done]},
                                                        ensure_ascii=False, separators=(",", ":")))
        for path in done:
            path.unlink(missing_ok=True)
        return [p.name for p in done]


def _pid(name: str, host: str) -> int:
    try:
        return int(name[len(host) + 1:].split("-")[0])
    except ValueError:
        return -1


def _alive(pid: int) -> bool:
    if pid <= 0:
        return True  # not a worker file of ours: left alone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sorted_rows(entries: Iterable, totals: dict[str, EntryHits], sort: str) -> list[dict]:
    """Every entry (``id``, ``question``, ``category``) with its counts, zero for those never hit, in ``sort`` order.

    ``hits`` / ``unhelpful`` / ``last_hit``: most first; ``never``: the entries nobody asked about first.
    """
    rows = []
    for entry in entries:
        counts = totals.get(entry.id, EntryHits())
        rows.append({"faq_id": entry.id, "question": entry.question, "category": entry.category,
                     "hits": counts.hits, "unhelpful": counts.unhelpful, "last_hit": counts.last_hit})
    keys = {"hits": lambda r: (-r["hits"], r["faq_id"]),
            "unhelpful": lambda r: (-r["unhelpful"], -r["hits"], r["faq_id"]),
            "last_hit": lambda r: (r["last_hit"] is None, -(r["last_hit"] or 0), r["faq_id"]),
            "never": lambda r: (r["hits"] > 0, r["hits"], r["faq_id"])}
    return sorted(rows, key=keys[sort])


SORTS = ("hits", "unhelpful", "last_hit", "never")
