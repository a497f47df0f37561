"""FAQ entries as spreadsheet rows: ``corpus import`` / ``corpus export``, and sheets in a corpus folder.

One row per entry; the first row is the header. Columns, in any order, headed in English or Chinese:

    id 编号 | question 标准问题 | paraphrases 相似问题 | answer 答案 | category 分类 | tags 标签 | negatives 负例

``question`` and ``answer`` are required. A missing id is derived from the question text
(:func:`generated_id`), so importing the same sheet again gives the same ids. A list cell
(paraphrases, tags, negatives) holds one item per line; a cell of a single line may instead separate
items with ``；`` or ``;``.

``.xlsx`` is read with openpyxl in full mode, formulas as formulas: a formula is refused (its saved
value may be stale), and so are merged cells, which only full mode reports (for 50,000 rows it
took 3.9 s against 3.4 s for read-only mode). The first worksheet is read. ``.csv`` must be UTF-8,
with or without the BOM Excel writes. Every problem is reported with its row and column; a file with
any is not imported unless the caller asks to skip bad rows (they go to a rejects file).
"""
from __future__ import annotations

import csv
import datetime
import hashlib
import io
import re
import unicodedata
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from tqdm.auto import tqdm

from ..errors import CorpusError
from ..files import write_bytes_atomic
from ..normalize import remove_invisible
from .layout import SHEET_SUFFIXES
from .schema import EntryError, FaqEntry, parse_entry


@dataclass(frozen=True)
class SheetColumn:
    field: str
    english: str
    chinese: str


COLUMNS = (SheetColumn("id", "id", "编号"), SheetColumn("question", "question", "标准问题"),
           SheetColumn("paraphrases", "paraphrases", "相似问题"), SheetColumn("answer", "answer", "答案"),
           SheetColumn("category", "category", "分类"), SheetColumn("tags", "tags", "标签"),
           SheetColumn("negatives", "negatives", "负例"))
REQUIRED_FIELDS = ("question", "answer")
LIST_FIELDS = frozenset({"paraphrases", "tags", "negatives"})
HEADER_LANGUAGES = ("en", "zh")
_FIELD_BY_HEADER = {name: c.field for c in COLUMNS for name in (c.english, c.chinese)}
_LIST_SEPARATORS = re.compile("[;；]")
_XLSX_ERROR = "not an Excel workbook (.xlsx) that can be read"
@dataclass(frozen=True)
class Problem:
    """Why a row cannot be imported; ``column`` is empty when the row as a whole is at fault."""

    row: int
    column: str
    message: str

    def __str__(self) -> str:
        return f"row {self.row}, column {self.column}: {self.message}" if self.column else \
            f"row {self.row}: {self.message}"


@dataclass(frozen=True)
class SheetRow:
    number: int  # as the spreadsheet program shows it: the header is row 1
    cells: tuple[str | None, ...]  # text of every cell, as written (a formula as its formula)
    problems: tuple[Problem, ...] = ()  # found while reading: formulas, merged cells, dates


@dataclass(frozen=True)
class Sheet:
    path: Path
    name: str  # the worksheet's title ("" for a CSV)
    headers: tuple[str, ...]  # as written in row 1
    fields: tuple[str | None, ...]  # the entry field of each column; None for a column without a header
    rows: tuple[SheetRow, ...]  # data rows, blank ones left out

    def column_label(self, index: int) -> str:
        header = self.headers[index] if index < len(self.headers) else ""
        return f"{_column_letter(index)} ({header})" if header else _column_letter(index)


@dataclass(frozen=True)
class ImportResult:
    sheet: Sheet
    entries: tuple[FaqEntry, ...]
    rejected: tuple[tuple[SheetRow, tuple[Problem, ...]], ...]

    def problems(self) -> list[Problem]:
        return [problem for _, problems in self.rejected for problem in problems]


def generated_id(question: str) -> str:
    """A stable id from the question text: equal for texts that differ only in width, spacing or invisible characters.

    Deliberately not :func:`~retriever.normalize.normalize`: a change to normalisation (a new
    NORMALIZE_VERSION) must not change ids that labelled queries and logs refer to.
    """
    canonical = " ".join(unicodedata.normalize("NFKC", remove_invisible(question)).split())
    return "q-" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]


def read_sheet(path: str | Path) -> Sheet:
    """The header and data rows of an .xlsx or .csv file; file-level problems raise :class:`CorpusError`."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SHEET_SUFFIXES:
        raise CorpusError(f"{path}: not a spreadsheet this tool reads; use an Excel workbook (.xlsx) or CSV UTF-8 (.csv)")
    if not path.is_file():
        raise CorpusError(f"{path}: no such file")
    name, table = _xlsx_table(path) if suffix == ".xlsx" else ("", _csv_table(path))
    if not table:
        raise CorpusError(f"{path}: the sheet is empty; row 1 must be the header ({_header_help()})")
    header_number, header_cells, _ = table[0]
    if header_number != 1:
        raise CorpusError(f"{path}: row 1 is empty; it must be the header ({_header_help()})")
    headers = tuple((cell or "").strip() for cell in header_cells)
    fields = _fields_of(headers, path)
    sheet = Sheet(path, name, headers, fields, ())
    rows = tuple(SheetRow(number, cells, tuple(Problem(number, sheet.column_label(index), message)
                                                for index, message in problems))
                 for number, cells, problems in table[1:])
    return Sheet(path, name, headers, fields, rows)


def _fields_of(headers: tuple[str, ...], path: Path) -> tuple[str | None, ...]:
    fields: list[str | None] = []
    seen: dict[str, str] = {}
    for index, header in enumerate(headers):
        if not header:
            fields.append(None)
            continue
        field = _FIELD_BY_HEADER.get(remove_invisible(header).strip().lower())
        if field is None:
            raise CorpusError(f"{path}: column {_column_letter(index)} is headed '{header}', which is not a corpus "
                              f"column; use {_header_help()}")
        if field in seen:
            raise CorpusError(f"{path}: columns {seen[field]} and {_column_letter(index)} are both '{field}'; "
                              f"keep one")
        seen[field] = _column_letter(index)
        fields.append(field)
    missing = [f for f in REQUIRED_FIELDS if f not in seen]
    if missing:
        names = " and ".join(f"'{c.english}' or '{c.chinese}'" for c in COLUMNS if c.field in missing)
        found = ", ".join(h for h in headers if h) or "none"
        raise CorpusError(f"{path}: no {names} column in the header (found: {found}); row 1 must name the columns: "
                          f"{_header_help()}")
    return tuple(fields)


def _header_help() -> str:
    return ", ".join(f"{c.english}/{c.chinese}" for c in COLUMNS) + f" ({' and '.join(REQUIRED_FIELDS)} required)"


# Rows as read: (row number, cell texts, [(0-based column, problem)]).
_Table = list[tuple[int, tuple[str | None, ...], list[tuple[int, str]]]]
def _xlsx_table(path: Path) -> tuple[str, _Table]:
    import openpyxl  # here: only sheets need it
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        # Full mode: read-only worksheets do not report merged cells. data_only=False: formulas stay visible.
        workbook = openpyxl.load_workbook(path, data_only=False)
    except (InvalidFileException, zipfile.BadZipFile, KeyError, ValueError, TypeError) as exc:
        raise CorpusError(f"{path}: {_XLSX_ERROR} ({exc}); save it again from Excel/WPS as .xlsx") from None
    except OSError as exc:
        raise CorpusError(f"{path}: cannot read ({exc.strerror or exc})") from None
    sheet = workbook.worksheets[0]
    merged = _merged_problems(sheet, path)
    table: _Table = []
    for number, row in enumerate(sheet.iter_rows(), start=1):
        texts, problems = [], list(merged.get(number, ()))
        for index, cell in enumerate(row):
            text, problem = _xlsx_cell(cell)
            texts.append(text)
            if problem:
                problems.append((index, problem))
        if problems or not _blank(texts):
            table.append((number, tuple(texts), problems))
    workbook.close()
    return sheet.title, table


def _merged_problems(sheet: Any, path: Path) -> dict[int, list[tuple[int, str]]]:
    problems: dict[int, list[tuple[int, str]]] = {}
    for cells in sheet.merged_cells.ranges:
        if cells.min_row == 1:
            raise CorpusError(f"{path}: header cells {cells.coord} are merged; unmerge them so that every column has "
                              f"its own header")
        for number in range(cells.min_row, cells.max_row + 1):
            problems.setdefault(number, []).append(
                (cells.min_col - 1, f"cells {cells.coord} are merged; unmerge them and fill in every row's cell"))
    return problems


def _xlsx_cell(cell: Any) -> tuple[str | None, str | None]:
    """(text of the cell, problem) for one openpyxl cell."""
    value = cell.value
    if cell.data_type == "f":
        formula = str(getattr(value, "text", value))
        shown = formula if len(formula) <= 60 else formula[:57] + "..."
        return formula, (f"holds a formula ({shown}), whose saved value may be out of date; replace it by its value "
                         f"(copy, then paste values only)")
    if value is None:
        return None, None
    if cell.data_type == "e":
        return str(value), f"holds an error value ({value}); put text there"
    if isinstance(value, bool):
        return str(value).upper(), "holds TRUE/FALSE, not text"
    if isinstance(value, (datetime.date, datetime.time, datetime.timedelta)):
        return str(value), "holds a date or time, not text; format the column as Text and type the value again"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return str(int(value)), None
    if isinstance(value, (float, str)):
        return str(value).replace("\r\n", "\n").replace("\r", "\n"), None
    return str(value), f"holds a {type(value).__name__}, not text"


def _csv_table(path: Path) -> _Table:
    text = _decode_csv(path)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    table: _Table = []
    number = 0
    try:
        for number, cells in enumerate(reader, start=1):
            texts = tuple(cell.replace("\r\n", "\n").replace("\r", "\n") if cell else None for cell in cells)
            if not _blank(texts):
                table.append((number, texts, []))
    except csv.Error as exc:
        line = reader.line_num
        if "field larger than field limit" in str(exc):
            raise CorpusError(f"{path}: row {number + 1} (line {line}): a cell is longer than "
                              f"{csv.field_size_limit():,} characters") from None
        raise CorpusError(f"{path}: row {number + 1} (up to line {line}): {exc}; a quote (\") that opens a cell must "
                          f"close it, and quotes inside a cell are doubled (\"\")") from None
    return table


def _decode_csv(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CorpusError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise CorpusError(f"{path}: UTF-16 text (what Excel saves as 'Unicode Text'); save it as "
                          f"'CSV UTF-8 (comma delimited)' or as an Excel workbook (.xlsx)")
    try:
        return data.decode("utf-8-sig")  # Excel's "CSV UTF-8" starts with a BOM
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        try:
            data.decode("gb18030")
            guess = " It reads as GBK/GB18030, which Excel and WPS write for plain 'CSV' on Chinese Windows."
        except UnicodeDecodeError:
            guess = ""
        raise CorpusError(f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line} is not valid "
                          f"UTF-8).{guess} Save it as 'CSV UTF-8 (comma delimited)' or as an Excel workbook (.xlsx), "
                          f"then import it again") from None


def _blank(cells: Iterable[str | None]) -> bool:
    return not any(cell and remove_invisible(cell).strip() for cell in cells)


def _column_letter(index: int) -> str:
    """Spreadsheet column name of a 0-based index: 0 -> A, 26 -> AA."""
    letters = ""
    index += 1
    while index:
        index, remainder = divmod(index - 1, 26)
        letters = chr(ord("A") + remainder) + letters
    return letters


def import_sheet(path: str | Path, progress: bool = False) -> ImportResult:
    """Every data row of the sheet at ``path`` validated as a corpus entry; nothing is written."""
    return entries_from_sheet(read_sheet(path), progress=progress)


def entries_from_sheet(sheet: Sheet, progress: bool = False) -> ImportResult:
    """Validate every row as a corpus entry; a row with any problem is rejected whole, duplicates after the first."""
    entries: list[FaqEntry] = []
    rejected: list[tuple[SheetRow, tuple[Problem, ...]]] = []
    first_row_of: dict[str, int] = {}
    for row in tqdm(sheet.rows, desc="importing", unit=" rows", disable=not progress):
        entry, problems = _row_entry(sheet, row)
        if entry is not None and entry.id in first_row_of:
            entry, problems = None, [_duplicate(sheet, row, entry, first_row_of[entry.id])]
        if entry is None:
            rejected.append((row, tuple(problems)))
        else:
            first_row_of[entry.id] = row.number
            entries.append(entry)
    return ImportResult(sheet, tuple(entries), tuple(rejected))


def _row_entry(sheet: Sheet, row: SheetRow) -> tuple[FaqEntry | None, list[Problem]]:
    problems = list(row.problems)
    faulty = {problem.column for problem in problems}
    raw: dict[str, Any] = {}
    for index, text in enumerate(row.cells):
        field = sheet.fields[index] if index < len(sheet.fields) else None
        label = sheet.column_label(index)
        if label in faulty or not text or not remove_invisible(text).strip():
            continue
        if field is None:
            problems.append(Problem(row.number, label, "a value in a column without a header; name the column "
                                                       "or clear it"))
        else:
            raw[field] = _split_list(text) if field in LIST_FIELDS else text
    for field in REQUIRED_FIELDS:
        label = _label_of(sheet, field)
        if field not in raw and label not in faulty:
            problems.append(Problem(row.number, label, "empty; every entry needs a question and an answer"))
    if problems:
        return None, problems
    raw.setdefault("id", generated_id(raw["question"]))
    try:
        return parse_entry(raw, f"{sheet.path}: row {row.number}"), []
    except EntryError as exc:
        field = exc.field if exc.field in sheet.fields else "question" if exc.field == "id" else None
        return None, [Problem(row.number, _label_of(sheet, field) if field else "", exc.problem)]


def _split_list(text: str) -> list[str]:
    """Items of a list cell: one a line, or separated by ；/; when the cell is one line."""
    parts = text.split("\n") if "\n" in text else _LIST_SEPARATORS.split(text)
    return [part.strip() for part in parts if remove_invisible(part).strip()]


def _label_of(sheet: Sheet, field: str) -> str:
    return sheet.column_label(sheet.fields.index(field)) if field in sheet.fields else ""


def _duplicate(sheet: Sheet, row: SheetRow, entry: FaqEntry, first: int) -> Problem:
    id_index = sheet.fields.index("id") if "id" in sheet.fields else None
    if id_index is not None and id_index < len(row.cells) and row.cells[id_index]:
        return Problem(row.number, sheet.column_label(id_index), f"duplicate id '{entry.id}' (also in row {first})")
    return Problem(row.number, _label_of(sheet, "question"),
                   f"same question as row {first} (both get the id '{entry.id}'); merge the rows or give them ids")


def problems_message(result: ImportResult, advice: str) -> str:
    """Every rejected row of ``result``, one a line, then ``advice``."""
    lines = [f"{result.sheet.path}: {len(result.rejected)} of {len(result.sheet.rows)} rows cannot be imported:"]
    lines += [f"  {problem}" for problem in result.problems()]
    return "\n".join(lines + [advice])


def read_sheet_entries(path: str | Path) -> list[FaqEntry]:
    """The entries of a sheet in a corpus folder (for :func:`~retriever.corpus.load_corpus`); any bad row refuses it."""
    result = import_sheet(path)
    if result.rejected:
        raise CorpusError(problems_message(result, "Fix them in the sheet (or import it with `python -m retriever "
                                                   "corpus import --skip-bad` and build from the YAML)."))
    return list(result.entries)


def rejects_csv(result: ImportResult) -> str:
    """Rejected rows as CSV (UTF-8 with BOM, for Excel): row number, problems, then the row's cells as read."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(["row", "problem", *result.sheet.headers])
    for row, problems in result.rejected:
        described = "; ".join(f"column {p.column}: {p.message}" if p.column else p.message for p in problems)
        writer.writerow([row.number, described, *(cell or "" for cell in row.cells)])
    return "\ufeff" + buffer.getvalue()


def export_sheet(entries: list[FaqEntry], path: str | Path, headers: str = "en") -> None:
    """One row per entry, atomically, headers in English (``en``) or Chinese (``zh``)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SHEET_SUFFIXES:
        raise CorpusError(f"{path}: export writes an Excel workbook (.xlsx) or CSV (.csv); name the file so")
    if headers not in HEADER_LANGUAGES:
        raise CorpusError(f"unknown header language '{headers}'; use one of {', '.join(HEADER_LANGUAGES)}")
    header = [column.english if headers == "en" else column.chinese for column in COLUMNS]
    rows = [_entry_cells(entry) for entry in entries]
    if suffix == ".csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        writer.writerow(header)
        writer.writerows(rows)
        write_output(path, ("\ufeff" + buffer.getvalue()).encode("utf-8"))  # the BOM makes Excel read UTF-8
    else:
        write_output(path, _xlsx_bytes(header, rows, entries))


def write_output(path: Path, data: bytes) -> None:
    """Atomically, creating the folder; a failure is a message, not a trace."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(path, data)
    except OSError as exc:
        raise CorpusError(f"{path}: cannot write ({exc.strerror or exc})") from None


def _entry_cells(entry: FaqEntry) -> list[str]:
    values = {"id": entry.id, "question": entry.question, "answer": entry.answer, "category": entry.category or ""}
    for field in LIST_FIELDS:
        items = getattr(entry, field)
        for number, item in enumerate(items, start=1):
            if "\n" in item or "\r" in item:
                raise CorpusError(f"{entry.source or entry.id}: '{field}' item {number} spans several lines, but a "
                                  f"sheet cell holds one item a line; put it on one line")
        values[field] = "\n".join(items)
        if len(items) == 1 and _LIST_SEPARATORS.search(items[0]):
            values[field] += "\n"  # a one-line cell is split at its ；/;: the line break keeps the item whole
    return [values[column.field] for column in COLUMNS]


_COLUMN_WIDTHS = {"id": 14, "question": 40, "paraphrases": 40, "answer": 60, "category": 12, "tags": 16,
                  "negatives": 30}
def _xlsx_bytes(header: list[str], rows: list[list[str]], entries: list[FaqEntry]) -> bytes:
    import openpyxl
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Alignment, Font
    from openpyxl.utils.exceptions import IllegalCharacterError

    workbook = openpyxl.Workbook(write_only=True)
    sheet = workbook.create_sheet("FAQ")
    for index, column in enumerate(COLUMNS):
        sheet.column_dimensions[_column_letter(index)].width = _COLUMN_WIDTHS[column.field]
    bold, wrapped = Font(bold=True), Alignment(wrap_text=True, vertical="top")
    sheet.freeze_panes = "A2"  # the header stays in view while scrolling
    heading = []
    for name in header:
        heading.append(WriteOnlyCell(sheet, value=name))
        heading[-1].font = bold
    sheet.append(heading)
    for entry, row in zip(entries, rows):
        cells = []
        for column, value in zip(COLUMNS, row):
            try:
                cell = WriteOnlyCell(sheet, value=value or None)
            except IllegalCharacterError:
                raise CorpusError(f"{entry.source or entry.id}: '{column.field}' holds a control character that an "
                                  f"Excel cell cannot store; remove it or export to .csv") from None
            if value:
                cell.data_type = "s"  # text that starts with "=" stays text, not a formula
            if "\n" in value:
                cell.alignment = wrapped  # Excel shows the line breaks of a list cell only when text wraps
            cells.append(cell)
        sheet.append(cells)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()
