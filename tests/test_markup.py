"""The answers' Markdown subset: its structure, the plain text for MCP / Dify / the API (URLs kept), and
hostile input that must stay text."""
import pytest

from retriever.markup import (
    Block,
    Bold,
    Link,
    parse_blocks,
    parse_inline,
    plain_text,
    safe_url,
)
from retriever.results import Hit

FORM = "https://www.example.gov/form?id=1&lang=zh"


@pytest.mark.parametrize("answer, text", [
    (f"请填写[申请表]({FORM})后提交。", f"请填写申请表（{FORM}）后提交。"),
    ("咨询电话[12345](tel:12345)", "咨询电话12345"),  # the label is the number: said once
    ("来信请寄[邮箱](mailto:help@example.gov)", "来信请寄邮箱（help@example.gov）"),
    ("见 [https://a.gov/x](https://a.gov/x)", "见 https://a.gov/x"),
    ("**注意**：材料须为原件。", "注意：材料须为原件。"),
    ("第一段。\n\n第二段，\n换行保留。", "第一段。\n\n第二段，\n换行保留。"),
    ("办理步骤：\n1. 登录\n2. 填写[申请表](https://a.gov/f)\n3、提交", "办理步骤：\n1. 登录\n2. 填写申请表（https://a.gov/f）\n3、提交"),
    ("- 身份证\n* 户口本", "- 身份证\n* 户口本"),
    ("没有任何标记的答案", "没有任何标记的答案"),
    (r"[办事\[2027\]指南](https://a.gov/g)", "办事[2027]指南（https://a.gov/g）"),  # as spreadsheet import escapes
    ("5 ** 2 是乘方", "5 ** 2 是乘方"),  # a lone marker stays
])
def test_plain_text_keeps_the_urls_and_drops_the_markup(answer, text):
    assert plain_text(answer) == text


@pytest.mark.parametrize("answer", [
    "见[续签说明](javascript:alert(1))",
    "见[续签说明](javascript:window.__pwned=1)",
    "[x](&#106;avascript:alert(1))",
    "[x](JaVaScRiPt:alert)",
    "[x](data:text/html;base64,PHNjcmlwdD4=)",
    "[x](vbscript:msgbox)",
    "[x](//evil.example/x)",
    "[x](/relative/path)",
    "[x](https:evil)",
    "<script>alert(1)</script>",
    "<img src=x onerror=\"alert(1)\">",
    "&lt;script&gt;alert(1)&lt;/script&gt;",
    "<a href=\"javascript:alert(1)\">点我</a>",
])
def test_hostile_input_stays_text(answer):
    blocks = parse_blocks(answer)
    links = [node for block in blocks for item in block.items for node in item if isinstance(node, Link)]
    assert links == []
    assert plain_text(answer) == answer  # shown exactly as typed: nothing decoded, nothing dropped


@pytest.mark.parametrize("url, safe", [
    ("https://a.gov/x", True), ("http://a.gov", True), ("mailto:a@b.cn", True), ("tel:12345", True),
    ("HTTPS://A.GOV/", True), ("javascript:alert(1)", False), ("https://a.gov/\"onmouseover=x", False),
    ("http:///nohost", False), ("ftp://a.gov/f", False), ("", False),
])
def test_only_absolute_http_mailto_tel_urls_are_links(url, safe):
    assert (safe_url(url) is not None) is safe


def test_the_structure_is_paragraphs_lists_links_and_bold():
    answer = "**注意**：请先阅读[指南](https://a.gov/g)。\n\n材料：\n- 身份证\n- **户口本**原件\n1. 登录\n尾声"
    assert parse_blocks(answer) == (
        Block("p", ((Bold(("注意",)), "：请先阅读", Link("指南", "https://a.gov/g"), "。"),)),
        Block("p", (("材料：",),)),
        Block("ul", (("身份证",), (Bold(("户口本",)), "原件")), ("-", "-")),
        Block("ol", (("登录",),), ("1.",)),
        Block("p", (("尾声",),)),
    )


def test_bold_and_links_nest_and_brackets_escape():
    assert parse_inline("**见[表](https://a.gov/t)**") == (Bold(("见", Link("表", "https://a.gov/t"))),)
    assert parse_inline(r"\*\*不是粗体\*\*") == ("**不是粗体**",)


def test_every_hit_carries_its_plain_text_beside_the_answer():
    hit = Hit("a", "问", f"请填写[申请表]({FORM})", 0.9, "问", "question")
    shaped = hit.to_dict()
    assert shaped["answer"] == f"请填写[申请表]({FORM})"
    assert shaped["answer_text"] == f"请填写申请表（{FORM}）"


def test_a_long_answer_converts_in_linear_time():
    import time

    answer = ("[" * 5000 + "a" + "](" * 5000 + "x" + ")" * 5000) * 2  # pathological brackets, 40,000 characters
    started = time.perf_counter()
    assert plain_text(answer) == answer  # no link among them: all text
    assert time.perf_counter() - started < 2.0
