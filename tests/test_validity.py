"""Validity dates: entries outside their dates are never answered, the switch happens on the date in a
running app without a rebuild, answer versions take over on their date, twins with separate periods are
no conflict, and the workbench lists what changes soon. Every date comes from a clock the test sets."""
import datetime as dt
import shutil
import textwrap

import pytest
from conftest import SEED_CORPUS

from retriever.config import ServiceConfig
from retriever.corpus import (
    EntryError,
    check_identical,
    corpus_yaml,
    find_identical,
    load_corpus,
    parse_entry,
)
from retriever.corpus.conflicts import ConflictError
from retriever.http import create_app
from retriever.pipeline import build_from_corpus
from retriever.search import Searcher
from retriever.validity import (
    Period,
    ValiditySchedule,
    clock_for,
    fixed_clock,
    time_zone,
    upcoming_changes,
)

TOKEN = "validity-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SUBSIDY_QUESTIONS = ["继续教育补贴多少钱", "建造师继续教育能补贴多少", "继续教育补贴怎么算"]
DATED = textwrap.dedent("""\
    entries:
      - id: subsidy-2026
        category: 补贴
        question: 一级建造师继续教育补贴标准是多少?
        paraphrases: [继续教育补贴多少钱, 建造师继续教育能补贴多少, 继续教育补贴怎么算]
        answer: 2026年标准：每人每年补贴300元。
        valid_until: 2026-12-31
      - id: subsidy-2027
        category: 补贴
        question: 一级建造师继续教育补贴标准是多少?
        paraphrases: [继续教育补贴多少钱, 建造师继续教育能补贴多少, 继续教育补贴怎么算]
        answer: 2027年新标准：每人每年补贴500元，详见[通知](https://www.example.gov/notice/2027)。
        valid_from: "2027-01-01"
      - id: hall-hours
        category: 办事大厅
        question: 春节期间政务服务大厅开放时间
        paraphrases: [过年大厅开门吗, 春节大厅几点上班, 春节假期能去大厅办业务吗]
        answer: 春节期间大厅暂停线下服务，请网上办理。
        valid_from: "2027-01-20"
        valid_until: "2027-02-10"
      - id: fee
        category: 收费
        question: 注册证书工本费是多少?
        paraphrases: [证书工本费多少钱, 办证要交多少费用, 注册证书收费标准]
        answer: 注册证书工本费每本10元。
        answer_versions:
          - from: 2027-03-01
            answer: 自2027年3月1日起，注册证书免收工本费。
    """)


class Clock:
    """Today's date as the test sets it."""

    def __init__(self, day: str) -> None:
        self.day = dt.date.fromisoformat(day)

    def __call__(self) -> dt.date:
        return self.day

    def set(self, day: str) -> None:
        self.day = dt.date.fromisoformat(day)


@pytest.fixture(scope="module")
def dated_index(tmp_path_factory, encoder):
    """The seed corpus plus the dated entries, built with self-calibration (the twins must not break it)."""
    root = tmp_path_factory.mktemp("dated")
    corpus = root / "corpus"
    corpus.mkdir()
    shutil.copy(SEED_CORPUS / "seed.yaml", corpus / "seed.yaml")
    (corpus / "dated.yaml").write_text(DATED, encoding="utf-8")
    build_from_corpus(corpus, root / "index", encoder, progress=False)
    return root / "index"


@pytest.fixture(scope="module")
def served(dated_index, encoder):
    """One searcher for the module, and the clock it reads (each test sets the day it needs)."""
    clock = Clock("2026-12-31")
    return Searcher.load(dated_index, encoder, clock=clock), clock


@pytest.fixture()
def clock(served):
    served[1].set("2026-12-31")
    return served[1]


@pytest.fixture()
def client(served, clock, tmp_path):
    config = ServiceConfig(admin_token=TOKEN, hits_dir=str(tmp_path / "hits"))
    return create_app(served[0], config).test_client()


def _search(client, query: str) -> dict:
    response = client.get("/v1/search", query_string={"q": query})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def _ids(body: dict) -> list[str]:
    return [hit["faq_id"] for hit in body["results"]]


# --- search ------------------------------------------------------------------------------------------------


def test_an_entry_valid_until_yesterday_is_not_answered_and_its_replacement_is(client, clock):
    clock.set("2027-01-01")  # subsidy-2026 was valid until yesterday
    for query in SUBSIDY_QUESTIONS:
        body = _search(client, query)
        assert body["decision"] == "answer"
        assert _ids(body)[0] == "subsidy-2027"
        assert "subsidy-2026" not in _ids(body)  # masked before ranking: not even a runner-up
        assert "500元" in body["results"][0]["answer"]


def test_the_switch_happens_on_the_date_in_a_running_app_without_a_rebuild(client, clock):
    before = _search(client, "继续教育补贴多少钱")  # 2026-12-31: the old rule's last day
    assert before["decision"] == "answer" and _ids(before)[0] == "subsidy-2026"
    assert "subsidy-2027" not in _ids(before)
    version = before["index_version"]
    clock.set("2027-01-01")  # the same app, the same searcher, the answer cache warm
    after = _search(client, "继续教育补贴多少钱")
    assert after["index_version"] == version
    assert after["decision"] == "answer" and _ids(after)[0] == "subsidy-2027"
    # A GET with the old answer's ETag is not told "not modified": the answer changed.
    tagged = client.get("/v1/search", query_string={"q": "继续教育补贴多少钱"})
    clock.set("2026-12-31")
    assert client.get("/v1/search", query_string={"q": "继续教育补贴多少钱"},
                      headers={"If-None-Match": tagged.headers["ETag"]}).status_code == 200


@pytest.mark.parametrize("day, answered", [("2027-01-19", False), ("2027-01-20", True), ("2027-02-10", True),
                                           ("2027-02-11", False)])
def test_an_entry_without_a_replacement_answers_only_within_its_dates(client, clock, day, answered):
    clock.set(day)
    body = _search(client, "春节大厅几点上班")
    if answered:
        assert body["decision"] == "answer" and _ids(body)[0] == "hall-hours"
    else:
        assert body["decision"] != "answer" or _ids(body)[0] != "hall-hours"
        assert "hall-hours" not in _ids(body)
        assert all(s["faq_id"] != "hall-hours" for s in body["suggestions"])


def test_an_answer_version_takes_over_on_its_date(client, clock):
    clock.set("2027-02-28")
    body = _search(client, "证书工本费多少钱")
    assert _ids(body)[0] == "fee" and body["results"][0]["answer"] == "注册证书工本费每本10元。"
    clock.set("2027-03-01")
    body = _search(client, "证书工本费多少钱")
    assert _ids(body)[0] == "fee" and body["results"][0]["answer"] == "自2027年3月1日起，注册证书免收工本费。"


def test_batch_classification_uses_the_same_clock(client, clock):
    clock.set("2027-01-01")
    response = client.post("/v1/classify", json={"inquiries": [{"id": 1, "text": "继续教育补贴多少钱"},
                                                               {"id": 2, "text": "春节大厅几点上班"}]})
    results = {r["id"]: r for r in response.get_json()["results"]}
    assert results[1]["faq_id"] == "subsidy-2027"
    assert results[2]["top_faq_id"] != "hall-hours"


def test_a_searcher_outside_the_service_masks_too(dated_index, encoder):
    old = Searcher.load(dated_index, encoder, clock=fixed_clock("2026-06-01"))
    new = Searcher.load(dated_index, encoder, clock=fixed_clock("2027-06-01"))
    assert old.search("继续教育补贴怎么算").hits[0].faq_id == "subsidy-2026"
    assert new.search("继续教育补贴怎么算").hits[0].faq_id == "subsidy-2027"
    # Filters and dates together: the category filter keeps 补贴, the date keeps one of the twins.
    filtered = new.search("继续教育补贴怎么算", entry_filter=lambda e: e.category == "补贴")
    assert [h.faq_id for h in filtered.hits] == ["subsidy-2027"]


# --- the schedule, the schema, conflicts ---------------------------------------------------------------------


def test_the_schedule_keeps_one_mask_per_interval():
    periods = [Period(), Period(end=dt.date(2026, 12, 31)), Period(start=dt.date(2027, 1, 1))]
    schedule = ValiditySchedule(periods, [[], [], [(dt.date(2027, 3, 1), "新")]])
    assert schedule.boundaries == [dt.date(2027, 1, 1), dt.date(2027, 3, 1)]
    assert schedule.kept(dt.date(2026, 12, 31)).tolist() == [True, True, False]
    assert schedule.kept(dt.date(2027, 1, 1)).tolist() == [True, False, True]
    assert schedule.kept(dt.date(2027, 2, 1)) is schedule.kept(dt.date(2027, 1, 1))  # cached, not recomputed
    assert schedule.answer(2, "旧", dt.date(2027, 2, 28)) == "旧"
    assert schedule.answer(2, "旧", dt.date(2027, 3, 1)) == "新"
    assert ValiditySchedule([Period(), Period()], [[], []]).kept(dt.date(2030, 1, 1)) is None  # nothing to mask


@pytest.mark.parametrize("fields, problem", [
    ({"valid_from": "2027-02-30"}, "'valid_from': '2027-02-30' is not a calendar date"),
    ({"valid_until": "明年"}, "'valid_until': '明年' is not a date written YYYY-MM-DD"),
    ({"valid_until": dt.datetime(2027, 1, 1, 8)}, "is a date and time"),
    ({"valid_from": "2027-01-02", "valid_until": "2027-01-01"}, "before 'valid_from'"),
    ({"answer_versions": [{"from": "2027-03-01", "answer": "b"}, {"from": "2027-02-01", "answer": "c"}]},
     "earliest first"),
    ({"answer_versions": [{"from": "2027-03-01"}]}, "exactly 'from' and 'answer'"),
    ({"answer_versions": [{"from": "2027-03-01", "answer": " "}]}, "'answer' is empty"),
    ({"answer_versions": "2027-03-01"}, "must be a list"),
])
def test_bad_dates_are_refused_naming_the_field(fields, problem):
    with pytest.raises(EntryError) as refused:
        parse_entry({"id": "a", "question": "问", "answer": "答", **fields}, "faq.yaml: entry 1")
    assert problem in str(refused.value)
    assert refused.value.field in fields


def test_entries_without_dates_keep_their_checksum_and_dated_ones_read_back():
    plain = parse_entry({"id": "a", "question": "问", "answer": "答"}, "x")
    assert plain.to_record() == {"id": "a", "question": "问", "answer": "答", "paraphrases": [], "category": None,
                                 "tags": []}
    dated = parse_entry({"id": "b", "question": "问", "answer": "答", "valid_from": dt.date(2027, 1, 1),
                         "answer_versions": [{"from": "2027-03-01", "answer": "新\n第二行"}]}, "x")
    assert dated.valid_from == "2027-01-01"
    import yaml

    again = parse_entry(yaml.safe_load(corpus_yaml([dated]))["entries"][0], "x")
    assert again == dated and again.answer_versions == dated.answer_versions


def test_twins_whose_periods_do_not_overlap_are_no_conflict(tmp_path):
    (tmp_path / "dated.yaml").write_text(DATED, encoding="utf-8")
    entries = load_corpus(tmp_path)
    assert find_identical(entries) == ()
    check_identical(entries)  # no ConflictError
    overlapping = DATED.replace('valid_from: "2027-01-01"', 'valid_from: "2026-12-31"')
    (tmp_path / "dated.yaml").write_text(overlapping, encoding="utf-8")
    with pytest.raises(ConflictError) as refused:
        check_identical(load_corpus(tmp_path))
    assert "subsidy-2026" in str(refused.value) and "subsidy-2027" in str(refused.value)


def test_periods_overlap_only_when_a_day_lies_in_both():
    old, new = Period(end=dt.date(2026, 12, 31)), Period(start=dt.date(2027, 1, 1))
    assert not old.overlaps(new) and not new.overlaps(old)
    assert Period(end=dt.date(2027, 1, 1)).overlaps(new)
    assert Period().overlaps(old)


def test_the_clock_reads_the_zone_or_a_fixed_day():
    assert clock_for("Asia/Shanghai", "2027-01-01")() == dt.date(2027, 1, 1)
    beijing = dt.datetime.now(dt.timezone(dt.timedelta(hours=8))).date()
    assert clock_for("Asia/Shanghai")() == beijing
    assert clock_for("+08:00")() == beijing
    with pytest.raises(ValueError, match="not a time zone"):
        time_zone("Mars/Olympus")


# --- the workbench's list of what changes soon --------------------------------------------------------------


def test_upcoming_changes_lists_ends_starts_versions_and_expired(tmp_path):
    (tmp_path / "dated.yaml").write_text(DATED, encoding="utf-8")
    changes = upcoming_changes(load_corpus(tmp_path), dt.date(2027, 1, 15), 30)
    assert [(c.faq_id, c.kind, c.day.isoformat(), c.days_left) for c in changes] == [
        ("hall-hours", "starts", "2027-01-20", 5),
        ("hall-hours", "expires", "2027-02-10", 26),
        ("subsidy-2026", "expired", "2026-12-31", -15),
    ]
    far = upcoming_changes(load_corpus(tmp_path), dt.date(2026, 12, 5), 30)
    assert {(c.faq_id, c.kind) for c in far} == {("subsidy-2026", "expires"), ("subsidy-2027", "starts"),
                                                 ("hall-hours", "not_yet_valid")}


def test_the_expiring_route_lists_what_changes_in_the_next_days(client, clock):
    clock.set("2027-02-01")
    body = client.get("/admin/api/expiring?days=30", headers=AUTH).get_json()
    assert body["today"] == "2027-02-01" and body["days"] == 30
    assert [(c["faq_id"], c["kind"], c["date"]) for c in body["changes"]] == [
        ("hall-hours", "expires", "2027-02-10"), ("fee", "answer_changes", "2027-03-01"),
        ("subsidy-2026", "expired", "2026-12-31")]


@pytest.mark.parametrize("query, status, code", [
    ("days=0", 400, "invalid_days"), ("days=abc", 400, "invalid_days"), ("days=367", 400, "invalid_days"),
    ("day=30", 400, "unknown_parameter"), ("collection=nope", 404, "unknown_collection"),
])
def test_the_expiring_route_refuses_bad_input_naming_it(client, query, status, code):
    response = client.get(f"/admin/api/expiring?{query}", headers=AUTH)
    assert response.status_code == status
    body = response.get_json()
    assert body["error"] == code
    if status == 400:
        assert query.split("=")[0] in body["message"]


def test_the_expiring_route_needs_a_login(client, dated_index, encoder):
    assert client.get("/admin/api/expiring").status_code == 401
    assert client.get("/admin/api/expiring", headers={"Authorization": "Bearer wrong"}).status_code == 401
    closed = create_app(Searcher.load(dated_index, encoder), ServiceConfig()).test_client()  # no admin token
    response = closed.get("/admin/api/expiring", headers=AUTH)
    assert response.status_code == 403 and response.get_json()["error"] == "admin_disabled"


# --- spreadsheets ---------------------------------------------------------------------------------------------


def test_a_sheet_carries_validity_dates_as_text_or_date_cells(tmp_path):
    import openpyxl

    from retriever.corpus import export_sheet, import_sheet

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(["编号", "标准问题", "答案", "生效日期", "有效期至"])
    sheet.append(["old", "补贴标准是多少？", "300元", None, dt.datetime(2026, 12, 31)])  # a date cell
    sheet.append(["new", "补贴标准是多少？", "500元", "2027-01-01", None])
    workbook.save(tmp_path / "faq.xlsx")
    result = import_sheet(tmp_path / "faq.xlsx")
    assert not result.rejected
    assert [(e.id, e.valid_from, e.valid_until) for e in result.entries] == [
        ("old", None, "2026-12-31"), ("new", "2027-01-01", None)]
    export_sheet(list(result.entries), tmp_path / "out.csv", headers="zh")
    header = (tmp_path / "out.csv").read_text(encoding="utf-8-sig").splitlines()[0]
    assert header.endswith("生效日期,有效期至")
    assert import_sheet(tmp_path / "out.csv").entries == result.entries  # round trip


@pytest.mark.parametrize("header, cell, problem", [
    ("有效期至", "2026-13-01", "is not a calendar date"),
    ("生效日期", "下个月", "is not a date written YYYY-MM-DD"),
])
def test_a_bad_date_cell_is_reported_with_its_row_and_column(tmp_path, header, cell, problem):
    from retriever.corpus import import_sheet

    (tmp_path / "faq.csv").write_text(f"标准问题,答案,{header}\n问,答,{cell}\n", encoding="utf-8")
    result = import_sheet(tmp_path / "faq.csv")
    [reported] = result.problems()
    assert reported.row == 2 and header in reported.column and problem in reported.message


def test_an_ambiguous_date_header_is_refused_not_skipped(tmp_path):
    from retriever.corpus import import_sheet
    from retriever.errors import CorpusError

    (tmp_path / "faq.csv").write_text("标准问题,答案,失效日期\n问,答,2026-12-31\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="失效日期"):
        import_sheet(tmp_path / "faq.csv")


def test_answer_versions_cannot_be_exported_to_a_sheet(tmp_path):
    from retriever.corpus import export_sheet
    from retriever.errors import CorpusError

    (tmp_path / "dated.yaml").write_text(DATED, encoding="utf-8")
    with pytest.raises(CorpusError, match="answer_versions"):
        export_sheet(load_corpus(tmp_path), tmp_path / "out.xlsx")


# --- the served clock: RETRIEVER_TODAY, RETRIEVER_TIME_ZONE ----------------------------------------------------


def test_retriever_today_sets_the_served_date(dated_index):
    import json
    import urllib.parse
    import urllib.request

    from conftest import running_server

    with running_server(dated_index, env={"RETRIEVER_TODAY": "2027-02-01", "RETRIEVER_ADMIN_TOKEN": TOKEN}) as (url, _):
        def get(path: str, headers: dict | None = None) -> dict:
            request = urllib.request.Request(url + path, headers=headers or {})
            return json.loads(urllib.request.urlopen(request, timeout=30).read())

        body = get("/v1/search?q=" + urllib.parse.quote("继续教育补贴多少钱"))
        assert body["decision"] == "answer" and body["results"][0]["faq_id"] == "subsidy-2027"
        assert get("/v1/search?q=" + urllib.parse.quote("春节大厅几点上班"))["results"][0]["faq_id"] == "hall-hours"
        assert get("/admin/api/expiring?days=30", AUTH)["today"] == "2027-02-01"


@pytest.mark.parametrize("env, message", [
    ({"RETRIEVER_TIME_ZONE": "Mars/Olympus"}, "RETRIEVER_TIME_ZONE: 'Mars/Olympus' is not a time zone"),
    ({"RETRIEVER_TODAY": "2027-1-1"}, "RETRIEVER_TODAY='2027-1-1' is not a date written YYYY-MM-DD"),
])
def test_a_bad_clock_setting_stops_serve_with_a_message(dated_index, env, message):
    import os
    import subprocess
    import sys

    from conftest import REPO

    done = subprocess.run([sys.executable, "-m", "retriever", "serve", "--index", str(dated_index), "--port", "9"],
                          cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "error: " in done.stderr and message in done.stderr and "Traceback" not in done.stderr
