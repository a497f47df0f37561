"""Conflicts between entries: texts two entries share once normalised, and paraphrases nearer another entry.

Two kinds, found before a build publishes and before an import writes:

* **identical**: a question or paraphrase of one entry is, once normalised, a question or paraphrase of
  another entry, or a negative example of its own entry. A search cannot tell the entries apart on that
  text (whichever sorts first wins), so a build refuses them unless told to allow them.
* **closer elsewhere**: a paraphrase whose nearest text (cosine of the model's vectors) belongs to another
  entry rather than to its own. Often a paraphrase filed under the wrong entry, or two entries that
  overlap. Only a warning: the model can be wrong, the editor decides.

A negative of entry A that is a question of entry B is *not* a conflict: that is what negatives are for
(a 二级建造师 question is answered by its own entry and must not be by the 一级建造师 one). Nor are two
entries asking the same text whose validity periods do not overlap (the old rule until 31 December, the
new one from 1 January): on any day only one of them can answer.

Every message exists in Chinese (editors act on it) and English (operators' logs), built here only.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
from tqdm.auto import tqdm

from ..errors import CorpusError
from ..files import write_text_atomic
from ..normalize import normalize
from ..validity import Period
from .nearest import IndexedTextLike, NearestTable, nearest_texts
from .schema import FaqEntry

CONFLICTS_FILE = "conflicts.json"  # in a version folder: what the build found
FIELD_NAMES_ZH = {"question": "标准问题", "paraphrase": "相似问题", "negative": "负例"}
MAX_LISTED = 10  # conflicts listed in a message; all of them are in conflicts.json
# How much nearer the other entry must be. The model's cosines between questions of one domain crowd into
# 0.90-0.97: on the seed corpus (6 entries about 注销, 68 paraphrases) margin 0 flags 18 paraphrases, 13 of
# them by under 0.01; 0.01 leaves the 5 clearest, and a paraphrase written for another entry clears it easily.
DEFAULT_MARGIN = 0.01


@dataclass(frozen=True)
class Place:
    """Where a text stands: entry id, field (question, paraphrase, negative), text as written."""

    entry_id: str
    field: str
    text: str

    def zh(self, shown: str | None = None) -> str:
        """``条目 b（相似问题）``; the text too when it is written otherwise than ``shown`` (繁體, full width)."""
        field = FIELD_NAMES_ZH.get(self.field, self.field)
        return f"条目 {self.entry_id}（{field}{'' if self.text == shown else f'「{self.text}」'}）"

    def en(self, shown: str | None = None) -> str:
        return f"entry {self.entry_id} ({self.field}{'' if self.text == shown else f' {self.text!r}'})"


@dataclass(frozen=True)
class IdenticalText:
    """One normalised text held by two or more entries, or asked by an entry and also one of its negatives."""

    norm: str
    places: tuple[Place, ...]

    @property
    def entry_ids(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(place.entry_id for place in self.places))

    @property
    def contradiction(self) -> bool:
        """True: one entry both answers the text and names it as a negative."""
        return len(self.entry_ids) == 1

    def message_zh(self) -> str:
        if self.contradiction:
            asked = self.places[0]
            return (f"问法「{asked.text}」既是条目 {asked.entry_id} 的{FIELD_NAMES_ZH[asked.field]}，"
                    f"又是它的负例")
        shown = self.places[0].text
        places = [place.zh(shown) for place in self.places]
        return f"问法「{shown}」同时属于{'、'.join(places[:-1])}和{places[-1]}"

    def message_en(self) -> str:
        if self.contradiction:
            asked = self.places[0]
            return f"'{asked.text}' is both a {asked.field} and a negative of entry {asked.entry_id}"
        shown = self.places[0].text
        places = [place.en(shown) for place in self.places]
        return f"'{shown}' is in {', '.join(places[:-1])} and {places[-1]} (once normalised)"

    def to_dict(self) -> dict:
        return {"text": self.places[0].text, "norm": self.norm, "faq_ids": list(self.entry_ids),
                "places": [{"faq_id": p.entry_id, "field": p.field, "text": p.text} for p in self.places],
                "message": self.message_zh()}


@dataclass(frozen=True)
class CloserElsewhere:
    """A paraphrase whose nearest text of another entry is more similar than every other text of its own."""

    faq_id: str
    text: str
    own_text: str  # the nearest other text of its own entry
    own_cosine: float
    other_faq_id: str
    other_text: str
    other_cosine: float

    def message_zh(self) -> str:
        return (f"条目 {self.faq_id} 的相似问题「{self.text}」更接近条目 {self.other_faq_id} 的「{self.other_text}」"
                f"（相似度 {self.other_cosine:.3f}），而不是本条目的「{self.own_text}」（{self.own_cosine:.3f}）")

    def message_en(self) -> str:
        return (f"paraphrase '{self.text}' of entry {self.faq_id} is closer to '{self.other_text}' of entry "
                f"{self.other_faq_id} (cosine {self.other_cosine:.3f}) than to '{self.own_text}' of its own "
                f"({self.own_cosine:.3f})")

    def to_dict(self) -> dict:
        return {**asdict(self), "message": self.message_zh()}


@dataclass(frozen=True)
class ConflictReport:
    """What a check found. ``allowed``: identical texts were let through on purpose (``--allow-conflicts``).
    ``model_checked``: False when no model looked at the paraphrases (``closer`` is then empty by default)."""

    identical: tuple[IdenticalText, ...] = ()
    closer: tuple[CloserElsewhere, ...] = ()
    allowed: bool = False
    model_checked: bool = True
    margin: float = DEFAULT_MARGIN

    def summary(self) -> dict:
        """The counts a manifest records."""
        return {"identical": len(self.identical), "closer_elsewhere": len(self.closer), "allowed": self.allowed,
                "model_checked": self.model_checked, "margin": self.margin}

    def to_dict(self) -> dict:
        """The JSON shape of a report (conflicts.json, the workbench), built here only."""
        return {**self.summary(), "identical_texts": [c.to_dict() for c in self.identical],
                "closer_elsewhere_texts": [c.to_dict() for c in self.closer]}

    @classmethod
    def from_dict(cls, record: dict) -> "ConflictReport":
        identical = tuple(IdenticalText(c["norm"], tuple(Place(p["faq_id"], p["field"], p["text"])
                                                         for p in c["places"]))
                          for c in record.get("identical_texts", ()))
        closer = tuple(CloserElsewhere(**{k: v for k, v in c.items() if k != "message"})
                       for c in record.get("closer_elsewhere_texts", ()))
        return cls(identical, closer, bool(record.get("allowed")), bool(record.get("model_checked", True)),
                   float(record.get("margin", DEFAULT_MARGIN)))

    def warning_lines(self, limit: int = MAX_LISTED) -> list[str]:
        """The "closer elsewhere" warnings for a terminal: Chinese, then English, at most ``limit``."""
        return _listed([f"{c.message_zh()}\n    ({c.message_en()})" for c in self.closer], limit)


class ConflictError(CorpusError):
    """Identical texts in two entries: refused (a build publishes nothing, an import writes nothing)."""

    def __init__(self, conflicts: Sequence[IdenticalText], fix: str) -> None:
        self.conflicts = tuple(conflicts)
        super().__init__(identical_message(self.conflicts, fix))

    def message_zh(self) -> str:
        """For editors: each conflict on its own line, both entries named."""
        return "\n".join(_listed([c.message_zh() for c in self.conflicts], MAX_LISTED))


def identical_message(conflicts: Sequence[IdenticalText], fix: str) -> str:
    """The refusal: how many, each named in Chinese and English, and what to do."""
    lines = [f"{len(conflicts)} text(s) belong to more than one entry once normalised, or contradict their entry "
             f"(同一问法属于多个条目或与负例矛盾); a search cannot tell those entries apart:"]
    lines += _listed([f"{c.message_zh()}\n    ({c.message_en()})" for c in conflicts], MAX_LISTED)
    lines.append(fix)
    return "\n".join(lines)


def _listed(lines: list[str], limit: int) -> list[str]:
    shown = [f"  {line}" for line in lines[:limit]]
    return shown + ([f"  ... and {len(lines) - limit} more (还有 {len(lines) - limit} 处)"] if len(lines) > limit else [])


# --- identical texts ---------------------------------------------------------------------------------


def find_identical(entries: Iterable[FaqEntry]) -> tuple[IdenticalText, ...]:
    """Texts that two entries ask (question or paraphrase), or that an entry asks and lists as a negative.

    In corpus order; each conflict names the first place of the text in each entry involved.
    """
    asked: dict[str, dict[str, Place]] = {}  # norm -> entry id -> first place asking it
    negated: dict[str, dict[str, Place]] = {}
    periods: dict[str, Period] = {}
    for entry in entries:
        periods[entry.id] = Period.of(entry.valid_from, entry.valid_until)
        for field, text in [("question", entry.question)] + [("paraphrase", p) for p in entry.paraphrases]:
            asked.setdefault(normalize(text), {}).setdefault(entry.id, Place(entry.id, field, text))
        for text in entry.negatives:
            negated.setdefault(normalize(text), {}).setdefault(entry.id, Place(entry.id, "negative", text))
    found = []
    for norm, places in asked.items():
        clashing = _at_the_same_time(places, periods)
        if len(clashing) > 1:
            found.append(IdenticalText(norm, clashing))
        for entry_id, negative in negated.get(norm, {}).items():
            if entry_id in places:
                found.append(IdenticalText(norm, (places[entry_id], negative)))
    return tuple(found)


def _at_the_same_time(places: dict[str, Place], periods: dict[str, Period]) -> tuple[Place, ...]:
    """The places whose entry may answer on a day when another of them may too."""
    ids = list(places)
    return tuple(places[a] for a in ids if any(b != a and periods[a].overlaps(periods[b]) for b in ids))


def check_identical(entries: Sequence[FaqEntry], allow: bool = False, fix: str = "") -> tuple[IdenticalText, ...]:
    """The identical-text conflicts of ``entries``; raises :class:`ConflictError` (with ``fix``) unless ``allow``."""
    found = find_identical(entries)
    if found and not allow:
        raise ConflictError(found, fix)
    return found


# --- paraphrases the model places nearer another entry ------------------------------------------------


@dataclass(frozen=True)
class _Text:
    entry: int
    field: str
    text: str
    norm: str


def asking_texts(entries: Sequence[FaqEntry]) -> list[_Text]:
    """Questions and paraphrases of ``entries``, each normalised text once per entry (as a build indexes them)."""
    texts = []
    for number, entry in enumerate(entries):
        seen: set[str] = set()
        for field, text in [("question", entry.question)] + [("paraphrase", p) for p in entry.paraphrases]:
            norm = normalize(text)
            if norm not in seen:
                seen.add(norm)
                texts.append(_Text(number, field, text, norm))
    return texts


def closer_elsewhere(texts: Sequence[IndexedTextLike], vectors: np.ndarray, entry_ids: Sequence[str],
                     margin: float = DEFAULT_MARGIN, progress: bool = False,
                     table: NearestTable | None = None) -> tuple[CloserElsewhere, ...]:
    """Paraphrases whose best cosine to another entry's question/paraphrase exceeds (by ``margin``) their
    best cosine to their own entry's other questions/paraphrases; the most misplaced first.

    ``vectors`` holds one unit vector per text, rows aligned with ``texts`` (answers and other fields are
    ignored). Entries with a single such text are skipped (nothing of their own to compare with); a text
    identical to the other entry's is left to :func:`find_identical`. ``table``: the nearest texts when
    already found (retriever/corpus/nearest.py, which finds them otherwise).
    """
    table = table if table is not None else nearest_texts(texts, vectors, entry_ids, progress=progress)
    found = []
    for i in np.flatnonzero(table.other_cosine > table.own_cosine + margin):
        probe, mine, theirs = texts[table.probes[i]], texts[table.own[i]], texts[table.other[i]]
        if probe.norm == theirs.norm:
            continue
        found.append(CloserElsewhere(entry_ids[probe.entry], probe.text, mine.text, round(float(table.own_cosine[i]), 4),
                                     entry_ids[theirs.entry], theirs.text, round(float(table.other_cosine[i]), 4)))
    return tuple(sorted(found, key=lambda c: c.own_cosine - c.other_cosine))


def check_entries(entries: Sequence[FaqEntry], encode: Callable[[list[str]], np.ndarray] | None = None,
                  batch_size: int = 64, progress: bool = False, allowed: bool = False) -> ConflictReport:
    """Both checks on ``entries`` before anything is built: identical texts, and, with ``encode`` (an
    encoder's ``encode_queries``), the paraphrases it places nearer another entry."""
    identical = find_identical(entries)
    if encode is None:
        return ConflictReport(identical, (), allowed, model_checked=False)
    texts = asking_texts(entries)
    vectors = []
    with tqdm(total=len(texts), desc="embedding", unit="text", disable=not progress) as bar:
        for start in range(0, len(texts), batch_size):
            batch = [t.norm for t in texts[start:start + batch_size]]
            vectors.append(np.asarray(encode(batch), dtype=np.float32))
            bar.update(len(batch))
    matrix = np.concatenate(vectors) if vectors else np.zeros((0, 1), dtype=np.float32)
    return ConflictReport(identical, closer_elsewhere(texts, matrix, [e.id for e in entries]), allowed)


# --- in a version folder --------------------------------------------------------------------------------


def write_conflicts(folder: str | Path, report: ConflictReport) -> dict:
    """Write ``conflicts.json`` into a version folder (atomically); returns the manifest's summary counts."""
    write_text_atomic(Path(folder) / CONFLICTS_FILE, json.dumps(report.to_dict(), ensure_ascii=False, indent=1) + "\n")
    return report.summary()


def read_conflicts(folder: str | Path) -> ConflictReport | None:
    """The report a build stored in a version folder; None for a version built before the check."""
    path = Path(folder) / CONFLICTS_FILE
    try:
        return ConflictReport.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CorpusError(f"{path}: cannot read the conflict report ({exc}); rebuild the index") from None
