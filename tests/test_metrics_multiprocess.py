"""/metrics adds up every gunicorn worker (prometheus-client multiprocess mode): a real `serve --workers 2`."""
import os
import re
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request

from conftest import running_server

ROUNDS, PER_ROUND = 12, 3
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


def test_counters_are_the_sum_over_workers_at_every_scrape(seed_index, tmp_path):
    folder = tmp_path / "prometheus"
    folder.mkdir()
    _stale_counts(folder)  # an earlier run's: the server empties the folder at start
    sent, seen, decisions = 0, [], None
    with running_server(seed_index, env={"PROMETHEUS_MULTIPROC_DIR": str(folder), "RETRIEVER_RATE_LIMIT": ""},
                        workers=2) as (url, _):
        for round_ in range(ROUNDS):
            for i in range(PER_ROUND):  # each on its own connection: both workers take some
                status, _ = _get(url + (SEARCH if i == 0 else "/v1/search"))
                assert status in (200, 400)
                sent += 1
            status, text = _get(url + "/metrics")
            assert status == 200
            seen.append(_search_requests(text))
            decisions = text
        worker_files = {path.name for path in folder.glob("counter_*.db")}
    assert seen == [PER_ROUND * (n + 1) for n in range(ROUNDS)]  # monotonic, equal to what was sent
    assert len(worker_files) >= 2, worker_files  # both workers counted some of them
    answered = sum(float(v) for v in re.findall(r'^retriever_decisions_total\{[^}]*\} (\S+)$', decisions, re.M))
    assert answered == ROUNDS  # one real search per round, whichever worker answered it
    assert re.search(r'^retriever_index_info\{[^}]*\} 1\.0$', decisions, re.M)
