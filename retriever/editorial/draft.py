"""What the draft corpus would answer before it is published: an index of the draft's entries held in
memory, searched as the served version searches.

The draft searcher takes from the served version everything but the entries: the model, the
tokenizer settings, the decision parameters (calibrated thresholds and margins, the judge and its
confidence threshold) and the labelled queries the judge compares with. Only the entries' texts
are new, and of those only texts the served index does not hold are embedded (through the
embedding cache when there is one, so the next publish finds them too). Calibration is not
re-run: a draft answer says what the *published* draft would answer only as far as the served
calibration still fits it, which is what publishing's gate then checks. The fast model of a
cascade is not used: the draft is searched on the full path.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable, Sequence

import faiss
import numpy as np

from ..corpus import FaqEntry, corpus_checksum, corpus_files, load_corpus
from ..lexical import Tokenizer
from ..normalize import normalize
from ..search import Searcher
from ..store import FaqIndex
from ..store.build import entry_texts
from ..store.layout import QUERY_FIELDS, negative_examples

# (normalised texts, kind "query" or "passage") -> float32 unit rows, in order
Embed = Callable[[list[str], str], np.ndarray]


def _kind(field: str) -> str:
    return "query" if field in QUERY_FIELDS else "passage"


def reusing_served(served: FaqIndex, embed: Embed) -> tuple[Embed, dict[str, int]]:
    """An embedder that takes the served index's vector of every text it holds and embeds only the others;
    and its counts (``embedded``: texts it had to embed)."""
    known: dict[tuple[str, str], np.ndarray | int] = {(_kind(t.field), t.norm): row
                                                      for row, t in enumerate(served.texts)}
    if served.negative_vectors is not None:
        known.update({("query", norm): served.negative_vectors[row]
                      for row, (_, _, norm) in enumerate(served.negatives)})
    counts = {"embedded": 0}

    def vectors(texts: list[str], kind: str) -> np.ndarray:
        out = np.empty((len(texts), served.vectors.d), dtype=np.float32)
        rows = [(i, known.get((kind, text))) for i, text in enumerate(texts)]
        stored = [(i, row) for i, row in rows if isinstance(row, (int, np.integer))]
        if stored:
            out[[i for i, _ in stored]] = served.vectors.reconstruct_batch(np.asarray([r for _, r in stored], np.int64))
        for i, row in rows:
            if isinstance(row, np.ndarray):
                out[i] = row
        missing = [i for i, row in rows if row is None]
        if missing:
            out[missing] = embed([texts[i] for i in missing], kind)
            counts["embedded"] += len(missing)
        return out

    return vectors, counts


def draft_index(served: FaqIndex, entries: list[FaqEntry], vectors: Embed) -> FaqIndex:
    """An in-memory index of ``entries`` with the served version's settings and decision parameters."""
    texts = entry_texts(entries, served.manifest.get("index_answers", True))
    matrix = np.zeros((len(texts), served.vectors.d), dtype=np.float32)
    for kind in ("query", "passage"):
        rows = [i for i, text in enumerate(texts) if _kind(text.field) == kind]
        if rows:
            matrix[rows] = vectors([texts[i].norm for i in rows], kind)
    flat = faiss.IndexFlatIP(served.vectors.d)
    flat.add(matrix)
    negatives = negative_examples(entries)
    negative_vectors = vectors([norm for _, _, norm in negatives], "query") if negatives else None
    checksum = corpus_checksum(entries)
    manifest = {**served.manifest, "version": f"draft-{checksum[:12]}", "corpus_checksum": checksum,
                "counts": {"entries": len(entries), "vectors": len(texts)}, "draft_of": served.manifest.get("version")}
    labelled, labelled_vectors = _labelled(served, entries)
    return FaqIndex(served.path, manifest, entries, texts, flat, negatives, negative_vectors, served.judge,
                    labelled, labelled_vectors, None)


def _labelled(served: FaqIndex, entries: list[FaqEntry]) -> tuple[list[tuple[int, str]], np.ndarray | None]:
    """The served labelled queries renumbered for the draft's entries (those of removed entries dropped)."""
    if served.labelled_vectors is None:
        return [], None
    numbers = {entry.id: number for number, entry in enumerate(entries)}
    kept = [(row, -1 if entry < 0 else numbers.get(served.entries[entry].id), query)
            for row, (entry, query) in enumerate(served.labelled)]
    kept = [(row, number, query) for row, number, query in kept if number is not None]
    return [(number, query) for _, number, query in kept], served.labelled_vectors[[row for row, _, _ in kept]]


class RememberingTokenizer:
    """The index's tokenizer, remembering the tokens of the draft's texts from one rebuild to the next.

    jieba is most of a draft searcher's build (measured: 58 of 70 s for 5,000 entries, every text
    tokenized for BM25 and again for the judge); remembered, a rebuild after an edit tokenizes only
    the changed texts. Queries are tokenized as usual and not remembered (their number has no bound).
    """

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        self._known: dict[str, list[str]] = {}
        self._recording = False

    def __call__(self, normalised_text: str) -> list[str]:
        tokens = self._known.get(normalised_text)
        if tokens is None:
            tokens = self.tokenizer(normalised_text)
            if self._recording:
                self._known[normalised_text] = tokens
        return list(tokens)

    def config(self) -> dict:
        return self.tokenizer.config()

    def building(self, texts: Sequence[str]) -> "RememberingTokenizer":
        """Remember while a searcher of ``texts`` is built (call :meth:`done` after); forget other texts."""
        wanted = set(texts)
        self._known = {text: tokens for text, tokens in self._known.items() if text in wanted}
        self._recording = True
        return self

    def done(self) -> None:
        self._recording = False


def corpus_stamp(corpus: str | Path) -> tuple:
    """What changes whenever a corpus file does (name, size, modification time): a cheap staleness check."""
    stamps = []
    for path in corpus_files(corpus):
        stat = path.stat()
        stamps.append((str(path), stat.st_size, stat.st_mtime_ns))
    return tuple(stamps)


class DraftSearchers:
    """The draft's searcher, rebuilt only when the corpus files or the served version changed (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple | None = None
        self._searcher: Searcher | None = None
        self._tokenizers: dict[str, RememberingTokenizer] = {}  # by the tokenizer settings
        self.embedded = 0  # texts embedded for the current draft searcher

    def _tokenizer(self, served: Searcher) -> RememberingTokenizer:
        settings = served.lexical.tokenizer.config()
        key = repr(sorted(settings.items()))
        if key not in self._tokenizers:
            self._tokenizers = {key: RememberingTokenizer(Tokenizer.from_config(settings))}  # one at a time
        return self._tokenizers[key]

    def get(self, corpus: str | Path, served: Searcher, embed: Embed) -> Searcher:
        """The searcher of the draft at ``corpus`` (its enabled entries); CorpusError if the draft does not load."""
        with self._lock:
            key = (served.version, corpus_stamp(corpus))
            if key != self._key or self._searcher is None:
                entries = load_corpus(corpus)
                checksum = corpus_checksum(entries)
                if self._searcher is None or self._searcher.index.manifest.get("corpus_checksum") != checksum \
                        or self._searcher.index.manifest.get("draft_of") != served.version:
                    vectors, counts = reusing_served(served.index, embed)
                    index = draft_index(served.index, entries, vectors)
                    tokenizer = self._tokenizer(served).building([t.norm for t in index.texts] +
                                                                 [norm for _, _, norm in index.negatives])
                    try:
                        self._searcher = Searcher(index, served.encoder, served.mode, served.lexical_weight,
                                                  cascade=False, clock=served.clock, tokenizer=tokenizer)
                    finally:
                        tokenizer.done()
                    self.embedded = counts["embedded"]
                self._key = key
            return self._searcher


def encoder_embed(encode_queries: Callable[[Sequence[str]], np.ndarray],
                  encode_passages: Callable[[Sequence[str]], np.ndarray]) -> Embed:
    """An :data:`Embed` straight from a model (no cache)."""
    return lambda texts, kind: (encode_queries if kind == "query" else encode_passages)(
        [normalize(text) for text in texts])
