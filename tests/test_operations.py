"""Production behaviour in-process: reload, refusal of bad versions, rollback, admin auth, limits, logs, metrics."""
import json
import logging
import shutil
import subprocess
import sys
import time

import pytest

import retriever
from conftest import REPO, SEED_CORPUS
from retriever.config import ServiceConfig
from retriever.store import CURRENT, current_version, list_versions, rollback
from retriever.pipeline import build_from_corpus
from retriever.reload import SearcherHolder
from retriever.search import Searcher
from retriever.http import create_app

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NEW_ANSWER = "新版答案：请登录全国建筑市场监管公共服务平台查询注销进度。"


@pytest.fixture()
def corpus_copy(tmp_path):
    folder = tmp_path / "corpus"
    shutil.copytree(SEED_CORPUS, folder)
    return folder


def change_answer(corpus_folder):
    """A corpus edit whose effect is visible in responses: entry 2 gets a new answer."""
    path = corpus_folder / "seed.yaml"
    text = path.read_text(encoding="utf-8")
    start = text.index("  - id: cancel-02")
    answer_at = text.index("    answer: |-", start)
    end = text.index("\n\n", answer_at)
    path.write_text(text[:answer_at] + f"    answer: {NEW_ANSWER}" + text[end:], encoding="utf-8")


@pytest.fixture()
def live(tmp_path, corpus_copy, encoder):
    """An index root with one version, a holder on it, and an app with admin enabled."""
    root = tmp_path / "index"
    build_from_corpus(corpus_copy, root, encoder, progress=False)
    holder = SearcherHolder(root, lambda version_dir: Searcher.load(version_dir, encoder))
    holder.load_initial()
    app = create_app(holder, ServiceConfig(admin_token=TOKEN, rate_limit=None))
    yield root, holder, app.test_client()
    holder.stop()


def answer_for(client, query="注销进度怎么查"):
    body = client.get("/v1/search", query_string={"q": query, "top_k": 1}).get_json()
    return body["index_version"], body["results"][0]["answer"]


def test_reload_swaps_to_the_new_version(live, corpus_copy, encoder):
    root, holder, client = live
    old_version, old_answer = answer_for(client)
    change_answer(corpus_copy)
    new_dir = build_from_corpus(corpus_copy, root, encoder, progress=False).version_dir
    assert answer_for(client)[0] == old_version  # published, not yet loaded
    response = client.post("/admin/reload", headers=AUTH)
    assert response.status_code == 200
    assert response.get_json() == {"version": new_dir.name, "previous": old_version, "changed": True}
    assert answer_for(client) == (new_dir.name, NEW_ANSWER)
    assert client.post("/admin/reload", headers=AUTH).get_json()["changed"] is False


def _truncate_vectors(version_dir):
    faiss_file = version_dir / "vectors.faiss"
    faiss_file.write_bytes(faiss_file.read_bytes()[:200])


def _other_model(version_dir):
    manifest_path = version_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps({**manifest, "model": "sentence-transformers/bge-small-zh", "dim": 512}))


@pytest.mark.parametrize("damage, message", [(_truncate_vectors, "does not match its checksum"),
                                             (_other_model, "disagree with the manifest|built with model")])
def test_a_bad_new_version_is_refused_and_the_old_one_serves(live, corpus_copy, encoder, damage, message, caplog):
    root, holder, client = live
    old_version, old_answer = answer_for(client)
    change_answer(corpus_copy)
    new_dir = build_from_corpus(corpus_copy, root, encoder, progress=False).version_dir
    damage(new_dir)
    with caplog.at_level(logging.ERROR, logger="retriever.reload"):
        response = client.post("/admin/reload", headers=AUTH)
    assert response.status_code == 409
    body = response.get_json()
    assert body["error"] == "reload_refused" and f"still serving {old_version}" in body["message"]
    assert any("reload refused" in r.message for r in caplog.records)  # a clear log line for operators
    assert answer_for(client) == (old_version, old_answer)
    assert 'retriever_reloads_total{outcome="refused"} 1.0' in client.get("/metrics").get_data(as_text=True)


def test_the_probe_query_must_find_the_first_entry(searcher, monkeypatch):
    from retriever.reload import ReloadRefused, probe

    probe(searcher)  # the real index passes
    real_search = searcher.search

    def search_that_lost_its_first_entry(query, top_k=5, **kwargs):
        result = real_search(query, top_k, **kwargs)
        return result.__class__(**{**result.__dict__, "hits": [h for h in result.hits if h.faq_id != "cancel-01"]})

    monkeypatch.setattr(searcher, "search", search_that_lost_its_first_entry)
    with pytest.raises(ReloadRefused, match="probe query failed: entry 'cancel-01' not found"):
        probe(searcher)


def test_rollback_points_back_and_a_reload_follows(live, corpus_copy, encoder):
    root, holder, client = live
    first = current_version(root)
    change_answer(corpus_copy)
    second = build_from_corpus(corpus_copy, root, encoder, progress=False).version_dir.name
    client.post("/admin/reload", headers=AUTH)
    assert answer_for(client)[1] == NEW_ANSWER
    assert rollback(root) == (first, second)
    assert (root / CURRENT).read_text().strip() == first
    client.post("/admin/reload", headers=AUTH)
    assert answer_for(client)[0] == first
    with pytest.raises(Exception, match="no version older than"):
        rollback(root)
    with pytest.raises(Exception, match="no version 'nope'"):
        rollback(root, "nope")


def test_rollback_cli(live):
    root, _, _ = live
    bad = subprocess.run([sys.executable, "-m", "retriever", "rollback", "--index", str(root)], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "no version older than" in bad.stderr and "Traceback" not in bad.stderr


def test_workers_follow_current_by_polling(live, corpus_copy, encoder):
    root, holder, client = live
    holder.watch(0.1)
    change_answer(corpus_copy)
    new_version = build_from_corpus(corpus_copy, root, encoder, progress=False).version_dir.name
    deadline = time.monotonic() + 15
    while holder.current.version != new_version and time.monotonic() < deadline:
        time.sleep(0.1)
    assert answer_for(client) == (new_version, NEW_ANSWER)


def test_start_up_falls_back_when_the_current_version_is_broken(live, corpus_copy, encoder, caplog):
    root, _, _ = live
    good = current_version(root)
    change_answer(corpus_copy)
    _truncate_vectors(build_from_corpus(corpus_copy, root, encoder, progress=False).version_dir)
    holder = SearcherHolder(root, lambda d: Searcher.load(d, encoder))
    with caplog.at_level(logging.ERROR):
        assert holder.load_initial().version == good
    assert any("because the current one" in r.message for r in caplog.records)


@pytest.mark.parametrize("config, headers, status, code", [
    (ServiceConfig(admin_token=None), AUTH, 403, "admin_disabled"),
    (ServiceConfig(admin_token=TOKEN), {}, 401, "unauthorized"),
    (ServiceConfig(admin_token=TOKEN), {"Authorization": "Bearer wrong"}, 401, "unauthorized"),
    (ServiceConfig(admin_token=TOKEN), {"Authorization": "Bearer 令牌"}, 401, "unauthorized"),
    (ServiceConfig(admin_token=TOKEN), {"Authorization": "Bearer \ud800"}, 401, "unauthorized"),  # found by fuzzing
])
def test_admin_needs_a_configured_token(searcher, config, headers, status, code):
    response = create_app(searcher, config).test_client().post("/admin/reload", headers=headers)
    assert response.status_code == status and response.get_json()["error"] == code


def test_reload_of_a_fixed_index_is_refused_clearly(searcher):
    client = create_app(searcher, ServiceConfig(admin_token=TOKEN)).test_client()
    response = client.post("/admin/reload", headers=AUTH)
    assert response.status_code == 409 and "fixed index" in response.get_json()["message"]


def test_readyz_and_healthz(searcher, encoder, tmp_path):
    client = create_app(searcher).test_client()
    assert client.get("/readyz").get_json() == {"status": "ready", "index_version": searcher.version,
                                                "version": searcher.version}  # "version": the old key, one release
    empty = create_app(SearcherHolder(tmp_path, lambda d: None)).test_client()
    assert empty.get("/healthz").get_json() == {"status": "ok", "service_version": retriever.__version__,
                                                "version": retriever.__version__, "index": None}
    not_ready = empty.get("/readyz")
    assert not_ready.status_code == 503 and not_ready.get_json()["error"] == "not_ready"
    assert empty.get("/v1/search?q=注销").status_code == 503


def test_rate_limit_per_client(searcher):
    client = create_app(searcher, ServiceConfig(rate_limit="5 per minute")).test_client()
    statuses = [client.get("/v1/search?q=注销").status_code for _ in range(6)]
    assert statuses == [200] * 5 + [429]
    limited = client.get("/v1/search?q=注销")
    assert limited.get_json()["error"] == "rate_limited" and limited.headers["Retry-After"]
    assert client.get("/healthz").status_code == 200  # health and metrics are never limited
    other = client.get("/v1/search?q=注销", environ_base={"REMOTE_ADDR": "10.0.0.9"})
    assert other.status_code == 200  # another client has its own budget


def test_unmatched_queries_are_logged_for_editors(searcher, tmp_path):
    log_path = tmp_path / "unmatched.jsonl"
    client = create_app(searcher, ServiceConfig(unmatched_log=str(log_path))).test_client()
    client.get("/v1/search?q=今天天气怎么样")
    client.get("/v1/search?q=注销进度怎么查")
    client.post("/v1/classify", json={"inquiries": [{"id": "1", "text": "社保卡怎么补办"}]})
    lines = [json.loads(line) for line in log_path.read_text(encoding="utf-8").splitlines()]
    assert [(line["query"], line["source"]) for line in lines] == [("今天天气怎么样", "search"),
                                                                   ("社保卡怎么补办", "classify")]
    assert lines[0]["threshold"] == searcher.calibration()["threshold"] and lines[0]["index_version"]


def test_metrics_and_json_access_log(searcher, caplog):
    client = create_app(searcher).test_client()
    with caplog.at_level(logging.INFO, logger="retriever.access"):
        client.get("/v1/search?q=注销进度怎么查")
        client.get("/v1/search?q=今天天气怎么样")
        client.get("/nowhere")
        client.post("/v1/classify", json={"inquiries": [{"id": "1", "text": "社保卡怎么补办"}]})
    text = client.get("/metrics").get_data(as_text=True)
    assert "retriever_batch_jobs_running 0.0" in text  # the classify's slot is released when it ends
    assert 'retriever_requests_total{method="GET",route="/v1/search",status="200"} 2.0' in text
    assert 'retriever_requests_total{method="GET",route="unmatched",status="404"} 1.0' in text
    assert 'retriever_decisions_total{decision="no_match",route="search"} 1.0' in text
    assert 'retriever_request_seconds_bucket{le="0.05",route="/v1/search"}' in text
    assert f'retriever_index_info{{model="{searcher.index.manifest["model"]}",version="{searcher.version}"}} 1.0' in text
    lines = [json.loads(r.message) for r in caplog.records if r.name == "retriever.access"]
    assert [(line["path"], line["status"]) for line in lines] == [("/v1/search", 200), ("/v1/search", 200),
                                                                  ("/nowhere", 404), ("/v1/classify", 200)]
    assert lines[0]["index_version"] == searcher.version and lines[0]["ms"] >= 0


def test_versions_listing_is_in_build_order(live, corpus_copy, encoder):
    root, _, _ = live
    second = build_from_corpus(corpus_copy, root, encoder, mode="dense", progress=False).version_dir.name
    assert list_versions(root)[-1] == second
