"""Personal data found and masked (real-shaped numbers with valid check digits), near-misses left alone."""
import pytest

from retriever.config import ServiceConfig
from retriever.errors import RetrieverError
from retriever.privacy import (NO_MASKING, Masker, id_check_digit, is_bank_card, is_resident_id, luhn_valid,
                               masker_for)

MASKER = Masker()


@pytest.mark.parametrize("text, masked, kind", [
    # resident IDs: province, birth date and the ISO 7064 MOD 11-2 check digit all hold
    ("我身份证号 11010519491231002X 的注册怎么注销", "我身份证号 110105********002X 的注册怎么注销", "resident_id"),
    ("身份证440308199003073310", "身份证440308********3310", "resident_id"),
    ("ID:32010619851120471 3", None, None),  # split in the wrong place: not an ID shape
    ("证件号 320106 19851120 4713 丢了", "证件号 320106 ******** 4713 丢了", "resident_id"),
    ("身份证11010519491231002x", "身份证110105********002x", "resident_id"),
    ("老身份证110105491231002补办", "老身份证110105******002补办", "resident_id"),
    ("身份证５１０１０７２００００２２９０６２７", "身份证５１０１０７********０６２７", "resident_id"),  # full width
    # mobile numbers, with country code, spaces, dashes
    ("手机13812345678收不到验证码", "手机138****5678收不到验证码", "mobile"),
    ("请回电+86 138-1234-5678", "请回电+86 138-****-5678", "mobile"),
    ("8619912345678", "86199****5678", "mobile"),
    ("0086 15912345678", "0086 159****5678", "mobile"),
    ("电话 138 1234 5678", "电话 138 **** 5678", "mobile"),
    # landlines: area code + number
    ("家里电话010-12345678", "家里电话010-****5678", "landline"),
    ("0755 1234 5678", "0755 **** 5678", "landline"),
    ("（0755）82345678", "（0755）****5678", "landline"),
    ("021-6234567", "021-***4567", "landline"),
    # bank cards: an issuer prefix and the Luhn check
    ("卡号6222 0212 3456 7890 128被冻结", "卡号6222 **** **** ***0 128被冻结", "bank_card"),
    ("银行卡6217000000123456786", "银行卡6217***********6786", "bank_card"),
    ("4532 0151 1283 0366", "4532 **** **** 0366", "bank_card"),
    ("5425-2334-3010-9903", "5425-****-****-9903", "bank_card"),
    # e-mail addresses
    ("邮箱zhangsan@example.com的通知", "邮箱z***@example.com的通知", "email"),
    ("wang.wu+faq@mail.gov.cn", "w***@mail.gov.cn", "email"),
])
def test_personal_data_is_masked_keeping_a_little_for_people(text, masked, kind):
    result = MASKER.mask(text)
    assert result.text == (masked or text)
    assert result.kinds == ((kind,) if kind else ())


@pytest.mark.parametrize("text", [
    "订单号2024123100012345怎么查",   # no issuer prefix, fails Luhn
    "订单号2024123100012341",         # passes Luhn, but date-led: no card starts 2024
    "订单号6222021234567891",         # card-like prefix, fails Luhn
    "运单号7801234567890123456",      # 19 digits, no issuer prefix
    "身份证11010519491231002Y",       # not a check character
    "身份证110105194912310021",       # wrong check digit (X expected)
    "身份证990105194912310021",       # no such province
    "身份证110105194913310023",       # month 13
    "2024年12月31日前办理", "20241231", "2024-12-31", "2024/12/31 10:30",
    "¥1,299.00", "价格 1299.00 元", "12,345,678.90元", "第2024号文件", "共 3 次",
    "邮编100000", "400-123-4567 是热线", "12345678901", "10086",
    "QQ群 123456789", "version 2.13.0", "user at example dot com",
])
def test_near_misses_are_not_masked(text):
    assert MASKER.mask(text).text == text and not MASKER.mask(text).found


def test_the_check_digits_are_the_published_algorithms():
    assert id_check_digit("11010519491231002") == "X"  # the GB 11643 example
    assert is_resident_id("11010519491231002X") and not is_resident_id("110105194912310029")
    assert luhn_valid("4532015112830366") and not luhn_valid("4532015112830367")
    assert is_bank_card("6217000000123456786") and not is_bank_card("2024123100012341")


def test_several_kinds_in_one_text_are_all_masked():
    result = MASKER.mask("我叫张三，身份证11010519491231002X，手机13812345678，卡号6217000000123456786")
    assert result.text == "我叫张三，身份证110105********002X，手机138****5678，卡号6217***********6786"
    assert set(result.kinds) == {"resident_id", "mobile", "bank_card"}


def test_a_query_that_is_mostly_personal_data_is_flagged():
    assert MASKER.mask("13812345678").mostly_personal
    assert MASKER.mask("11010519491231002X 13812345678").mostly_personal
    long_question = "社保卡丢失以后应该怎么挂失和补办，需要带什么材料，可以网上办理吗？电话13812345678"
    result = MASKER.mask(long_question)
    assert result.found and not result.mostly_personal and 0 < result.share < 0.5
    assert not MASKER.mask("怎么注销社保").mostly_personal


def test_extra_patterns_from_the_operator_are_masked_whole():
    masker = Masker([r"工号\d{6}", r"(?i)case-\d+"])
    assert masker("我的工号123456，CASE-77") == "我的********，*******"


def test_masking_turned_off_passes_text_through():
    assert NO_MASKING("手机13812345678") == "手机13812345678"
    assert masker_for(ServiceConfig(pii_masking=False))("13812345678") == "13812345678"


def test_masking_twice_changes_nothing():
    once = MASKER("身份证11010519491231002X 手机13812345678 卡6217000000123456786 a.b@example.com")
    assert MASKER(once) == once


def test_settings_from_the_environment(tmp_path):
    patterns = tmp_path / "pii.txt"
    patterns.write_text("# one per line\n工号\\d{6}\n\n学号\\d{8}\n", encoding="utf-8")
    config = ServiceConfig.from_env({"RETRIEVER_PII_PATTERNS": r"case-\d+",
                                     "RETRIEVER_PII_PATTERNS_FILE": str(patterns),
                                     "RETRIEVER_PII_MASKING": "on", "RETRIEVER_LOG_RETENTION_DAYS": "30"})
    assert config.pii_patterns == (r"case-\d+", r"工号\d{6}", r"学号\d{8}") and config.pii_masking
    assert config.log_retention_days == 30
    assert not ServiceConfig.from_env({"RETRIEVER_PII_MASKING": "off"}).pii_masking
    patterns.write_text("工号(\\d{6}\n", encoding="utf-8")
    with pytest.raises(RetrieverError, match=r"pii.txt:1: '工号\(\\\\d\{6\}' is not a regular expression"):
        ServiceConfig.from_env({"RETRIEVER_PII_PATTERNS_FILE": str(patterns)})
    with pytest.raises(RetrieverError, match="RETRIEVER_PII_MASKING='maybe' must be on or off"):
        ServiceConfig.from_env({"RETRIEVER_PII_MASKING": "maybe"})


def test_serve_records_into_a_data_folder_inside_the_index_by_default(tmp_path):
    config = ServiceConfig.from_env({}, index_root=tmp_path / "index")
    assert config.unmatched_log == str(tmp_path / "index" / "data" / "unmatched.jsonl")
    assert config.feedback_log == str(tmp_path / "index" / "data" / "feedback.jsonl")
    moved = ServiceConfig.from_env({"RETRIEVER_DATA_DIR": str(tmp_path / "d"), "RETRIEVER_FEEDBACK_LOG": "off"},
                                   index_root=tmp_path / "index")
    assert moved.unmatched_log == str(tmp_path / "d" / "unmatched.jsonl") and moved.feedback_log is None
    assert ServiceConfig.from_env({}).unmatched_log is None  # without an index (tests, create_app): off
    # workbench sessions beside the logs, not a new folder in /tmp at every start
    assert config.session_dir == str(tmp_path / "index" / "data" / "sessions")
    assert moved.session_dir == str(tmp_path / "d" / "sessions")
