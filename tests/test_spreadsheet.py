"""Spreadsheets in and out: `corpus import` / `corpus export`, sheets in a corpus folder, bad sheets refused."""
from __future__ import annotations

import csv
import io
import time
from pathlib import Path

import openpyxl
import pytest

from conftest import SEED_CORPUS
from retriever.cli import main
from retriever.corpus import FaqEntry, corpus_checksum, corpus_yaml, load_corpus
from retriever.errors import CorpusError
from retriever.corpus import export_sheet, generated_id, import_sheet, import_to_corpus

EN = ["id", "question", "paraphrases", "answer", "category", "tags", "negatives"]
ZH = ["编号", "标准问题", "相似问题", "答案", "分类", "标签", "负例"]
GOOD = ["a", "注销进度如何查询?", "注销进度\n怎么查注销", "登录系统查看。", "注销注册", "进度；查询", ""]


def write_xlsx(path: Path, rows: list[list], merge: str | None = None) -> Path:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    for row in rows:
        sheet.append(row)
    if merge:
        sheet.merge_cells(merge)
    workbook.save(path)
    return path


def write_csv(path: Path, rows: list[list], encoding: str = "utf-8") -> Path:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    path.write_bytes(buffer.getvalue().encode(encoding))
    return path


def tricky_entries() -> list[FaqEntry]:
    """Texts that a sheet or YAML could garble: separators inside items, formulas, YAML specials, line breaks."""
    return [
        FaqEntry("t-1", "=1+1 是什么?", "第一行\n\n  第三行缩进\n最后", paraphrases=("注销；进度", ), category="yes",
                 tags=("C++; Java",), negatives=("- 不是列表", "null", "#注释", "a: b")),
        FaqEntry("007", "true", "1.5", paraphrases=("多个", "含;分号", "'引号'", '"双引号"'), tags=("x", "y"),
                 negatives=("~",)),
        FaqEntry("q-空格", "  带\t制表符  ".strip(), "含\u2028分隔符的答案", paraphrases=("[括号]",)),
    ]


@pytest.mark.parametrize("suffix", [".xlsx", ".csv"])
@pytest.mark.parametrize("headers", ["en", "zh"])
def test_seed_round_trips_through_sheets(tmp_path, suffix, headers):
    original = load_corpus(SEED_CORPUS)
    sheet = tmp_path / f"faq{suffix}"
    main(["corpus", "export", str(SEED_CORPUS), "--out", str(sheet), "--headers", headers])
    assert main(["corpus", "import", str(sheet), "--out", str(tmp_path / "c"), "--quiet"]) == 0
    imported = load_corpus(tmp_path / "c")
    assert imported == original  # ids, categories, tags, paraphrases in order, answers
    assert corpus_checksum(imported) == corpus_checksum(original)
    # Export again: the sheet is the same, byte for byte for CSV.
    again = tmp_path / f"again{suffix}"
    export_sheet(imported, again, headers=headers)
    if suffix == ".csv":
        assert again.read_bytes() == sheet.read_bytes()
    else:
        assert list(openpyxl.load_workbook(again).active.values) == list(openpyxl.load_workbook(sheet).active.values)


@pytest.mark.parametrize("suffix", [".xlsx", ".csv"])
def test_tricky_texts_round_trip_through_sheet_and_yaml(tmp_path, suffix):
    entries = tricky_entries()
    export_sheet(entries, tmp_path / f"t{suffix}")
    result = import_sheet(tmp_path / f"t{suffix}")
    assert not result.rejected
    assert list(result.entries) == entries
    (tmp_path / "t.yaml").write_text(corpus_yaml(entries), encoding="utf-8")
    assert load_corpus(tmp_path / "t.yaml") == entries
    if suffix == ".xlsx":  # "=1+1 ..." is stored as text, not as a formula
        assert openpyxl.load_workbook(tmp_path / "t.xlsx").active["B2"].data_type == "s"


def test_export_refuses_a_list_item_that_spans_lines(tmp_path):
    entry = FaqEntry("a", "q", "x", paraphrases=("第一行\n第二行",))
    with pytest.raises(CorpusError, match=r"'paraphrases' item 1 spans several lines"):
        export_sheet([entry], tmp_path / "x.xlsx")
    assert not (tmp_path / "x.xlsx").exists()


@pytest.mark.parametrize("cell, items", [
    ("一\n二\n\n三", ("一", "二", "三")),  # one a line; blank lines dropped
    ("一；二;三", ("一", "二", "三")),  # full-width and ASCII semicolons
    ("一；二；", ("一", "二")),
    ("一\n二；三", ("一", "二；三")),  # with line breaks, a semicolon is text
    (" 一 ", ("一",)),
])
def test_list_cells_split_on_lines_or_semicolons(tmp_path, cell, items):
    path = write_csv(tmp_path / "l.csv", [EN, ["a", "q", cell, "x", "", cell, cell]])
    entry, = import_sheet(path).entries
    assert entry.paraphrases == entry.tags == entry.negatives == items


@pytest.mark.parametrize("suffix", [".xlsx", ".csv"])
def test_chinese_headers_any_order_bom_and_generated_ids(tmp_path, suffix):
    rows = [["答案", "标准问题", "标签"], ["登录查看。", "注销进度如何查询?", "进度"], ["", "", ""],
            ["重新注册。", " 注销后 能恢复吗? ", ""]]
    if suffix == ".csv":
        path = write_csv(tmp_path / "z.csv", rows, encoding="utf-8-sig")
        assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    else:
        path = write_xlsx(tmp_path / "z.xlsx", rows)
    entries = import_sheet(path).entries
    assert [e.question for e in entries] == ["注销进度如何查询?", "注销后 能恢复吗?"]
    assert [e.id for e in entries] == [generated_id("注销进度如何查询?"), generated_id("注销后 能恢复吗?")]
    assert all(e.id.startswith("q-") for e in entries)
    # Stable: spacing, width and invisible characters do not change the id.
    assert generated_id("注销后  能恢复吗？\u200b") == generated_id("注销后 能恢复吗?")
    assert [e.id for e in import_sheet(path).entries] == [e.id for e in entries]


def test_numbers_in_cells_become_text(tmp_path):
    path = write_xlsx(tmp_path / "n.xlsx", [EN, [7, "q", None, 12345, None, None, None], [8.0, "r", None, 1.5, None,
                                                                                          None, None]])
    assert [(e.id, e.answer) for e in import_sheet(path).entries] == [("7", "12345"), ("8", "1.5")]


def _gbk_csv(path: Path) -> Path:
    return write_csv(path, [EN, GOOD], encoding="gbk")


def _utf16_csv(path: Path) -> Path:
    return write_csv(path, [EN, GOOD], encoding="utf-16")


def _formula(path: Path) -> Path:
    return write_xlsx(path, [EN, GOOD, ["b", "问题二", None, '=B2&"!"', None, None, None]])


def _date(path: Path) -> Path:
    import datetime

    return write_xlsx(path, [EN, GOOD, ["b", datetime.date(2024, 1, 2), None, "x", None, None, None]])


def _error_value(path: Path) -> Path:
    return write_xlsx(path, [EN, GOOD, ["b", "问题二", None, "#N/A", None, None, None]])


def raw_file(data: bytes):
    def make(path: Path) -> Path:
        path.write_bytes(data)
        return path

    return make


@pytest.mark.parametrize("name, make, message", [
    ("merged.xlsx", lambda p: write_xlsx(p, [EN, GOOD, ["b", "问题二", None, None, None, None, None]], merge="D2:D3"),
     r"row 2, column D \(answer\): cells D2:D3 are merged; unmerge them.*\n  row 3, column D \(answer\): cells D2:D3"),
    ("merged-header.xlsx", lambda p: write_xlsx(p, [EN, GOOD], merge="A1:B1"), r"header cells A1:B1 are merged"),
    ("empty.xlsx", lambda p: write_xlsx(p, [ZH, GOOD, ["b", "问题二", None, "  ", None, None, None],
                                            [None, None, "只有相似问题", None, None, None, None]]),
     r"2 of 3 rows cannot be imported:\n  row 3, column D \(答案\): empty; every entry needs a question and an answer\n"
     r"  row 4, column B \(标准问题\): empty.*\n  row 4, column D \(答案\): empty"),
    ("dup.csv", lambda p: write_csv(p, [EN, GOOD, ["b", "问题二", "", "x", "", "", ""], GOOD]),
     r"row 4, column A \(id\): duplicate id 'a' \(also in row 2\)"),
    ("dup-question.csv", lambda p: write_csv(p, [["question", "answer"], ["同一个问题", "x"], ["同一个问题 ", "y"]]),
     r"row 3, column A \(question\): same question as row 2"),
    ("invisible-id.csv", lambda p: write_csv(p, [EN, GOOD, ["a\u200b", "问题二", "", "x", "", "", ""]]),
     r"row 3, column A \(id\): duplicate id 'a' \(also in row 2\)"),
    ("formula.xlsx", _formula, r"row 3, column D \(answer\): holds a formula \(=B2&\"!\"\), whose saved value may be "
                               r"out of date; replace it by its value"),
    ("date.xlsx", _date, r"row 3, column B \(question\): holds a date or time, not text"),
    ("error.xlsx", _error_value, r"row 3, column D \(answer\): holds an error value \(#N/A\)"),
    ("gbk.csv", _gbk_csv, r"not UTF-8 text \(byte 0x\w\w on line 2 is not valid UTF-8\)\. It reads as GBK/GB18030.*"
                          r"Save it as 'CSV UTF-8 \(comma delimited\)'"),
    ("utf16.csv", _utf16_csv, r"UTF-16 text .*save it as 'CSV UTF-8"),
    ("quote.csv", raw_file("id,question,answer\n1,q,x\n2,\"未闭合的引号,x\n3,r,y\n".encode()), r"row 3 \(up to line 4\): unexpected end of data; a quote"),
    ("header.csv", lambda p: write_csv(p, [["id", "问题", "答案"], ["a", "q", "x"]]),
     r"column B is headed '问题', which is not a corpus column; use id/编号, question/标准问题"),
    ("missing.csv", lambda p: write_csv(p, [["id", "question"], ["a", "q"]]),
     r"no 'answer' or '答案' column in the header \(found: id, question\)"),
    ("twice.csv", lambda p: write_csv(p, [["question", "标准问题", "answer"], ["a", "q", "x"]]),
     r"columns A and B are both 'question'"),
    ("noheader.csv", lambda p: write_csv(p, [["question", "answer", ""], ["a", "x", "多出来的"]]),
     r"row 2, column C: a value in a column without a header"),
    ("long.csv", lambda p: write_csv(p, [["question", "answer"], ["q", "长" * 25_000]]),
     r"row 2, column B \(answer\): 'answer' is 25,000 characters long; at most 20,000"),
    ("blank-row-1.csv", lambda p: write_csv(p, [[], EN, GOOD]), r"row 1 is empty; it must be the header"),
    ("header-only.xlsx", lambda p: write_xlsx(p, [EN]), r"no rows below the header"),
    ("garbage.xlsx", raw_file(b"not a zip file"), r"not an Excel workbook \(\.xlsx\) that can be read"),
    ("old.xls", raw_file(b"x"), r"not a spreadsheet this tool reads"),
])
def test_bad_sheets_are_refused_by_row_and_column_and_nothing_is_written(tmp_path, name, make, message):
    path = make(tmp_path / name)
    out = tmp_path / "out"
    with pytest.raises(CorpusError, match=message):
        import_to_corpus(path, out)
    assert not out.exists()
    assert not list(tmp_path.glob("*.rejects.csv"))


def test_skip_bad_writes_good_rows_and_rejects(tmp_path, capsys):
    path = write_xlsx(tmp_path / "faq.xlsx", [EN, GOOD, ["b", "问题二", None, None, None, None, None],
                                              ["c", "问题三", None, "答案三", None, None, None],
                                              ["d", "问题四", None, '=D4', None, None, None]])
    out = tmp_path / "corpus"
    assert main(["corpus", "import", str(path), "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("reading ") and "\nerror: " in captured.err and "Traceback" not in captured.err
    assert "row 3, column D (answer): empty" in captured.err and "row 5, column D (answer): holds a formula" in \
        captured.err and "Nothing was written" in captured.err
    assert not out.exists()

    assert main(["corpus", "import", str(path), "--out", str(out), "--skip-bad", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert f"wrote {out / 'faq.yaml'}: 2 entries" in captured.out
    assert f"2 rows rejected -> {tmp_path / 'faq.rejects.csv'}" in captured.out
    assert "skipped row 3, column D (answer): empty" in captured.err
    assert [e.id for e in load_corpus(out)] == ["a", "c"]
    rejects = list(csv.reader(io.StringIO((tmp_path / "faq.rejects.csv").read_text(encoding="utf-8-sig"))))
    assert rejects[0] == ["row", "problem", *EN]
    assert [(r[0], r[2], r[3]) for r in rejects[1:]] == [("3", "b", "问题二"), ("5", "d", "问题四")]
    assert rejects[1][1].startswith("column D (answer): empty") and rejects[2][5] == "=D4"

    # Importing again replaces the file with the same ids.
    assert main(["corpus", "import", str(path), "--out", str(out / "faq.yaml"), "--skip-bad", "--quiet"]) == 0
    assert "replaced" in capsys.readouterr().out


def test_skip_bad_with_no_good_row_writes_only_the_rejects(tmp_path):
    path = write_csv(tmp_path / "bad.csv", [["question", "answer"], ["q", ""]])
    with pytest.raises(CorpusError, match=r"none of its 1 rows can be imported; why is in .*bad\.rejects\.csv"):
        import_to_corpus(path, tmp_path / "out", skip_bad=True)
    assert (tmp_path / "bad.rejects.csv").is_file() and not (tmp_path / "out").exists()


def test_rejects_inside_the_corpus_folder_are_refused_and_export_makes_its_folder(tmp_path):
    path = write_csv(tmp_path / "faq.csv", [EN, GOOD, ["b", "", "", "x", "", "", ""]])
    with pytest.raises(CorpusError, match=r"the rejects file would be in the corpus folder .* pass --rejects"):
        import_to_corpus(path, tmp_path / "corpus", skip_bad=True, rejects=tmp_path / "corpus" / "r.csv")
    assert not (tmp_path / "corpus").exists()
    export_sheet(load_corpus(SEED_CORPUS), tmp_path / "new" / "folder" / "faq.xlsx")
    assert len(import_sheet(tmp_path / "new" / "folder" / "faq.xlsx").entries) == 6


def test_import_beside_a_file_with_the_same_ids_is_refused(tmp_path, capsys):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "seed.yaml").write_text((SEED_CORPUS / "seed.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    main(["corpus", "export", str(corpus), "--out", str(tmp_path / "faq.csv")])
    assert main(["corpus", "import", str(tmp_path / "faq.csv"), "--out", str(corpus), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"error: {corpus / 'seed.yaml'} already defines 'cancel-01', 'cancel-02'" in err
    assert f"to replace that file, pass --out {corpus / 'seed.yaml'}" in err
    assert sorted(p.name for p in corpus.iterdir()) == ["seed.yaml"]
    assert main(["corpus", "import", str(tmp_path / "faq.csv"), "--out", str(corpus / "seed.yaml"), "--quiet"]) == 0
    assert load_corpus(corpus) == load_corpus(SEED_CORPUS)


@pytest.mark.parametrize("args, message", [
    (["corpus", "export", "{tmp}/nope", "--out", "{tmp}/x.xlsx"], "error: {tmp}/nope: no such corpus file or folder"),
    (["corpus", "export", str(SEED_CORPUS), "--out", "{tmp}/x.txt"], "export writes an Excel workbook (.xlsx) or CSV"),
    (["corpus", "import", "{tmp}/missing.xlsx", "--out", "{tmp}/c"], "error: {tmp}/missing.xlsx: no such file"),
])
def test_cli_errors_are_messages(tmp_path, capsys, args, message):
    assert main([a.format(tmp=tmp_path) for a in args]) == 2
    err = capsys.readouterr().err
    assert message.format(tmp=tmp_path) in err and "Traceback" not in err


def test_a_corpus_folder_may_hold_sheets(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    export_sheet(load_corpus(SEED_CORPUS)[:3], folder / "a.xlsx", headers="zh")
    export_sheet(load_corpus(SEED_CORPUS)[3:], folder / "b.csv")
    (folder / "~$a.xlsx").write_bytes(b"Office lock file")
    (folder / ".backup").mkdir()
    (folder / ".backup" / "a.csv").write_text("old copy", encoding="utf-8")
    (folder / "labelled.jsonl").write_text('{"query": "注销进度", "faq_id": "cancel-02"}\n', encoding="utf-8")
    assert load_corpus(folder) == load_corpus(SEED_CORPUS)

    (folder / "inquiries.csv").write_text("id,text\n1,怎么注销\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"inquiries\.csv: column A is headed 'id'.*|inquiries\.csv: column B is "
                                          r"headed 'text', which is not a corpus column"):
        load_corpus(folder)
    (folder / "inquiries.csv").unlink()
    write_csv(folder / "c.csv", [EN, GOOD, ["b", "", "", "x", "", "", ""]])
    with pytest.raises(CorpusError, match=r"c\.csv: 1 of 2 rows cannot be imported:\n  row 3, column B \(question\)"):
        load_corpus(folder)
    (folder / "c.csv").unlink()
    (folder / "old.xls").write_bytes(b"x")
    with pytest.raises(CorpusError, match=r"old\.xls: \.xls spreadsheets are not read; save it as an Excel workbook"):
        load_corpus(folder)


def test_fifty_thousand_rows_import(tmp_path, capsys):
    workbook = openpyxl.Workbook(write_only=True)
    sheet = workbook.create_sheet("FAQ")
    sheet.append(["标准问题", "相似问题", "答案"])  # three columns keep the test well under 20 s
    for i in range(50_000):
        sheet.append([f"第{i}号证书怎么注销", f"证书{i}注销；注销{i}流程", f"在第{i}页办理。"])
    path = tmp_path / "big.xlsx"
    workbook.save(path)
    started = time.perf_counter()
    assert main(["corpus", "import", str(path), "--out", str(tmp_path / "c")]) == 0
    elapsed = time.perf_counter() - started
    captured = capsys.readouterr()
    assert "50000/50000" in captured.err  # the progress bar ran to the end
    assert "wrote" in captured.out and "50000 entries" in captured.out
    print(f"50,000-row .xlsx imported in {elapsed:.1f} s")
    assert elapsed < 60  # about 5 s on 2 busy cores; a quadratic step would blow through this
    text = (tmp_path / "c" / "big.yaml").read_text(encoding="utf-8")
    assert text.count("\n- id: q-") == 50_000 and "  paraphrases:\n  - 证书49999注销\n  - 注销49999流程\n" in text
