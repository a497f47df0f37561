"""The vector index of a version: flat (exact) for most collections, HNSW (approximate) for large ones.

A flat index compares the query with every vector: on this 2-core machine one query, one
thread, top 100 of 384-dimensional unit vectors took 0.25 ms at 10k vectors, 0.8 ms at 20k,
2.4 ms at 50k and 4.7 ms at 100k (200 queries, p50; 8.5 ms at 100k under load in
benchmarks/large_collection.py), and grows linearly from there. From
``ANN_MIN_VECTORS`` on, the build makes an HNSW graph instead (FAISS ``IndexHNSWFlat``, inner
product), whose cost grows with log N. Its recall@10 against the flat index is measured at
build time on held-out query vectors; the smallest ``efSearch`` that reaches
``RECALL_TARGET`` is kept, and if none does the version stays flat. The manifest's
``vector_index`` records the kind, the parameters and the measured recall; ``/healthz`` shows it.

Filtered searches (category/tags) never go through the graph: a selective filter would leave
HNSW too few reachable neighbours. They search the exact vectors of the kept rows
(:func:`search_among`), so a filter still returns every hit that exists.

Files are memory-mapped read-only (``IO_FLAG_MMAP_IFC``): the vectors live in the page cache,
shared by every worker and every process serving the same version, reloads included.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Sequence

import faiss
import numpy as np

FLAT, HNSW = "flat", "hnsw"
# From this many vectors the build makes an HNSW graph: flat search costs ~2 ms a query there
# (one thread, measured above), a tenth of the encoder's time, and grows linearly.
ANN_MIN_VECTORS = 40_000
RECALL_TARGET = 0.99  # recall@10 against flat search the graph must reach, or the version stays flat
RECALL_AT = 10
RECALL_QUERIES = 1_000  # held-out query vectors measured at build time (evenly spaced over the texts)
HNSW_M = 32  # neighbours per node: 32 is FAISS's usual choice for 384-dimensional text vectors
EF_CONSTRUCTION = 80
# Tried in turn; the first that reaches RECALL_CHOSEN is kept. The build's queries are the corpus's own texts, and
# queries unlike any entry land lower (seed + 2 collections, e5-onnx-q4: build 0.999 at efSearch 16, the labelled
# queries with their off-topic ones 0.988 at 16, 0.998 at 32, 1.0 from 64), so the search starts at 64 and is
# chosen with a margin above the target; 64 costs far less than the encoder at any size.
EF_SEARCH_STEPS = (64, 128, 256, 512)
RECALL_CHOSEN = 0.995
# HNSW searches that leave out at most this many rows over-fetch from the graph (search_vectors);
# more, and the kept rows are searched exactly (a selective filter would starve the graph).
OVERFETCH_MAX = 1_000
_TIE = 1e-6  # a result scoring within this of the k-th exact score is as good as the exact one

_search_threads: int | None = None  # None: FAISS's default (every core), as in builds
_applied = threading.local()


def set_search_threads(threads: int | None) -> None:
    """FAISS threads per search from now on, in every thread of this process (None: FAISS's default).

    The service sets 1 in each worker: the workers already fill the cores, and from 20k entries
    two threads on one query were slower than one and burnt 3x the CPU (issue measurements).
    """
    global _search_threads
    _search_threads = threads
    apply_search_threads()


def apply_search_threads() -> int:
    """Apply the process's FAISS thread count in the calling thread; returns the count in force there.

    OpenMP keeps the count per thread (libgomp): a request thread started after
    :func:`set_search_threads` still has the default until it calls this.
    """
    wanted = _search_threads
    if wanted is not None and getattr(_applied, "threads", None) != wanted:
        faiss.omp_set_num_threads(wanted)
        _applied.threads = wanted
    return faiss.omp_get_max_threads()


def build_vector_index(vectors: np.ndarray, query_rows: Sequence[int], min_vectors: int | None = None,
                       progress: bool = False) -> tuple[faiss.Index, dict[str, Any]]:
    """The FAISS index for ``vectors`` (unit rows) and the manifest's ``vector_index`` record.

    ``query_rows``: rows that are questions (their vectors serve as held-out queries for the
    recall). ``min_vectors``: the size from which a graph is built (None: ``ANN_MIN_VECTORS``;
    0: never, flat always).
    """
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(vectors)
    threshold = ANN_MIN_VECTORS if min_vectors is None else min_vectors
    if threshold <= 0 or len(vectors) < threshold:
        return flat, {"kind": FLAT, "ann_min_vectors": threshold}
    started = time.monotonic()
    graph = faiss.IndexHNSWFlat(vectors.shape[1], HNSW_M, faiss.METRIC_INNER_PRODUCT)
    graph.hnsw.efConstruction = EF_CONSTRUCTION
    _add_in_batches(graph, vectors, progress)
    built_seconds = time.monotonic() - started
    queries = held_out_queries(vectors, query_rows)
    record = {"kind": HNSW, "ann_min_vectors": threshold, "m": HNSW_M, "ef_construction": EF_CONSTRUCTION,
              "recall_target": RECALL_TARGET, "recall_at": RECALL_AT, "recall_queries": len(queries[0]),
              "built_seconds": round(built_seconds, 1)}
    truth = _exact_neighbours(flat, queries)
    reached = None  # the first (efSearch, recall) at the target, kept if none reaches the margin
    for ef in EF_SEARCH_STEPS:
        graph.hnsw.efSearch = ef
        recall = recall_at(graph, queries, truth)
        reached = reached or ((ef, recall) if recall >= RECALL_TARGET else None)
        if recall >= max(RECALL_CHOSEN, RECALL_TARGET):
            return graph, {**record, "ef_search": ef, "recall": round(recall, 4)}
    if reached:
        graph.hnsw.efSearch = reached[0]
        return graph, {**record, "ef_search": reached[0], "recall": round(reached[1], 4)}
    # The graph misses too much even at the widest search: exact search is the safe answer.
    return flat, {"kind": FLAT, "ann_min_vectors": threshold,
                  "reason": f"HNSW recall@{RECALL_AT} {recall:.4f} < {RECALL_TARGET} at efSearch {ef}"}


def _add_in_batches(graph: faiss.Index, vectors: np.ndarray, progress: bool) -> None:
    from tqdm.auto import tqdm

    step = 10_000
    with tqdm(total=len(vectors), desc="HNSW graph", unit="vector", disable=not progress) as bar:
        for start in range(0, len(vectors), step):
            graph.add(vectors[start:start + step])
            bar.update(min(step, len(vectors) - start))


def held_out_queries(vectors: np.ndarray, query_rows: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``RECALL_QUERIES`` question vectors (evenly spaced) and their own rows.

    Each is searched as a query with its own row left out of both result lists (leave-one-out):
    the neighbours a paraphrase of that question would have, found without the free hit on itself.
    """
    rows = np.asarray(query_rows if len(query_rows) else range(len(vectors)), dtype=np.int64)
    picked = rows[np.unique(np.linspace(0, len(rows) - 1, min(RECALL_QUERIES, len(rows))).astype(np.int64))]
    return np.ascontiguousarray(vectors[picked]), picked


def _exact_neighbours(flat: faiss.Index, queries: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Per query, the exact score of its ``RECALL_AT``-th neighbour other than itself."""
    vectors, own = queries
    k = min(RECALL_AT + 1, flat.ntotal)
    scores, ids = flat.search(vectors, k)
    return np.array([row_scores[row_ids != self_row][:RECALL_AT].min()
                     for row_scores, row_ids, self_row in zip(scores, ids, own)], dtype=np.float32)


def recall_at(index: faiss.Index, queries: tuple[np.ndarray, np.ndarray], kth_exact: np.ndarray) -> float:
    """Share of the true ``RECALL_AT`` nearest (self left out) that ``index`` returns among its first ``RECALL_AT``.

    Counted by score: a result scoring at least the k-th exact score is a true neighbour, so that
    equal vectors (ties) never count as misses.
    """
    vectors, own = queries
    k = min(RECALL_AT + 1, index.ntotal)
    scores, ids = index.search(vectors, k)
    found = 0
    for row_scores, row_ids, self_row, kth in zip(scores, ids, own, kth_exact):
        kept = row_scores[(row_ids != self_row) & (row_ids >= 0)][:RECALL_AT]
        found += int((kept >= kth - _TIE).sum())
    return found / (len(vectors) * min(RECALL_AT, index.ntotal - 1)) if len(vectors) else 1.0


def read_vector_index(path: Path) -> faiss.Index:
    """The index file memory-mapped read-only: its pages are shared with every process mapping it.

    Never ``add`` to it (FAISS aborts the process on a mapped, read-only index).
    """
    return faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY)


def kind_of(index: faiss.Index) -> str:
    """``"hnsw"`` or ``"flat"``: what the index file holds."""
    return HNSW if isinstance(faiss.downcast_index(index), faiss.IndexHNSW) else FLAT


def exact_vectors(index: faiss.Index) -> faiss.Index:
    """The flat index behind ``index``: itself, or an HNSW graph's storage (same rows)."""
    index = faiss.downcast_index(index)
    return faiss.downcast_index(index.storage) if isinstance(index, faiss.IndexHNSW) else index


def search_among(index: faiss.Index, queries: np.ndarray, k: int, kept: np.ndarray):
    """Exact top ``k`` among the rows ``kept`` (scores, ids), whatever the index kind."""
    params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(kept))
    return exact_vectors(index).search(queries, min(k, len(kept)), params=params)


def search_vectors(index: faiss.Index, queries: np.ndarray, k: int, left_out: np.ndarray | None = None):
    """Top ``k`` rows per query (scores, ids; -1 pads), among the rows not ``left_out`` (a mask over rows).

    Flat: exact, a selector skipping the left-out rows. HNSW with at most ``OVERFETCH_MAX`` rows
    left out (entries past their dates, a filter that keeps almost everything): the graph is
    asked for ``k`` more than are left out and those are dropped, so ``k`` kept rows remain, as
    close to the true ones as an unfiltered search. Any other mask: exact among the kept rows.
    """
    if left_out is None:
        return index.search(queries, k)
    kept = np.flatnonzero(~left_out).astype(np.int64)
    out = len(left_out) - len(kept)
    if kind_of(index) == FLAT or out > OVERFETCH_MAX:
        return search_among(index, queries, k, kept)
    scores, ids = index.search(queries, min(k + out, index.ntotal))
    keep = (ids >= 0) & ~left_out[np.maximum(ids, 0)]
    top_scores = np.full((len(queries), min(k, len(kept))), -np.inf, dtype=np.float32)
    top_ids = np.full(top_scores.shape, -1, dtype=np.int64)
    for row, (row_scores, row_ids, row_keep) in enumerate(zip(scores, ids, keep)):
        found = row_ids[row_keep][:top_ids.shape[1]]
        top_ids[row, :len(found)], top_scores[row, :len(found)] = found, row_scores[row_keep][:len(found)]
    return top_scores, top_ids


def describe(manifest: dict[str, Any]) -> dict[str, Any]:
    """The ``vector_index`` facts for health checks (an index built before it was recorded: flat)."""
    return {**(manifest.get("vector_index") or {"kind": FLAT}), "search_threads": apply_search_threads()}
