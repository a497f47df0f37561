"""FAQ corpus: the entry schema, loading YAML / JSON Lines / spreadsheet files, validation.

An entry is ``id``, ``question``, ``paraphrases``, ``answer`` and optional
``category``, ``tags`` and ``negatives`` (look-alike questions it must not answer). A corpus is one file or a folder of ``*.yaml``,
``*.yml``, ``*.jsonl``, ``*.xlsx`` and ``*.csv`` files (read in name order; see :mod:`retriever.spreadsheet`
for the sheet layout). In a folder every such file is a corpus file, except the reserved names
(:data:`RESERVED_FILES`), hidden files and folders, and Office lock files (``~$faq.xlsx``): a sheet
without the corpus columns is refused rather than skipped, so a misnamed header cannot silently
drop entries.

Text is bounded (:data:`MAX_QUESTION_CHARS`, :data:`MAX_ANSWER_CHARS`, ...): one 5 MB answer used
to keep a build busy for minutes without a word.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import yaml

from .errors import CorpusError
from .normalize import normalize, remove_invisible

SHEET_SUFFIXES = (".xlsx", ".csv")
CORPUS_SUFFIXES = (".yaml", ".yml", ".jsonl") + SHEET_SUFFIXES
# Spreadsheet formats that are not read: refused with the fix rather than ignored.
UNREAD_SHEET_SUFFIXES = frozenset({".xls", ".xlsm", ".xlsb", ".ods", ".numbers", ".et"})
# Files a corpus folder may hold beside the entries: labelled queries for
# calibration, the lexical leg's synonyms (``userdict.txt`` has no corpus suffix), the
# pages' title and messages, and the workbench's candidates for new entries.
RESERVED_FILES = frozenset({"labelled.jsonl", "synonyms.yaml", "collection.yaml", "candidates.jsonl"})
_REQUIRED = ("id", "question", "answer")
_KNOWN = {"id", "question", "paraphrases", "answer", "category", "tags", "negatives"}

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
        _refuse_unread_sheet(path)
        return [path]
    if not path.is_dir():
        raise CorpusError(f"{path}: no such corpus file or folder")
    files = []
    for candidate in sorted(path.rglob("*")):
        # Hidden files and folders (editors' backups, macOS "._" forks) and Office lock files are not corpus.
        if any(part.startswith((".", "~$")) for part in candidate.relative_to(path).parts):
            continue
        if not candidate.is_file() or candidate.name in RESERVED_FILES:
            continue
        _refuse_unread_sheet(candidate)
        if candidate.suffix.lower() in CORPUS_SUFFIXES:
            files.append(candidate)
    if not files:
        raise CorpusError(f"{path}: no corpus files ({', '.join(CORPUS_SUFFIXES)}) in this folder")
    return files


def _refuse_unread_sheet(path: Path) -> None:
    if path.suffix.lower() in UNREAD_SHEET_SUFFIXES:
        raise CorpusError(f"{path}: {path.suffix} spreadsheets are not read; save it as an Excel workbook (.xlsx) "
                          f"or as CSV UTF-8 (.csv)")


class _DuplicateKey(Exception):
    pass


def _object_refusing_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refusing a key given twice (json.loads keeps the last silently)."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


class _StrictLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml: a 5 MB scalar in 0.1 s, not 2 s
    """Safe YAML loading that refuses a key given twice in one mapping (PyYAML keeps the last silently)."""


def _construct_mapping_once(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    first_line: dict[Any, int] = {}
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
            continue  # complex keys are refused by the base constructor; "<<" merges may be overridden
        key = loader.construct_object(key_node)
        if key in first_line:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark,
                f"duplicate key {key!r} (first at line {first_line[key]})", key_node.start_mark)
        first_line[key] = key_node.start_mark.line + 1
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping_once)


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
                yield f"{path}:{line_no}", json.loads(line, object_pairs_hook=_object_refusing_duplicates)
            except json.JSONDecodeError as exc:
                raise CorpusError(f"{path}:{line_no}: invalid JSON ({exc.msg} at column {exc.colno})") from None
            except _DuplicateKey as exc:
                raise CorpusError(f"{path}:{line_no}: invalid JSON (duplicate key {exc.args[0]!r})") from None
        return

    try:
        document = yaml.load(text, Loader=_StrictLoader)
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
        source=where,
    )


def load_corpus(path: str | Path) -> list[FaqEntry]:
    """Load and validate every entry at ``path``; raise :class:`CorpusError` on the first problem."""
    entries: list[FaqEntry] = []
    seen: dict[str, str] = {}
    for file in corpus_files(path):
        for entry in _file_entries(file):
            if entry.id in seen:
                raise CorpusError(f"{entry.source}: duplicate id '{entry.id}' (first defined at {seen[entry.id]})")
            seen[entry.id] = entry.source
            entries.append(entry)
    if not entries:
        raise CorpusError(f"{path}: the corpus has no entries")
    return entries


def _file_entries(file: Path) -> Iterator[FaqEntry]:
    if file.suffix.lower() in SHEET_SUFFIXES:
        # Imported here: the spreadsheet module builds on this one, and openpyxl is only needed for sheets.
        from .spreadsheet import read_sheet_entries

        yield from read_sheet_entries(file)
        return
    for where, raw in _raw_entries(file):
        yield parse_entry(raw, where)


def corpus_checksum(entries: list[FaqEntry]) -> str:
    """SHA-256 of the entries' content: equal for equal content, whatever the file layout."""
    canonical = json.dumps([e.to_record() for e in entries], ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# Written by hand rather than by yaml.dump, which took 7 s for 50,000 entries (its Python resolver
# and representer run per scalar); every scalar falls back to a JSON-style double-quoted string,
# which YAML reads exactly, unless a plain or literal form is certain to read back the same.
# YAML's printable characters less the line breaks other than "\n" (a reader would fold them) and the BOM.
_YAML_RAW = re.compile("[\t\n\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]*")
_NOT_RAW_IN_JSON = re.compile("[\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff]")
_PLAIN_NEVER_FIRST = frozenset("-?:,[]{}#&*!|>'\"%@`")
_IMPLICIT = yaml.resolver.Resolver.yaml_implicit_resolvers  # first character -> [(tag, regexp)]
_BLOCK_INDENT = "    "


def _yaml_scalar(text: str, flow: bool = False) -> str:
    """``text`` as a YAML scalar that reads back equal: plain, a literal block (``|-``), or double-quoted."""
    raw = _YAML_RAW.fullmatch(text) is not None
    if raw and not flow and "\n" in text and not text.endswith("\n") and text == text.strip() and \
            not any(line.startswith((" ", "\t")) for line in text.split("\n")):
        return "|-\n" + "\n".join(_BLOCK_INDENT + line if line else "" for line in text.split("\n"))
    if raw and _plain_reads_back(text, flow):
        return text
    quoted = json.dumps(text, ensure_ascii=False)  # JSON escapes are YAML double-quoted escapes
    return _NOT_RAW_IN_JSON.sub(lambda match: f"\\u{ord(match.group()):04x}", quoted)


def _plain_reads_back(text: str, flow: bool) -> bool:
    if not text or text != text.strip() or "\n" in text or "\t" in text or text[0] in _PLAIN_NEVER_FIRST:
        return False
    if ": " in text or " #" in text or text.endswith(":") or (flow and not _PLAIN_NEVER_FIRST.isdisjoint(text)):
        return False
    return not any(regexp.match(text) for _, regexp in _IMPLICIT.get(text[0], ()))  # true, 1.5, null, ~ ...


def corpus_yaml(entries: list[FaqEntry], comment: str = "") -> str:
    """The entries as a corpus YAML document (``entries:`` mapping) that :func:`load_corpus` reads back equal."""
    lines = [f"# {line if _YAML_RAW.fullmatch(line) else ascii(line)}".rstrip() for line in comment.splitlines()]
    lines.append("entries:")
    for entry in entries:
        lines.append(f"- id: {_yaml_scalar(entry.id)}")
        if entry.category is not None:
            lines.append(f"  category: {_yaml_scalar(entry.category)}")
        if entry.tags:
            lines.append(f"  tags: [{', '.join(_yaml_scalar(tag, flow=True) for tag in entry.tags)}]")
        lines.append(f"  question: {_yaml_scalar(entry.question)}")
        for key in ("paraphrases", "negatives"):
            if getattr(entry, key):
                lines.append(f"  {key}:")
                lines += [f"  - {_yaml_scalar(text)}" for text in getattr(entry, key)]
        lines.append(f"  answer: {_yaml_scalar(entry.answer)}")
    return "\n".join(lines) + "\n"
