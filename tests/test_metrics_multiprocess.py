"""/metrics adds up every gunicorn worker (prometheus-client multiprocess mode): a real `serve --workers 2`."""
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
