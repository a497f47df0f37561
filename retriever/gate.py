"""The publish gate: a new index version may not answer the corpus's labelled queries worse than the served one.

Like a regression test suite for the FAQ. Every labelled query is searched in both versions
(each with its own calibration): an in-domain query is *right* when its entry comes first and
the decision is not ``no_match``; an out-of-domain query (``faq_id`` null) is *caught* when it is
not answered. The new version is refused when

* top-1 accuracy drops by more than one query, or by more than one point, or
* fewer out-of-domain queries are caught.

On a small labelled set (under 100 in-domain queries) one point is less than one query, so any
query that turns wrong is refused. The refusal names the queries that changed; ``force`` publishes
anyway and the manifest records it (``publish_gate``). The gate runs on the staging folder,
before publication (``build_from_corpus(check=...)``): a refused version is never current.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from .encoders import Encoder, load_encoder
from .errors import RetrieverError
from .evaluation import LabelledQuery, Outcome, read_labelled, run
from .files import sha256_file, write_text_atomic
from .scoring import ANSWER, NO_MATCH
from .search import Searcher
from .store import MANIFEST, VERSIONS, current_version, load_index, read_manifest
from .store.build import GATE_OUTCOMES
from .store.embedding_cache import EmbeddingCache
from .store.token_cache import TokenCache
from .store.layout import with_decision_checksum
from .version import __version__

MAX_DROP_QUERIES = 1  # top-1 may lose one query ...
MAX_DROP_POINTS = 1.0  # ... and one percentage point, not more
MAX_NAMED = 20  # queries named in a message


class GateRefused(RetrieverError):
    """The new version would answer labelled queries worse; it was not published. ``report`` says how."""

    def __init__(self, message: str, report: "GateReport | None" = None) -> None:
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class QueryChange:
    """A labelled query whose outcome differs between the served and the new version."""

    query: str
    expected: str | None  # its entry; None: out of domain
    before: str  # "answer cancel-01", "ambiguous cancel-01" or "no_match"
    after: str

    def __str__(self) -> str:
        return f"'{self.query}' (expects {self.expected or 'no answer'}): {self.before} -> {self.after}"


@dataclass(frozen=True)
class GateReport:
    served_version: str | None  # None: nothing served yet, nothing to compare with
    in_domain: int
    out_of_domain: int
    right_after: int
    caught_after: int
    right_before: int | None = None
    caught_before: int | None = None
    broken: tuple[QueryChange, ...] = ()  # right (or caught) before, not now
    fixed: tuple[QueryChange, ...] = ()  # the reverse
    reasons: tuple[str, ...] = ()  # why it is refused; none: it passes

    @property
    def passed(self) -> bool:
        return not self.reasons

    def summary(self) -> str:
        now = f"top-1 {_share(self.right_after, self.in_domain)}, out-of-domain caught " \
              f"{_share(self.caught_after, self.out_of_domain)}"
        if self.served_version is None:
            return f"{now} (no served version to compare with)"
        return f"{now}; served version {self.served_version}: top-1 {_share(self.right_before, self.in_domain)}, " \
               f"out-of-domain caught {_share(self.caught_before, self.out_of_domain)}"

    def message(self) -> str:
        """Why the version is refused, naming the queries that changed."""
        lines = [f"publish refused: {'; '.join(self.reasons)} ({self.summary()})."]
        for title, changes in (("now wrong", self.broken), ("now right", self.fixed)):
            if changes:
                lines.append(f"labelled queries {title} ({len(changes)}):")
                lines += [f"  {change}" for change in changes[:MAX_NAMED]]
                if len(changes) > MAX_NAMED:
                    lines.append(f"  ... and {len(changes) - MAX_NAMED} more")
        lines.append("Nothing was published. Fix the corpus (or labelled.jsonl), or build with --force to publish "
                     "anyway (recorded in the manifest).")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record["passed"] = self.passed
        record["summary"] = self.summary()
        return record


def _share(count: int | None, total: int) -> str:
    return f"{count}/{total} ({count / total:.1%})" if total else f"{count}/0"


def _what(outcome: Outcome) -> str:
    if outcome.decision == NO_MATCH or outcome.top_id is None:
        return NO_MATCH
    return f"{outcome.decision} {outcome.top_id}"


def is_right(outcome: Outcome) -> bool:
    """In domain: its entry first and not refused. Out of domain: not answered."""
    if outcome.labelled.faq_id is None:
        return outcome.decision != ANSWER
    return outcome.top_id == outcome.labelled.faq_id and outcome.decision != NO_MATCH


def compare(after: Sequence[Outcome], before: Sequence[Outcome] | None = None,
            served_version: str | None = None) -> GateReport:
    """The gate's verdict on outcomes of the same labelled queries, new version (``after``) against served."""
    in_domain = sum(o.labelled.faq_id is not None for o in after)
    right_after = sum(is_right(o) for o in after if o.labelled.faq_id is not None)
    caught_after = sum(is_right(o) for o in after if o.labelled.faq_id is None)
    report = GateReport(served_version, in_domain, len(after) - in_domain, right_after, caught_after)
    if before is None:
        return report
    if [o.labelled for o in before] != [o.labelled for o in after]:
        raise ValueError("outcomes of different labelled queries")
    right_before = sum(is_right(o) for o in before if o.labelled.faq_id is not None)
    caught_before = sum(is_right(o) for o in before if o.labelled.faq_id is None)
    changes = [(is_right(old), QueryChange(new.labelled.query, new.labelled.faq_id, _what(old), _what(new)))
               for old, new in zip(before, after) if is_right(old) != is_right(new)]
    reasons = []
    drop = right_before - right_after
    if drop > MAX_DROP_QUERIES or (in_domain and 100 * drop / in_domain > MAX_DROP_POINTS):
        reasons.append(f"top-1 accuracy would drop by {drop} quer{'y' if drop == 1 else 'ies'} "
                       f"({100 * drop / in_domain:.1f} points)")
    if caught_after < caught_before:
        reasons.append(f"{caught_before - caught_after} fewer out-of-domain queries would be caught")
    return GateReport(served_version, in_domain, report.out_of_domain, right_after, caught_after, right_before,
                      caught_before, tuple(c for was_right, c in changes if was_right),
                      tuple(c for was_right, c in changes if not was_right), tuple(reasons))


# --- running it on a build ------------------------------------------------------------------------


def staged_searcher(staging: Path, fields: dict[str, Any], encoder: Encoder, tokenizer=None) -> Searcher:
    """The staging version as it will be published: its manifest completed with ``fields`` (calibration, judge).

    The build rewrites the manifest the same way after the gate; here it is written early so the
    version loads, checked, exactly as a server would load it.
    """
    manifest = {**read_manifest(staging), **fields}
    manifest["files"] = {p.name: sha256_file(p) for p in sorted(staging.iterdir())
                         if p.is_file() and p.name != MANIFEST}
    manifest = with_decision_checksum(manifest)
    write_text_atomic(staging / MANIFEST, json.dumps(manifest, ensure_ascii=False, indent=2) + "\n")
    return Searcher(load_index(staging), encoder, tokenizer=tokenizer)


def served_searcher(index_root: Path, encoder: Encoder, embedding_cache: bool = False) -> Searcher | None:
    """The version CURRENT names, with its own model; None when nothing is published yet."""
    version = current_version(index_root)
    if version is None:
        return None
    try:
        index = load_index(index_root / VERSIONS / version)
        if index.manifest.get("model") != encoder.name:
            encoder = load_encoder(index.manifest.get("model_source"))
        return Searcher(index, encoder, tokenizer=_tokenizer(index_root, index.manifest, embedding_cache))
    except RetrieverError as exc:
        raise GateRefused(f"publish refused: the served version {version} cannot be evaluated to compare with "
                          f"({exc}). Build with --force to publish without the comparison") from None


def check_publish(staging: Path, fields: dict[str, Any], index_root: Path, encoder: Encoder,
                  labelled: list[LabelledQuery], force: bool = False, embedding_cache: bool = True) -> dict[str, Any]:
    """Run the gate on a staging version; the manifest fields that record it. Raises GateRefused.

    The labelled queries' vectors come from the index root's embedding cache: the build's calibration
    embedded them already, so the gate only searches (``embedding_cache`` False: kept in memory)."""
    if not labelled:
        return {"publish_gate": {"passed": True, "skipped": "no labelled queries"}}
    encoder = EmbeddingCache.for_index(index_root, encoder, enabled=embedding_cache, progress=False).encoder_view()
    tokenizer = _tokenizer(index_root, read_manifest(staging), embedding_cache)
    staged = staged_searcher(staging, fields, encoder, tokenizer)
    after = run(staged, labelled, progress=False)
    stamp = _outcomes_stamp(labelled, staged.clock())
    write_text_atomic(staging / GATE_OUTCOMES, json.dumps(
        {**stamp, "outcomes": [[o.decision, o.top_id] for o in after]}, ensure_ascii=False) + "\n")
    version, before = recorded_outcomes(index_root, labelled, stamp)
    if before is None:  # recorded by other code, another day or other labelled queries: search it again
        try:
            served = served_searcher(index_root, encoder, embedding_cache)
        except GateRefused as exc:
            if not force:
                raise
            return {"publish_gate": {"passed": False, "forced": True, "refusal": str(exc)}}
        version, before = (served.version, run(served, labelled, progress=False)) if served else (None, None)
    report = compare(after, before, version)
    if not report.passed and not force:
        raise GateRefused(report.message(), report)
    return {"publish_gate": {**report.to_dict(), "forced": not report.passed,
                             "labelled_checksum": _labelled_checksum(labelled)}}


def _outcomes_stamp(labelled: list[LabelledQuery], today) -> dict[str, str]:
    """What a version's recorded gate outcomes depend on besides the version: the labelled queries,
    the code that searched, the day (entries' validity dates)."""
    return {"labelled_checksum": _labelled_checksum(labelled), "retriever": __version__, "day": today.isoformat()}


def recorded_outcomes(index_root: Path, labelled: list[LabelledQuery],
                      stamp: dict[str, str]) -> tuple[str | None, list[Outcome] | None]:
    """The served version and the outcomes its own gate recorded for ``labelled`` (``gate_outcomes.json``),
    when recorded under the same ``stamp``: what searching it again would give, without loading it.
    (version, None) when there is no such record; (None, None) when nothing is served."""
    version = current_version(index_root)
    if version is None:
        return None, None
    try:
        recorded = json.loads((index_root / VERSIONS / version / GATE_OUTCOMES).read_text(encoding="utf-8"))
        outcomes = recorded["outcomes"]
        if any(recorded.get(key) != value for key, value in stamp.items()) or len(outcomes) != len(labelled):
            return version, None
        return version, [Outcome(query, None, (0.0,), top_id, decision)
                         for query, (decision, top_id) in zip(labelled, outcomes)]
    except (OSError, ValueError, KeyError, TypeError):
        return version, None


def _tokenizer(index_root: Path, manifest: dict[str, Any], embedding_cache: bool) -> TokenCache | None:
    """The build's token cache for the version's tokenizer (None with the caches off: the index's own)."""
    if not embedding_cache:
        return None
    return TokenCache.for_index(index_root, manifest.get("lexical", {}).get("tokenizer", {}))


def _labelled_checksum(labelled: list[LabelledQuery]) -> str:
    canonical = json.dumps([[q.query, q.faq_id] for q in labelled], ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def publish_gate(index_root: str | Path, encoder: Encoder, labelled_path: str | Path | None, force: bool = False,
                 on_start: Callable[[], None] | None = None, embedding_cache: bool = True) -> Callable[[Path, dict], dict]:
    """The ``check`` hook of :func:`~retriever.pipeline.build_from_corpus` that runs the gate.

    ``on_start`` is called when the gate begins (the workbench shows it as a stage).
    ``embedding_cache`` as the build's (False: nothing written under ``index_root/embeddings``).
    """
    labelled = read_labelled(labelled_path) if labelled_path else []

    def check(staging: Path, fields: dict) -> dict:
        if on_start is not None:
            on_start()
        return check_publish(staging, fields, Path(index_root), encoder, labelled, force, embedding_cache)

    return check
