"""Hit counts per entry: counted in every worker, summed across workers and restarts, 没帮助 from
feedback, sorted for the workbench; no query text kept."""
import json
import os
import socket
import time

import pytest

from retriever.config import ServiceConfig
from retriever.editorial.hits import (
    EntryHits,
    HitCounter,
    fold_finished_workers,
    read_totals,
    sorted_rows,
)
from retriever.http import create_app

TOKEN = "hits-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
QUERY = "注销进度在哪查"  # the seed corpus answers it with cancel-02
SECRET_QUERY = "我的身份证号110101199003071234注销进度在哪查"


def _config(tmp_path, **extra) -> ServiceConfig:
    return ServiceConfig(admin_token=TOKEN, hits_dir=str(tmp_path / "hits"),
                         feedback_log=str(tmp_path / "feedback.jsonl"), cache_size=0, rate_limit=None, **extra)


def _hits(client, sort: str = "hits", **params) -> dict:
    response = client.get("/admin/api/hits", query_string={"sort": sort, **params}, headers=AUTH)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def _row(body: dict, faq_id: str) -> dict:
    return next(row for row in body["entries"] if row["faq_id"] == faq_id)


def _eventually(check, seconds: float = 15.0):
    """``check()`` until it holds: another worker writes its counts within its flush period (5 s)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.25)


def test_counts_are_summed_across_workers_and_restarts(searcher, tmp_path):
    first = create_app(searcher, _config(tmp_path)).test_client()
    second = create_app(searcher, _config(tmp_path)).test_client()  # another worker on the same data folder
    for client, times in ((first, 3), (second, 2)):
        for _ in range(times):
            body = client.get("/v1/search", query_string={"q": QUERY}).get_json()
            assert body["decision"] == "answer" and body["results"][0]["faq_id"] == "cancel-02"
    started = time.time()

    def summed():
        row = _row(_hits(first), "cancel-02")
        assert row["hits"] == 5
        return row

    row = _eventually(summed)
    assert started - 60 < row["last_hit"] <= time.time()
    # A restart: a new app on the same folder starts from what the others wrote.
    restarted = create_app(searcher, _config(tmp_path)).test_client()
    assert _eventually(lambda: _row(_hits(restarted), "cancel-02")["hits"] == 5 or None) is True


def test_unhelpful_feedback_is_counted_on_its_entry(searcher, tmp_path):
    client = create_app(searcher, _config(tmp_path)).test_client()
    for helpful in (False, False, True):
        response = client.post("/v1/feedback", json={"query": QUERY, "faq_id": "cancel-02", "helpful": helpful})
        assert response.status_code == 201
    client.post("/v1/feedback", json={"query": QUERY, "faq_id": "no-such-entry", "helpful": False})
    body = _hits(client, "unhelpful")
    assert body["entries"][0]["faq_id"] == "cancel-02" and body["entries"][0]["unhelpful"] == 2
    assert all(row["faq_id"] != "no-such-entry" for row in body["entries"])  # ids it does not hold: not kept


def test_the_listing_includes_every_entry_and_sorts_as_asked(searcher, tmp_path):
    client = create_app(searcher, _config(tmp_path)).test_client()
    client.get("/v1/search", query_string={"q": QUERY})
    client.get("/v1/search", query_string={"q": QUERY})
    client.get("/v1/search", query_string={"q": "手机号被别人绑定了怎么办"})  # cancel-03
    client.get("/v1/search", query_string={"q": "今天天气怎么样"})  # no_match: counts nothing
    by_hits = _hits(client, "hits")
    assert by_hits["total"] == len(searcher.index.entries) == len(by_hits["entries"])
    assert [(r["faq_id"], r["hits"]) for r in by_hits["entries"][:2]] == [("cancel-02", 2), ("cancel-03", 1)]
    assert by_hits["never_hit"] == len(searcher.index.entries) - 2
    never = _hits(client, "never")
    assert all(row["hits"] == 0 and row["last_hit"] is None for row in never["entries"][:never["never_hit"]])
    assert never["entries"][-1]["faq_id"] == "cancel-02"
    assert _hits(client, "last_hit")["entries"][0]["faq_id"] == "cancel-03"
    assert len(_hits(client, "hits", limit=1)["entries"]) == 1


def test_no_query_text_is_stored(searcher, tmp_path):
    client = create_app(searcher, _config(tmp_path, unmatched_log=None)).test_client()
    client.get("/v1/search", query_string={"q": SECRET_QUERY})
    client.get("/v1/search", query_string={"q": QUERY})
    _hits(client)  # flushes this worker's counts
    stored = "".join(path.read_text(encoding="utf-8") for path in (tmp_path / "hits").glob("*.json"))
    assert "cancel-02" in stored
    assert "110101199003071234" not in stored and "进度" not in stored


@pytest.mark.parametrize("query, status, code, field", [
    ("sort=popular", 400, "invalid_sort", "sort"), ("limit=0", 400, "invalid_limit", "limit"),
    ("limit=5001", 400, "invalid_limit", "limit"), ("limit=ten", 400, "invalid_limit", "limit"),
    ("order=hits", 400, "unknown_parameter", "order"), ("collection=nope", 404, "unknown_collection", "nope"),
])
def test_bad_input_is_refused_naming_the_field(searcher, tmp_path, query, status, code, field):
    client = create_app(searcher, _config(tmp_path)).test_client()
    response = client.get(f"/admin/api/hits?{query}", headers=AUTH)
    assert response.status_code == status
    assert response.get_json()["error"] == code and field in response.get_json()["message"]


def test_the_route_needs_a_login_and_counting_on(searcher, tmp_path):
    client = create_app(searcher, _config(tmp_path)).test_client()
    assert client.get("/admin/api/hits").status_code == 401
    assert client.get("/admin/api/hits", headers={"Authorization": "Bearer wrong"}).status_code == 401
    closed = create_app(searcher, ServiceConfig(hits_dir=str(tmp_path / "h2"))).test_client()
    assert closed.get("/admin/api/hits", headers=AUTH).get_json()["error"] == "admin_disabled"
    off = create_app(searcher, ServiceConfig(admin_token=TOKEN)).test_client()  # RETRIEVER_HITS_DIR=off
    response = off.get("/admin/api/hits", headers=AUTH)
    assert response.status_code == 403 and response.get_json()["error"] == "hits_disabled"
    assert off.get("/v1/search", query_string={"q": QUERY}).status_code == 200  # searching is unaffected


# --- the counter itself -----------------------------------------------------------------------------------


def test_workers_files_are_summed_and_folded_once_their_worker_is_gone(tmp_path):
    one = HitCounter(tmp_path, name="one", flush_seconds=0)
    two = HitCounter(tmp_path, name="two", flush_seconds=0)
    one.record_answer("default", "a")
    two.record_answer("default", "a")
    two.record_unhelpful("default", "b")
    totals = read_totals(tmp_path)["default"]
    assert (totals["a"].hits, totals["b"].unhelpful) == (2, 1)
    # A worker of this host that has exited: its file is folded into base.json, counted once.
    gone = tmp_path / f"{socket.gethostname()}-999999999-dead.json"
    gone.write_text(json.dumps({"default": {"a": [7, 1, 100.0]}}), encoding="utf-8")
    assert fold_finished_workers(tmp_path) == [gone.name]
    assert not gone.exists()
    assert read_totals(tmp_path)["default"]["a"] == EntryHits(9, 1, read_totals(tmp_path)["default"]["a"].last_hit)
    assert fold_finished_workers(tmp_path) == []  # nothing twice
    assert read_totals(tmp_path)["default"]["a"].hits == 9


def test_a_crash_between_folding_and_deleting_counts_nothing_twice(tmp_path):
    gone = tmp_path / f"{socket.gethostname()}-999999998-dead.json"
    gone.write_text(json.dumps({"default": {"a": [3, 0, None]}}), encoding="utf-8")
    kept = gone.read_bytes()
    fold_finished_workers(tmp_path)
    gone.write_bytes(kept)  # as if the process died before deleting it
    assert read_totals(tmp_path)["default"]["a"].hits == 3
    fold_finished_workers(tmp_path)
    assert read_totals(tmp_path)["default"]["a"].hits == 3 and not gone.exists()


def test_a_live_worker_file_is_left_alone(tmp_path):
    mine = HitCounter(tmp_path, flush_seconds=0)
    mine.record_answer("default", "a")
    assert mine.path.name.startswith(f"{socket.gethostname()}-{os.getpid()}-")
    assert fold_finished_workers(tmp_path) == []
    assert mine.path.exists()


def test_sorted_rows_put_entries_nobody_asked_about_first_for_never():
    class Entry:
        def __init__(self, faq_id):
            self.id, self.question, self.category = faq_id, "问" + faq_id, None

    entries = [Entry("a"), Entry("b"), Entry("c")]
    totals = {"a": EntryHits(5, 0, 10.0), "b": EntryHits(1, 3, 20.0)}
    assert [r["faq_id"] for r in sorted_rows(entries, totals, "hits")] == ["a", "b", "c"]
    assert [r["faq_id"] for r in sorted_rows(entries, totals, "unhelpful")] == ["b", "a", "c"]
    assert [r["faq_id"] for r in sorted_rows(entries, totals, "last_hit")] == ["b", "a", "c"]
    assert [r["faq_id"] for r in sorted_rows(entries, totals, "never")] == ["c", "b", "a"]
