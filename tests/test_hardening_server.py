"""Serving hardening (issue 10): slow clients, a vanished index, reload across workers, version identity,
errors from the server layer, admin guesses. Each fault reproduced against real processes where it lives."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import REPO, raw_exchange, running_server
from retriever.config import ServiceConfig
from retriever.http import create_app
from retriever.reload import SearcherHolder
from retriever.search import Searcher
from retriever.store import VERSIONS, current_version, publish

TOKEN = "hardening-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SEARCH = "/v1/search?q=%E6%B3%A8%E9%94%80%E8%BF%9B%E5%BA%A6%E6%80%8E%E4%B9%88%E6%9F%A5&top_k=1"  # 注销进度怎么查


def _get(url: str, timeout: float = 10) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def _post(url: str, headers: dict, timeout: float = 60) -> tuple[int, dict]:
    request = urllib.request.Request(url, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)




def _wait_for(predicate, seconds: float):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.2)
    return predicate()


def _copy_index(seed_index: Path, to: Path) -> Path:
    shutil.copytree(seed_index, to, dirs_exist_ok=True)  # a worker leaving may have recreated <index>/data
    return to


def _new_version(root: Path, name: str, source: str | None = None) -> str:
    """A version with other content (its manifest differs), published: quicker than a build."""
    folder = root / VERSIONS / name
    shutil.copytree(root / VERSIONS / (source or current_version(root)), folder)
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    (folder / "manifest.json").write_text(json.dumps({**manifest, "version": name}), encoding="utf-8")
    publish(root, name)
    return name


def _break(folder: Path) -> None:
    vectors = folder / "vectors.faiss"
    vectors.write_bytes(vectors.read_bytes()[:200])


@pytest.fixture(scope="module")
def two_workers(seed_index):
    """`python -m retriever serve` as the README runs it, with two workers; yields its port."""
    with running_server(seed_index, env={"RETRIEVER_RATE_LIMIT": ""}, workers=2) as (url, _):
        yield int(url.rsplit(":", 1)[1])


# Item 1: slow and idle clients.

class SlowClients:
    """Idle connections that send nothing and POSTs announcing 1,000 bytes that send one a second."""

    def __init__(self, port: int, idle: int, slow: int) -> None:
        self.idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(idle)]
        self.slow = [socket.create_connection(("127.0.0.1", port)) for _ in range(slow)]
        for sock in self.slow:
            sock.sendall(b"POST /v1/search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 1000\r\n\r\n")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drip, daemon=True)

    def _drip(self) -> None:
        while not self._stop.wait(1.0):
            for sock in self.slow:
                try:
                    sock.send(b" ")
                except OSError:
                    pass  # the server gave up on it (408): that is the point

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=5)
        for sock in self.idle + self.slow:
            sock.close()


def _closed_by_server(sock: socket.socket, within: float) -> bytes | None:
    """What the server sent before closing ``sock`` within ``within`` seconds (None: still open)."""
    sock.settimeout(within)
    received = b""
    try:
        while chunk := sock.recv(4096):
            received += chunk
    except socket.timeout:
        return None
    return received


def test_slow_and_idle_clients_do_not_hold_up_a_search(two_workers):
    started = time.monotonic()
    with SlowClients(two_workers, idle=50, slow=50) as attack:
        latencies = []
        for _ in range(10):
            began = time.perf_counter()
            status, body = _get(f"http://127.0.0.1:{two_workers}{SEARCH}", timeout=5)
            latencies.append(time.perf_counter() - began)
            assert status == 200 and body["decision"] == "answer"
            time.sleep(0.3)
        assert max(latencies) < 1.0, latencies
        # The attackers do not keep their connections: idle ones go after keepalive (5 s), a body
        # that has not arrived after body_timeout (10 s) gets a JSON 408.
        assert _closed_by_server(attack.idle[0], within=max(0.5, started + 8 - time.monotonic())) == b""
        answer = _closed_by_server(attack.slow[0], within=max(0.5, started + 14 - time.monotonic()))
    assert answer is not None and answer.startswith(b"HTTP/1.1 408")
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["error"] == "request_timeout"


# Item 9: errors gunicorn answers itself.

@pytest.mark.parametrize("request_bytes, status, code", [
    (b"GET /v1/search?q=" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri_too_long"),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"a" * 9000 + b"\r\n\r\n", 431, "headers_too_large"),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: a\r\n" % i for i in range(120)) + b"\r\n",
     431, "headers_too_large"),
    (b"POST /v1/search HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400, "bad_request"),
    (b"POST /v1/search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"zz\r\n{}\r\n0\r\n\r\n", 400, "malformed_body"),
    (b"GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n", 400, "bad_request"),
])
def test_errors_from_the_server_layer_are_json(two_workers, request_bytes, status, code):
    answered, body = raw_exchange(two_workers, request_bytes)
    assert (answered, body["error"]) == (status, code) and body["message"]


def test_a_body_over_every_limit_is_refused_before_it_is_read(two_workers):
    status, body = raw_exchange(two_workers, b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                          b"Content-Length: 999999999\r\n\r\n{")
    assert (status, body["error"]) == (413, "payload_too_large")


# Item 2: the index vanishes while serving; every version broken at start.

def _worker_pids(master: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{master}/task/{master}/children").read_text().split()]


def test_a_vanished_index_keeps_the_server_up_and_it_recovers(seed_index, tmp_path):
    root = _copy_index(seed_index, tmp_path / "index")
    with running_server(root, env={"RETRIEVER_RATE_LIMIT": "", "RETRIEVER_RELOAD_POLL_SECONDS": "0"},
                        workers=2) as (url, process):
        shutil.rmtree(root)
        os.kill(process.pid, signal.SIGHUP)  # new workers find no index
        assert _wait_for(lambda: all(_get(url + "/readyz")[0] == 503 for _ in range(6)), 40)
        assert _wait_for(lambda: len(_worker_pids(process.pid)) == 2, 40)  # the old workers are gone
        os.kill(max(_worker_pids(process.pid)), signal.SIGKILL)  # and a replacement finds no index either
        time.sleep(1)
        assert process.poll() is None, "the master exited"
        status, body = _get(url + SEARCH)
        assert (status, body["error"]) == (503, "not_ready")
        status, health = _get(url + "/healthz")
        assert status == 200 and health["index"] is None  # alive, not ready
        _copy_index(seed_index, root)  # an index appears: every worker loads it by itself, poll or no poll
        assert _wait_for(lambda: all(_get(url + SEARCH)[0] == 200 for _ in range(6)), 20)
        assert process.poll() is None


@pytest.mark.parametrize("damage, message", [
    (lambda root: [_break(folder) for folder in (root / VERSIONS).iterdir()], "no index version can be served"),
    (lambda root: shutil.rmtree(root), "no index here"),
])
def test_starting_with_no_servable_version_is_one_clear_error(seed_index, tmp_path, damage, message):
    root = _copy_index(seed_index, tmp_path / "index")
    damage(root)
    done = subprocess.run([sys.executable, "-m", "retriever", "serve", "--index", str(root), "--port", "1"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and f"error: " in done.stderr and message in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


# Item 3: POST /admin/reload reaches every worker.

def test_admin_reload_reaches_every_worker_and_says_what_each_serves(seed_index, tmp_path):
    root = _copy_index(seed_index, tmp_path / "index")
    env = {"RETRIEVER_RATE_LIMIT": "", "RETRIEVER_RELOAD_POLL_SECONDS": "0", "RETRIEVER_ADMIN_TOKEN": TOKEN}
    with running_server(root, env=env, workers=2) as (url, process):
        _wait_for(lambda: len(_worker_pids(process.pid)) == 2 and all(_get(url + "/readyz")[0] == 200
                                                                       for _ in range(4)), 30)
        new = _new_version(root, current_version(root) + "-new")
        status, outcome = _post(url + "/admin/reload", AUTH)
        assert status == 200 and outcome["changed"] is True and outcome["all_workers"] is True
        assert sorted(w["pid"] for w in outcome["workers"]) == sorted(_worker_pids(process.pid))
        assert {w["version"] for w in outcome["workers"]} == {new}
        versions = {_get(url + SEARCH)[1]["index_version"] for _ in range(20)}
        assert versions == {new}  # no worker left on the old version, with the poll off
        status, again = _post(url + "/admin/reload", AUTH)
        assert status == 200 and again["changed"] is False and again["all_workers"] is True
        # After SIGHUP the new workers form the group: the old ones, leaving, must not take it with them.
        old_pids = set(_worker_pids(process.pid))
        os.kill(process.pid, signal.SIGHUP)
        assert _wait_for(lambda: len(set(_worker_pids(process.pid)) - old_pids) == 2
                         and len(_worker_pids(process.pid)) == 2, 40)
        newer = _new_version(root, new + "-2")
        status, outcome = _post(url + "/admin/reload", AUTH)
        assert status == 200 and outcome["all_workers"] is True, outcome
        assert sorted(w["pid"] for w in outcome["workers"]) == sorted(_worker_pids(process.pid))
        assert {w["version"] for w in outcome["workers"]} == {newer}


# Item 4 and item 14 (in-process: the holder and app that every worker runs).

@pytest.fixture()
def holder(seed_index, tmp_path, encoder):
    root = _copy_index(seed_index, tmp_path / "index")
    holder = SearcherHolder(root, lambda folder: Searcher.load(folder, encoder))
    holder.load_initial()
    yield holder
    holder.stop()


def test_a_renamed_copy_of_the_served_version_is_the_same_version(holder):
    root, served = holder.index_root, holder.current.version
    shutil.copytree(root / VERSIONS / served, root / VERSIONS / "renamed-copy")
    publish(root, "renamed-copy")
    holder.watch(0.1)
    time.sleep(1.0)  # ten polls
    client = create_app(holder, ServiceConfig(admin_token=TOKEN, rate_limit=None)).test_client()
    assert client.post("/admin/reload", headers=AUTH).get_json() == {"version": served, "previous": served,
                                                                     "changed": False}
    assert holder.outcomes == {"unchanged": 1}  # the poller did not reload it, ten times over
    assert holder.current.version == served


def test_poller_refusals_are_counted_once_and_409_names_no_server_path(holder, tmp_path):
    served = holder.current.version
    bad = _new_version(holder.index_root, "bad-version")
    _break(holder.index_root / VERSIONS / bad)
    holder.watch(0.1)
    assert _wait_for(lambda: holder.outcomes["refused"] == 1, 10)
    time.sleep(0.5)
    client = create_app(holder, ServiceConfig(admin_token=TOKEN, rate_limit=None)).test_client()
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'retriever_reloads_total{outcome="refused"} 1.0' in metrics  # refused by the poller, not retried
    response = client.post("/admin/reload", headers=AUTH)
    message = response.get_json()["message"]
    assert response.status_code == 409 and f"still serving {served}" in message and "checksum" in message
    assert str(tmp_path) not in message and str(tmp_path.resolve()) not in message and " /" not in message


def test_admin_token_guesses_are_rate_limited(searcher):
    client = create_app(searcher, ServiceConfig(admin_token=TOKEN, rate_limit=None)).test_client()
    wrong = {"Authorization": "Bearer guess"}
    statuses = [client.post("/admin/reload", headers=wrong).status_code for _ in range(12)]
    assert statuses == [401] * 10 + [429] * 2
    limited = client.post("/admin/reload", headers=AUTH)  # even the right token waits out the window
    assert limited.status_code == 429 and limited.get_json()["error"] == "too_many_attempts"
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    other = client.post("/admin/reload", headers=AUTH, environ_base={"REMOTE_ADDR": "10.0.0.9"})
    assert other.status_code == 409  # another address is not held up (a fixed index cannot reload)
