"""Batch classification: each inquiry mapped to an FAQ entry, or flagged for a person.

Reading is streaming (one batch in memory at a time). A run writes
``OUT.partial`` and ``REJECTS.partial`` and, after every batch, a checkpoint
``OUT.progress.json`` saying how many input rows are done and how long each
file was at that moment; ``resume`` truncates the partial files back to the
checkpoint and skips the rows done, so no row is lost or written twice. A
finished run renames the files into place. Every input row ends in the output
or in the rejects file, with its line number and the reason.
"""
from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

from tqdm.auto import tqdm

from ..errors import RetrieverError
from ..files import write_text_atomic
from ..search import Searcher

INPUT_FORMATS = ("csv", "jsonl", "text")
OUTPUT_FIELDS = ("line", "id", "text", "decision", "faq_id", "question", "score", "margin",
                 "top_faq_id", "runner_up_faq_id", "runner_up_score")
CHECKPOINT_VERSION = 1


class ClassifyError(RetrieverError):
    """The input cannot be classified as asked (missing column, unknown format, stale checkpoint)."""


@dataclass(frozen=True)
class Row:
    """One input row: an inquiry, or the reason it cannot be one."""

    line: int  # 1-based line number where the row starts
    id: str | None = None
    text: str | None = None
    problem: str | None = None


def classify_texts(searcher: Searcher, texts: list[str], threshold: float | None = None) -> list[dict]:
    """Classify many texts with one model call (top 2 entries each, for the runner-up)."""
    return [r.classification() for r in searcher.search_many(texts, top_k=2, threshold=threshold)]


# --- reading ---------------------------------------------------------------------------------


def detect_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix in (".txt", ".text", ""):
        return "text"
    raise ClassifyError(f"{path}: cannot tell the format from '{suffix}'; pass --format csv|jsonl|text")


def _undecodable(text: str) -> bool:
    """Bytes that were not UTF-8 survive decoding as lone surrogates (errors='surrogateescape')."""
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def _check_text(row: Row, max_chars: int) -> Row:
    if row.problem:
        return row
    if row.text is None or not row.text.strip():
        return Row(row.line, row.id, row.text, "empty text")
    if _undecodable(row.text) or (row.id and _undecodable(row.id)):
        return Row(row.line, None, None, "bad encoding (not UTF-8)")
    if len(row.text) > max_chars:
        return Row(row.line, row.id, None, f"text longer than {max_chars} characters ({len(row.text)})")
    return row


def _text_rows(handle: io.TextIOBase) -> Iterator[Row]:
    for number, line in enumerate(handle, start=1):
        line = line.rstrip("\r\n")
        yield Row(number, str(number), line, None if line.strip() else "empty line")


def _jsonl_rows(handle: io.TextIOBase, id_field: str | None, text_field: str) -> Iterator[Row]:
    for number, line in enumerate(handle, start=1):
        if not line.strip():
            yield Row(number, problem="empty line")
            continue
        if _undecodable(line):
            yield Row(number, problem="bad encoding (not UTF-8)")
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            yield Row(number, problem=f"invalid JSON ({exc.msg})")
            continue
        if not isinstance(record, dict):
            yield Row(number, problem="not a JSON object")
            continue
        text = record.get(text_field)
        if not isinstance(text, str):
            yield Row(number, problem=f"missing field '{text_field}'" if text is None
                      else f"field '{text_field}' is not a string")
            continue
        row_id = record.get(id_field) if id_field else number
        if row_id is None or isinstance(row_id, (dict, list, bool)):
            yield Row(number, problem=f"missing or invalid field '{id_field}'")
            continue
        yield Row(number, str(row_id), text)


def _csv_rows(handle: io.TextIOBase, id_column: str | None, text_column: str, path: Path) -> Iterator[Row]:
    reader = csv.reader(handle)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        raise ClassifyError(f"{path}: cannot read the CSV header ({exc})") from None
    for name in (text_column, id_column):
        if name and name not in header:
            raise ClassifyError(f"{path}: no column '{name}' in the header ({', '.join(header)}); "
                                f"choose with --text-column / --id-column")
    text_at = header.index(text_column)
    id_at = header.index(id_column) if id_column else None
    start = reader.line_num + 1
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield Row(start, problem=f"unreadable CSV ({exc})")
            start = reader.line_num + 1
            continue
        line, start = start, reader.line_num + 1
        if not values:
            yield Row(line, problem="empty line")
        elif any(_undecodable(value) for value in values):
            yield Row(line, problem="bad encoding (not UTF-8)")
        elif text_at >= len(values) or (id_at is not None and id_at >= len(values)):
            missing = text_column if text_at >= len(values) else id_column
            yield Row(line, problem=f"missing column '{missing}' ({len(values)} of {len(header)} fields)")
        else:
            yield Row(line, values[id_at] if id_at is not None else str(line), values[text_at])


def read_rows(path: Path, input_format: str, *, id_column: str | None, text_column: str,
              max_chars: int) -> Iterator[Row]:
    """Stream the rows of an input file; unreadable ones carry their problem."""
    try:
        handle = open(path, encoding="utf-8", errors="surrogateescape", newline="")
    except OSError as exc:
        raise ClassifyError(f"{path}: cannot open ({exc.strerror})") from None
    with handle:
        if input_format == "csv":
            rows = _csv_rows(handle, id_column, text_column, path)
        elif input_format == "jsonl":
            rows = _jsonl_rows(handle, id_column, text_column)
        else:
            rows = _text_rows(handle)
        for row in rows:
            yield _check_text(row, max_chars)


# --- writing, with checkpoints -------------------------------------------------------------------


class _Writer:
    """Rows to a .partial file, CSV or JSON Lines, whose committed length a checkpoint records."""

    def __init__(self, path: Path, as_csv: bool, fields: tuple[str, ...], resume_at: int | None) -> None:
        self.partial = path.with_name(path.name + ".partial")
        self.path = path
        self.fields = fields
        if resume_at is None:
            self._handle = open(self.partial, "w", encoding="utf-8", newline="")
        else:
            self._handle = open(self.partial, "r+", encoding="utf-8", newline="")
            self._handle.truncate(resume_at)  # drop what was written after the last checkpoint
            self._handle.seek(resume_at)
        self._csv = csv.DictWriter(self._handle, fieldnames=fields, extrasaction="ignore") if as_csv else None
        if self._csv is not None and resume_at is None:
            self._csv.writeheader()

    def write(self, record: dict) -> None:
        if self._csv is not None:
            self._csv.writerow(record)
        else:
            self._handle.write(json.dumps(record, ensure_ascii=False) + "\n")

    def commit(self) -> int:
        """Flush to disk; returns the length a checkpoint may rely on."""
        self._handle.flush()
        os.fsync(self._handle.fileno())
        return self._handle.tell()

    def finish(self) -> None:
        self.commit()
        self._handle.close()
        os.replace(self.partial, self.path)

    def close(self) -> None:
        if not self._handle.closed:
            self._handle.close()


@dataclass
class ClassifySummary:
    rows: int = 0
    classified: int = 0
    rejected: int = 0
    decisions: dict[str, int] = field(default_factory=lambda: {"answer": 0, "ambiguous": 0, "no_match": 0})
    resumed_from: int = 0


def _fingerprint(path: Path, options: dict) -> dict:
    stat = path.stat()
    return {"input": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "options": options}


def rejects_path_for(out: Path) -> Path:
    return out.with_name(out.stem + ".rejects.jsonl")


def checkpoint_path_for(out: Path) -> Path:
    """Where a run into ``out`` keeps its checkpoint; present only while a run is unfinished."""
    return out.with_name(out.name + ".progress.json")


def classify_file(searcher: Searcher, input_path: str | Path, out: str | Path, *,
                  input_format: str | None = None, id_column: str | None = "id", text_column: str = "text",
                  rejects: str | Path | None = None, threshold: float | None = None, batch_size: int = 256,
                  max_chars: int = 500, resume: bool = False, progress: bool = True,
                  on_batch: Callable[[ClassifySummary], None] | None = None) -> ClassifySummary:
    """Classify every row of ``input_path`` into ``out`` (CSV or JSON Lines by its suffix).

    Unreadable rows go to ``rejects`` (default ``OUT_STEM.rejects.jsonl``) as
    ``{"line", "reason"}``. With ``resume``, an interrupted run of the same input
    and options continues where its last checkpoint left it.
    """
    input_path, out = Path(input_path), Path(out)
    rejects = Path(rejects) if rejects else rejects_path_for(out)
    input_format = input_format or detect_format(input_path)
    if input_format not in INPUT_FORMATS:
        raise ClassifyError(f"unknown input format '{input_format}'; use one of {', '.join(INPUT_FORMATS)}")
    if input_format == "text":
        id_column = None
    if not input_path.is_file():
        raise ClassifyError(f"{input_path}: no such input file")
    checkpoint_path = checkpoint_path_for(out)
    options = {"format": input_format, "id_column": id_column, "text_column": text_column, "threshold": threshold,
               "max_chars": max_chars, "out": str(out), "rejects": str(rejects), "index": searcher.version,
               "mode": searcher.mode}
    fingerprint = _fingerprint(input_path, options)

    summary = ClassifySummary()
    offsets = None
    if resume and checkpoint_path.is_file():
        checkpoint = json.loads(checkpoint_path.read_text(encoding="utf-8"))
        if checkpoint.get("fingerprint") != fingerprint:
            raise ClassifyError(f"{checkpoint_path}: the interrupted run used another input, index or options; "
                                f"run again without --resume to start over")
        offsets = checkpoint["offsets"]
        for path in (out, rejects):
            if not path.with_name(path.name + ".partial").is_file():
                raise ClassifyError(f"{path}.partial is missing, so the interrupted run cannot continue; "
                                    f"run again without --resume to start over")
        summary = ClassifySummary(**checkpoint["summary"])
        summary.resumed_from = summary.rows

    writers = []
    try:
        output = _Writer(out, out.suffix.lower() == ".csv", OUTPUT_FIELDS, offsets and offsets["out"])
        writers.append(output)
        rejected = _Writer(rejects, False, ("line", "reason"), offsets and offsets["rejects"])
        writers.append(rejected)
        rows = read_rows(input_path, input_format, id_column=id_column, text_column=text_column,
                         max_chars=max_chars)
        with tqdm(total=_count_lines(input_path) - (input_format == "csv"), desc="classifying", unit=" rows",
                  disable=not progress, initial=summary.rows) as bar:
            for batch in _batches(_skip(rows, summary.rows), batch_size):
                good = [row for row in batch if row.problem is None]
                results = iter(classify_texts(searcher, [row.text for row in good], threshold) if good else [])
                for row in batch:
                    if row.problem:
                        rejected.write({"line": row.line, "reason": row.problem})
                        summary.rejected += 1
                    else:
                        record = {"line": row.line, "id": row.id, "text": row.text, **next(results)}
                        output.write(record)
                        summary.classified += 1
                        summary.decisions[record["decision"]] += 1
                summary.rows += len(batch)
                state = {"version": CHECKPOINT_VERSION, "fingerprint": fingerprint,
                         "offsets": {"out": output.commit(), "rejects": rejected.commit()},
                         "summary": {k: v for k, v in summary.__dict__.items() if k != "resumed_from"}}
                write_text_atomic(checkpoint_path, json.dumps(state, ensure_ascii=False))
                bar.update(len(batch))
                if on_batch is not None:
                    on_batch(summary)
        output.finish()
        rejected.finish()
        checkpoint_path.unlink(missing_ok=True)
    finally:
        for writer in writers:
            writer.close()
    return summary


def _count_lines(path: Path) -> int:
    """Lines in the file (rows, give or take CSV fields spanning lines): the progress bar's total."""
    with open(path, "rb") as handle:
        return sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 20), b""))


def _skip(rows: Iterator[Row], count: int) -> Iterator[Row]:
    for done, row in enumerate(rows):
        if done >= count:
            yield row


def _batches(rows: Iterable[Row], size: int) -> Iterator[list[Row]]:
    batch: list[Row] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def read_output(path: str | Path) -> Iterator[dict]:
    """Stream the records of a classification output file (CSV or JSON Lines)."""
    path = Path(path)
    with open(path, encoding="utf-8", newline="") as handle:
        if path.suffix.lower() == ".csv":
            for record in csv.DictReader(handle):
                record["line"] = int(record["line"])
                for key in ("score", "margin", "runner_up_score"):
                    record[key] = float(record[key]) if record.get(key) not in (None, "") else None
                record["faq_id"] = record.get("faq_id") or None
                yield record
        else:
            for line in handle:
                if line.strip():
                    yield json.loads(line)
