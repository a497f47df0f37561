"""The answer cache (per worker LRU), its counters and access-log field, and the GET caching headers (ETag, 304)."""
import io
import logging
import re

import pytest

from retriever.config import ServiceConfig
from retriever.http import create_app
from retriever.http.cache import AnswerCache, answer_key, etag, etag_matches
from retriever.http.logs import access_log
from retriever.search import Searcher

QUERY = "社保卡丢了怎么补办"


@pytest.fixture()
def access_lines():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    access_log.addHandler(handler)
    level = access_log.level
    access_log.setLevel(logging.INFO)  # setLevel, not assignment: it also clears the logger's isEnabledFor cache
    yield lambda: [line for line in stream.getvalue().splitlines() if '"/v1/' in line]
    access_log.removeHandler(handler)
    access_log.setLevel(level)


def _client(searcher, **options):
    return create_app(searcher, ServiceConfig(rate_limit=None, **options)).test_client()


def _lookups(client) -> dict[str, float]:
    text = client.get("/metrics").get_data(as_text=True)
    # Every outcome is listed from the start at 0: only the ones that happened count here.
    return {outcome: float(value) for outcome, value in
            re.findall(r'^retriever_cache_lookups_total\{outcome="(\w+)"\} (\S+)$', text, re.M) if float(value)}


def _without_timing(body: dict) -> dict:
    return {key: value for key, value in body.items() if key != "took_ms"}


def test_a_repeated_search_is_answered_from_the_cache(searcher, access_lines):
    client = _client(searcher)
    first = client.get("/v1/search", query_string={"q": QUERY})
    second = client.post("/v1/search", json={"query": QUERY})
    assert first.status_code == second.status_code == 200
    assert _without_timing(second.get_json()) == _without_timing(first.get_json())
    assert _lookups(client) == {"hit": 1.0, "miss": 1.0}
    assert ['"cached": false' in line for line in access_lines()] == [True, False]
    assert ['"cached": true' in line for line in access_lines()] == [False, True]


def test_queries_equal_once_normalised_share_an_answer_and_keep_their_own_text(searcher):
    client = _client(searcher)
    client.get("/v1/search", query_string={"q": QUERY})
    traditional = client.get("/v1/search", query_string={"q": "社保卡丟了怎麼補辦"})
    assert _lookups(client) == {"hit": 1.0, "miss": 1.0}
    assert traditional.get_json()["query"] == "社保卡丟了怎麼補辦"


@pytest.mark.parametrize("variant", [{"top_k": 2}, {"mode": "dense"}, {"threshold": 0.99}, {"tags": ["流程"]},
                                     {"category": "社保"}])
def test_anything_that_changes_the_answer_is_a_different_entry(searcher, variant):
    client = _client(searcher)
    client.post("/v1/search", json={"query": QUERY})
    assert client.post("/v1/search", json={"query": QUERY, **variant}).status_code == 200
    assert _lookups(client) == {"miss": 2.0}


def test_a_full_cache_forgets_its_least_recently_used_answer(searcher):
    client = _client(searcher, cache_size=2)
    for query in ("社保卡怎么补办", "公积金怎么提取", "护照怎么办理", "社保卡怎么补办"):
        assert client.get("/v1/search", query_string={"q": query}).status_code == 200
    assert _lookups(client) == {"miss": 4.0}
    assert client.get("/v1/search", query_string={"q": "护照怎么办理"}).status_code == 200
    assert _lookups(client) == {"hit": 1.0, "miss": 4.0}


def test_size_zero_disables_the_cache(searcher, access_lines):
    client = _client(searcher, cache_size=0)
    for _ in range(2):
        assert client.get("/v1/search", query_string={"q": QUERY}).status_code == 200
    assert _lookups(client) == {}
    assert all('"cached": false' in line for line in access_lines())


def test_serving_another_searcher_empties_the_cache(seed_index, encoder, searcher):
    cache = AnswerCache(10)
    key = answer_key("default", searcher.version, QUERY, 5, None, None, None, None)
    cache.observe("default", searcher)
    cache.put(key, "answer")
    cache.observe("default", searcher)
    assert cache.get(key) == "answer"
    cache.observe("default", Searcher.load(seed_index, encoder))  # what a reload swaps in
    assert len(cache) == 0 and cache.get(key) is None


def test_get_answers_carry_an_etag_and_honour_if_none_match(searcher):
    client = _client(searcher, cache_max_age=120)
    first = client.get("/v1/search", query_string={"q": QUERY})
    tag = first.headers["ETag"]
    assert tag.startswith('W/"') and first.headers["Cache-Control"] == "public, max-age=120"
    again = client.get("/v1/search", query_string={"q": QUERY}, headers={"If-None-Match": tag})
    assert again.status_code == 304 and again.get_data() == b""
    assert again.headers["ETag"] == tag and again.headers["Cache-Control"] == "public, max-age=120"
    other = client.get("/v1/search", query_string={"q": QUERY, "top_k": 2}, headers={"If-None-Match": tag})
    assert other.status_code == 200 and other.headers["ETag"] != tag
    assert "ETag" not in client.post("/v1/search", json={"query": QUERY}).headers


def test_by_default_clients_revalidate_so_a_publish_is_seen_at_once(searcher):
    # A max-age would let a browser keep a no_match an editor has just fixed (tests/test_browser.py).
    assert ServiceConfig().cache_max_age == 0
    response = _client(searcher).get("/v1/search", query_string={"q": QUERY})
    assert response.headers["Cache-Control"] == "no-cache" and response.headers["ETag"]


def test_etag_comparison_is_weak_and_accepts_lists():
    tag = etag(("default", "v1", "q", 5, None, None, (), ()))
    assert etag_matches(tag, tag) and etag_matches(f'"x", {tag.removeprefix("W/")}', tag)
    assert not etag_matches('"other"', tag) and not etag_matches(None, tag) and not etag_matches("*", tag)
