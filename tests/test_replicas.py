"""Two replicas (separate gunicorn masters, as two machines) on one shared index root, under steady load:
a build published once is served by both within the poll interval, a rollback likewise, no request fails."""
import json
import shutil
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from conftest import SEED_CORPUS, running_server
from retriever.pipeline import build_from_corpus
from retriever.store import VERSIONS, current_version, read_manifest, rollback

POLL_SECONDS = 0.5
# The poll interval, plus loading and probing the new version in a busy 2-core machine's worker.
FOLLOW_SECONDS = POLL_SECONDS + 20
SEARCH = "/v1/search?" + urllib.parse.urlencode({"q": "注销流程"})


def _json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=20) as response:
        return json.loads(response.read())


class Load:
    """Searches sent to every replica in turn until stopped; every outcome kept."""

    def __init__(self, urls: list[str]) -> None:
        self.urls, self.failures, self.versions, self.sent = urls, [], set(), 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for url in self.urls:
                try:
                    self.versions.add((url, _json(url + SEARCH)["index_version"]))
                except (OSError, ValueError, KeyError) as exc:
                    self.failures.append(f"{url}: {exc!r}")
                self.sent += 1

    def __enter__(self) -> "Load":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


def _served(url: str) -> str | None:
    index = _json(url + "/healthz")["index"]
    return index and index["version"]


def _until_all_serve(urls: list[str], version: str) -> float:
    started = time.monotonic()
    while any(_served(url) != version for url in urls):
        assert time.monotonic() - started < FOLLOW_SECONDS, f"not every replica serves {version} in time"
        time.sleep(0.1)
    return time.monotonic() - started


def test_replicas_follow_a_publish_and_a_rollback_without_a_failed_request(seed_index, encoder, tmp_path):
    root = tmp_path / "shared-index"
    shutil.copytree(seed_index, root)
    version_of = lambda name: read_manifest(root / VERSIONS / name)["version"]  # noqa: E731
    before = version_of(current_version(root))
    env = {"RETRIEVER_RELOAD_POLL_SECONDS": str(POLL_SECONDS), "RETRIEVER_RATE_LIMIT": ""}
    with running_server(root, env=env) as (first, _), running_server(root, env=env) as (second, _):
        urls = [first, second]
        assert all(_served(url) == before for url in urls)
        with Load(urls) as load:
            build_from_corpus(SEED_CORPUS, root, encoder, progress=False)  # published once, for both
            after = version_of(current_version(root))
            assert after != before
            _until_all_serve(urls, after)
            rollback(root)
            _until_all_serve(urls, before)
            time.sleep(0.5)  # a few more requests on the rolled-back version
    assert load.failures == []
    assert load.sent > 20
    assert {(url, version) for url in urls for version in (before, after)} <= load.versions
