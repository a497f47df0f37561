"""Reading inquiry files (CSV, JSON Lines, plain text) as a stream of rows, each with its line number.

Every physical line after a CSV header starts a row or belongs to the row before it, so
rows in = rows classified + rows rejected. A quoted CSV field may span lines (a multi-line
inquiry), but a stray quote must not swallow the records after it. The rule: a row whose
quoted field is still open

- after ``MAX_RECORD_LINES`` physical lines, or
- at the end of the file, or
- on a line that, read on its own, is clearly a record of its own (exactly the header's
  number of fields and, when there is an id column, an id shaped like the opening row's id:
  same runs of digits / ASCII letters / other characters, so ``3`` and ``4`` or ``r3`` and
  ``r4`` match, while a line of prose does not)

is rejected at its first line, and the lines after that are read again as rows of their own.
Files may start with a UTF-8 byte order mark (Excel writes one); it is dropped.
"""
from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from ..errors import RetrieverError
from ..normalize import normalize

INPUT_FORMATS = ("csv", "jsonl", "text")
# Inquiry texts are at most a few hundred characters; 20 lines is generous for one, and it
# bounds how far a stray quote can reach before its row is rejected.
MAX_RECORD_LINES = 20


class ClassifyError(RetrieverError):
    """The input cannot be classified as asked (missing column, unknown format, stale checkpoint, busy output)."""


@dataclass(frozen=True)
class Row:
    """One input row: an inquiry, or the reason it cannot be one."""

    line: int  # 1-based line number where the row starts
    id: str | None = None
    text: str | None = None
    problem: str | None = None


def detect_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix in (".txt", ".text", ""):
        return "text"
    if suffix in (".parquet", ".pq"):
        raise ClassifyError(f"{path}: Parquet is read by the Ray engine; add --engine ray")
    raise ClassifyError(f"{path}: cannot tell the format from '{suffix}'; pass --format csv|jsonl|text")


def _undecodable(text: str) -> bool:
    """Bytes that were not UTF-8 survive decoding as lone surrogates (errors='surrogateescape'); JSON can
    also spell one (an escaped "\\ud800"). Either is not text the model, or the output file, can take."""
    return any("\ud800" <= ch <= "\udfff" for ch in text)


def check_text(row: Row, max_chars: int) -> Row:
    if row.problem:
        return row
    if row.text is None or not row.text.strip():
        return Row(row.line, row.id, row.text, "empty text")
    if _undecodable(row.text) or (row.id and _undecodable(row.id)):
        return Row(row.line, None, None, "bad encoding (not UTF-8)")
    if len(row.text) > max_chars:
        return Row(row.line, row.id, None, f"text longer than {max_chars} characters ({len(row.text)})")
    normalized = len(normalize(row.text))  # NFKC expands some (㌀ -> アパート): bound what the model reads
    if normalized > max_chars:
        return Row(row.line, row.id, None, f"text longer than {max_chars} characters once normalised ({normalized})")
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


# --- CSV records and the stray-quote rule ------------------------------------------------------------


def parse_record(lines: list[str]) -> list[str] | None:
    """The fields of the CSV record made of exactly ``lines``, or None if a quoted field is still open.

    A blank sentinel line tells the two apart: a complete record stops before it, an open
    quote reads it into the field. Raises ``csv.Error`` for what the csv module cannot read.
    """
    reader = csv.reader([*lines, "\n"])
    values = next(reader)
    return values if reader.line_num == len(lines) else None


def id_shape(value: str) -> str:
    """Runs of digits, ASCII letters and other characters: ``r12`` -> ``a9``, ``3`` -> ``9``."""
    classes = ("9" if ch.isascii() and ch.isdigit() else "a" if ch.isascii() and ch.isalpha() else "x"
               for ch in value.strip())
    return re.sub(r"(.)\1+", r"\1", "".join(classes))


def looks_like_a_record(line: str, opening: str, width: int, id_at: int | None) -> bool:
    """Whether ``line``, found inside an open quoted field, is clearly a record of its own."""
    try:
        alone, first = next(csv.reader([line]), []), next(csv.reader([opening]), [])
    except csv.Error:
        return False
    if width < 2 or len(alone) != width:
        return False
    if id_at is None or id_at >= len(first):
        return True
    return bool(alone[id_at].strip()) and id_shape(alone[id_at]) == id_shape(first[id_at])


class _PushbackLines:
    """Numbered lines that can be put back, to read again the lines a rejected row had swallowed."""

    def __init__(self, lines: Iterable[tuple[int, str]]) -> None:
        self._lines = iter(lines)
        self._back: list[tuple[int, str]] = []

    def __iter__(self) -> "_PushbackLines":
        return self

    def __next__(self) -> tuple[int, str]:
        return self._back.pop() if self._back else next(self._lines)

    def push_back(self, lines: list[tuple[int, str]]) -> None:
        self._back.extend(reversed(lines))


def _one_record(lines: _PushbackLines, first: tuple[int, str], width: int,
                id_at: int | None) -> tuple[list[str] | None, str | None]:
    """Read the record starting at ``first``: its fields, or the problem (its extra lines put back)."""
    taken = [first]
    while True:
        try:
            values = parse_record([line for _, line in taken])
        except csv.Error as exc:
            problem = f"unreadable CSV ({exc})"
            break
        if values is not None:
            return values, None
        if len(taken) > 1 and looks_like_a_record(taken[-1][1], first[1], width, id_at):
            problem = f"unclosed quote: the field swallows the record on line {taken[-1][0]}"
            break
        if len(taken) == MAX_RECORD_LINES:
            problem = f"unclosed quote: the field is still open after {MAX_RECORD_LINES} lines"
            break
        following = next(lines, None)
        if following is None:
            problem = "unclosed quote: the field is still open at the end of the file"
            break
        taken.append(following)
    lines.push_back(taken[1:])
    return None, problem


def _csv_rows(handle: io.TextIOBase, id_column: str | None, text_column: str, path: Path) -> Iterator[Row]:
    first_line = handle.readline()
    if not first_line:
        return
    try:
        header = parse_record([first_line])
    except csv.Error as exc:
        raise ClassifyError(f"{path}: cannot read the CSV header ({exc})") from None
    if header is None:
        raise ClassifyError(f"{path}: the header line has an unclosed quote")
    for name in (text_column, id_column):
        if name and name not in header:
            raise ClassifyError(f"{path}: no column '{name}' in the header ({', '.join(header)}); "
                                f"choose with --text-column / --id-column")
    text_at = header.index(text_column)
    id_at = header.index(id_column) if id_column else None
    lines = _PushbackLines(enumerate(handle, start=2))
    for line, content in lines:
        values, problem = _one_record(lines, (line, content), len(header), id_at)
        if problem:
            yield Row(line, problem=problem)
        elif not values:
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
        # utf-8-sig drops the byte order mark Excel puts before the first header name.
        handle = open(path, encoding="utf-8-sig", errors="surrogateescape", newline="")
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
            yield check_text(row, max_chars)
