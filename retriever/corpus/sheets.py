"""FAQ entries as spreadsheet rows: ``corpus import`` / ``corpus export``, and sheets in a corpus folder.

One row per entry below a header row. Columns, in any order, headed in English or Chinese:

    id 编号 | question 标准问题 | paraphrases 相似问题 | answer 答案 | category 分类 | tags 标签 | negatives 负例

and optionally ``valid_from 生效日期 | valid_until 有效期至`` (the first and the last day the entry answers,
YYYY-MM-DD or a date cell; docs/validity.md). Export writes them only when an entry has dates; answer
versions (``answer_versions``) have no column: a corpus with them is exported as YAML, not as a sheet.

(a few other names editors use are read too: :data:`HEADER_ALIASES`). ``question`` and ``answer`` are
required. A missing id is derived from the question text (:func:`generated_id`), so importing the same
sheet again gives the same ids. List cells (paraphrases, tags, negatives): :mod:`.cells`.

The header is the first row, among the first :data:`HEADER_SEARCH_ROWS`, that names a question and an
answer column; rows above it (a title, often merged across the columns) are skipped with a warning.
Columns with other headers (序号, 备注, 发布日期...) are not imported, with a warning naming them all,
unless a header looks like a corpus column (it mentions 问/答, question, answer...): then the sheet
is refused, naming every such header at once, so that no content column is dropped for a typo.

``.xlsx`` is read with openpyxl in full mode, formulas as formulas: a formula is refused (its saved
value may be stale) except ``=HYPERLINK(...)``, and so are merged cells, which only full mode reports
(for 50,000 rows it took 3.9 s against 3.4 s for read-only mode). A cell's hyperlink is kept as a
Markdown link (``[点击查看](https://...)``). Every worksheet with a header is read (``sheet``: only
the one named); a worksheet without one is skipped with a warning. ``.csv`` must be UTF-8, with or
without the BOM Excel writes. Every problem is reported with its sheet, row and column; a file with
any is not imported unless the caller asks to skip bad rows (they go to a rejects file). Messages are
in Chinese: the editors who fix the sheets read them.
"""
from __future__ import annotations

import csv
import datetime
import hashlib
import io
import logging
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
from .cells import has_list_separator, hyperlink_formula, markdown_link, split_list_cell
from .layout import SHEET_SUFFIXES
from .schema import EntryError, FaqEntry, parse_entry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SheetColumn:
    field: str
    english: str
    chinese: str


COLUMNS = (SheetColumn("id", "id", "编号"), SheetColumn("question", "question", "标准问题"),
           SheetColumn("paraphrases", "paraphrases", "相似问题"), SheetColumn("answer", "answer", "答案"),
           SheetColumn("category", "category", "分类"), SheetColumn("tags", "tags", "标签"),
           SheetColumn("negatives", "negatives", "负例"))
# Validity dates: both ends inclusive. 有效期至 (valid until), not 失效日期, which may mean the first day it is not.
DATE_COLUMNS = (SheetColumn("valid_from", "valid_from", "生效日期"), SheetColumn("valid_until", "valid_until", "有效期至"))
DATE_FIELDS = frozenset(column.field for column in DATE_COLUMNS)
_DATE_CELL = "是日期或时间，不是文字；请把该列设为“文本”格式后重新输入"
# Other headers editors give these columns: read, never written (export writes the names of COLUMNS).
HEADER_ALIASES = {"问题": "question", "标准问": "question", "相似问": "paraphrases", "相似问法": "paraphrases",
                  "扩展问": "paraphrases", "扩展问题": "paraphrases", "其他问法": "paraphrases", "回答": "answer",
                  "答复": "answer", "类别": "category", "关键词": "tags", "生效时间": "valid_from",
                  "开始日期": "valid_from", "有效期截止": "valid_until", "截止日期": "valid_until"}
REQUIRED_FIELDS = ("question", "answer")
LIST_FIELDS = frozenset({"paraphrases", "tags", "negatives"})
HEADER_LANGUAGES = ("en", "zh")
HEADER_SEARCH_ROWS = 10  # rows looked at for the header: a title and a note or two may stand above it
_FIELD_BY_HEADER = {**HEADER_ALIASES, **{name: c.field for c in COLUMNS + DATE_COLUMNS
                                         for name in (c.english, c.chinese)}}
# An unknown header with one of these may be a misspelt content column: refused, not skipped.
# 失效/有效/生效/valid: a date column skipped would let an entry answer past its date.
_CONTENT_LIKE = re.compile(r"问|答|question|answer|paraphrase|negative|categor|tag|失效|有效|生效|valid", re.IGNORECASE)
_XLSX_ERROR = "不是可以读取的 Excel 工作簿（.xlsx）"


@dataclass(frozen=True)
class Problem:
    """Why a row cannot be imported; ``column`` is empty when the row as a whole is at fault."""

    row: int
    column: str
    message: str
    sheet: str = ""  # the worksheet's name when the workbook has several

    def __str__(self) -> str:
        where = f"工作表「{self.sheet}」" if self.sheet else ""
        return f"{where}第 {self.row} 行，{self.column}列：{self.message}" if self.column else \
            f"{where}第 {self.row} 行：{self.message}"


@dataclass(frozen=True)
class SheetRow:
    number: int  # as the spreadsheet program shows it
    cells: tuple[str | None, ...]  # text of every cell, as written (a formula as its formula, a link as Markdown)
    problems: tuple[Problem, ...] = ()  # found while reading: formulas, merged cells, dates


@dataclass(frozen=True)
class Sheet:
    path: Path
    name: str  # the worksheet's title ("" for a CSV)
    headers: tuple[str, ...]  # as written in the header row
    fields: tuple[str | None, ...]  # the entry field of each column; None for a column not imported
    rows: tuple[SheetRow, ...]  # data rows, blank ones left out
    header_row: int = 1
    ignored: frozenset[int] = frozenset()  # columns with a header that is not a corpus column: not imported
    warnings: tuple[str, ...] = ()  # what the editor should know: skipped title rows, ignored columns
    label: str = ""  # the name that problems carry: the worksheet's when the workbook has several

    def column_label(self, index: int) -> str:
        header = self.headers[index] if index < len(self.headers) else ""
        return f"{_column_letter(index)}（{header}）" if header else _column_letter(index)


@dataclass(frozen=True)
class ImportResult:
    sheets: tuple[Sheet, ...]
    entries: tuple[FaqEntry, ...]
    rejected: tuple[tuple[Sheet, SheetRow, tuple[Problem, ...]], ...]
    warnings: tuple[str, ...] = ()  # the sheets' warnings, then the notes on rows (a kept 、)

    @property
    def path(self) -> Path:
        return self.sheets[0].path

    @property
    def sheet(self) -> Sheet:
        """The first worksheet read (a CSV's only one); ``sheets`` holds them all."""
        return self.sheets[0]

    @property
    def row_count(self) -> int:
        return sum(len(sheet.rows) for sheet in self.sheets)

    def problems(self) -> list[Problem]:
        return [problem for _, _, problems in self.rejected for problem in problems]


def generated_id(question: str) -> str:
    """A stable id from the question text: equal for texts that differ only in width, spacing or invisible characters.

    Deliberately not :func:`~retriever.normalize.normalize`: a change to normalisation (a new
    NORMALIZE_VERSION) must not change ids that labelled queries and logs refer to.
    """
    canonical = " ".join(unicodedata.normalize("NFKC", remove_invisible(question)).split())
    return "q-" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]


# One worksheet as read: its name, its non-blank rows (number, cell texts, [(0-based column, problem)]),
# and its merged ranges as (first row, last row, first column, coordinate).
_Table = list[tuple[int, tuple[str | None, ...], list[tuple[int, str]]]]
_Merged = list[tuple[int, int, int, str]]


def read_sheets(path: str | Path, sheet: str | None = None) -> tuple[list[Sheet], list[str]]:
    """(every worksheet of an .xlsx or .csv file that has a header, the warnings of reading the workbook).

    ``sheet``: read only the worksheet of that name (the others are named in a warning). File-level
    problems raise :class:`CorpusError`.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SHEET_SUFFIXES:
        raise CorpusError(f"{path}：不是本工具能读的表格；请另存为 Excel 工作簿（.xlsx）或 CSV UTF-8（.csv）")
    if not path.is_file():
        raise CorpusError(f"{path}：文件不存在")
    if suffix == ".csv":
        if sheet is not None:
            raise CorpusError(f"{path}：CSV 文件只有一个表，不能用 --sheet 选择工作表")
        return [_sheet_of(path, "", _csv_table(path), [], several=False)], []
    tables = _xlsx_tables(path)
    warnings: list[str] = []
    if sheet is not None:
        chosen = [t for t in tables if t[0] == sheet]
        if not chosen:
            raise CorpusError(f"{path}：没有名为「{sheet}」的工作表；工作表有：{_names(t[0] for t in tables)}")
        others = [t[0] for t in tables if t[0] != sheet]
        if others:
            warnings.append(f"只导入工作表「{sheet}」，未读取：{_names(others)}")
        tables = chosen
    filled = [t for t in tables if t[1]]
    if not filled:
        raise CorpusError(f"{path}：表格是空的；需要一行表头（{_header_help()}）")
    several = len(filled) > 1
    sheets, refusals = [], []
    for name, table, merged in filled:
        try:
            sheets.append(_sheet_of(path, name, table, merged, several))
        except _NoHeader as exc:
            if not several:
                raise CorpusError(str(exc)) from None
            refusals.append((name, str(exc)))
    if not sheets:
        raise CorpusError("\n".join(message for _, message in refusals))
    warnings += [f"工作表「{name}」没有表头，未导入（{message.split('：', 1)[-1]}）" for name, message in refusals]
    return sheets, warnings


def read_sheet(path: str | Path) -> Sheet:
    """The first worksheet with a header of an .xlsx or .csv file (what :func:`read_sheets` reads first)."""
    return read_sheets(path)[0][0]


class _NoHeader(CorpusError):
    """A worksheet has no header row: the whole file is refused, or (beside other worksheets) only it is skipped."""


def _sheet_of(path: Path, name: str, table: _Table, merged: _Merged, several: bool) -> Sheet:
    where = f"{path}（工作表「{name}」）" if several else f"{path}"
    position = _header_position(table)
    if position is None:
        _refuse_merged_header(table, merged, where)  # merging a header row leaves one header for several columns
        raise _NoHeader(_no_header_message(where, table))
    header_number, header_cells, _ = table[position]
    headers = tuple((cell or "").strip() for cell in header_cells)
    fields, ignored = _fields_of(headers, where)
    warnings = [f"{where}：第 {number} 行在表头（第 {header_number} 行）之上，当作标题跳过：{_shown(cells)}"
                for number, cells, _ in table[:position]]
    if ignored:
        warnings.append(f"{where}：这些列不是语料列，内容未导入：{'、'.join(_column_letter(i) + '（' + headers[i] + '）' for i in ignored)}")
    label = name if several else ""
    sheet = Sheet(path, name, headers, fields, (), header_number, frozenset(ignored), tuple(warnings), label)
    problems_by_row = _merged_problems(merged, header_number, where)
    rows = []
    for number, cells, problems in table[position + 1:]:
        found = [*problems_by_row.get(number, ()), *problems]
        rows.append(SheetRow(number, cells, tuple(Problem(number, sheet.column_label(index), message, label)
                                                  for index, message in found)))
    return Sheet(path, name, headers, fields, tuple(rows), header_number, frozenset(ignored), tuple(warnings), label)


def _refuse_merged_header(table: _Table, merged: _Merged, where: str) -> None:
    """CorpusError when the first row that looks like a header (two cells or more) has merged cells."""
    header_like = next((number for number, cells, _ in table if sum(1 for c in cells if c and c.strip()) > 1), None)
    for first, last, _, coordinate in merged:
        if header_like is not None and first <= header_like <= last:
            raise CorpusError(f"{where}：表头单元格 {coordinate} 是合并的；请取消合并，让每一列有自己的表头")


def _header_position(table: _Table) -> int | None:
    """Index in ``table`` of the first row (among the first HEADER_SEARCH_ROWS) naming a question and an answer."""
    for position, (number, cells, _) in enumerate(table):
        if number > HEADER_SEARCH_ROWS:
            return None
        named = {_FIELD_BY_HEADER.get(_header_key(cell)) for cell in cells if cell}
        if all(field in named for field in REQUIRED_FIELDS):
            return position
    return None


def _no_header_message(where: str, table: _Table) -> str:
    number, cells, _ = table[0]
    headers = [(i, (c or "").strip()) for i, c in enumerate(cells) if c and c.strip()]
    if len(headers) == 1:
        return (f"{where}：前 {HEADER_SEARCH_ROWS} 行里没有表头；第 {number} 行只有「{headers[0][1][:40]}」，像是标题。"
                f"表头要有这些列：{_header_help()}")
    named = {_FIELD_BY_HEADER.get(_header_key(h)) for _, h in headers}
    missing = "、".join(f"{c.chinese}（{c.english}）" for c in COLUMNS if c.field in REQUIRED_FIELDS and
                       c.field not in named)
    unknown = [f"{_column_letter(i)}「{h}」" for i, h in headers if _header_key(h) not in _FIELD_BY_HEADER]
    found = f"；不认识的表头：{'、'.join(unknown)}" if unknown else ""
    return (f"{where}：第 {number} 行的表头缺少 {missing} 列{found}。表头要有这些列：{_header_help()}")


def _header_key(header: str) -> str:
    return remove_invisible(header).strip().lower()


def _fields_of(headers: tuple[str, ...], where: str) -> tuple[tuple[str | None, ...], list[int]]:
    """(the field of each column, the columns not imported); a misspelt or doubled column raises CorpusError."""
    fields: list[str | None] = []
    seen: dict[str, str] = {}
    ignored, suspicious = [], []
    for index, header in enumerate(headers):
        field = _FIELD_BY_HEADER.get(_header_key(header)) if header else None
        fields.append(field)
        if header and field is None:
            (suspicious if _CONTENT_LIKE.search(header) else ignored).append(index)
            continue
        if field is None:
            continue
        if field in seen:
            raise CorpusError(f"{where}：{seen[field]} 列和 {_column_letter(index)} 列都是「{field}」列；只保留一列")
        seen[field] = _column_letter(index)
    if suspicious:
        named = "、".join(f"{_column_letter(i)} 列「{headers[i]}」" for i in suspicious)
        raise CorpusError(f"{where}：{named} 不是语料列（像是拼写不同的内容列，为免内容丢失不予跳过）；请改用这些表头："
                          f"{_header_help()}；不需要的列请删除或改名")
    return tuple(fields), ignored


def _header_help() -> str:
    return "、".join(f"{c.chinese}/{c.english}" for c in COLUMNS + DATE_COLUMNS) + "（标准问题和答案必填）"


def _names(names: Iterable[str]) -> str:
    return "、".join(f"「{name}」" for name in names)


def _shown(cells: Iterable[str | None]) -> str:
    text = " ".join((cell or "").strip() for cell in cells if cell and cell.strip())
    return f"「{text[:60]}{'…' if len(text) > 60 else ''}」"


def _xlsx_tables(path: Path) -> list[tuple[str, _Table, _Merged]]:
    import openpyxl  # here: only sheets need it
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        # Full mode: read-only worksheets do not report merged cells. data_only=False: formulas stay visible.
        workbook = openpyxl.load_workbook(path, data_only=False)
    except (InvalidFileException, zipfile.BadZipFile, KeyError, ValueError, TypeError) as exc:
        raise CorpusError(f"{path}：{_XLSX_ERROR}（{exc}）；请用 Excel/WPS 重新另存为 .xlsx") from None
    except OSError as exc:
        raise CorpusError(f"{path}：无法读取（{exc.strerror or exc}）") from None
    tables = []
    for worksheet in workbook.worksheets:
        table: _Table = []
        for number, row in enumerate(worksheet.iter_rows(), start=1):
            texts, problems = [], []
            for index, cell in enumerate(row):
                text, problem = _xlsx_cell(cell)
                texts.append(text)
                if problem:
                    problems.append((index, problem))
            if problems or not _blank(texts):
                table.append((number, tuple(texts), problems))
        merged = [(r.min_row, r.max_row, r.min_col - 1, r.coord) for r in worksheet.merged_cells.ranges]
        tables.append((worksheet.title, table, merged))
    workbook.close()
    return tables


def _merged_problems(merged: _Merged, header_row: int, where: str) -> dict[int, list[tuple[int, str]]]:
    """Merged cells below the header, by row; merged header cells raise; merged titles above it are fine."""
    problems: dict[int, list[tuple[int, str]]] = {}
    for first, last, column, coordinate in merged:
        if last < header_row:
            continue  # a title across the columns
        if first <= header_row:
            raise CorpusError(f"{where}：表头单元格 {coordinate} 是合并的；请取消合并，让每一列有自己的表头")
        for number in range(first, last + 1):
            problems.setdefault(number, []).append(
                (column, f"单元格 {coordinate} 是合并的；请取消合并，并在每一行填上内容"))
    return problems


def _xlsx_cell(cell: Any) -> tuple[str | None, str | None]:
    """(text of the cell, problem) for one openpyxl cell; a hyperlink's text as a Markdown link."""
    value = cell.value
    if cell.data_type == "f":
        formula = str(getattr(value, "text", value))
        link = hyperlink_formula(formula)
        if link is not None:
            return link, None
        shown = formula if len(formula) <= 60 else formula[:57] + "..."
        return formula, f"是公式（{shown}），保存的值可能已过时；请换成它的值（复制后“选择性粘贴-仅值”）"
    if value is None:
        return None, None
    if cell.data_type == "e":
        return str(value), f"是错误值（{value}）；请填入文字"
    if isinstance(value, bool):
        return str(value).upper(), "是 TRUE/FALSE，不是文字"
    if isinstance(value, (datetime.date, datetime.time, datetime.timedelta)):
        return _date_text(value), _DATE_CELL  # taken as it is in a date column (_row_entry)
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        text = str(int(value))
    elif isinstance(value, (float, str)):
        text = str(value).replace("\r\n", "\n").replace("\r", "\n")
    else:
        return str(value), f"是 {type(value).__name__}，不是文字"
    target = getattr(cell.hyperlink, "target", None) if cell.hyperlink is not None else None
    return (markdown_link(text, target) if target else text), None


def _date_text(value: Any) -> str:
    """A date cell's day (YYYY-MM-DD); a date with a time of day keeps it (and is refused as a date)."""
    if isinstance(value, datetime.datetime) and value.time() == datetime.time():
        return value.date().isoformat()
    return value.isoformat() if isinstance(value, datetime.date) else str(value)


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
            raise CorpusError(f"{path}：第 {number + 1} 行（第 {line} 行文本）：有单元格超过 "
                              f"{csv.field_size_limit():,} 个字符") from None
        raise CorpusError(f"{path}：第 {number + 1} 行（到第 {line} 行文本）：{exc}；单元格开头的引号（\"）必须闭合，"
                          f"单元格内的引号要写两次（\"\"）") from None
    return table


def _decode_csv(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CorpusError(f"{path}：无法读取（{exc.strerror or exc}）") from None
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise CorpusError(f"{path}：是 UTF-16 文本（Excel 的“Unicode 文本”）；请另存为“CSV UTF-8（逗号分隔）”"
                          f"或 Excel 工作簿（.xlsx）")
    try:
        return data.decode("utf-8-sig")  # Excel's "CSV UTF-8" starts with a BOM
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        try:
            data.decode("gb18030")
            guess = "看起来是 GBK/GB18030 编码：中文 Windows 上的 Excel 和 WPS 保存普通“CSV”时用它。"
        except UnicodeDecodeError:
            guess = ""
        raise CorpusError(f"{path}：不是 UTF-8 文本（第 {line} 行的字节 0x{data[exc.start]:02x} 不是有效的 UTF-8）。"
                          f"{guess}请另存为“CSV UTF-8（逗号分隔）”或 Excel 工作簿（.xlsx）后重新导入") from None


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


def import_sheet(path: str | Path, progress: bool = False, sheet: str | None = None) -> ImportResult:
    """Every data row of every worksheet at ``path`` (or of the one named ``sheet``) validated as a corpus
    entry; nothing is written."""
    sheets, warnings = read_sheets(path, sheet)
    return entries_from_sheets(sheets, warnings, progress=progress)


def entries_from_sheets(sheets: list[Sheet], warnings: Iterable[str] = (), progress: bool = False) -> ImportResult:
    """Validate every row as a corpus entry; a row with any problem is rejected whole, duplicates after the first."""
    entries: list[FaqEntry] = []
    rejected: list[tuple[Sheet, SheetRow, tuple[Problem, ...]]] = []
    notes = [*warnings, *(warning for sheet in sheets for warning in sheet.warnings)]
    first_row_of: dict[str, str] = {}
    rows = [(sheet, row) for sheet in sheets for row in sheet.rows]
    for sheet, row in tqdm(rows, desc="importing", unit=" rows", disable=not progress):
        entry, problems, kept = _row_entry(sheet, row)
        if entry is not None and entry.id in first_row_of:
            entry, problems = None, [_duplicate(sheet, row, entry, first_row_of[entry.id])]
        if entry is None:
            rejected.append((sheet, row, tuple(problems)))
            continue
        first_row_of[entry.id] = f"{f'工作表「{sheet.label}」' if sheet.label else ''}第 {row.number} 行"
        entries.append(entry)
        notes += [f"{Problem(row.number, label, '', sheet.label)}按一句保留（「、」前后不都像问题）：{text}；"
                  f"若是多条，请换行或用；分隔" for label, text in kept]
    return ImportResult(tuple(sheets), tuple(entries), tuple(rejected), tuple(notes))


def _row_entry(sheet: Sheet, row: SheetRow) -> tuple[FaqEntry | None, list[Problem], list[tuple[str, str]]]:
    """(the entry or None, its problems, the list cells kept whole at a 、 as (column, text))."""
    dated = {sheet.column_label(i) for i, field in enumerate(sheet.fields) if field in DATE_FIELDS}
    problems = [p for p in row.problems if not (p.message == _DATE_CELL and p.column in dated)]
    faulty = {problem.column for problem in problems}
    raw: dict[str, Any] = {}
    kept: list[tuple[str, str]] = []
    for index, text in enumerate(row.cells):
        field = sheet.fields[index] if index < len(sheet.fields) else None
        label = sheet.column_label(index)
        if label in faulty or index in sheet.ignored or not text or not remove_invisible(text).strip():
            continue
        if field is None:
            problems.append(Problem(row.number, label, "这一列没有表头却有内容；请给该列起名或清空", sheet.label))
        elif field in LIST_FIELDS:
            items, whole = split_list_cell(text, words=field == "tags")
            raw[field] = [item for item in items if remove_invisible(item).strip()]
            if whole:
                kept.append((label, text.strip()))
        else:
            raw[field] = text
    for field in REQUIRED_FIELDS:
        label = _label_of(sheet, field)
        if field not in raw and label not in faulty:
            problems.append(Problem(row.number, label, "为空；每个条目都要有标准问题和答案", sheet.label))
    if problems:
        return None, problems, []
    raw.setdefault("id", generated_id(raw["question"]))
    where = f"{sheet.path}（工作表「{sheet.label}」）" if sheet.label else f"{sheet.path}"
    try:
        return parse_entry(raw, f"{where}: row {row.number}"), [], kept
    except EntryError as exc:
        field = exc.field if exc.field in sheet.fields else "question" if exc.field == "id" else None
        return None, [Problem(row.number, _label_of(sheet, field) if field else "", exc.problem, sheet.label)], []


def _label_of(sheet: Sheet, field: str) -> str:
    return sheet.column_label(sheet.fields.index(field)) if field in sheet.fields else ""


def _duplicate(sheet: Sheet, row: SheetRow, entry: FaqEntry, first: str) -> Problem:
    id_index = sheet.fields.index("id") if "id" in sheet.fields else None
    if id_index is not None and id_index < len(row.cells) and row.cells[id_index]:
        return Problem(row.number, sheet.column_label(id_index), f"编号「{entry.id}」重复（{first}也是）", sheet.label)
    return Problem(row.number, _label_of(sheet, "question"),
                   f"与{first}的标准问题相同（都得到编号「{entry.id}」）；请合并这两行或给它们编号", sheet.label)


def problems_message(result: ImportResult, advice: str) -> str:
    """Every rejected row of ``result``, one a line, then ``advice``."""
    lines = [f"{result.path}：{result.row_count} 行中有 {len(result.rejected)} 行不能导入："]
    lines += [f"  {problem}" for problem in result.problems()]
    return "\n".join(lines + [advice])


def read_sheet_entries(path: str | Path) -> list[FaqEntry]:
    """The entries of a sheet in a corpus folder (for :func:`~retriever.corpus.load_corpus`); any bad row refuses it.

    Its warnings (skipped title rows, columns not imported) go to the log: a build has no one to ask.
    """
    result = import_sheet(path)
    if result.rejected:
        raise CorpusError(problems_message(result, "请在表格里改正（或用 `faq-retriever corpus import --skip-bad` "
                                                   "导入为 YAML，再从 YAML 建索引）。"))
    for warning in result.warnings:
        log.warning("%s", warning)
    return list(result.entries)


def rejects_csv(result: ImportResult) -> str:
    """Rejected rows as CSV (UTF-8 with BOM, for Excel): [sheet,] row number, problems, then the row's cells.

    The cells stand under the sheet's own headers (when every rejected row's sheet has the same ones; else
    under the corpus columns), so that the file, corrected, imports again: 行号 and 原因 are not corpus columns.
    """
    several = len(result.sheets) > 1
    same = len({sheet.headers for sheet, _, _ in result.rejected}) <= 1
    headers = list(result.rejected[0][0].headers) if result.rejected and same else [c.chinese for c in COLUMNS]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([*(["工作表"] if several else []), "行号", "原因", *headers])
    for sheet, row, problems in result.rejected:
        described = "；".join(f"{p.column} 列：{p.message}" if p.column else p.message for p in problems)
        cells = [cell or "" for cell in row.cells] if same else _cells_by_field(sheet, row)
        writer.writerow([*([sheet.name] if several else []), row.number, described, *cells])
    return "\ufeff" + buffer.getvalue()


def _cells_by_field(sheet: Sheet, row: SheetRow) -> list[str]:
    by_field = {field: row.cells[i] or "" for i, field in enumerate(sheet.fields) if field and i < len(row.cells)}
    return [by_field.get(column.field, "") for column in COLUMNS]


def export_sheet(entries: list[FaqEntry], path: str | Path, headers: str = "en") -> None:
    """One row per entry, atomically, headers in English (``en``) or Chinese (``zh``)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SHEET_SUFFIXES:
        raise CorpusError(f"{path}：导出只能写 Excel 工作簿（.xlsx）或 CSV（.csv）；请用这两种扩展名")
    if headers not in HEADER_LANGUAGES:
        raise CorpusError(f"不认识的表头语言「{headers}」；可选：{'、'.join(HEADER_LANGUAGES)}")
    columns = _export_columns(entries)
    header = [column.english if headers == "en" else column.chinese for column in columns]
    rows = [_entry_cells(entry, columns) for entry in entries]
    if suffix == ".csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        writer.writerow(header)
        writer.writerows(rows)
        write_output(path, ("\ufeff" + buffer.getvalue()).encode("utf-8"))  # the BOM makes Excel read UTF-8
    else:
        write_output(path, _xlsx_bytes(header, rows, entries, columns))


def _export_columns(entries: list[FaqEntry]) -> tuple[SheetColumn, ...]:
    """The corpus columns, and the date columns when an entry has dates; answer versions cannot be a cell."""
    versioned = [entry for entry in entries if entry.answer_versions]
    if versioned:
        first = versioned[0]
        raise CorpusError(f"{first.source or first.id}：条目有按日期切换的答案（answer_versions），表格没有对应的列；"
                          f"请保留 YAML 语料文件，或改为两个条目（旧答案填「有效期至」，新答案填「生效日期」）")
    dated = any(entry.valid_from or entry.valid_until for entry in entries)
    return COLUMNS + DATE_COLUMNS if dated else COLUMNS


def write_output(path: Path, data: bytes) -> None:
    """Atomically, creating the folder; a failure is a message, not a trace."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(path, data)
    except OSError as exc:
        raise CorpusError(f"{path}：无法写入（{exc.strerror or exc}）") from None


def _entry_cells(entry: FaqEntry, columns: tuple[SheetColumn, ...] = COLUMNS) -> list[str]:
    values = {"id": entry.id, "question": entry.question, "answer": entry.answer, "category": entry.category or "",
              "valid_from": entry.valid_from or "", "valid_until": entry.valid_until or ""}
    for field in LIST_FIELDS:
        items = getattr(entry, field)
        for number, item in enumerate(items, start=1):
            if "\n" in item or "\r" in item:
                raise CorpusError(f"{entry.source or entry.id}：'{field}' 第 {number} 项有多行，而表格的列表单元格"
                                  f"一行一项；请把它写成一行")
        values[field] = "\n".join(items)
        if len(items) == 1 and has_list_separator(items[0]):
            values[field] += "\n"  # a one-line cell may be split at its separators: the line break keeps it whole
    return [values[column.field] for column in columns]


_COLUMN_WIDTHS = {"id": 14, "question": 40, "paraphrases": 40, "answer": 60, "category": 12, "tags": 16,
                  "negatives": 30, "valid_from": 12, "valid_until": 12}
def _xlsx_bytes(header: list[str], rows: list[list[str]], entries: list[FaqEntry],
                columns: tuple[SheetColumn, ...] = COLUMNS) -> bytes:
    import openpyxl
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Alignment, Font
    from openpyxl.utils.exceptions import IllegalCharacterError

    workbook = openpyxl.Workbook(write_only=True)
    sheet = workbook.create_sheet("FAQ")
    for index, column in enumerate(columns):
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
        for column, value in zip(columns, row):
            try:
                cell = WriteOnlyCell(sheet, value=value or None)
            except IllegalCharacterError:
                raise CorpusError(f"{entry.source or entry.id}：'{column.field}' 含有 Excel 单元格不能保存的"
                                  f"控制字符；请删除它，或导出为 .csv") from None
            if value:
                cell.data_type = "s"  # text that starts with "=" stays text, not a formula
            if "\n" in value:
                cell.alignment = wrapped  # Excel shows the line breaks of a list cell only when text wraps
            cells.append(cell)
        sheet.append(cells)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()
