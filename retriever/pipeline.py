"""From a corpus folder to a published, calibrated index: what ``build`` does."""
from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .cascade import DEFAULT_MAX_ERROR, FastGate, FastRanking, learn_gate, paraphrase_rounds
from .corpus import load_corpus
from .corpus.conflicts import ConflictReport, IdenticalText, check_identical, closer_elsewhere, write_conflicts
from .corpus.nearest import nearest_texts, read_nearest, write_nearest
from .encoders import Encoder
from .errors import IndexLoadError
from .evaluation import LabelledQuery, Outcome, calibrate, read_labelled, run
from .files import write_jsonl, write_text_atomic
from .normalize import normalize
from .judge import JUDGE_FORMAT
from .judge_training import train_judge
from .search import Searcher
from .self_calibration import add_offtopic, calibrate_modes, load_offtopic, plan_rounds
from .store import build_index, is_up_to_date, load_index, record_artifacts, resolve_version_dir
from .store.decision_reuse import LEARNED, LearnedDecisions, learned_here, reusable_decisions, settings_digest
from .store.embedding_cache import CachedEncoder, EmbeddingCache
from .store.token_cache import TokenCache
from .store.layout import JUDGE, LABELLED, LABELLED_VECTORS
from .lexical import corpus_tokenizer_config
from .scoring import DEFAULT_MODE, MODES

LABELLED_FILE = "labelled.jsonl"
# Labelled queries enough to calibrate on alone (the seed corpus ships 42 and 18); fewer are topped up
# with the corpus's own rounds (retriever/self_calibration.py).
MIN_LABELLED_IN_DOMAIN = 20
MIN_LABELLED_OUT_OF_DOMAIN = 10
SELF_CALIBRATION_FORMAT = 1  # in the build settings: an index built before self-calibration is stale


@dataclass(frozen=True)
class BuildOutcome:
    version_dir: Path | None  # None when the index was already up to date
    entries: int
    labelled_path: Path | None


def default_labelled_path(corpus: str | Path) -> Path | None:
    """``labelled.jsonl`` in the corpus folder, if there is one."""
    corpus = Path(corpus)
    path = (corpus if corpus.is_dir() else corpus.parent) / LABELLED_FILE
    return path if path.is_file() else None


def build_from_corpus(corpus: str | Path, out: str | Path, encoder: Encoder, *, mode: str = DEFAULT_MODE,
                      index_answers: bool = True, labelled_path: str | Path | None = None,
                      if_stale: bool = False, batch_size: int = 64, keep_versions: int = 5,
                      progress: bool = True, check: Callable[[Path, dict], dict] | None = None,
                      fast_encoder: Encoder | None = None,
                      fast_path_max_error: float = DEFAULT_MAX_ERROR, allow_conflicts: bool = False,
                      self_calibration: bool = True, embedding_cache: bool = True,
                      embed_workers: int = 1, retrain: bool = False) -> BuildOutcome:
    """Validate the corpus, embed it, calibrate (on the labelled queries, the corpus itself, or both), publish.

    ``fast_encoder`` makes a cascade index: every text embedded by it too, and the fast path's gate
    calibrated for ``fast_path_max_error`` (retriever/cascade.py). ``labelled_path`` defaults to
    ``labelled.jsonl`` beside the corpus. With ``if_stale``, nothing is built when the current version
    has the same inputs. ``check`` (the publish gate, :mod:`retriever.gate`) gets the complete staging
    folder and its new manifest fields before publication: it may add fields, or raise to refuse the
    version. A text two entries share raises ConflictError unless ``allow_conflicts``.

    Every text (entries, negatives, labelled and calibration queries) is embedded once, through the
    index root's embedding cache (retriever/store/embedding_cache.py; ``embedding_cache`` False: in
    memory only), so a rebuild embeds only what changed; ``embed_workers`` > 1 spreads large batches
    over that many processes. The manifest's ``build_stages`` records the seconds of each stage.
    When few entries changed since the current version's judge and thresholds were learned, they are
    taken over instead of learned again (retriever/store/decision_reuse.py); ``retrain`` learns them anyway.
    """
    entries = load_corpus(corpus)
    identical = check_identical(entries, allow_conflicts, CONFLICTS_FIX)  # before any model time
    labelled_path = Path(labelled_path) if labelled_path else default_labelled_path(corpus)
    labelled = read_labelled(labelled_path, {e.id for e in entries}) if labelled_path else []
    settings = _build_settings(corpus, mode, index_answers, labelled, self_calibration, fast_encoder,
                               fast_path_max_error)
    if if_stale and is_up_to_date(out, entries, encoder.name, settings):
        return BuildOutcome(None, len(entries), labelled_path)

    learned_from = settings_digest(encoder.name, settings)
    reuse = None if retrain else reusable_decisions(out, entries, learned_from)
    served = served_version(out)
    cache = EmbeddingCache.for_index(out, encoder, enabled=embedding_cache, progress=progress, batch_size=batch_size,
                                     workers=embed_workers)
    tokens = TokenCache.for_index(out, settings["tokenizer"], enabled=embedding_cache)
    stages = {"started": time.perf_counter()}
    embedded_before = cache.embedded

    def finalize(staging: Path) -> dict:
        stages["embed"] = time.perf_counter() - stages.pop("started")
        fields = finalize_version(staging, cache.encoder_view(), labelled, progress, fast_encoder, fast_path_max_error,
                                  identical, self_calibration, stages, tokens, embed_workers, reuse, served,
                                  learned_from)
        if check:
            started = time.perf_counter()
            fields = {**fields, **check(staging, fields)}
            stages["gate"] = time.perf_counter() - started
        return {**fields, "build_stages": {name: round(seconds, 2) for name, seconds in stages.items()},
                "embedding_cache": {"embedded": cache.embedded - embedded_before, "on_disk": cache.folder is not None}}

    version_dir = _build_with_caches(entries, encoder, out, cache, tokens, settings=settings, batch_size=batch_size,
                                     progress=progress, keep_versions=keep_versions, finalize=finalize,
                                     fast_encoder=fast_encoder)
    return BuildOutcome(version_dir, len(entries), labelled_path)


def _build_with_caches(entries: list, encoder: Encoder, out: str | Path, cache: EmbeddingCache, tokens: TokenCache,
                       **build) -> Path:
    """:func:`build_index` through the embedding cache, then the caches compacted, saved and closed (even
    when the build failed: what was embedded stays for the next one)."""
    try:
        with cache.tracking() as used:
            version_dir = build_index(entries, encoder, out, cache=cache, **build)
        cache.compact_if_large(used)
    finally:
        cache.close()
        with contextlib.suppress(OSError):  # a cache: the next build tokenizes again if it could not be saved
            tokens.save()
    return version_dir


def served_version(out: str | Path) -> Path | None:
    """The folder of the version ``out`` serves now, if any (what a rebuild may take over from)."""
    try:
        return resolve_version_dir(out)
    except IndexLoadError:
        return None


def _build_settings(corpus: str | Path, mode: str, index_answers: bool, labelled: Sequence[LabelledQuery],
                    self_calibration: bool, fast_encoder: Encoder | None, fast_path_max_error: float) -> dict:
    """What a version is built from besides its entries and model: the manifest's settings and staleness inputs."""
    settings = {"index_answers": index_answers, "default_mode": mode,
                "tokenizer": corpus_tokenizer_config(corpus),
                "labelled": [[q.query, q.faq_id] for q in labelled],
                "judge": JUDGE_FORMAT,  # an index built before the judge is stale
                "self_calibration": SELF_CALIBRATION_FORMAT if self_calibration else None}
    if fast_encoder is not None:  # only then: an index without a fast model stays up to date
        settings.update(fast_model=fast_encoder.name, fast_path_max_error=fast_path_max_error)
    return settings


def finalize_version(staging: Path, encoder: Encoder, labelled: list, progress: bool = True,
                     fast_encoder: Encoder | None = None, fast_path_max_error: float = DEFAULT_MAX_ERROR,
                     identical: Sequence[IdenticalText] = (), self_calibration: bool = True,
                     stages: dict[str, float] | None = None, tokenizer=None, workers: int = 1,
                     reuse: LearnedDecisions | None = None, served: Path | None = None,
                     learned_from: str | None = None) -> dict:
    """Calibrate every mode, train the judge into the staging folder and, with a fast model, calibrate
    the fast path's gate.

    Calibration uses the labelled queries when there are enough of them, the corpus itself when
    there are none (``self_calibration``, retriever/self_calibration.py), and both in between.
    Returns the manifest fields to add. The labelled queries are embedded once for all of it (``encoder``
    a :class:`CachedEncoder`, or else wrapped in a :class:`QueryMemo`); ``stages`` gets the seconds of
    calibration and judge training; ``tokenizer`` replaces the index's own (a :class:`TokenCache`);
    ``workers`` processes fit the judge's trees. ``reuse``: the judge and decision fields taken over
    from the current version instead of learned (retriever/store/decision_reuse.py); ``served``: the
    current version's folder, whose table of nearest texts the conflict check takes over in part;
    ``learned_from``: the settings digest a judge trained here is recorded under (``decisions_learned``).
    Everything but the gate is learned on the full path alone (the searchers here have no cascade).
    """
    stages = {} if stages is None else stages
    started = time.perf_counter()
    memo = encoder if isinstance(encoder, (CachedEncoder, QueryMemo)) else QueryMemo(encoder)
    index = load_index(staging)
    if labelled:  # before the searcher, whose judge lookups then hold them (decisions without a judge do not read them)
        keep_labelled(staging, index, labelled, memo)
    fields: dict = {"conflicts": record_conflicts(staging, index, identical, served)}
    searcher = None
    if reuse is None or fast_encoder is not None:
        searcher = Searcher(index, memo, cascade=False, tokenizer=tokenizer)  # one searcher for all of it
    if reuse is not None:
        fields.update(reuse.copy_into(staging))
        stages["calibration"] = time.perf_counter() - started
    else:
        fields.update(learn_decisions(searcher, staging, labelled, memo, progress, self_calibration, stages,
                                      workers, started))
        if "judge" in fields and learned_from is not None:
            fields[LEARNED] = learned_here(index.manifest["version"], learned_from)
    if fast_encoder is not None:
        gate = calibrate_fast_path(searcher, fast_encoder, labelled, fast_path_max_error)
        fields["fast_path"] = gate.to_dict()
    # A check of the staging version (the publish gate) then sees them, and the fast path's gate.
    record_artifacts(staging, {"fast_path": fields["fast_path"]} if "fast_path" in fields else None)
    return {**fields, "build_stages": {name: round(seconds, 2) for name, seconds in stages.items()}}


def learn_decisions(searcher: Searcher, staging: Path, labelled: list, memo: Encoder, progress: bool,
                    self_calibration: bool, stages: dict[str, float], workers: int, started: float) -> dict:
    """Calibrate every mode and train the judge into ``staging``; returns the manifest's decision fields."""
    index, fields = searcher.index, {}
    kind = calibration_kind(labelled, self_calibration and len(index.entries) > 1)
    rounds = None
    if kind in ("self", "both"):
        rounds = plan_rounds(index, np.random.default_rng(0))
        add_offtopic(rounds, searcher, load_offtopic(), memo)
    outcomes = {mode: run(searcher, labelled, mode=mode, progress=progress) for mode in MODES} if labelled else {}
    if rounds is not None:
        fields["calibration"] = calibrate_modes(searcher, rounds, outcomes)
    elif outcomes:
        fields["calibration"] = {mode: calibrate(found) for mode, found in outcomes.items()}
    stages["calibration"] = time.perf_counter() - started
    if len(index.entries) > 1:
        started = time.perf_counter()
        judge = train_judge(searcher, labelled, progress=progress, self_rounds=rounds, workers=workers)
        write_text_atomic(staging / JUDGE, json.dumps(judge.to_dict(), ensure_ascii=False) + "\n")
        fields["judge"] = dict(judge.summary or {})
        stages["judge"] = time.perf_counter() - started
    fields["calibration_source"] = calibration_source(kind, labelled, rounds, fields)
    return fields


CONFLICTS_FIX = ("Nothing was built. Remove or reword one of each (or move it to the right entry), or build with "
                 "--allow-conflicts to publish anyway (recorded in the manifest).")


def record_conflicts(staging: Path, index, identical: Sequence[IdenticalText] = (), served: Path | None = None) -> dict:
    """Paraphrases the version's own vectors place nearer another entry, and the identical texts let
    through, into ``conflicts.json``; returns the manifest's counts. The nearest texts behind it go into
    ``nearest.json``; ``served``: the version folder whose table a rebuild takes the unchanged part of."""
    vectors = index.vectors.reconstruct_n(0, index.vectors.ntotal)
    ids, model = [entry.id for entry in index.entries], index.manifest["model"]
    table = nearest_texts(index.texts, vectors, ids, read_nearest(served, model))
    write_nearest(staging, table, index.texts, ids, model)
    closer = closer_elsewhere(index.texts, vectors, ids, table=table)
    return write_conflicts(staging, ConflictReport(tuple(identical), closer, allowed=bool(identical)))


def calibration_kind(labelled: Sequence[LabelledQuery], self_calibration: bool) -> str:
    """``labelled`` (enough labelled queries of both kinds), ``self`` (none), ``both`` (a few), ``none``."""
    inside = sum(q.faq_id is not None for q in labelled)
    if not self_calibration:
        return "labelled" if labelled else "none"
    if inside >= MIN_LABELLED_IN_DOMAIN and len(labelled) - inside >= MIN_LABELLED_OUT_OF_DOMAIN:
        return "labelled"
    return "both" if labelled else "self"


def calibration_source(kind: str, labelled: Sequence[LabelledQuery], rounds, fields: dict) -> dict:
    """How the version was calibrated, with the counts and what the held-out check measured (manifest,
    build output, /healthz)."""
    inside = sum(q.faq_id is not None for q in labelled)
    source = {"kind": kind, "labelled_in_domain": inside, "labelled_out_of_domain": len(labelled) - inside}
    if rounds is not None:
        source.update(rounds.counts(), offtopic_topics_left_out=rounds.dropped_topics)
    judge = fields.get("judge") or {}
    hybrid = fields.get("calibration", {}).get(DEFAULT_MODE, {})
    source["held_out"] = judge.get("held_out_decisions") or hybrid.get("cross_validated") or {}
    return source


def calibrate_fast_path(searcher: Searcher, fast_encoder: Encoder, labelled: list[LabelledQuery],
                        max_error: float) -> FastGate:
    """The fast path's gate for ``max_error``: on the labelled in-domain queries, else on paraphrase rounds;
    its floor raised above the labelled out-of-domain queries (retriever/cascade.py)."""
    index = searcher.index
    ids = [entry.id for entry in index.entries]
    rankings = searcher.fast_rankings(fast_encoder.encode_queries([normalize(q.query) for q in labelled]), 2)
    outside = [r for q, r in zip(labelled, rankings) if q.faq_id is None]
    inside = [(q, r) for q, r in zip(labelled, rankings) if q.faq_id is not None]
    source = "labelled queries"
    if not inside:  # each paraphrase searched against the other texts, as if a user had typed it
        source, rounds = "paraphrase rounds", paraphrase_rounds([t.field for t in index.texts])
        vectors = index.fast_vectors.reconstruct_batch(np.array(rounds, dtype=np.int64)) if rounds else \
            np.zeros((0, fast_encoder.dim), dtype=np.float32)
        inside = [(LabelledQuery(index.texts[t].text, ids[index.texts[t].entry]), r)
                  for t, r in zip(rounds, searcher.fast_rankings(vectors, 2, exclude=rounds))]
    outcomes = fast_outcomes([q for q, _ in inside] + [q for q, r in zip(labelled, rankings) if q.faq_id is None],
                             [r for _, r in inside] + outside, ids)
    floor = calibrate(outcomes)["threshold"] if inside else 0.0
    right = [bool(r.top) and ids[r.top[0][0]] == q.faq_id for q, r in inside]
    return learn_gate([r for _, r in inside], right, outside, max_error, source, floor)


def fast_outcomes(labelled: list[LabelledQuery], rankings: list[FastRanking], entry_ids: list[str]) -> list[Outcome]:
    """The fast model's rankings as evaluation outcomes (for its own no-match threshold)."""
    outcomes = []
    for query, ranking in zip(labelled, rankings):
        ids = [entry_ids[entry] for entry, _, _ in ranking.top]
        rank = ids.index(query.faq_id) + 1 if query.faq_id in ids else None
        outcomes.append(Outcome(query, rank, tuple(score for _, score, _ in ranking.top) or (0.0,),
                                ids[0] if ids else None))
    return outcomes


def keep_labelled(staging: Path, index, labelled: list, encoder: Encoder) -> None:
    """Store the labelled queries and their vectors in the version, and give them to ``index``."""
    numbers = {entry.id: number for number, entry in enumerate(index.entries)}
    texts = [normalize(q.query) for q in labelled]
    vectors = encoder.encode_queries(texts)
    write_jsonl(staging / LABELLED, ({"query": q.query, "faq_id": q.faq_id} for q in labelled))
    np.save(staging / LABELLED_VECTORS, vectors)
    index.labelled = [(numbers[q.faq_id] if q.faq_id is not None else -1, text) for q, text in zip(labelled, texts)]
    index.labelled_vectors = vectors


class QueryMemo:
    """An encoder that embeds each query text once (calibration and judge training ask for the same ones)."""

    def __init__(self, inner: Encoder) -> None:
        self.inner, self.name, self.source, self.dim = inner, inner.name, inner.source, inner.dim
        self._vectors: dict[str, np.ndarray] = {}

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self._vectors]
        if missing:
            self._vectors.update(zip(missing, self.inner.encode_queries(missing)))
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        return np.stack([self._vectors[t] for t in texts])

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self.inner.encode_passages(texts)
