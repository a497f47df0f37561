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
    with pytest.raises(CorpusError, match=r"'paraphrases' 第 1 项有多行"):
        export_sheet([entry], tmp_path / "x.xlsx")
    assert not (tmp_path / "x.xlsx").exists()


@pytest.mark.parametrize("cell, items", [
    ("一\n二\n\n三", ("一", "二", "三")),  # one a line; blank lines dropped
    ("一；二;三", ("一", "二", "三")),  # full-width and ASCII semicolons
    ("一；二；", ("一", "二")),
    ("一\n二；三", ("一", "二；三")),  # with line breaks, a semicolon is text
    (" 一 ", ("一",)),
    ("一|二｜三", ("一", "二", "三")),  # ASCII and full-width bars
    ("一、二、三", ("一", "二", "三")),  # the enumeration comma, when no part reads as a question
    ("一；二、三", ("一", "二、三")),  # another separator first: the comma is text
])
def test_list_cells_split_on_lines_or_separators(tmp_path, cell, items):
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
     r"第 2 行，D（answer）列：单元格 D2:D3 是合并的；请取消合并.*\n  第 3 行，D（answer）列：单元格 D2:D3"),
    ("merged-header.xlsx", lambda p: write_xlsx(p, [EN, GOOD], merge="A1:B1"), r"表头单元格 A1:B1 是合并的"),
    ("empty.xlsx", lambda p: write_xlsx(p, [ZH, GOOD, ["b", "问题二", None, "  ", None, None, None],
                                            [None, None, "只有相似问题", None, None, None, None]]),
     r"3 行中有 2 行不能导入：\n  第 3 行，D（答案）列：为空；每个条目都要有标准问题和答案\n"
     r"  第 4 行，B（标准问题）列：为空.*\n  第 4 行，D（答案）列：为空"),
    ("dup.csv", lambda p: write_csv(p, [EN, GOOD, ["b", "问题二", "", "x", "", "", ""], GOOD]),
     r"第 4 行，A（id）列：编号「a」重复（第 2 行也是）"),
    ("dup-question.csv", lambda p: write_csv(p, [["question", "answer"], ["同一个问题", "x"], ["同一个问题 ", "y"]]),
     r"第 3 行，A（question）列：与第 2 行的标准问题相同"),
    ("invisible-id.csv", lambda p: write_csv(p, [EN, GOOD, ["a\u200b", "问题二", "", "x", "", "", ""]]),
     r"第 3 行，A（id）列：编号「a」重复（第 2 行也是）"),
    ("formula.xlsx", _formula, r"第 3 行，D（answer）列：是公式（=B2&\"!\"），保存的值可能已过时；请换成它的值"),
    ("date.xlsx", _date, r"第 3 行，B（question）列：是日期或时间，不是文字"),
    ("error.xlsx", _error_value, r"第 3 行，D（answer）列：是错误值（#N/A）"),
    ("gbk.csv", _gbk_csv, r"不是 UTF-8 文本（第 2 行的字节 0x\w\w 不是有效的 UTF-8）。看起来是 GBK/GB18030.*"
                          r"请另存为“CSV UTF-8（逗号分隔）”"),
    ("utf16.csv", _utf16_csv, r"是 UTF-16 文本.*请另存为“CSV UTF-8"),
    ("quote.csv", raw_file("id,question,answer\n1,q,x\n2,\"未闭合的引号,x\n3,r,y\n".encode()),
     r"第 3 行（到第 4 行文本）：unexpected end of data；单元格开头的引号"),
    ("header.csv", lambda p: write_csv(p, [["question", "问句", "问题答复", "答案"], ["a", "q", "x", "y"]]),
     r"B 列「问句」、C 列「问题答复」 不是语料列（像是拼写不同的内容列，为免内容丢失不予跳过）；请改用这些表头："
     r"编号/id、标准问题/question"),
    ("missing.csv", lambda p: write_csv(p, [["id", "question", "序号"], ["a", "q", "1"]]),
     r"第 1 行的表头缺少 答案（answer） 列；不认识的表头：C「序号」"),
    ("twice.csv", lambda p: write_csv(p, [["question", "标准问题", "answer"], ["a", "q", "x"]]),
     r"A 列和 B 列都是「question」列"),
    ("noheader.csv", lambda p: write_csv(p, [["question", "answer", ""], ["a", "x", "多出来的"]]),
     r"第 2 行，C列：这一列没有表头却有内容"),
    ("long.csv", lambda p: write_csv(p, [["question", "answer"], ["q", "长" * 25_000]]),
     r"第 2 行，B（answer）列：'answer' is 25,000 characters long; at most 20,000"),
    ("title-only.csv", lambda p: write_csv(p, [["2024 年常见问题"], ["注销怎么办", "登录办理"]]),
     r"前 10 行里没有表头；第 1 行只有「2024 年常见问题」，像是标题"),
    ("header-only.xlsx", lambda p: write_xlsx(p, [EN]), r"表头下面没有数据行"),
    ("garbage.xlsx", raw_file(b"not a zip file"), r"不是可以读取的 Excel 工作簿（\.xlsx）"),
    ("old.xls", raw_file(b"x"), r"不是本工具能读的表格"),
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
    assert "第 3 行，D（answer）列：为空" in captured.err and "第 5 行，D（answer）列：是公式" in \
        captured.err and "什么都没有写入" in captured.err
    assert not out.exists()

    assert main(["corpus", "import", str(path), "--out", str(out), "--skip-bad", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert f"wrote {out / 'faq.yaml'}: 2 entries" in captured.out
    assert f"2 rows rejected -> {tmp_path / 'faq.rejects.csv'}" in captured.out
    assert "跳过 第 3 行，D（answer）列：为空" in captured.err
    assert [e.id for e in load_corpus(out)] == ["a", "c"]
    rejects = list(csv.reader(io.StringIO((tmp_path / "faq.rejects.csv").read_text(encoding="utf-8-sig"))))
    assert rejects[0] == ["行号", "原因", *EN]
    assert [(r[0], r[2], r[3]) for r in rejects[1:]] == [("3", "b", "问题二"), ("5", "d", "问题四")]
    assert rejects[1][1].startswith("D（answer） 列：为空") and rejects[2][5] == "=D4"

    # Importing again replaces the file with the same ids.
    assert main(["corpus", "import", str(path), "--out", str(out / "faq.yaml"), "--skip-bad", "--quiet"]) == 0
    assert "replaced" in capsys.readouterr().out


def test_skip_bad_with_no_good_row_writes_only_the_rejects(tmp_path):
    path = write_csv(tmp_path / "bad.csv", [["question", "answer"], ["q", ""]])
    with pytest.raises(CorpusError, match=r"1 行都不能导入，原因见 .*bad\.rejects\.csv"):
        import_to_corpus(path, tmp_path / "out", skip_bad=True)
    assert (tmp_path / "bad.rejects.csv").is_file() and not (tmp_path / "out").exists()


def test_rejects_inside_the_corpus_folder_are_refused_and_export_makes_its_folder(tmp_path):
    path = write_csv(tmp_path / "faq.csv", [EN, GOOD, ["b", "", "", "x", "", "", ""]])
    with pytest.raises(CorpusError, match=r"退回文件会落在语料文件夹 .*请用 --rejects"):
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
    (["corpus", "export", str(SEED_CORPUS), "--out", "{tmp}/x.txt"], "导出只能写 Excel 工作簿（.xlsx）或 CSV"),
    (["corpus", "import", "{tmp}/missing.xlsx", "--out", "{tmp}/c"], "error: {tmp}/missing.xlsx：文件不存在"),
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
    with pytest.raises(CorpusError, match=r"inquiries\.csv：第 1 行的表头缺少 标准问题（question）、答案（answer） 列；"
                                          r"不认识的表头：B「text」"):
        load_corpus(folder)
    (folder / "inquiries.csv").unlink()
    write_csv(folder / "c.csv", [EN, GOOD, ["b", "", "", "x", "", "", ""]])
    with pytest.raises(CorpusError, match=r"c\.csv：2 行中有 1 行不能导入：\n  第 3 行，B（question）列"):
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


# --- What editors' real sheets hold: links, 、-lists, several worksheets, title rows, extra columns ---

def test_hyperlinks_are_kept_as_markdown_links(tmp_path):
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(["标准问题", "答案", "相似问题"])
    sheet.append(["操作手册在哪里下载?", "点击查看", None])
    sheet["B2"].hyperlink = "https://example.org/手册 v2.pdf"
    sheet.append(["官网是哪个?", "https://example.org/", None])
    sheet["B3"].hyperlink = "https://example.org/"
    sheet.append(["表格在哪里?", '=HYPERLINK("https://example.org/t.xlsx","下载表格")', None])
    sheet.append(["联系方式?", '=hyperlink("https://example.org/c")', None])
    workbook.save(tmp_path / "links.xlsx")
    answers = [e.answer for e in import_sheet(tmp_path / "links.xlsx").entries]
    assert answers == ["[点击查看](https://example.org/%E6%89%8B%E5%86%8C%20v2.pdf)", "https://example.org/",
                       "[下载表格](https://example.org/t.xlsx)", "https://example.org/c"]


@pytest.mark.parametrize("cell, words, items, kept_whole", [
    ("社保、医保怎么转", False, ["社保、医保怎么转"], True),  # one question naming two things
    ("北京、上海的证书怎么注销", False, ["北京、上海的证书怎么注销"], True),
    ("怎么注销、注销要多久", False, ["怎么注销", "注销要多久"], False),  # every part a question
    ("注销流程、注销入口、注销材料", False, ["注销流程", "注销入口", "注销材料"], False),  # keywords
    ("流程、在线办理怎么弄", True, ["流程", "在线办理怎么弄"], False),  # tags are words: always split
    ("社保、医保怎么转；医保怎么转", False, ["社保、医保怎么转", "医保怎么转"], False),  # ；first: 、 is text
])
def test_enumeration_comma_splits_only_alike_parts(cell, words, items, kept_whole):
    from retriever.corpus.cells import split_list_cell

    assert split_list_cell(cell, words=words) == (items, kept_whole)


def test_a_kept_enumeration_comma_is_reported_with_its_row(tmp_path, capsys):
    path = write_csv(tmp_path / "p.csv", [["标准问题", "相似问题", "答案"], ["社保如何转移?", "社保、医保怎么转", "线上办理。"],
                                          ["注销流程?", "怎么注销、注销要多久", "登录办理。"]])
    result = import_sheet(path)
    assert [e.paraphrases for e in result.entries] == [("社保、医保怎么转",), ("怎么注销", "注销要多久")]
    assert result.warnings == ("第 2 行，B（相似问题）列：按一句保留（「、」前后不都像问题）：社保、医保怎么转；若是多条，请换行或用；分隔",)
    assert main(["corpus", "import", str(path), "--out", str(tmp_path / "c"), "--quiet"]) == 0
    assert "注意：第 2 行，B（相似问题）列：按一句保留" in capsys.readouterr().err
    # Export writes it back so that it stays one paraphrase.
    export_sheet(list(result.entries), tmp_path / "back.csv")
    assert [e.paraphrases for e in import_sheet(tmp_path / "back.csv").entries] == [e.paraphrases for e in
                                                                                    result.entries]


def _workbook(path: Path, sheets: dict[str, list[list]]) -> Path:
    workbook = openpyxl.Workbook()
    workbook.remove(workbook.active)
    for name, rows in sheets.items():
        sheet = workbook.create_sheet(name)
        for row in rows:
            sheet.append(row)
    workbook.save(path)
    return path


def test_every_worksheet_is_read_and_one_can_be_chosen(tmp_path, capsys):
    path = _workbook(tmp_path / "multi.xlsx", {
        "说明": [["本表由政务服务中心维护，每月更新。"]],
        "注销": [["标准问题", "答案"], ["注销怎么办?", "登录办理。"]],
        "进度": [["标准问题", "答案"], ["进度怎么查?", "在系统里查看。"], ["进度怎么查?", "重复"]],
    })
    result = import_sheet(path, sheet=None)
    assert [e.question for e in result.entries] == ["注销怎么办?", "进度怎么查?"]
    assert [s.name for s in result.sheets] == ["注销", "进度"]
    assert result.warnings[0].startswith("工作表「说明」没有表头，未导入")
    assert str(result.problems()[0]) == "工作表「进度」第 3 行，A（标准问题）列：与工作表「进度」第 2 行的标准问题相同" \
                                        f"（都得到编号「{generated_id('进度怎么查?')}」）；请合并这两行或给它们编号"
    rejects = tmp_path / "r.csv"
    assert main(["corpus", "import", str(path), "--out", str(tmp_path / "c"), "--skip-bad", "--rejects",
                 str(rejects), "--quiet"]) == 0
    assert "工作表「说明」没有表头" in capsys.readouterr().err
    assert rejects.read_text(encoding="utf-8-sig").splitlines()[:2] == [
        "工作表,行号,原因,标准问题,答案", f"进度,3,A（标准问题） 列：与工作表「进度」第 2 行的标准问题相同（都得到编号"
                                   f"「{generated_id('进度怎么查?')}」）；请合并这两行或给它们编号,进度怎么查?,重复"]

    chosen = import_sheet(path, sheet="注销")
    assert [e.question for e in chosen.entries] == ["注销怎么办?"]
    assert chosen.warnings == ("只导入工作表「注销」，未读取：「说明」、「进度」",)
    assert main(["corpus", "import", str(path), "--out", str(tmp_path / "d"), "--sheet", "注销", "--quiet"]) == 0
    assert "注意：只导入工作表「注销」，未读取：「说明」、「进度」" in capsys.readouterr().err
    assert [e.question for e in load_corpus(tmp_path / "d")] == ["注销怎么办?"]
    with pytest.raises(CorpusError, match="没有名为「办理」的工作表；工作表有：「说明」、「注销」、「进度」"):
        import_sheet(path, sheet="办理")
    with pytest.raises(CorpusError, match="CSV 文件只有一个表，不能用 --sheet"):
        import_sheet(write_csv(tmp_path / "x.csv", [EN, GOOD]), sheet="FAQ")


def test_a_title_row_above_the_header_is_skipped_and_extra_columns_named(tmp_path):
    path = write_xlsx(tmp_path / "title.xlsx", [
        ["2024 年一级建造师注册常见问题"],
        ["序号", "标准问题", "相似问题", "答案", "备注", "发布日期"],
        [1, "注销怎么办?", "怎么注销", "登录办理。", "内部", "2024-01-02"],
        [2, "进度怎么查?", None, None, None, None],
    ], merge="A1:F1")
    result = import_sheet(path)
    assert [(e.question, e.paraphrases) for e in result.entries] == [("注销怎么办?", ("怎么注销",))]
    assert result.sheets[0].header_row == 2
    assert result.warnings == (
        f"{path}：第 1 行在表头（第 2 行）之上，当作标题跳过：「2024 年一级建造师注册常见问题」",
        f"{path}：这些列不是语料列，内容未导入：A（序号）、E（备注）、F（发布日期）")
    assert [str(p) for p in result.problems()] == ["第 4 行，D（答案）列：为空；每个条目都要有标准问题和答案"]


LIBREOFFICE_SHEET = """<?xml version="1.0" encoding="UTF-8"?>
<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"
 xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheetData>
<row r="1"><c r="A1" t="s"><v>0</v></c></row>
<row r="2"><c r="A2" t="s"><v>1</v></c><c r="B2" t="inlineStr"><is><t>答案</t></is></c><c r="C2" t="s"><v>2</v></c></row>
<row r="3"><c r="A3" t="inlineStr"><is><t>注销怎么办?</t></is></c><c r="B3" t="s"><v>3</v></c>
<c r="C3" t="inlineStr"><is><t>注销流程、注销入口</t></is></c></row>
<row r="4"><c r="A4" t="s"><v>4</v></c><c r="B4" t="n"><v>12345</v></c></row>
</sheetData><mergeCells count="1"><mergeCell ref="A1:C1"/></mergeCells>
<hyperlinks><hyperlink ref="B3" r:id="rId1"/></hyperlinks></worksheet>"""
LIBREOFFICE_STRINGS = ["一级建造师常见问题（2024）", "标准问题", "相似问题", "点击查看", "电话是多少?"]


def libreoffice_like_xlsx(path: Path) -> Path:
    """A workbook written the way LibreOffice Calc (and other tools) write one, not as openpyxl does: shared and
    inline strings, a merged title row, a hyperlink in the sheet's relationships, no styles part."""
    import zipfile

    ns = "http://schemas.openxmlformats.org/"
    strings = "".join(f"<si><t>{s}</t></si>" for s in LIBREOFFICE_STRINGS)
    parts = {
        "[Content_Types].xml": f'<?xml version="1.0" encoding="UTF-8"?><Types xmlns="{ns}package/2006/content-types">'
        f'<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        f'<Default Extension="xml" ContentType="application/xml"/>'
        f'<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.'
        f'spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/'
        f'vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/><Override PartName="/xl/sharedStrings.xml"'
        f' ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/></Types>',
        "_rels/.rels": f'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{ns}package/2006/relationships">'
        f'<Relationship Id="rId1" Type="{ns}officeDocument/2006/relationships/officeDocument" '
        f'Target="xl/workbook.xml"/></Relationships>',
        "xl/workbook.xml": f'<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="{ns}spreadsheetml/2006/main" '
        f'xmlns:r="{ns}officeDocument/2006/relationships"><sheets><sheet name="工作表1" sheetId="1" r:id="rId1"/>'
        f'</sheets></workbook>',
        "xl/_rels/workbook.xml.rels": f'<?xml version="1.0" encoding="UTF-8"?><Relationships '
        f'xmlns="{ns}package/2006/relationships"><Relationship Id="rId1" Type="{ns}officeDocument/2006/relationships/'
        f'worksheet" Target="worksheets/sheet1.xml"/><Relationship Id="rId2" Type="{ns}officeDocument/2006/'
        f'relationships/sharedStrings" Target="sharedStrings.xml"/></Relationships>',
        "xl/sharedStrings.xml": f'<?xml version="1.0" encoding="UTF-8"?><sst xmlns="{ns}spreadsheetml/2006/main" '
        f'count="{len(LIBREOFFICE_STRINGS)}" uniqueCount="{len(LIBREOFFICE_STRINGS)}">{strings}</sst>',
        "xl/worksheets/sheet1.xml": LIBREOFFICE_SHEET,
        "xl/worksheets/_rels/sheet1.xml.rels": f'<?xml version="1.0" encoding="UTF-8"?><Relationships '
        f'xmlns="{ns}package/2006/relationships"><Relationship Id="rId1" Type="{ns}officeDocument/2006/'
        f'relationships/hyperlink" Target="https://example.org/zhuxiao" TargetMode="External"/></Relationships>',
    }
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in parts.items():
            archive.writestr(name, text)
    return path


def test_a_libreoffice_style_workbook_imports(tmp_path):
    result = import_sheet(libreoffice_like_xlsx(tmp_path / "calc.xlsx"))
    assert [(e.question, e.answer, e.paraphrases) for e in result.entries] == [
        ("注销怎么办?", "[点击查看](https://example.org/zhuxiao)", ("注销流程", "注销入口")),
        ("电话是多少?", "12345", ())]
    assert result.warnings == (f"{tmp_path / 'calc.xlsx'}：第 1 行在表头（第 2 行）之上，当作标题跳过：「一级建造师常见问题（2024）」",)


def test_a_corpus_folder_workbook_logs_what_it_skipped(tmp_path, caplog):
    folder = tmp_path / "corpus"
    folder.mkdir()
    _workbook(folder / "faq.xlsx", {"说明": [["每月更新"]], "FAQ": [["序号", "标准问题", "答案"], [1, "注销怎么办?", "登录办理。"]]})
    with caplog.at_level("WARNING", logger="retriever.corpus.sheets"):
        assert [e.question for e in load_corpus(folder)] == ["注销怎么办?"]
    assert "工作表「说明」没有表头，未导入" in caplog.text and "内容未导入：A（序号）" in caplog.text
