"""jieba's tokens of every indexed text, kept beside the index so that a rebuild tokenizes only new texts.

::

    index/embeddings/tokens-<settings digest>.jsonl    one ["normalised text", ["token", ...]] a line

jieba is most of what a searcher costs to set up (BM25 and the judge's lookups each tokenize every
text), and a build sets up several (calibration and the judge, the publish gate's new and served
versions): remembered here, each text is tokenized once per build and, from the file, once ever.
The file sits beside the vectors cache (store/embedding_cache.py) and is turned off with it. Lines
are appended whole under ``flock``; a torn last line is skipped when read.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import sys
import threading
import weakref
from pathlib import Path
from typing import Iterable, Mapping

from ..files import write_text_atomic
from ..lexical import Tokenizer
from .embedding_cache import COMPACT_RATIO, EMBEDDINGS


def settings_digest(config: Mapping) -> str:
    return hashlib.sha256(json.dumps(dict(config), ensure_ascii=False, sort_keys=True).encode()).hexdigest()[:12]


class TokenCache:
    """A tokenizer (:meth:`__call__`, :meth:`config`) that remembers the tokens of every text it saw.

    ``path`` None: remembered in memory only. :meth:`save` appends what is new to the file.
    """

    def __init__(self, config: Mapping, path: str | Path | None) -> None:
        self.tokenizer = Tokenizer.from_config(config)
        self.path = Path(path) if path is not None else None
        self._known: dict[str, tuple[str, ...]] = {}
        self._new: dict[str, tuple[str, ...]] = {}
        self._used: set[str] = set()
        self._lock = threading.Lock()
        self.stored = 0  # lines in the file when read
        if self.path is not None and self.path.is_file():
            self._read()

    @classmethod
    def for_index(cls, out_root: str | Path, config: Mapping, enabled: bool = True) -> "TokenCache":
        """The token cache of ``config``'s tokenizer under ``out_root``: one object per file while in use."""
        if not enabled:
            return cls(config, None)
        path = (Path(out_root) / EMBEDDINGS / f"tokens-{settings_digest(config)}.jsonl").resolve()
        with _OPEN_LOCK:
            cache = _OPEN.get(path)
            if cache is None:
                cache = _OPEN[path] = cls(config, path)
            return cache

    def __call__(self, normalised_text: str) -> list[str]:
        with self._lock:
            self._used.add(normalised_text)
            tokens = self._known.get(normalised_text)
        if tokens is None:
            tokens = tuple(sys.intern(t) for t in self.tokenizer(normalised_text))
            with self._lock:
                self._known[normalised_text] = self._new[normalised_text] = tokens
        return list(tokens)

    def config(self) -> dict:
        return self.tokenizer.config()

    def _read(self) -> None:
        with open(self.path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                try:
                    text, tokens = json.loads(line)
                except (ValueError, TypeError):
                    continue  # a torn last line (a crash while appending)
                self._known[text] = tuple(sys.intern(t) for t in tokens)
                self.stored += 1

    def save(self, keep: Iterable[str] | None = None) -> None:
        """Append the texts tokenized since the last save; rewrite the file with only ``keep`` (default: the
        texts tokenized or looked up since this object was made) when it holds more than
        :data:`COMPACT_RATIO` times as many lines."""
        if self.path is None:
            return
        with self._lock:
            new, self._new = self._new, {}
            keep = set(self._used if keep is None else keep)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.stored + len(new) > max(COMPACT_RATIO * len(keep), 1000):
            kept = {text: tokens for text, tokens in self._known.items() if text in keep}
            write_text_atomic(self.path, "".join(_line(text, tokens) for text, tokens in kept.items()))
            self.stored = len(kept)
            return
        if not new:
            return
        data = "".join(_line(text, tokens) for text, tokens in new.items()).encode("utf-8")
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                data = b"\n" + data  # after a torn line: it stays one bad line, skipped
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        self.stored += len(new)


def _line(text: str, tokens: tuple[str, ...]) -> str:
    return json.dumps([text, list(tokens)], ensure_ascii=False) + "\n"


_OPEN: "weakref.WeakValueDictionary[Path, TokenCache]" = weakref.WeakValueDictionary()
_OPEN_LOCK = threading.Lock()
