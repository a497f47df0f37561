"""/metrics adds up every gunicorn worker (prometheus-client multiprocess mode): a real `serve --workers 2`.

By default (`make serve`) the server keeps the workers' values in a private folder of its own;
PROMETHEUS_MULTIPROC_DIR names a folder instead.
"""
import http.client
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from conftest import running_server

from retriever.cascade import PATHS
from retriever.http.metrics import CACHE_OUTCOMES, DECISION_ROUTES, RELOAD_OUTCOMES, STATUS_CLASSES
from retriever.scoring import DECISIONS

ROUNDS, MAX_ROUNDS, PER_ROUND = 6, 60, 4
SEARCH = "/v1/search?" + urllib.parse.urlencode({"q": "社保卡怎么补办"})


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=15) as response:
            return response.status, response.read().decode("utf-8")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8")


def _search_requests(text: str) -> float:
    """retriever_requests_total for /v1/search, summed over methods and statuses."""
    return sum(float(value) for value in
               re.findall(r'^retriever_requests_total\{[^}]*route="/v1/search"[^}]*\} (\S+)$', text, re.M))


def _stale_counts(folder) -> None:
    code = ("from prometheus_client import Counter; Counter('retriever_requests', '', ['route', 'method', 'status'])"
            ".labels('/v1/search', 'GET', '200').inc(100)")
    subprocess.run([sys.executable, "-c", code], env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder)},
                   check=True, timeout=60)
    assert list(folder.glob("counter_*.db"))


def _burst(url: str, round_: int) -> list[int]:
    """PER_ROUND searches at once, each on its own connection: a worker busy encoding leaves the next to the other."""
    queries = [SEARCH + f"{round_}{i}" for i in range(PER_ROUND)]  # distinct: no answer cache hit
    with ThreadPoolExecutor(PER_ROUND) as pool:
        return [status for status, _ in pool.map(lambda path: _get(url + path), queries)]


def test_counters_are_the_sum_over_workers_at_every_scrape(seed_index, tmp_path):
    folder = tmp_path / "prometheus"
    folder.mkdir()
    _stale_counts(folder)  # an earlier run's: the server empties the folder at start
    sent, seen, scrape = 0, [], ""
    with running_server(seed_index, env={"PROMETHEUS_MULTIPROC_DIR": str(folder), "RETRIEVER_RATE_LIMIT": ""},
                        workers=2) as (url, _):
        # /healthz answers once one worker is up; go on until the second has counted too (bounded).
        deadline = time.monotonic() + 90
        for round_ in range(MAX_ROUNDS):
            assert _burst(url, round_) == [200] * PER_ROUND
            sent += PER_ROUND
            status, scrape = _get(url + "/metrics")
            assert status == 200
            seen.append(_search_requests(scrape))
            worker_files = {path.name for path in folder.glob("counter_*.db")}
            if round_ + 1 >= ROUNDS and (len(worker_files) >= 2 or time.monotonic() > deadline):
                break
    assert seen == [PER_ROUND * (n + 1) for n in range(len(seen))]  # monotonic, equal to what was sent
    assert len(worker_files) >= 2, worker_files  # both workers counted some of them
    answered = sum(float(v) for v in re.findall(r'^retriever_decisions_total\{[^}]*\} (\S+)$', scrape, re.M))
    assert answered == sent  # every search decided once, whichever worker answered it
    assert re.search(r'^retriever_index_info\{[^}]*\} 1\.0$', scrape, re.M)


def _scrape_on_a_new_connection(port: int) -> str:
    """GET /metrics on a TCP connection of its own, closed after: any worker may accept it."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        connection.request("GET", "/metrics", headers={"Connection": "close"})
        response = connection.getresponse()
        assert response.status == 200
        return response.read().decode("utf-8")
    finally:
        connection.close()


def _series(text: str, name: str) -> dict[str, float]:
    """Each sample of ``name``: its label text -> value."""
    return {labels: float(value) for labels, value in
            re.findall(rf'^{name}\{{([^}}]*)\}} (\S+)$', text, re.M)}


def _worker_pids(master: int) -> set[int]:
    children = f"/proc/{master}/task/{master}/children"
    return {int(pid) for pid in open(children).read().split()} if os.path.exists(children) else set()


def _private_folders(master: int) -> list:
    """The server's own metrics folder: the one under the temporary folder holding its workers' files."""
    import tempfile
    from pathlib import Path

    pids = _worker_pids(master)
    return [folder for folder in Path(tempfile.gettempdir()).glob("retriever-metrics-*")
            if any(f"_{pid}.db" in path.name for path in folder.glob("*.db") for pid in pids)]


def test_default_serve_sums_workers_and_lists_every_series_from_the_start(seed_index):
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ  # the default deployment: nothing set by hand
    with running_server(seed_index, env={"RETRIEVER_RATE_LIMIT": ""}, workers=2) as (url, process):
        port = int(url.rsplit(":", 1)[1])
        first = _scrape_on_a_new_connection(port)
        decisions = _series(first, "retriever_decisions_total")
        assert set(decisions) == {f'decision="{d}",route="{r}"' for r in DECISION_ROUTES for d in DECISIONS}
        assert set(decisions.values()) == {0.0}
        assert set(_series(first, "retriever_responses_total")) == {f'status_class="{c}"' for c in STATUS_CLASSES}
        assert set(_series(first, "retriever_answer_paths_total")) == {f'path="{p}"' for p in PATHS}
        assert set(_series(first, "retriever_cache_lookups_total")) == {f'outcome="{o}"' for o in CACHE_OUTCOMES}
        assert set(_series(first, "retriever_reloads_total")) == {f'outcome="{o}"' for o in RELOAD_OUTCOMES}
        sent, folders = 0, []
        deadline = time.monotonic() + 90
        for round_ in range(MAX_ROUNDS):  # until both workers have answered some (bounded)
            assert _burst(url, round_) == [200] * PER_ROUND
            sent += PER_ROUND
            folders = _private_folders(process.pid)
            workers_counted = {path.name for folder in folders for path in folder.glob("counter_*.db")}
            if round_ + 1 >= ROUNDS and (len(workers_counted) >= 2 or time.monotonic() > deadline):
                break
        assert len(folders) == 1 and len(workers_counted) >= 2, (folders, workers_counted)
        for _ in range(8):  # each scrape on a fresh connection, whichever worker takes it: the same sums
            scrape = _scrape_on_a_new_connection(port)
            assert _search_requests(scrape) == sent
            assert sum(_series(scrape, "retriever_decisions_total").values()) == sent
            assert sum(v for k, v in _series(scrape, "retriever_decisions_total").items() if 'route="search"' in k) \
                == sent
            durations = _series(scrape, "retriever_request_duration_seconds_count")
            assert durations['route="/v1/search"'] == sent
            assert _series(scrape, "retriever_request_seconds_count")['route="/v1/search"'] == sent  # the old name
    assert not folders[0].exists()  # the private folder goes with the server
