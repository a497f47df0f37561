import pytest

from retriever.normalize import normalize, strip_glued_pinyin


@pytest.mark.parametrize("raw, expected", [
    # Real strings from the seed FAQ.
    ("一級(jí)建造師注冊(cè)常見(jiàn)問(wèn)題解答--注銷注冊(cè)", "一级建造师注册常见问题解答--注销注册"),
    ("2、注銷手續(xù)進(jìn)度如何查詢?", "2、注销手续进度如何查询?"),
    ("已完成注銷的無(wú)法恢復(fù),需辦理重新注冊(cè)。", "已完成注销的无法恢复,需办理重新注册。"),
    ("“一級(jí)建造師執(zhí)業(yè)資格認(rèn)定(注銷手續(xù))”", "“一级建造师执业资格认定(注销手续)”"),
    ("使用“國(guó)家政務(wù)服務(wù)平臺(tái)”APP掃描", "使用“国家政务服务平台”APP扫描"),
    # Full-width forms become half-width.
    ("注销进度？（ＡＰＰ）　１２３", "注销进度?(APP) 123"),
    # Whitespace runs collapse; ends are trimmed.
    ("  注销 \t\n 进度  ", "注销 进度"),
])
def test_normalize_seed_and_width(raw, expected):
    assert normalize(raw) == expected


@pytest.mark.parametrize("raw, expected", [
    ("級(jí)", "級"),
    ("綠(lǜ)", "綠"),
    # Untoned or non-pinyin brackets are content, not readings.
    ("認定(注銷手續)", "認定(注銷手續)"),
    ("國家(APP)", "國家(APP)"),
    ("級(ji)", "級(ji)"),
    ("查看第2個表格(2)", "查看第2個表格(2)"),
    # Only right after a Chinese character.
    ("abc(jí)", "abc(jí)"),
    ("級 (jí)", "級 (jí)"),
])
def test_strip_glued_pinyin_only_after_cjk_with_tone_marks(raw, expected):
    assert strip_glued_pinyin(raw) == expected


def test_full_width_brackets_around_pinyin_are_stripped_too():
    assert normalize("級（jí）建造師") == "级建造师"


def test_normalize_is_idempotent_on_seed_text():
    from conftest import SEED_RAW

    for line in SEED_RAW.read_text(encoding="utf-8").splitlines():
        once = normalize(line)
        assert normalize(once) == once
        assert "(jí)" not in once and "(cè)" not in once


@pytest.mark.parametrize("raw, expected", [
    ("注销\u200b进度", "注销进度"),  # zero-width space
    ("\ufeff注销进度", "注销进度"),  # BOM pasted from a file
    ("注\u200c销\u200d进\u2060度", "注销进度"),  # zero-width non-joiner, joiner, word joiner
    ("建造\u00ad师", "建造师"),  # soft hyphen
    ("\u202e度进销注\u202c", "度进销注"),  # bidi override: removed, not applied
    ("\u2066a1\u2069 \u200e\u200f", "a1"),  # isolates and marks
    ("\u200b \u200b", ""),  # nothing left: an empty question
])
def test_invisible_characters_are_removed(raw, expected):
    assert normalize(raw) == expected
    assert normalize(expected) == expected
