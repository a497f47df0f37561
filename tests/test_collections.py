"""Many collections under one index root: isolation, filters, the listing, hot add/remove, a broken one refused."""
import json
import shutil
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import REPO, SEED_CORPUS, running_server
from retriever.cli import main
from retriever.config import ServiceConfig
from retriever.encoders import EncoderCache
from retriever.http import create_app
from retriever.pipeline import build_from_corpus
from retriever.registry import CollectionRegistry
from retriever.store import current_version
from retriever.store.collections import collection_root, list_collections

DATA = REPO / "tests" / "data" / "collections"
CORPORA = {"shebao": DATA / "shebao.yaml", "gongjijin": DATA / "gongjijin.yaml", "jianzaoshi": SEED_CORPUS}
ENTRY_PREFIX = {"shebao": "sb-", "gongjijin": "gjj-", "jianzaoshi": "cancel-"}


@pytest.fixture(scope="module")
def collections_root(tmp_path_factory, encoder) -> Path:
    root = tmp_path_factory.mktemp("collections")
    for name, corpus in CORPORA.items():
        build_from_corpus(corpus, collection_root(root, name), encoder, progress=False)
    return root


@pytest.fixture(scope="module")
def registry(collections_root, encoder):
    encoders = EncoderCache()
    encoders._encoders[encoder.source] = encoder  # the session's model: loaded once for the whole suite
    return CollectionRegistry.open(collections_root, encoders)


@pytest.fixture()
def client(registry):
    return create_app(registry, ServiceConfig(rate_limit=None)).test_client()


def test_the_root_lists_every_collection(collections_root):
    assert set(list_collections(collections_root)) == set(CORPORA)


def test_collections_are_listed_with_their_facts(client):
    body = client.get("/v1/collections").get_json()
    listed = {c["name"]: c for c in body["collections"]}
    assert set(listed) == set(CORPORA)
    assert listed["shebao"]["entries"] == 4 and listed["gongjijin"]["entries"] == 3
    assert listed["jianzaoshi"]["calibration"]["threshold"] > 0  # the seed's labelled queries calibrate it
    assert all(c["ready"] and c["version"] and c["model"] for c in body["collections"])


@pytest.mark.parametrize("name, query, expected", [
    ("shebao", "社保卡丢了怎么办", "sb-03"),
    ("gongjijin", "辞职以后公积金怎么提取", "gjj-03"),
    ("jianzaoshi", "注销进度在哪查", "cancel-02"),
])
def test_a_collection_searches_only_its_own_entries(client, name, query, expected):
    for route in (f"/v1/collections/{name}/search?q={query}&top_k=50",):
        hits = client.get(route).get_json()["results"]
        assert hits[0]["faq_id"] == expected
        assert all(h["faq_id"].startswith(ENTRY_PREFIX[name]) for h in hits)
    classified = client.post(f"/v1/collections/{name}/classify",
                             json={"inquiries": [{"id": 1, "text": query}]}).get_json()
    assert classified["results"][0]["top_faq_id"] == expected


def test_an_unknown_collection_is_404_naming_those_there_are(client):
    response = client.get("/v1/collections/yibao/search?q=社保")
    assert response.status_code == 404
    body = response.get_json()
    assert body["error"] == "unknown_collection" and all(name in body["message"] for name in CORPORA)
    assert client.post("/v1/collections/yibao/classify", json={"inquiries": [{"id": 1, "text": "x"}]}
                       ).status_code == 404


def test_without_a_default_the_plain_routes_say_which_collections_exist(client):
    response = client.get("/v1/search?q=社保卡丢了")
    assert response.status_code == 404 and "shebao" in response.get_json()["message"]


def test_the_default_collection_is_configurable(collections_root, encoder):
    encoders = EncoderCache()
    encoders._encoders[encoder.source] = encoder
    registry = CollectionRegistry.open(collections_root, encoders, default="gongjijin")
    hits = create_app(registry).test_client().get("/v1/search?q=租房提取公积金").get_json()["results"]
    assert hits[0]["faq_id"] == "gjj-01"


@pytest.mark.parametrize("params, expected", [
    ({"category": "社保卡"}, {"sb-03", "sb-04"}),
    ({"category": ["社保卡", "社保缴费"]}, {"sb-01", "sb-02", "sb-03", "sb-04"}),
    ({"tags": ["缴费"]}, {"sb-01", "sb-02"}),
    ({"tags": ["缴费", "断缴"]}, {"sb-02"}),
    ({"category": "社保卡", "tags": ["激活"]}, {"sb-04"}),
])
def test_filters_return_every_matching_entry_and_only_those(client, params, expected):
    body = client.post("/v1/collections/shebao/search", json={"query": "社保卡丢了怎么办", "top_k": 50, **params}
                       ).get_json()
    assert {h["faq_id"] for h in body["results"]} == expected


def test_filters_rank_within_the_filtered_entries_not_a_cut_top_k(client):
    """top_k 1 in a category whose best entry is not the overall best: the category's best comes back."""
    overall = client.get("/v1/collections/shebao/search?q=社保卡丢了怎么办&top_k=1").get_json()["results"]
    filtered = client.get("/v1/collections/shebao/search?q=社保卡丢了怎么办&top_k=1&category=社保缴费"
                          ).get_json()["results"]
    assert overall[0]["faq_id"] == "sb-03" and len(filtered) == 1 and filtered[0]["faq_id"] in {"sb-01", "sb-02"}


def test_repeated_query_parameters_are_lists(client):
    body = client.get("/v1/collections/shebao/search?q=社保&top_k=50&tags=缴费&tags=断缴").get_json()
    assert [h["faq_id"] for h in body["results"]] == ["sb-02"]


def test_an_unknown_category_is_an_empty_no_match(client):
    body = client.post("/v1/collections/jianzaoshi/search", json={"query": "注销进度", "category": "公积金提取"}
                       ).get_json()
    assert body["results"] == [] and body["decision"] == "no_match"
    classified = client.post("/v1/collections/jianzaoshi/classify",
                             json={"inquiries": [{"id": 1, "text": "注销进度"}], "category": "没有这个"}).get_json()
    assert classified["results"][0]["decision"] == "no_match" and classified["results"][0]["faq_id"] is None


@pytest.mark.parametrize("body, code", [
    ({"query": "社保", "category": 5}, "invalid_filter"),
    ({"query": "社保", "tags": "缴费"}, "invalid_filter"),
    ({"query": "社保", "tags": [""]}, "invalid_filter"),
    ({"query": "社保", "tags": ["x"] * 21}, "invalid_filter"),
])
def test_bad_filters_are_400(client, body, code):
    response = client.post("/v1/collections/shebao/search", json=body)
    assert response.status_code == 400 and response.get_json()["error"] == code


def test_the_cli_builds_and_searches_a_named_collection(tmp_path, capsys):
    assert main(["build", "--corpus", str(DATA / "gongjijin.yaml"), "--out", str(tmp_path), "--collection",
                 "gjj-2026", "--quiet"]) == 0
    assert current_version(tmp_path / "collections" / "gjj-2026") is not None
    assert current_version(tmp_path) is None  # the default collection was not touched
    capsys.readouterr()
    assert main(["search", "公积金能贷多少", "--index", str(tmp_path), "--collection", "gjj-2026", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["results"][0]["faq_id"] == "gjj-02"


@pytest.mark.parametrize("name", ["../escape", "Shebao", "社保", "a/b", "", "-x", "x" * 65])
def test_bad_collection_names_are_refused_with_a_message(tmp_path, capsys, name):
    assert main(["build", "--corpus", str(DATA / "shebao.yaml"), "--out", str(tmp_path), f"--collection={name}",
                 "--quiet"]) == 2
    assert "invalid collection name" in capsys.readouterr().err
    assert not any(tmp_path.rglob("*.faiss"))


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def _wait_for(condition, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the running server did not pick the change up in time"
        time.sleep(0.3)


def test_collections_come_and_go_under_a_running_server(tmp_path, encoder):
    root = tmp_path / "index"
    build_from_corpus(DATA / "shebao.yaml", collection_root(root, "shebao"), encoder, progress=False)
    with running_server(root, env={"RETRIEVER_RELOAD_POLL_SECONDS": "0.5"}) as (url, _):
        assert [c["name"] for c in _get(url + "/v1/collections")["collections"]] == ["shebao"]
        build_from_corpus(DATA / "gongjijin.yaml", collection_root(root, "gongjijin"), encoder, progress=False)
        _wait_for(lambda: "gongjijin" in {c["name"] for c in _get(url + "/v1/collections")["collections"]})
        hits = _get(url + "/v1/collections/gongjijin/search?q=%E7%A7%9F%E6%88%BF")["results"]
        assert hits[0]["faq_id"] == "gjj-01"
        # A broken new version of one collection is refused; it and the others keep serving.
        served = _get(url + "/v1/collections/shebao/search?q=x")["index_version"]
        broken = build_from_corpus(DATA / "shebao.yaml", collection_root(root, "shebao"), encoder,
                                   progress=False, if_stale=False).version_dir
        (broken / "vectors.faiss").write_bytes(b"not an index")
        time.sleep(2)
        assert _get(url + "/v1/collections/shebao/search?q=x")["index_version"] == served
        assert _get(url + "/v1/collections/gongjijin/search?q=x")["results"]
        shutil.rmtree(collection_root(root, "gongjijin"))
        _wait_for(lambda: "gongjijin" not in {c["name"] for c in _get(url + "/v1/collections")["collections"]})
