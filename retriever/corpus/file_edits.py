"""Changing one corpus file safely: the editors' lock, a backup of what is replaced, an atomic replace,
and the check that the new content reads back as exactly the intended entries.

Shared by the workbench's quick edits (retriever/editorial/editing.py: a query added as a paraphrase) and the
entry editor (:mod:`.entry_store`). YAML is changed by splicing text at the positions PyYAML's
composer reports (:func:`entry_node`, :func:`after_line`), so comments and layout elsewhere stay
byte for byte; whatever is written is first read back (:func:`reads_back`).
"""
from __future__ import annotations

import contextlib
import fcntl
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import yaml

from ..errors import CorpusError
from ..files import write_bytes_atomic
from ..normalize import remove_invisible
from .reading import entries_by_file
from .schema import FaqEntry
from .sheets import COLUMNS, export_sheet, read_sheet

WORKBENCH_DIR = ".workbench"  # hidden: corpus_files() skips it
KEEP_BACKUPS = 200


class EditError(CorpusError):
    """An edit cannot be made; nothing was written."""


def workbench_dir(corpus: str | Path) -> Path:
    folder = Path(corpus) / WORKBENCH_DIR
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextlib.contextmanager
def corpus_lock(corpus: str | Path) -> Iterator[None]:
    """Exclusive use of the corpus folder for one edit (threads and processes alike: one open file each)."""
    with open(workbench_dir(corpus) / "edit.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def backup_file(corpus: Path, path: Path) -> Path | None:
    """A copy of ``path`` under ``.workbench/backups/`` (the newest KEEP_BACKUPS kept); None if it does not exist."""
    if not path.is_file():
        return None
    folder = workbench_dir(corpus) / "backups"
    folder.mkdir(exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    backup = folder / f"{stamp}-{'__'.join(path.relative_to(corpus).parts)}"
    shutil.copy2(path, backup)
    for old in sorted(folder.iterdir())[:-KEEP_BACKUPS]:
        old.unlink(missing_ok=True)
    return backup


def replace_file(corpus: Path, path: Path, data: bytes) -> Path | None:
    """Back ``path`` up and replace it with ``data`` atomically (on disk when this returns); the backup."""
    backup = backup_file(corpus, path)
    write_bytes_atomic(path, data)
    return backup


def reads_back(data: bytes, path: Path, corpus: Path, expected: list[FaqEntry]) -> bool:
    """Whether ``data``, as the content of ``path``, reads as exactly ``expected`` (disabled entries too)."""
    trial = workbench_dir(corpus) / f"check{path.suffix}"
    trial.write_bytes(data)
    try:
        return entries_by_file(trial)[trial] == expected
    except CorpusError:
        return False
    finally:
        trial.unlink(missing_ok=True)


def checked_sheet(path: Path, corpus: Path, expected: list[FaqEntry]) -> bytes:
    """The sheet ``path`` rewritten with ``expected`` (its header language kept), checked to read back."""
    chinese = {column.chinese for column in COLUMNS}
    headers = "zh" if chinese & set(read_sheet(path).headers) else "en"
    trial = workbench_dir(corpus) / f"sheet{path.suffix}"
    try:
        export_sheet(expected, trial, headers=headers)
        data = trial.read_bytes()
    finally:
        trial.unlink(missing_ok=True)
    if not reads_back(data, path, corpus, expected):
        raise EditError(f"{path}: the sheet could not be rewritten so that it reads back right; nothing was changed")
    return data


def leading_comment(text: str) -> str:
    """The comment lines at the top of a YAML file, without their ``#``."""
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line[1:].strip())
    return "\n".join(lines)


def entries_sequence(text: str) -> yaml.SequenceNode | None:
    """The YAML node of a corpus file's list of entries (top level, or under ``entries:``); None if there is none."""
    root = yaml.compose(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    if isinstance(root, yaml.MappingNode):
        root = next((v for k, v in root.value if k.value == "entries"), None)
    return root if isinstance(root, yaml.SequenceNode) else None


def entry_node(text: str, faq_id: str) -> yaml.MappingNode | None:
    """The YAML node of entry ``faq_id`` in a corpus file's text; None if it is not there as a mapping."""
    root = entries_sequence(text)
    if root is None:
        return None
    for node in root.value:
        if isinstance(node, yaml.MappingNode) and any(
                k.value == "id" and isinstance(v, yaml.ScalarNode) and remove_invisible(v.value).strip() == faq_id
                for k, v in node.value):
            return node
    return None


def after_line(text: str, index: int) -> int:
    """Where the line holding ``text[index - 1]`` ends (after its newline); ``index`` if a line starts there."""
    if index == 0 or text[index - 1] == "\n":
        return index
    end = text.find("\n", index)
    return len(text) if end < 0 else end + 1


def line_start(text: str, index: int) -> int:
    """Where the line holding ``text[index]`` starts."""
    return text.rfind("\n", 0, index) + 1
