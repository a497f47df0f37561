"""FAQ corpus: the entry schema, loading YAML / JSON Lines files, validation.

An entry is ``id``, ``question``, ``paraphrases``, ``answer`` and optional
``category``, ``tags`` and ``negatives`` (look-alike questions it must not answer). A corpus is one file or a folder of ``*.yaml``,
``*.yml`` and ``*.jsonl`` files (read in name order).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import yaml

from .errors import CorpusError
from .normalize import normalize

CORPUS_SUFFIXES = (".yaml", ".yml", ".jsonl")
# Files a corpus folder may hold beside the entries: labelled queries for
# calibration, and the lexical leg's synonyms (``userdict.txt`` has no corpus suffix).
RESERVED_FILES = frozenset({"labelled.jsonl", "synonyms.yaml"})
_REQUIRED = ("id", "question", "answer")
_KNOWN = {"id", "question", "paraphrases", "answer", "category", "tags", "negatives"}


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
    source: str = field(default="", compare=False)

    def to_record(self) -> dict[str, Any]:
        """The entry as stored in an index (no ``source``)."""
        record = asdict(self)
        record.pop("source")
        record["paraphrases"] = list(self.paraphrases)
        record["tags"] = list(self.tags)
        record["negatives"] = list(self.negatives)
        if not self.negatives:
            record.pop("negatives")  # corpora without negatives keep the checksum they had
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
        )


def corpus_files(path: str | Path) -> list[Path]:
    """The corpus files at ``path`` (a file, or a folder searched recursively)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise CorpusError(f"{path}: no such corpus file or folder")
    files = sorted(p for p in path.rglob("*")
                   if p.is_file() and p.suffix in CORPUS_SUFFIXES and p.name not in RESERVED_FILES)
    if not files:
        raise CorpusError(f"{path}: no corpus files ({', '.join(CORPUS_SUFFIXES)}) in this folder")
    return files


def _raw_entries(path: Path) -> Iterator[tuple[str, Any]]:
    """Yield (location, raw entry) pairs; location names file and line or position."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise CorpusError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise CorpusError(f"{path}: cannot read ({exc.strerror})") from None

    if path.suffix == ".jsonl":
        for line_no, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                yield f"{path}:{line_no}", json.loads(line)
            except json.JSONDecodeError as exc:
                raise CorpusError(f"{path}:{line_no}: invalid JSON ({exc.msg} at column {exc.colno})") from None
        return

    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise CorpusError(f"{path}{where}: invalid YAML ({problem})") from None
    if isinstance(document, dict) and "entries" in document:
        document = document["entries"]
    if document is None:
        return
    if not isinstance(document, list):
        raise CorpusError(f"{path}: expected a list of entries (or a mapping with 'entries:')")
    for position, raw in enumerate(document, start=1):
        yield f"{path}: entry #{position}", raw


def _text(raw: dict, key: str, where: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str):
        kind = "missing" if value is None else f"not a string ({type(value).__name__})"
        raise CorpusError(f"{where}: '{key}' is {kind}")
    if not normalize(value):
        raise CorpusError(f"{where}: '{key}' is empty")
    return value.strip()


def _text_list(raw: dict, key: str, where: str) -> tuple[str, ...]:
    values = raw.get(key)
    if values is None:
        return ()
    if not isinstance(values, list):
        raise CorpusError(f"{where}: '{key}' must be a list of strings")
    out = []
    for i, value in enumerate(values, start=1):
        if not isinstance(value, str) or not normalize(value):
            raise CorpusError(f"{where}: '{key}' item {i} is empty or not a string")
        out.append(value.strip())
    return tuple(out)


def parse_entry(raw: Any, where: str) -> FaqEntry:
    """Validate one raw entry; ``where`` names it in error messages."""
    if not isinstance(raw, dict):
        raise CorpusError(f"{where}: an entry must be a mapping with {', '.join(_REQUIRED)}")
    entry_id = raw.get("id")
    if isinstance(entry_id, str) and entry_id.strip():
        where = f"{where} (id '{entry_id}')"
    unknown = sorted(set(raw) - _KNOWN)
    if unknown:
        raise CorpusError(f"{where}: unknown field(s) {', '.join(map(repr, unknown))}; "
                          f"allowed: {', '.join(sorted(_KNOWN))}")
    if not isinstance(entry_id, str) or not entry_id.strip():
        raise CorpusError(f"{where}: 'id' is missing or not a non-empty string (quote numeric ids)")
    category = raw.get("category")
    if category is not None and not isinstance(category, str):
        raise CorpusError(f"{where}: 'category' must be a string")
    return FaqEntry(
        id=entry_id.strip(),
        question=_text(raw, "question", where),
        answer=_text(raw, "answer", where),
        paraphrases=_text_list(raw, "paraphrases", where),
        category=category,
        tags=_text_list(raw, "tags", where),
        negatives=_text_list(raw, "negatives", where),
        source=where,
    )


def load_corpus(path: str | Path) -> list[FaqEntry]:
    """Load and validate every entry at ``path``; raise :class:`CorpusError` on the first problem."""
    entries: list[FaqEntry] = []
    seen: dict[str, str] = {}
    for file in corpus_files(path):
        for where, raw in _raw_entries(file):
            entry = parse_entry(raw, where)
            if entry.id in seen:
                raise CorpusError(f"{entry.source}: duplicate id '{entry.id}' (first defined at {seen[entry.id]})")
            seen[entry.id] = where
            entries.append(entry)
    if not entries:
        raise CorpusError(f"{path}: the corpus has no entries")
    return entries


def corpus_checksum(entries: list[FaqEntry]) -> str:
    """SHA-256 of the entries' content: equal for equal content, whatever the file layout."""
    canonical = json.dumps([e.to_record() for e in entries], ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
