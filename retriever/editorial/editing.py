"""Editing a corpus folder for the FAQ editors' workbench, and what editors work from.

Edits: a query added as a paraphrase or a negative example of an entry, or noted as a candidate
for a new entry (``candidates.jsonl``). Each edit changes the one file that defines the entry,
as little as it can (a YAML file keeps its comments and layout; a sheet is rewritten), checks
that the file reads back as exactly the intended entries, keeps a copy of what it replaced
under ``.workbench/backups/`` and replaces the file atomically. Edits take a lock, so two
editors (or two server workers) never interleave.

What editors work from: unmatched queries and 没帮助 feedback, read from their logs, counted,
and grouped with their near-duplicates (:func:`group_items`); and the pending changes, the
difference between the corpus and the served index (:func:`pending_changes`).
"""
from __future__ import annotations

import dataclasses
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import yaml

from ..corpus import (MAX_NEGATIVES, MAX_PARAPHRASES, MAX_QUESTION_CHARS, SHEET_SUFFIXES, FaqEntry,
                     corpus_yaml)
from ..corpus.file_edits import (EditError, after_line, checked_sheet, corpus_lock,  # noqa: F401 - EditError re-exported
                                entry_node, leading_comment, reads_back, replace_file, workbench_dir)
from ..corpus.reading import entries_by_file
from ..normalize import normalize, remove_invisible

CANDIDATES_FILE = "candidates.jsonl"  # reserved in corpus.RESERVED_FILES: not entries
EXAMPLE_KINDS = {"paraphrase": "paraphrases", "negative": "negatives"}
SKIP_REASONS = {"already_there": "the entry has it already", "is_paraphrase": "it is a paraphrase of the entry",
                "is_negative": "it is a negative example of the entry", "already_candidate": "noted already"}
# Near-duplicates: on the default model, rewordings of one question score 0.97-1.00 with each
# other, different questions about the same topic 0.92-0.93 (eight pairs, measured: see README).
GROUP_SIMILARITY = 0.95
MAX_DISTINCT_QUERIES = 300  # most frequent texts grouped (embedding them takes ~2 s)
LOG_BACKUPS = 5  # rotated files kept by the logs (path.1 ... path.5)


@dataclass(frozen=True)
class EditOutcome:
    path: Path  # the file changed
    backup: Path | None  # the copy of what it replaced (None: the file is new)
    added: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...]  # (text, why): one of SKIP_REASONS


# --- adding paraphrases and negatives ------------------------------------------------------------


def clean_texts(texts: Iterable[str]) -> list[str]:
    """The distinct texts (by normalised form), stripped; blank ones dropped; too long ones refused."""
    kept: dict[str, str] = {}
    for text in texts:
        text = remove_invisible(text).strip()
        if len(text) > MAX_QUESTION_CHARS:
            raise EditError(f"'{text[:30]}…' has {len(text)} characters; a question may have {MAX_QUESTION_CHARS}")
        if normalize(text):
            kept.setdefault(normalize(text), text)
    return list(kept.values())


def file_entries(corpus: str | Path) -> dict[Path, list[FaqEntry]]:
    """The entries of each corpus file, disabled ones too. Raises CorpusError when the corpus is invalid."""
    return entries_by_file(corpus)


def add_examples(corpus: str | Path, faq_id: str, kind: str, texts: Sequence[str]) -> EditOutcome:
    """Add ``texts`` as paraphrases (``kind`` "paraphrase") or negatives ("negative") of entry ``faq_id``.

    Texts the entry already holds are skipped, and so are texts that would contradict it (a
    paraphrase that is one of its negatives, or the reverse).
    """
    if kind not in EXAMPLE_KINDS:
        raise EditError(f"unknown kind '{kind}'; use one of {', '.join(EXAMPLE_KINDS)}")
    corpus = Path(corpus)
    texts = clean_texts(texts)
    if not texts:
        raise EditError("no text to add")
    with corpus_lock(corpus):
        by_file = file_entries(corpus)
        path, entries = next(((p, e) for p, e in by_file.items() if any(x.id == faq_id for x in e)), (None, None))
        if path is None:
            raise EditError(f"no entry '{faq_id}' in the corpus {corpus}")
        position = next(i for i, e in enumerate(entries) if e.id == faq_id)
        updated, added, skipped = _with_examples(entries[position], EXAMPLE_KINDS[kind], texts)
        if not added:
            return EditOutcome(path, None, (), tuple(skipped))
        expected = entries[:position] + [updated] + entries[position + 1:]
        data = _rewritten(path, corpus, expected, faq_id, EXAMPLE_KINDS[kind], added)
        return EditOutcome(path, replace_file(corpus, path, data), tuple(added), tuple(skipped))


def _with_examples(entry: FaqEntry, key: str, texts: list[str]) -> tuple[FaqEntry, list[str], list[tuple[str, str]]]:
    positives = {normalize(t) for t in (entry.question, *entry.paraphrases)}
    negatives = {normalize(t) for t in entry.negatives}
    same, other = (positives, negatives) if key == "paraphrases" else (negatives, positives)
    added, skipped = [], []
    for text in texts:
        norm = normalize(text)
        if norm in same:
            skipped.append((text, "already_there"))
        elif norm in other:
            skipped.append((text, "is_paraphrase" if key == "negatives" else "is_negative"))
        else:
            added.append(text)
            same.add(norm)
    limit = MAX_PARAPHRASES if key == "paraphrases" else MAX_NEGATIVES
    if len(getattr(entry, key)) + len(added) > limit:
        raise EditError(f"entry '{entry.id}' would have more than {limit} {key}")
    updated = dataclasses.replace(entry, **{key: getattr(entry, key) + tuple(added)})  # other fields kept
    return updated, added, skipped


def _rewritten(path: Path, corpus: Path, expected: list[FaqEntry], faq_id: str, key: str,
               added: list[str]) -> bytes:
    """The new content of ``path``, checked to read back as ``expected``."""
    suffix = path.suffix.lower()
    if suffix in SHEET_SUFFIXES:
        return checked_sheet(path, corpus, expected)
    text = path.read_text(encoding="utf-8")
    candidates = []
    if suffix == ".jsonl":
        candidates.append(_jsonl_with_items(text, faq_id, key, added))
    else:
        candidates.append(_yaml_with_items(text, faq_id, key, added))
        candidates.append(corpus_yaml(expected, comment=leading_comment(text)))  # when the layout defeats the above
    for candidate in candidates:
        if candidate is not None and reads_back(candidate.encode("utf-8"), path, corpus, expected):
            return candidate.encode("utf-8")
    raise EditError(f"{path}: the edit could not be written so that the file reads back right; nothing was changed")


def _jsonl_with_items(text: str, faq_id: str, key: str, added: list[str]) -> str | None:
    lines = text.splitlines(keepends=True)
    for number, line in enumerate(lines):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("id"), str) and \
                remove_invisible(record["id"]).strip() == faq_id:
            record[key] = list(record.get(key) or []) + added
            lines[number] = json.dumps(record, ensure_ascii=False) + ("\n" if line.endswith("\n") else "")
            return "".join(lines)
    return None


def _yaml_scalar(text: str, flow: bool) -> str:
    """``text`` as a YAML scalar: plain when that reads back equal, else double-quoted (JSON escapes are YAML's)."""
    plain = f"[{text}]" if flow else f"- {text}"
    try:
        if "\n" not in text and yaml.safe_load(plain) == [text]:
            return text
    except yaml.YAMLError:
        pass
    return json.dumps(text, ensure_ascii=False)


def _yaml_with_items(text: str, faq_id: str, key: str, added: list[str]) -> str | None:
    """``text`` with ``added`` appended to the entry's ``key`` list, touching nothing else; None if the layout is odd."""
    try:
        entry = entry_node(text, faq_id)
    except yaml.YAMLError:
        return None
    if entry is None or entry.flow_style:
        return None
    value = next((v for k, v in entry.value if k.value == key), None)
    if isinstance(value, yaml.SequenceNode) and value.flow_style:
        at = value.end_mark.index - 1  # the closing ]
        items = ", ".join(_yaml_scalar(t, flow=True) for t in added)
        return text[:at] + (", " if value.value else "") + items + text[at:]
    if isinstance(value, yaml.SequenceNode) and value.value:
        dash = value.start_mark.column
        gap = " " * max(value.value[0].start_mark.column - dash - 1, 1)
        lines = "".join(f"{' ' * dash}-{gap}{_yaml_scalar(t, flow=False)}\n" for t in added)
    elif value is None:
        indent = " " * entry.start_mark.column
        lines = f"{indent}{key}:\n" + "".join(f"{indent}  - {_yaml_scalar(t, flow=False)}\n" for t in added)
        value = entry.value[-1][1]
    else:
        return None  # an empty or null value: rewritten whole instead
    at = after_line(text, value.value[-1].end_mark.index if isinstance(value, yaml.SequenceNode) and value.value
                     else value.end_mark.index)
    prefix = text[:at] if at == 0 or text[at - 1] == "\n" else text[:at] + "\n"
    return prefix + lines + text[at:]


# --- candidates for new entries ------------------------------------------------------------------


def read_candidates(corpus: str | Path) -> list[dict[str, Any]]:
    """The candidates noted so far, oldest first (``{"query", "count", "noted_at"}``)."""
    path = Path(corpus) / CANDIDATES_FILE
    if not path.is_file():
        return []
    found = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("query"), str):
            found.append(record)
    return found


def add_candidates(corpus: str | Path, texts: Sequence[str], counts: dict[str, int] | None = None) -> EditOutcome:
    """Note ``texts`` as candidates for a new entry (texts already noted are skipped)."""
    corpus = Path(corpus)
    texts = clean_texts(texts)
    if not texts:
        raise EditError("no text to add")
    with corpus_lock(corpus):
        path = corpus / CANDIDATES_FILE
        noted = {normalize(r["query"]) for r in read_candidates(corpus)}
        added = [t for t in texts if normalize(t) not in noted]
        skipped = tuple((t, "already_candidate") for t in texts if normalize(t) in noted)
        if not added:
            return EditOutcome(path, None, (), skipped)
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        old = path.read_text(encoding="utf-8") if path.is_file() else ""
        if old and not old.endswith("\n"):
            old += "\n"
        new = "".join(json.dumps({"query": t, "count": (counts or {}).get(t, 1), "noted_at": now},
                                 ensure_ascii=False) + "\n" for t in added)
        backup = replace_file(corpus, path, (old + new).encode("utf-8"))
        return EditOutcome(path, backup, tuple(added), skipped)


# --- pending changes: the corpus against the served index ----------------------------------------


def _list_change(before: Sequence[str], after: Sequence[str]) -> dict[str, list[str]]:
    old, new = {normalize(t) for t in before}, {normalize(t) for t in after}
    return {"added": [t for t in after if normalize(t) not in old],
            "removed": [t for t in before if normalize(t) not in new]}


def pending_changes(corpus_entries: Sequence[FaqEntry], served_entries: Sequence[FaqEntry]) -> list[dict[str, Any]]:
    """What publishing the corpus would change, entry by entry (entries without a change left out).

    Each item: ``faq_id``, ``question``, ``change`` ("added", "removed" or "changed") and, for a
    changed entry, ``paraphrases``/``negatives`` (added and removed texts) and ``fields`` (the
    other fields that differ).
    """
    served = {e.id: e for e in served_entries}
    current = {e.id: e for e in corpus_entries}
    changes = []
    for entry in corpus_entries:
        before = served.get(entry.id)
        if before is None:
            changes.append({"faq_id": entry.id, "question": entry.question, "change": "added"})
            continue
        if before == entry:
            continue
        item: dict[str, Any] = {"faq_id": entry.id, "question": entry.question, "change": "changed"}
        for key in ("paraphrases", "negatives"):
            diff = _list_change(getattr(before, key), getattr(entry, key))
            if diff["added"] or diff["removed"]:
                item[key] = diff
        item["fields"] = [f for f in ("question", "answer", "category", "tags") if getattr(before, f) != getattr(entry, f)]
        changes.append(item)
    changes += [{"faq_id": e.id, "question": e.question, "change": "removed"}
                for e in served_entries if e.id not in current]
    return changes


# --- what editors work from: logs, counted and grouped -------------------------------------------


def read_log(path: str | Path | None, limit: int = 20_000) -> list[dict[str, Any]]:
    """The newest ``limit`` records of a rotated JSON Lines log (``path``, ``path.1`` ...), newest first."""
    if not path:
        return []
    records: list[dict[str, Any]] = []
    for number in range(LOG_BACKUPS + 1):
        file = Path(f"{path}.{number}" if number else path)
        if not file.is_file():
            continue
        with open(file, encoding="utf-8", errors="replace") as handle:
            lines = handle.readlines()
        for line in reversed(lines):
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line cut by a crash: the others still count
            if isinstance(record, dict) and isinstance(record.get("query"), str):
                records.append(record)
                if len(records) >= limit:
                    return records
    return records


@dataclass
class InboxItem:
    """One query text (by its normalised form) as editors see it."""

    text: str
    norm: str
    unmatched: int = 0  # times answered no_match
    unhelpful: int = 0  # times marked 没帮助
    unhelpful_ids: Counter = field(default_factory=Counter)  # the entries it was marked 没帮助 for

    @property
    def count(self) -> int:
        return self.unmatched + self.unhelpful

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "count": self.count, "unmatched": self.unmatched, "unhelpful": self.unhelpful,
                "unhelpful_faq_ids": dict(self.unhelpful_ids.most_common())}


def known_texts(entries: Iterable[FaqEntry], candidates: Iterable[dict[str, Any]] = ()) -> set[str]:
    """Normalised texts the corpus already places: questions, paraphrases, negatives, candidates."""
    known = {normalize(t) for e in entries for t in (e.question, *e.paraphrases, *e.negatives)}
    return known | {normalize(c["query"]) for c in candidates}


def inbox_items(unmatched: Iterable[dict[str, Any]], feedback: Iterable[dict[str, Any]],
                known: set[str] = frozenset()) -> list[InboxItem]:
    """Unmatched queries and 没帮助 feedback, counted per normalised text, most frequent first.

    Texts in ``known`` (already placed in the corpus) are left out.
    """
    items: dict[str, InboxItem] = {}

    def item(text: str) -> InboxItem | None:
        norm = normalize(text)
        if not norm or norm in known:
            return None
        return items.setdefault(norm, InboxItem(text, norm))

    for record in unmatched:
        found = item(record["query"])
        if found:
            found.unmatched += 1
    for record in feedback:
        if record.get("helpful") is False:
            found = item(record["query"])
            if found:
                found.unhelpful += 1
                if isinstance(record.get("faq_id"), str):
                    found.unhelpful_ids[record["faq_id"]] += 1
    return sorted(items.values(), key=lambda i: (-i.count, i.norm))


@dataclass
class QueryGroup:
    items: list[InboxItem]  # the first is the most frequent: the group's name

    @property
    def count(self) -> int:
        return sum(i.count for i in self.items)


def group_items(items: Sequence[InboxItem], vectors: np.ndarray,
                similarity: float = GROUP_SIMILARITY) -> list[QueryGroup]:
    """Near-duplicates together: each item joins the group whose first item it is most similar to, if
    at least ``similarity`` (cosine of unit ``vectors``, one row per item), else starts a group.

    Greedy, in the order given (most frequent first), so a group is named by its most frequent text.
    """
    groups: list[QueryGroup] = []
    leaders: list[int] = []
    for number, item in enumerate(items):
        if leaders:
            cosines = vectors[leaders] @ vectors[number]
            best = int(np.argmax(cosines))
            if cosines[best] >= similarity:
                groups[best].items.append(item)
                continue
        leaders.append(number)
        groups.append(QueryGroup([item]))
    return sorted(groups, key=lambda g: -g.count)
