"""The FAQ entry: its fields, their limits, validation of a raw entry, and the corpus checksum.

An entry is ``id``, ``question``, ``paraphrases``, ``answer`` and optional ``category``, ``tags``,
``negatives`` (look-alike questions it must not answer), ``valid_from`` / ``valid_until`` (the days it
may answer, inclusive), ``answer_versions`` (answers that take over on a date; retriever/validity.py) and
``enabled`` (``false``: kept in its file, left out of every build, so never answered).
Text is bounded (:data:`MAX_QUESTION_CHARS`, :data:`MAX_ANSWER_CHARS`, ...): one 5 MB answer used to keep a build
busy for minutes without a word.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from ..errors import CorpusError
from ..normalize import normalize, remove_invisible
from ..validity import MAX_ANSWER_VERSIONS, parse_day

_REQUIRED = ("id", "question", "answer")
_KNOWN = {"id", "question", "paraphrases", "answer", "category", "tags", "negatives", "enabled", "valid_from",
          "valid_until", "answer_versions"}
DATED_FIELDS = ("valid_from", "valid_until", "answer_versions")  # left out of a record when unset: same checksum

# A question, paraphrase or negative is matched like a query: same bound as RETRIEVER_MAX_QUERY_CHARS' default.
MAX_QUESTION_CHARS = 500
# Answers are shown, and embedded as passages (the model reads the first ~512 tokens only).
MAX_ANSWER_CHARS = 20_000
MAX_LABEL_CHARS = 100  # an id, a category, a tag
MAX_PARAPHRASES = 200
MAX_NEGATIVES = 200
MAX_TAGS = 50
_MAX_CHARS = {"question": MAX_QUESTION_CHARS, "paraphrases": MAX_QUESTION_CHARS, "negatives": MAX_QUESTION_CHARS,
              "answer": MAX_ANSWER_CHARS, "tags": MAX_LABEL_CHARS}
_MAX_ITEMS = {"paraphrases": MAX_PARAPHRASES, "negatives": MAX_NEGATIVES, "tags": MAX_TAGS}


class EntryError(CorpusError):
    """One entry breaks the schema; ``field`` names the field at fault (None: the entry as a whole)."""

    def __init__(self, where: str, problem: str, field: str | None = None):
        super().__init__(f"{where}: {problem}")
        self.problem = problem
        self.field = field


@dataclass(frozen=True)
class AnswerVersion:
    """An answer that replaces the entry's answer from ``valid_from`` (an ISO date) on."""

    valid_from: str
    answer: str

    def to_record(self) -> dict[str, str]:
        return {"from": self.valid_from, "answer": self.answer}


@dataclass(frozen=True)
class FaqEntry:
    id: str
    question: str
    answer: str
    paraphrases: tuple[str, ...] = ()
    category: str | None = None
    tags: tuple[str, ...] = ()
    # Questions that look like this entry but must not be answered by it (二级建造师 for a 一级建造师 entry).
    negatives: tuple[str, ...] = ()
    # False: kept in its file, never built into an index, so never answered (the workbench's 停用).
    enabled: bool = True
    # The days the entry may answer, ISO dates, both inclusive (None: open); outside them it is never answered.
    valid_from: str | None = None
    valid_until: str | None = None
    answer_versions: tuple[AnswerVersion, ...] = ()  # earliest first
    source: str = field(default="", compare=False)

    def to_record(self) -> dict[str, Any]:
        """The entry as stored in an index (no ``source``). Built field by field: ``dataclasses.asdict``
        deep-copies, and a build of 20,000 entries asks for every record several times (seconds)."""
        record: dict[str, Any] = {"id": self.id, "question": self.question, "answer": self.answer,
                                  "paraphrases": list(self.paraphrases), "category": self.category,
                                  "tags": list(self.tags)}
        if self.negatives:  # corpora without negatives keep the checksum they had
            record["negatives"] = list(self.negatives)
        if not self.enabled:  # likewise corpora that disable nothing
            record["enabled"] = False
        for key in DATED_FIELDS[:2]:  # and corpora without dates
            if getattr(self, key):
                record[key] = getattr(self, key)
        if self.answer_versions:
            record["answer_versions"] = [version.to_record() for version in self.answer_versions]
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "FaqEntry":
        return cls(
            id=record["id"],
            question=record["question"],
            answer=record["answer"],
            paraphrases=tuple(record.get("paraphrases") or ()),
            category=record.get("category"),
            tags=tuple(record.get("tags") or ()),
            negatives=tuple(record.get("negatives") or ()),
            enabled=record.get("enabled", True),
            valid_from=record.get("valid_from"),
            valid_until=record.get("valid_until"),
            answer_versions=tuple(AnswerVersion(v["from"], v["answer"]) for v in record.get("answer_versions") or ()),
        )


def _text(raw: dict, key: str, where: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str):
        kind = "missing" if value is None else f"not a string ({type(value).__name__})"
        raise EntryError(where, f"'{key}' is {kind}", key)
    if not _check_text(value, f"'{key}'", _MAX_CHARS[key], where, key):
        raise EntryError(where, f"'{key}' is empty", key)
    return value.strip()


def _text_list(raw: dict, key: str, where: str) -> tuple[str, ...]:
    values = raw.get(key)
    if values is None:
        return ()
    if not isinstance(values, list):
        raise EntryError(where, f"'{key}' must be a list of strings", key)
    if len(values) > _MAX_ITEMS[key]:
        raise EntryError(where, f"'{key}' has {len(values):,} items; at most {_MAX_ITEMS[key]:,} are allowed", key)
    out = []
    for i, value in enumerate(values, start=1):
        if not isinstance(value, str) or not _check_text(value, f"'{key}' item {i}", _MAX_CHARS[key], where, key):
            raise EntryError(where, f"'{key}' item {i} is empty or not a string", key)
        out.append(value.strip())
    return tuple(out)


def _check_text(value: str, what: str, limit: int, where: str, key: str) -> str:
    """``normalize(value)``; refuse text that is too long (checked first: bounds all later work) or not Unicode."""
    if len(value) > limit:
        raise EntryError(where, f"{what} is {len(value):,} characters long; at most {limit:,} are allowed"
                                f"{_LIMIT_HINTS.get(key, '')}", key)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise EntryError(where, f"{what} is not Unicode text: it holds an unpaired surrogate "
                                f"(U+{ord(value[exc.start]):04X}) at character {exc.start + 1}", key) from None
    normalised = normalize(value)
    if len(normalised) > limit:  # NFKC expands some characters (㌀ -> アパート)
        raise EntryError(where, f"{what} is {len(normalised):,} characters long once normalised; at most {limit:,} "
                                f"are allowed", key)
    return normalised


_LIMIT_HINTS = {"question": " (questions are matched like queries: keep them short)",
                "answer": " (put long material on a page and link to it)"}


def _category(raw: dict, where: str) -> str | None:
    category = raw.get("category")
    if category is None:
        return None
    if not isinstance(category, str):
        raise EntryError(where, "'category' must be a string", "category")
    _check_text(category, "'category'", MAX_LABEL_CHARS, where, "category")
    return category.strip() or None  # a blank category is no category (a spreadsheet cannot tell them apart)


def _flag(raw: dict, key: str, where: str) -> bool:
    value = raw.get(key, True)
    if not isinstance(value, bool):
        raise EntryError(where, f"'{key}' must be true or false", key)
    return value


def parse_entry(raw: Any, where: str) -> FaqEntry:
    """Validate one raw entry; ``where`` names it in error messages."""
    if not isinstance(raw, dict):
        raise EntryError(where, f"an entry must be a mapping with {', '.join(_REQUIRED)}")
    entry_id = raw.get("id")
    if isinstance(entry_id, str):
        _check_text(entry_id, "'id'", MAX_LABEL_CHARS, where, "id")
        # Invisible characters would make 'a1' and 'a1\u200b' two different ids that look the same.
        entry_id = remove_invisible(entry_id).strip()
        if entry_id:
            where = f"{where} (id '{entry_id}')"
    unknown = sorted(set(raw) - _KNOWN, key=repr)
    if unknown:
        raise EntryError(where, f"unknown field(s) {', '.join(map(repr, unknown))}; "
                                f"allowed: {', '.join(sorted(_KNOWN))}")
    if not isinstance(entry_id, str) or not entry_id:
        raise EntryError(where, "'id' is missing or not a non-empty string (quote numeric ids)", "id")
    return FaqEntry(
        id=entry_id,
        question=_text(raw, "question", where),
        answer=_text(raw, "answer", where),
        paraphrases=_text_list(raw, "paraphrases", where),
        category=_category(raw, where),
        tags=_text_list(raw, "tags", where),
        negatives=_text_list(raw, "negatives", where),
        enabled=_flag(raw, "enabled", where),
        **_dates(raw, where),
        source=where,
    )


def _day(raw: dict, key: str, where: str) -> str | None:
    value = raw.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        return parse_day(value).isoformat()
    except ValueError as exc:
        raise EntryError(where, f"'{key}': {exc}", key) from None


def _dates(raw: dict, where: str) -> dict[str, Any]:
    """``valid_from``, ``valid_until`` and ``answer_versions``, checked: an empty period or unordered versions
    would silently never answer."""
    valid_from, valid_until = _day(raw, "valid_from", where), _day(raw, "valid_until", where)
    if valid_from and valid_until and valid_until < valid_from:
        raise EntryError(where, f"'valid_until' {valid_until} is before 'valid_from' {valid_from}: the entry "
                                f"would never answer", "valid_until")
    return {"valid_from": valid_from, "valid_until": valid_until, "answer_versions": _answer_versions(raw, where)}


def _answer_versions(raw: dict, where: str) -> tuple[AnswerVersion, ...]:
    values = raw.get("answer_versions")
    if values is None:
        return ()
    if not isinstance(values, list):
        raise EntryError(where, "'answer_versions' must be a list of {from: YYYY-MM-DD, answer: ...}",
                         "answer_versions")
    if len(values) > MAX_ANSWER_VERSIONS:
        raise EntryError(where, f"'answer_versions' has {len(values)} items; at most {MAX_ANSWER_VERSIONS} are "
                                f"allowed", "answer_versions")
    versions: list[AnswerVersion] = []
    for i, value in enumerate(values, start=1):
        what = f"'answer_versions' item {i}"
        if not isinstance(value, dict) or set(value) != {"from", "answer"}:
            raise EntryError(where, f"{what} must be a mapping with exactly 'from' and 'answer'", "answer_versions")
        try:
            start = parse_day(value["from"]).isoformat()
        except ValueError as exc:
            raise EntryError(where, f"{what} 'from': {exc}", "answer_versions") from None
        answer = value["answer"]
        if not isinstance(answer, str) or not _check_text(answer, f"{what} 'answer'", MAX_ANSWER_CHARS, where,
                                                          "answer_versions"):
            raise EntryError(where, f"{what} 'answer' is empty or not a string", "answer_versions")
        if versions and start <= versions[-1].valid_from:
            raise EntryError(where, f"{what} starts {start}, not after the item before it "
                                    f"({versions[-1].valid_from}); list the versions earliest first, one per date",
                             "answer_versions")
        versions.append(AnswerVersion(start, answer.strip()))
    return tuple(versions)


def corpus_checksum(entries: list[FaqEntry]) -> str:
    """SHA-256 of the entries' content: equal for equal content, whatever the file layout."""
    canonical = json.dumps([e.to_record() for e in entries], ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
