"""Many collections: loaded on first use, unloaded when idle or beyond the bound, reloaded only when changed."""
import shutil
import threading
from pathlib import Path

import pytest

from conftest import REPO
from retriever.config import ServiceConfig
from retriever.encoders import EncoderCache
from retriever.errors import RetrieverError
from retriever.http import create_app
from retriever.pipeline import build_from_corpus
from retriever.registry import CollectionRegistry
from retriever.store import VERSIONS, current_version
from retriever.store.collections import collection_root

DATA = REPO / "tests" / "data" / "collections"
NAMES = [f"c{i:02d}" for i in range(12)]
TOKEN = "lazy-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SHEBAO_QUERY = "社保卡丢了怎么挂失补办?"  # sb-03's own question


class Clock:
    """Time the tests move by hand: idleness without sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def copy_collection(source: Path, target: Path) -> None:
    """A collection made by copying another's folder: the registry serves copies as they are."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("data"))


@pytest.fixture(scope="module")
def built(tmp_path_factory, encoder) -> Path:
    """One shebao collection built once; each test copies it into a root of its own."""
    root = tmp_path_factory.mktemp("lazy-source")
    build_from_corpus(DATA / "shebao.yaml", root, encoder, progress=False)
    return root


@pytest.fixture()
def index_root(tmp_path, built) -> Path:
    for name in NAMES:
        copy_collection(built, collection_root(tmp_path, name))
    return tmp_path


@pytest.fixture()
def encoders(encoder) -> EncoderCache:
    cache = EncoderCache()
    cache._encoders[encoder.source] = encoder  # the session's model, loaded once for the whole suite
    return cache


def open_registry(root: Path, encoders: EncoderCache, **options) -> CollectionRegistry:
    registry = CollectionRegistry.open(root, encoders, **options)
    return registry


def client_for(registry: CollectionRegistry):
    return create_app(registry, ServiceConfig(rate_limit=None, admin_token=TOKEN, cache_size=0)).test_client()


def test_nothing_is_loaded_until_a_collection_is_used(index_root, encoders):
    registry = open_registry(index_root, encoders)
    client = client_for(registry)
    assert registry.holders() == {}
    listed = client.get("/v1/collections").get_json()["collections"]
    assert [c["name"] for c in listed] == NAMES
    assert all(c["ready"] and not c["loaded"] and c["entries"] == 4 and c["model"] and c["version"] for c in listed)
    assert all(c["mode"] == "hybrid" and c["calibration"]["threshold"] > 0 for c in listed)  # from the manifest
    assert registry.holders() == {}  # listing read manifests only
    assert client.get("/readyz").status_code == 200  # no default among several: ready once they are known

    response = client.get("/v1/collections/c03/search", query_string={"q": SHEBAO_QUERY})
    assert response.status_code == 200
    assert response.get_json()["results"][0]["faq_id"] == "sb-03"
    assert set(registry.holders()) == {"c03"}
    listed = {c["name"]: c for c in client.get("/v1/collections").get_json()["collections"]}
    assert listed["c03"]["loaded"] and not listed["c04"]["loaded"]
    registry.stop()


def test_the_default_collection_is_loaded_at_start(index_root, encoders):
    registry = open_registry(index_root, encoders, default="c07")
    assert set(registry.holders()) == {"c07"}
    response = client_for(registry).get("/readyz")
    assert response.status_code == 200 and response.get_json()["index_version"] == current_version(
        collection_root(index_root, "c07"))
    registry.stop()


def test_concurrent_first_requests_load_a_collection_once(index_root, encoders):
    registry = open_registry(index_root, encoders)
    start = threading.Barrier(8)
    got = []

    def first_use():
        start.wait()
        got.append(registry.holder("c05"))

    threads = [threading.Thread(target=first_use) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(got) == 8 and len({id(holder) for holder in got}) == 1
    assert registry.loads == 1 and got[0].current is not None
    registry.stop()


def test_an_idle_collection_is_unloaded_and_loaded_again_on_use(index_root, encoders):
    clock = Clock()
    registry = open_registry(index_root, encoders, idle_seconds=60, clock=clock)
    client = client_for(registry)
    for name in ("c01", "c02"):
        assert client.get(f"/v1/collections/{name}/search", query_string={"q": SHEBAO_QUERY}).status_code == 200
    first = registry.holders()["c01"]
    clock.now += 30
    client.get("/v1/collections/c02/search", query_string={"q": SHEBAO_QUERY})
    clock.now += 40  # c01 unused for 70 s, c02 for 40 s
    assert registry.evict_idle() == ["c01"]
    assert set(registry.holders()) == {"c02"}
    assert client.get("/v1/collections/c01/search", query_string={"q": SHEBAO_QUERY}).get_json()[
        "results"][0]["faq_id"] == "sb-03"  # loaded again, transparently
    assert registry.holders()["c01"] is not first and registry.loads == 3
    registry.stop()


def test_an_idle_collection_is_unloaded_by_the_watcher(index_root, encoders):
    registry = open_registry(index_root, encoders, idle_seconds=0.4)
    registry.watch()
    registry.holder("c09")
    deadline = threading.Event()
    for _ in range(30):  # the watcher sweeps every idle_seconds / 4
        if not registry.loaded("c09"):
            break
        deadline.wait(0.1)
    assert not registry.loaded("c09")
    registry.stop()


def test_at_most_max_loaded_collections_least_recently_used_first_never_the_default(index_root, encoders):
    registry = open_registry(index_root, encoders, default="c00", max_loaded=3)
    for name in ("c01", "c02"):
        registry.holder(name)
    registry.holder("c01")  # c02 is now the least recently used besides the default
    registry.holder("c03")
    assert set(registry.holders()) == {"c00", "c01", "c03"}
    registry.holder("c04")
    assert set(registry.holders()) == {"c00", "c03", "c04"}  # the default stays, though least recently used
    registry.stop()


def test_a_reload_touches_only_the_collection_that_changed(index_root, encoders, encoder):
    registry = open_registry(index_root, encoders)
    client = client_for(registry)
    for name in ("c00", "c01", "c02"):
        client.get(f"/v1/collections/{name}/search", query_string={"q": SHEBAO_QUERY})
    before = {name: holder.current for name, holder in registry.holders().items()}
    # c01 now holds the housing-fund corpus: a new version published under its root.
    build_from_corpus(DATA / "gongjijin.yaml", collection_root(index_root, "c01"), encoder, progress=False)

    response = client.post("/admin/reload", headers=AUTH)
    outcomes = response.get_json()["collections"]
    assert response.status_code == 200
    assert outcomes["c01"]["changed"] is True
    assert outcomes["c00"]["changed"] is False and outcomes["c02"]["changed"] is False
    assert outcomes["c05"] == {"version": current_version(collection_root(index_root, "c05")), "changed": False,
                               "loaded": False}
    after = {name: holder.current for name, holder in registry.holders().items()}
    assert after["c00"] is before["c00"] and after["c02"] is before["c02"]  # not rebuilt
    assert after["c01"] is not before["c01"]
    top = client.get("/v1/collections/c01/search", query_string={"q": "公积金怎么提取"}).get_json()["results"][0]
    assert top["faq_id"].startswith("gjj-")
    assert registry.loads == 3  # the reload loaded nothing that was not loaded
    registry.stop()


def test_a_broken_collection_answers_503_naming_it_while_the_others_serve(index_root, encoders):
    broken = collection_root(index_root, "c11")
    version_dir = broken / VERSIONS / current_version(broken)
    for path in version_dir.iterdir():
        if path.suffix in {".faiss", ".npy"}:
            path.write_bytes(b"not an index")
    registry = open_registry(index_root, encoders)
    client = client_for(registry)
    response = client.get("/v1/collections/c11/search", query_string={"q": SHEBAO_QUERY})
    body = response.get_json()
    assert response.status_code == 503 and body["error"] == "not_ready"
    assert "collection 'c11' cannot be served" in body["message"]
    assert str(index_root) not in body["message"]  # the server's paths stay private
    assert client.get("/v1/collections/c10/search", query_string={"q": SHEBAO_QUERY}).status_code == 200
    listed = {c["name"]: c for c in client.get("/v1/collections").get_json()["collections"]}
    assert listed["c11"]["ready"] is False and listed["c10"]["ready"] is True
    registry.stop()


def test_an_unknown_collection_is_404_and_the_listing_is_bounded(index_root, encoders):
    registry = open_registry(index_root, encoders)
    response = client_for(registry).get("/v1/collections/nope/search", query_string={"q": SHEBAO_QUERY})
    assert response.status_code == 404 and response.get_json()["error"] == "unknown_collection"
    assert "c00" in response.get_json()["message"]
    assert registry.holders() == {}
    registry.stop()


@pytest.mark.parametrize("variable, value, problem", [
    ("RETRIEVER_COLLECTION_IDLE_SECONDS", "soon", "is not a number"),
    ("RETRIEVER_MAX_LOADED_COLLECTIONS", "-1", "must be at least 0"),
])
def test_bad_settings_are_refused_naming_the_variable(variable, value, problem):
    with pytest.raises(RetrieverError, match=f"{variable}.*{problem}"):
        ServiceConfig.from_env({variable: value})


def test_settings_are_read_from_the_environment():
    config = ServiceConfig.from_env({"RETRIEVER_COLLECTION_IDLE_SECONDS": "0",
                                     "RETRIEVER_MAX_LOADED_COLLECTIONS": "20"})
    assert (config.collection_idle_seconds, config.max_loaded_collections) == (0, 20)
    assert (ServiceConfig().collection_idle_seconds, ServiceConfig().max_loaded_collections) == (1800.0, 100)


def test_not_ready_while_the_default_collection_cannot_load(index_root, encoders):
    broken = collection_root(index_root, "c04")
    for path in (broken / VERSIONS / current_version(broken)).glob("*.faiss"):
        path.write_bytes(b"not an index")
    registry = open_registry(index_root, encoders, default="c04")
    response = client_for(registry).get("/readyz")
    assert response.status_code == 503 and "the default collection 'c04' is not loaded yet" in \
        response.get_json()["message"]
    assert str(index_root) not in response.get_json()["message"]
    registry.stop()
