"""The answer cache: each worker keeps its most recent search results, and GET answers say how a proxy may cache.

An answer depends on the collection, its served index version, the normalised query, top_k,
the mode, the threshold and the filters: all of them make the key, so a hit is the answer the
model would give. The key is a digest of them, never the query itself: a citizen's text (an ID
number, a phone number) is not kept as a key, nor sent out in an ETag. A reload empties the
cache; a full cache forgets its least recently used answer. Per worker (and per replica): workers do not share entries.
"""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Any, Hashable

from ..normalize import normalize

EXTENSION = "retriever.cache"


def answer_key(collection: str, version: str, query: str, top_k: int, mode: str | None, threshold: float | None,
               categories: list[str] | str | None, tags: list[str] | None) -> tuple[str, str]:
    """``(collection, digest)``: the SHA-256 of everything that changes a search's answer (filters in a
    canonical order: their order changes nothing)."""
    categories = [categories] if isinstance(categories, str) else categories
    parts = (collection, version, normalize(query), top_k, mode, threshold,
             tuple(sorted(set(categories or ()))), tuple(sorted(set(tags or ()))))
    return collection, hashlib.sha256(repr(parts).encode("utf-8")).hexdigest()


def etag(key: Hashable) -> str:
    """A weak entity tag for the answer ``key`` names: equal for equal answers (took_ms aside)."""
    return 'W/"' + hashlib.sha256(repr(key).encode("utf-8")).hexdigest()[:32] + '"'


def etag_matches(if_none_match: str | None, tag: str) -> bool:
    """Whether an If-None-Match header names ``tag`` (weak comparison, as RFC 9110 asks for GET).

    ``*`` is not honoured: it would answer 304 even to a query that has no answer (a 400).
    """
    if not if_none_match:
        return False
    opaque = tag.removeprefix("W/")
    return any(candidate.strip().removeprefix("W/") == opaque for candidate in if_none_match.split(","))


def cache_control(max_age: int) -> str:
    return f"public, max-age={max_age}" if max_age > 0 else "no-cache"


class AnswerCache:
    """A thread-safe LRU of answers, emptied whenever a collection serves another searcher (a reload)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[Hashable, Any] = OrderedDict()
        self._served: dict[str, int] = {}  # collection -> id of the searcher its entries came from
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def observe(self, collection: str, searcher: object) -> None:
        """Empty the cache if ``collection`` now serves another searcher than its entries came from."""
        with self._lock:
            if self._served.get(collection, id(searcher)) != id(searcher):
                self._entries.clear()
                self._served.clear()
            self._served[collection] = id(searcher)

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def put(self, key: Hashable, value: Any) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._served.clear()
