"""The draft corpus entry by entry, for the entry editor: list and search, read, create, update,
enable or disable, delete.

The corpus folder is the editors' working draft; publishing builds it into the served index.
Every entry carries a **version**, a short hash of its record (:func:`entry_version`): an update or
a delete names the version it was based on, and when the entry has changed since, nothing is
written and :class:`VersionConflict` carries both the entry as it is now and what was submitted,
so an editor who lost the race keeps their text.

Writes change the one file that defines the entry, as little as they can, under the corpus lock,
and are checked to read back as exactly the intended entries before the file is replaced
atomically (with a backup): see :mod:`.file_edits`.

- YAML: only the lines of the changed fields are rewritten; comments and other entries stay byte
  for byte. A layout the splice cannot handle (a flow-style entry) gets the entry rewritten whole,
  and as a last resort the file (its leading comment kept), as the workbench's quick edits do.
- JSON Lines: only the entry's line changes (its key order kept).
- Spreadsheets: rewritten whole, as ``corpus export`` writes them, only when that loses nothing
  (one worksheet, the header in row 1, no column the corpus does not read); otherwise refused with
  :class:`SheetNotWritable`. A sheet has no column for ``enabled``, so its entries cannot be disabled.

A new entry goes to the file named by the caller, else to the YAML or JSON Lines file holding most
entries of its category, else the first YAML file (name order), else a new ``entries.yaml``.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from ..errors import CorpusError
from ..normalize import normalize, remove_invisible
from .file_edits import (EditError, after_line, checked_sheet, corpus_lock, entries_sequence, entry_node,
                         leading_comment, line_start, reads_back, replace_file)
from .layout import RESERVED_FILES, SHEET_SUFFIXES
from .reading import entries_by_file
from .schema import DATED_FIELDS, FaqEntry, parse_entry
from .sheets import generated_id, read_sheets
from .yaml_text import _yaml_scalar, corpus_yaml

DEFAULT_FILE = "entries.yaml"
WRITABLE_SUFFIXES = (".yaml", ".yml", ".jsonl")  # where a new entry may go (sheets: edited in place only)
VERSION_CHARS = 12
EDITABLE = ("question", "paraphrases", "answer", "category", "tags", "negatives", "enabled", *DATED_FIELDS)
# The order fields are written in a new or rewritten YAML entry (any others follow).
_YAML_ORDER = ("id", "category", "tags", "question", "paraphrases", "negatives", "answer", *DATED_FIELDS, "enabled")
STATUSES = ("all", "enabled", "disabled")


class EntryNotFound(EditError):
    """No entry with that id in the draft corpus."""


class IdTaken(EditError):
    """A new entry's id is already used in the corpus."""


class NotWritable(EditError):
    """The file cannot be changed so that it reads back right, or not without losing something."""


class SheetNotWritable(NotWritable):
    """The entry lives in a spreadsheet that cannot be rewritten without losing something."""


class VersionConflict(EditError):
    """The entry changed (or went) since the version the edit was based on; nothing was written."""

    def __init__(self, faq_id: str, current: "StoredEntry | None", submitted: dict[str, Any]):
        super().__init__(f"条目 '{faq_id}' 已被他人修改，未保存；请对照当前版本后再保存" if current is not None
                         else f"条目 '{faq_id}' 已被他人删除，未保存")
        self.current, self.submitted = current, submitted


def entry_record(entry: FaqEntry) -> dict[str, Any]:
    """Every field of ``entry``, lists and ``enabled`` always present (what the editor shows)."""
    return {"negatives": [], "enabled": True, **entry.to_record()}


def entry_version(entry: FaqEntry) -> str:
    """A short hash of the entry's content: changes whenever any of its fields does."""
    canonical = json.dumps(entry.to_record(), ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:VERSION_CHARS]


@dataclass(frozen=True)
class StoredEntry:
    entry: FaqEntry
    file: str  # the file that defines it, relative to the corpus folder

    @property
    def version(self) -> str:
        return entry_version(self.entry)

    def to_dict(self) -> dict[str, Any]:
        return {**entry_record(self.entry), "file": self.file, "version": self.version}


# --- reading and searching -------------------------------------------------------------------------


def read_entries(corpus: str | Path) -> list[StoredEntry]:
    """Every entry of the draft corpus (disabled ones too), in file and file order."""
    corpus = Path(corpus)
    return [StoredEntry(entry, path.relative_to(corpus).as_posix())
            for path, entries in entries_by_file(corpus).items() for entry in entries]


def get_entry(corpus: str | Path, faq_id: str) -> StoredEntry:
    found = next((stored for stored in read_entries(corpus) if stored.entry.id == faq_id), None)
    if found is None:
        raise EntryNotFound(f"没有编号为 '{faq_id}' 的条目")
    return found


@dataclass(frozen=True)
class EntryQuery:
    """What the entry list shows: a text (in id, question, paraphrases or answer), a category, a tag, a status."""

    text: str = ""
    category: str | None = None
    tag: str | None = None
    status: str = "all"  # one of STATUSES

    def accepts(self, entry: FaqEntry) -> bool:
        if self.status != "all" and entry.enabled != (self.status == "enabled"):
            return False
        if self.category is not None and entry.category != self.category:
            return False
        if self.tag is not None and self.tag not in entry.tags:
            return False
        needle = normalize(self.text) if self.text else ""
        return not needle or any(needle in normalize(text) for text in
                                 (entry.id, entry.question, entry.answer, *entry.paraphrases))


def find_entries(stored: list[StoredEntry], query: EntryQuery) -> list[StoredEntry]:
    """The entries ``query`` accepts, in corpus order."""
    return [item for item in stored if query.accepts(item.entry)]


# --- writing ----------------------------------------------------------------------------------------


def create_entry(corpus: str | Path, fields: dict[str, Any], file: str | None = None) -> StoredEntry:
    """Add a new entry (``fields``: question, answer, ...; ``id`` optional: derived from the question)."""
    corpus = Path(corpus)
    with corpus_lock(corpus):
        by_file = entries_by_file(corpus)
        taken = {entry.id for entries in by_file.values() for entry in entries}
        raw = {key: value for key, value in fields.items() if value is not None}
        raw["id"] = _new_id(raw, taken)
        entry = parse_entry(raw, "新条目")
        path = _target_file(corpus, by_file, entry, file)
        entries = by_file.get(path, [])
        _write(corpus, path, entries, entries + [entry], lambda text: _yaml_append(text, entry),
               lambda lines: lines + [json.dumps(_stored_fields(entry), ensure_ascii=False)])
        return StoredEntry(entry, path.relative_to(corpus).as_posix())


def update_entry(corpus: str | Path, faq_id: str, changes: dict[str, Any], version: str) -> StoredEntry:
    """Set the fields in ``changes`` (None or an empty list: remove the field) on the entry at ``version``."""
    corpus = Path(corpus)
    if changes.get("id", faq_id) != faq_id:
        raise EditError("编号不能修改；请新建一个条目")
    with corpus_lock(corpus):
        path, entries, position = _locate(corpus, faq_id, changes, version)
        old = entries[position]
        raw = {**old.to_record(), **changes, "id": faq_id}
        new = parse_entry({key: value for key, value in raw.items() if value is not None}, f"条目 '{faq_id}'")
        if new == old:
            return StoredEntry(old, path.relative_to(corpus).as_posix())
        if path.suffix.lower() in SHEET_SUFFIXES and not new.enabled:
            raise SheetNotWritable(f"{path.name}：表格没有「启用」列，表格中的条目不能停用；请在表格中删除该行，"
                                   f"或先把表格导入为 YAML（faq-retriever corpus import）")
        expected = entries[:position] + [new] + entries[position + 1:]
        _write(corpus, path, entries, expected, lambda text: _yaml_update(text, old, new),
               lambda lines: _jsonl_update(lines, faq_id, old, new))
        return StoredEntry(new, path.relative_to(corpus).as_posix())


def delete_entry(corpus: str | Path, faq_id: str, version: str) -> StoredEntry:
    """Remove the entry at ``version`` from its file; the entry as it was."""
    corpus = Path(corpus)
    with corpus_lock(corpus):
        path, entries, position = _locate(corpus, faq_id, {}, version)
        expected = entries[:position] + entries[position + 1:]
        _write(corpus, path, entries, expected, lambda text: _yaml_delete(text, faq_id),
               lambda lines: [line for line in lines if _line_id(line) != faq_id])
        return StoredEntry(entries[position], path.relative_to(corpus).as_posix())


def _locate(corpus: Path, faq_id: str, submitted: dict[str, Any], version: str) -> tuple[Path, list[FaqEntry], int]:
    """The entry's file, that file's entries and its position; VersionConflict if it is not at ``version``."""
    for path, entries in entries_by_file(corpus).items():
        for position, entry in enumerate(entries):
            if entry.id == faq_id:
                if entry_version(entry) != version:
                    raise VersionConflict(faq_id, StoredEntry(entry, path.relative_to(corpus).as_posix()),
                                          {**submitted, "id": faq_id, "version": version})
                return path, entries, position
    raise EntryNotFound(f"没有编号为 '{faq_id}' 的条目（可能已被他人删除）")


def _new_id(raw: dict[str, Any], taken: set[str]) -> str:
    given = raw.get("id")
    if isinstance(given, str) and remove_invisible(given).strip():
        given = remove_invisible(given).strip()
        if given in taken:
            raise IdTaken(f"编号 '{given}' 已被其他条目使用")
        return given
    if given is not None and not isinstance(given, str):
        return given  # parse_entry names the problem
    question = raw.get("question")
    base = generated_id(question) if isinstance(question, str) and question.strip() else "q-new"
    candidate, number = base, 2
    while candidate in taken:
        candidate, number = f"{base}-{number}", number + 1
    return candidate


def _target_file(corpus: Path, by_file: dict[Path, list[FaqEntry]], entry: FaqEntry, file: str | None) -> Path:
    if file:
        return _named_file(corpus, file)
    writable = [path for path in by_file if path.suffix.lower() in WRITABLE_SUFFIXES]
    same_category = [(sum(e.category == entry.category for e in by_file[path]), -number, path)
                     for number, path in enumerate(writable)] if entry.category else []
    best = max(same_category, default=(0, 0, None))
    if best[0]:
        return best[2]
    yaml_files = [path for path in writable if path.suffix.lower() != ".jsonl"]
    return yaml_files[0] if yaml_files else corpus / DEFAULT_FILE


def _named_file(corpus: Path, file: str) -> Path:
    """``file`` (relative to the corpus folder) checked: inside it, visible, a corpus file name, not reserved."""
    relative = Path(file)
    if relative.is_absolute() or ".." in relative.parts or any(p.startswith((".", "~$")) for p in relative.parts):
        raise EditError(f"文件 '{file}' 必须是语料文件夹中的相对路径")
    if relative.name in RESERVED_FILES or relative.suffix.lower() not in (*WRITABLE_SUFFIXES, *SHEET_SUFFIXES):
        raise EditError(f"文件 '{file}' 不能存放条目；请用 .yaml、.yml 或 .jsonl 文件")
    path = corpus / relative
    if path.suffix.lower() in SHEET_SUFFIXES and not path.is_file():
        raise EditError(f"表格 '{file}' 不存在；新条目请放入 .yaml 或 .jsonl 文件")
    return path


def _write(corpus: Path, path: Path, old: list[FaqEntry], expected: list[FaqEntry],
           yaml_splice: Callable[[str], str | None], jsonl_edit: Callable[[list[str]], list[str]]) -> None:
    """Replace ``path`` with content that reads back as ``expected``, or raise EditError (nothing written)."""
    suffix = path.suffix.lower()
    if suffix in SHEET_SUFFIXES:
        _refuse_lossy_sheet(path)
        try:
            data = checked_sheet(path, corpus, expected)
        except EditError as exc:
            raise SheetNotWritable(str(exc)) from None
        replace_file(corpus, path, data)
        return
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    if suffix == ".jsonl":
        lines = text.splitlines()
        candidates = ["".join(line + "\n" for line in jsonl_edit(lines))]
    else:
        whole_entry = _safe_splice(lambda t: _yaml_whole_entry(t, old, expected), text)
        candidates = [_safe_splice(yaml_splice, text), whole_entry, _yaml_file(expected, leading_comment(text))]
    for candidate in candidates:
        if candidate is not None and reads_back(candidate.encode("utf-8"), path, corpus, expected):
            path.parent.mkdir(parents=True, exist_ok=True)
            replace_file(corpus, path, candidate.encode("utf-8"))
            return
    raise NotWritable(f"{path.name}：修改无法写成可以正确读回的内容，未做任何修改")


def _safe_splice(splice: Callable[[str], str | None], text: str) -> str | None:
    try:
        return splice(text)
    except yaml.YAMLError:
        return None


def _refuse_lossy_sheet(path: Path) -> None:
    """Refuse a sheet that a rewrite (as ``corpus export`` writes it) would lose something of."""
    try:
        sheets, warnings = read_sheets(path)
    except CorpusError as exc:
        raise SheetNotWritable(str(exc)) from None
    sheet = sheets[0]
    if len(sheets) > 1 or warnings or sheet.warnings or sheet.header_row != 1 or sheet.ignored:
        raise SheetNotWritable(f"{path.name}：表格中有语料以外的内容（多个工作表、标题行或其他列），"
                               f"自动改写会丢失它们；请直接在表格中修改，"
                               f"或先把表格导入为 YAML（faq-retriever corpus import）")


# --- JSON Lines: one line per entry -----------------------------------------------------------------


def _line_id(line: str) -> str | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    entry_id = record.get("id") if isinstance(record, dict) else None
    return remove_invisible(entry_id).strip() if isinstance(entry_id, str) else None


def _stored_fields(entry: FaqEntry) -> dict[str, Any]:
    """The entry as written to a file: empty lists and a null category left out."""
    return {key: value for key, value in entry.to_record().items() if value not in (None, [], ())}


def _changed_fields(old: FaqEntry, new: FaqEntry) -> dict[str, Any]:
    """Field -> new value (None: remove it) for every field that differs."""
    before, after = _stored_fields(old), _stored_fields(new)
    return {key: after.get(key) for key in (*before, *after) if before.get(key) != after.get(key)}


def _jsonl_update(lines: list[str], faq_id: str, old: FaqEntry, new: FaqEntry) -> list[str]:
    out = []
    for line in lines:
        if _line_id(line) == faq_id:
            record = json.loads(line)
            for key, value in _changed_fields(old, new).items():
                if value is None:
                    record.pop(key, None)
                else:
                    record[key] = value
            line = json.dumps(record, ensure_ascii=False)
        out.append(line)
    return out


# --- YAML: spliced at the composer's positions -----------------------------------------------------


def _content_end(value: yaml.Node) -> int:
    """Where a node's own content ends: a block collection ends with its last child, not at the next token."""
    if isinstance(value, (yaml.SequenceNode, yaml.MappingNode)) and value.value and not value.flow_style:
        last = value.value[-1]
        return _content_end(last[1] if isinstance(value, yaml.MappingNode) else last)
    return value.end_mark.index


def _value_end(text: str, value: yaml.Node) -> int:
    """Where a value's last line ends (blank lines and comments after it are not its own)."""
    start, end = value.start_mark.index, _content_end(value)
    return after_line(text, start + len(text[start:end].rstrip()))


def _item_scalar(text: str, flow: bool) -> str:
    scalar = _yaml_scalar(text, flow=flow)
    return json.dumps(text, ensure_ascii=False) if scalar.startswith("|") else scalar


def _field_yaml(key: str, value: Any, pad: str, flow_list: bool = False, dash_pad: str | None = None) -> str:
    """``key: value`` with its lines after the first indented by ``pad`` (the key's column); ends with a newline."""
    if isinstance(value, bool):
        return f"{key}: {'true' if value else 'false'}\n"
    if isinstance(value, (list, tuple)):
        if flow_list:
            return f"{key}: [{', '.join(_item_scalar(item, flow=True) for item in value)}]\n"
        dash = pad + "  " if dash_pad is None else dash_pad
        return f"{key}:\n" + "".join(_mapping_item(item, dash) if isinstance(item, dict)
                                     else f"{dash}- {_item_scalar(item, flow=False)}\n" for item in value)
    if isinstance(value, str):
        first, *rest = _yaml_scalar(value).split("\n")
        return "\n".join([f"{key}: {first}", *[pad + line if line else line for line in rest]]) + "\n"
    return f"{key}: {json.dumps(value, ensure_ascii=False)}\n"  # numbers; YAML reads JSON scalars


def _mapping_item(item: dict[str, Any], dash: str) -> str:
    """A mapping as a block sequence item (``answer_versions``: from, answer)."""
    pad = dash + "  "
    return "".join((dash + "- " if n == 0 else pad) + _field_yaml(key, value, pad)
                   for n, (key, value) in enumerate(item.items()))


def _entry_yaml(entry: FaqEntry, dash_column: int) -> str:
    """The entry as a block sequence item whose ``-`` is at ``dash_column``."""
    fields = _stored_fields(entry)
    keys = [k for k in _YAML_ORDER if k in fields] + [k for k in fields if k not in _YAML_ORDER]
    pad = " " * (dash_column + 2)
    lines = [_field_yaml(key, fields[key], pad, flow_list=key == "tags") for key in keys]
    return " " * dash_column + "- " + "".join(line if n == 0 else pad + line for n, line in enumerate(lines))


def _item_span(text: str, node: yaml.Node) -> tuple[int, int, int]:
    """(start of the item's first line, end of its last line, the column of its ``-``)."""
    start = line_start(text, node.start_mark.index)
    prefix = text[start:node.start_mark.index]
    return start, _value_end(text, node), len(prefix) - len(prefix.lstrip())


def _separated_by_blank_lines(text: str, items: list[yaml.Node]) -> bool:
    if len(items) < 2:
        return False
    _, end, _ = _item_span(text, items[-2])
    return text[end:line_start(text, items[-1].start_mark.index)].strip(" \t").startswith("\n")


def _yaml_append(text: str, entry: FaqEntry) -> str | None:
    root = entries_sequence(text) if text.strip() else None
    if root is None or root.flow_style or not root.value:
        return None  # an empty or flow-style file: rewritten whole
    _, end, dash = _item_span(text, root.value[-1])
    gap = "\n" if _separated_by_blank_lines(text, root.value) else ""
    head = text[:end] if end == 0 or text[end - 1] == "\n" else text[:end] + "\n"
    return head + gap + _entry_yaml(entry, dash) + text[end:]


def _yaml_delete(text: str, faq_id: str) -> str | None:
    node = entry_node(text, faq_id)
    if node is None:
        return None
    start, end, _ = _item_span(text, node)
    if text[start - 2:start] == "\n\n" and (end == len(text) or text[end:].startswith("\n")):
        # One of the blank lines around it goes too: what an added entry brought, an added-then-deleted one takes.
        end, start = (end + 1, start) if text[end:].startswith("\n") else (end, start - 1)
    return text[:start] + text[end:]


def _yaml_update(text: str, old: FaqEntry, new: FaqEntry) -> str | None:
    """``text`` with only the changed fields' lines of the entry rewritten; None if the layout is odd."""
    node = entry_node(text, old.id)
    if node is None or node.flow_style:
        return None
    pairs = {key.value: (key, value) for key, value in node.value}
    pad = " " * node.start_mark.column
    edits = []  # (start, end, replacement), applied from the end
    for key, value in _changed_fields(old, new).items():
        if key in pairs:
            key_node, value_node = pairs[key]
            start, end = key_node.start_mark.index, _value_end(text, value_node)
            if value is None:
                if text[line_start(text, start):start].strip():
                    return None  # the entry's first key, after its "-"
                edits.append((line_start(text, start), end, ""))
                continue
            flow = isinstance(value_node, yaml.SequenceNode) and value_node.flow_style
            dash = " " * (value_node.start_mark.column) if isinstance(value_node, yaml.SequenceNode) \
                and not flow else None
            edits.append((start, end, _field_yaml(key, value, pad, flow, dash)))
        elif value is not None:
            at = _value_end(text, node.value[-1][1])
            newline = "" if at == 0 or text[at - 1] == "\n" else "\n"
            edits.append((at, at, newline + pad + _field_yaml(key, value, pad, flow_list=key == "tags")))
    for start, end, replacement in sorted(edits, key=lambda edit: edit[0], reverse=True):
        text = text[:start] + replacement + text[end:]
    return text


def _yaml_file(entries: list[FaqEntry], comment: str) -> str:
    """A whole corpus YAML file (what is left when splicing cannot keep the layout)."""
    return corpus_yaml([], comment=comment) + "".join(_entry_yaml(entry, 0) for entry in entries)


def _yaml_whole_entry(text: str, old: list[FaqEntry], expected: list[FaqEntry]) -> str | None:
    """The one entry that differs between ``old`` and ``expected`` rewritten whole (its comments lost)."""
    changed = [new for before, new in zip(old, expected) if before != new]
    if len(old) != len(expected) or len(changed) != 1:
        return None
    node = entry_node(text, changed[0].id)
    if node is None:
        return None
    start, end, dash = _item_span(text, node)
    return text[:start] + _entry_yaml(changed[0], dash) + text[end:]
