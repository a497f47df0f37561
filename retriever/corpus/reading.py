"""Loading a corpus: one file or a folder of YAML, JSON Lines and spreadsheet files, validated.

An entry is ``id``, ``question``, ``paraphrases``, ``answer`` and optional
``category``, ``tags`` and ``negatives`` (look-alike questions it must not answer). A corpus is one file or a folder of ``*.yaml``,
``*.yml``, ``*.jsonl``, ``*.xlsx`` and ``*.csv`` files (read in name order; see :mod:`retriever.corpus.sheets`
for the sheet layout). In a folder every such file is a corpus file, except the reserved names
(:data:`RESERVED_FILES`), hidden files and folders, and Office lock files (``~$faq.xlsx``): a sheet
without the corpus columns is refused rather than skipped, so a misnamed header cannot silently
drop entries.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import yaml

from ..errors import CorpusError
from .layout import CORPUS_SUFFIXES, RESERVED_FILES, SHEET_SUFFIXES, UNREAD_SHEET_SUFFIXES
from .schema import FaqEntry, parse_entry
from .sheets import read_sheet_entries


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


def load_corpus(path: str | Path, *, include_disabled: bool = False) -> list[FaqEntry]:
    """Load and validate every entry at ``path``; raise :class:`CorpusError` on the first problem.

    Entries with ``enabled: false`` are left out (they are never built, so never answered) unless
    ``include_disabled``; their ids still count as taken.
    """
    entries = [entry for found in entries_by_file(path).values() for entry in found
               if include_disabled or entry.enabled]
    if not entries:
        raise CorpusError(f"{path}: the corpus has no entries" + ("" if include_disabled else " that are enabled"))
    return entries


def entries_by_file(path: str | Path) -> dict[Path, list[FaqEntry]]:
    """Every entry at ``path`` (disabled ones too), by the file that defines it; a file may have none.

    Ids are checked unique across the files; raises :class:`CorpusError` on the first problem.
    """
    found: dict[Path, list[FaqEntry]] = {}
    seen: dict[str, str] = {}
    for file in corpus_files(path):
        found[file] = []
        for entry in _file_entries(file):
            if entry.id in seen:
                raise CorpusError(f"{entry.source}: duplicate id '{entry.id}' (first defined at {seen[entry.id]})")
            seen[entry.id] = entry.source
            found[file].append(entry)
    return found


def _file_entries(file: Path) -> Iterator[FaqEntry]:
    if file.suffix.lower() in SHEET_SUFFIXES:
        yield from read_sheet_entries(file)
        return
    for where, raw in _raw_entries(file):
        yield parse_entry(raw, where)
