"""The MCP server with the SDK's own client: the tools (in process), stdio and streamable HTTP (real subprocesses)."""
import json
import os
import select
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request

import anyio
import pytest
from conftest import REPO, free_port, port_open, started
from prometheus_client.parser import text_string_to_metric_families
from test_collections import DATA

from retriever.cli import main
from retriever.encoders import EncoderCache
from retriever.editorial.hits import HitCounter, read_totals
from retriever.http.logs import UnmatchedLog
from retriever.http.metrics import Metrics
from retriever.http.pages import read_collection
from retriever.integrations.mcp_http import SessionBook, host_allowed
from retriever.integrations.mcp_server import ServerOptions, build_server, refusal
from retriever.pipeline import build_from_corpus
from retriever.registry import CollectionRegistry
from retriever.store.collections import collection_root

COLLECTIONS = {"shebao", "jianzaoshi"}

NO_MATCH_MESSAGE = "没有找到答案，请拨打 12345 政务服务热线。"
KEYS = ("key-a", "key-b")
OFF_TOPIC = "今天天气怎么样"  # no_match in the calibrated collection (jianzaoshi), without suggestions
VAGUE = "我想注销"  # no_match there too, with "did you mean" suggestions


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    """A corpus folder whose collection.yaml names the no-match message."""
    folder = tmp_path_factory.mktemp("corpus")
    (folder / "collection.yaml").write_text(f"no_match: {NO_MATCH_MESSAGE}\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def collections_root(tmp_path_factory, seed_index, encoder):
    """Two collections: shebao (categories, tags) and the seed corpus as jianzaoshi (the session's index, copied)."""
    root = tmp_path_factory.mktemp("mcp-collections")
    build_from_corpus(DATA / "shebao.yaml", collection_root(root, "shebao"), encoder, progress=False)
    shutil.copytree(seed_index, collection_root(root, "jianzaoshi"))
    return root


@pytest.fixture(scope="module")
def registry(collections_root, encoder):
    encoders = EncoderCache()
    encoders._encoders[encoder.source] = encoder  # the session's model, loaded once
    return CollectionRegistry.open(collections_root, encoders)


@pytest.fixture()
def recorded(tmp_path):
    """What the tools count and log: the service's own Metrics and UnmatchedLog."""
    return Metrics(), UnmatchedLog(tmp_path / "unmatched.jsonl")


@pytest.fixture()
def server(registry, corpus_dir, recorded):
    metrics, unmatched = recorded
    return build_server(registry, ServerOptions(no_match_message=read_collection(corpus_dir).no_match,
                                                metrics=metrics, unmatched=unmatched))


def call(server, *calls):
    """The results of ``calls`` ((tool, arguments) pairs, or "list" for the tool list) through the SDK's client."""
    from mcp import Client

    async def run():
        results = []
        with anyio.fail_after(60):
            async with Client(server) as client:
                for name, arguments in calls:
                    results.append((await client.list_tools()).tools if name == "list"
                                   else await client.call_tool(name, arguments))
        return results

    return anyio.run(run)


# --- the tools ---------------------------------------------------------------------------------------


def test_every_parameter_is_described_and_the_tools_only_read(server):
    (tools,) = call(server, ("list", None))
    tools = {tool.name: tool for tool in tools}
    assert set(tools) == {"search_faq", "list_collections"}
    search = tools["search_faq"].input_schema
    assert set(search["properties"]) == {"query", "collection", "top_k", "category", "tags"}
    assert all(len(spec.get("description", "")) > 10 for spec in search["properties"].values())
    assert search["properties"]["top_k"]["maximum"] == 50 and search["required"] == ["query"]
    assert search["properties"]["query"]["maxLength"] == 500
    for tool in tools.values():
        assert tool.annotations.read_only_hint is True and tool.annotations.destructive_hint is False
        assert tool.input_schema["additionalProperties"] is False
    assert "no_match" in tools["search_faq"].description and "suggestions" in tools["search_faq"].description


def test_list_collections_gives_each_ones_categories_and_tags(server):
    (listed,) = call(server, ("list_collections", {}))
    collections = {c["name"]: c for c in listed.structured_content["collections"]}
    assert set(collections) == COLLECTIONS
    assert collections["shebao"]["categories"] == [{"name": "社保卡", "entries": 2}, {"name": "社保缴费", "entries": 2}]
    assert {"挂失", "激活", "断缴"} <= set(collections["shebao"]["tags"])
    assert listed.structured_content["default"] is None  # two collections, none named default: name one
    assert "社保卡 (2)" in listed.content[0].text


def test_listing_reads_categories_from_disk_and_loads_no_collection(collections_root, encoder, corpus_dir):
    encoders = EncoderCache()
    encoders._encoders[encoder.source] = encoder
    fresh = CollectionRegistry.open(collections_root, encoders)  # no default: nothing loaded at start
    (listed,) = call(build_server(fresh, ServerOptions(no_match_message=read_collection(corpus_dir).no_match)),
                     ("list_collections", {}))
    collections = {c["name"]: c for c in listed.structured_content["collections"]}
    assert collections["shebao"]["categories"] == [{"name": "社保卡", "entries": 2}, {"name": "社保缴费", "entries": 2}]
    assert not any(fresh.loaded(name) for name in COLLECTIONS)


def test_an_answer_is_marked_and_its_runners_up_are_alternatives(server):
    (found,) = call(server, ("search_faq", {"query": "社保卡丢了怎么办", "collection": "shebao", "top_k": 3}))
    content = found.structured_content
    assert not found.is_error and content["decision"] == "answer"
    assert [h["role"] for h in content["hits"]] == ["answer", "alternative", "alternative"]
    assert content["hits"][0]["faq_id"] == "sb-03" and content["message"] is None
    assert found.content[0].text.startswith("[shebao] answer: 社保卡丢了怎么挂失补办?")


def test_an_ambiguous_result_offers_its_candidates_as_suggestions(server):
    (found,) = call(server, ("search_faq", {"query": "社保卡", "collection": "shebao", "category": "社保卡"}))
    content = found.structured_content
    assert content["decision"] == "ambiguous"
    assert [(h["faq_id"], h["role"]) for h in content["hits"]] == [("sb-03", "suggestion"), ("sb-04", "suggestion")]
    assert [s["faq_id"] for s in content["suggestions"]] == ["sb-03", "sb-04"]
    assert "请确认" in found.content[0].text and "answer" not in found.content[0].text.splitlines()[0]


@pytest.mark.parametrize("query, suggested", [(OFF_TOPIC, False), (VAGUE, True)])
def test_no_match_carries_no_answers_only_suggestions_and_the_collections_message(server, query, suggested):
    (found,) = call(server, ("search_faq", {"query": query, "collection": "jianzaoshi"}))
    content = found.structured_content
    assert content["decision"] == "no_match" and content["hits"] == []
    assert content["message"] == NO_MATCH_MESSAGE
    assert "answer" not in json.dumps(content["suggestions"])  # questions only
    assert bool(content["suggestions"]) is suggested
    assert all(s["role"] == "suggestion" and set(s) == {"role", "faq_id", "question"} for s in content["suggestions"])
    text = found.content[0].text
    assert NO_MATCH_MESSAGE in text and all(s["question"] in text for s in content["suggestions"])


def test_filters_by_category_and_tags(server):
    by_category, by_tags = call(server, ("search_faq", {"query": "社保卡丢了怎么办", "collection": "shebao",
                                                        "category": ["社保卡"], "top_k": 10}),
                                ("search_faq", {"query": "社保卡怎么激活", "collection": "shebao",
                                                "tags": ["社保卡", "激活"]}))
    assert [h["faq_id"] for h in by_category.structured_content["hits"]] == ["sb-03", "sb-04"]
    assert [h["faq_id"] for h in by_tags.structured_content["hits"]] == ["sb-04"]


@pytest.mark.parametrize("tool, arguments, words", [
    ("search_faq", {"query": "社保卡丢了", "collection": "shebao", "bogus": 1}, "unknown argument 'bogus'"),
    ("search_faq", {"query": "社保卡丢了", "collection": "shebao", "k": 3, "filter": "x"},
     "unknown arguments 'k', 'filter'"),
    ("list_collections", {"verbose": True}, "list_collections takes no arguments"),
    ("search_faq", {"query": "社保卡丢了"}, "name a collection: this server has several (jianzaoshi, shebao)"),
    ("search_faq", {"query": "社保卡丢了", "collection": "nope"}, "no collection 'nope'; collections: jianzaoshi, shebao"),
    ("search_faq", {"query": "㌀" * 500, "collection": "shebao"}, "2000 characters (as sent, or once normalised)"),
    ("search_faq", {"query": "社保", "collection": "shebao", "top_k": 51}, "less than or equal to 50"),
])
def test_bad_arguments_are_tool_errors_that_say_what_is_wrong(server, recorded, tool, arguments, words):
    (result,) = call(server, (tool, arguments))
    assert result.is_error and words in result.content[0].text
    if "takes" in words:
        assert "takes query, collection, top_k, category, tags" in result.content[0].text or tool == "list_collections"


def _counted(metrics: Metrics) -> dict[tuple[str, str], float]:
    from prometheus_client import generate_latest

    return {(s.labels["route"], s.labels["decision"]): s.value
            for family in text_string_to_metric_families(generate_latest(metrics.registry).decode())
            if family.name == "retriever_decisions" for s in family.samples if s.name.endswith("_total")}


def test_decisions_are_counted_and_no_match_queries_logged_masked_as_search_does(server, recorded):
    metrics, unmatched = recorded
    call(server, ("search_faq", {"query": "社保卡丢了怎么办", "collection": "shebao"}),
         ("search_faq", {"query": "我手机13912345678的天气预报", "collection": "jianzaoshi"}))
    counted = _counted(metrics)
    assert counted[("mcp", "answer")] == 1 and counted[("mcp", "no_match")] == 1 and counted[("search", "answer")] == 0
    (record,) = [json.loads(line) for line in unmatched.path.read_text(encoding="utf-8").splitlines()]
    assert record["source"] == "mcp" and record["index_version"] and "13912345678" not in record["query"]


def test_the_session_book_bounds_each_client_and_forgets_ended_sessions():
    now = [0.0]
    book = SessionBook(per_client=2, idle_seconds=10, clock=lambda: now[0])
    assert book.reserve("a") and book.reserve("a") and not book.reserve("a")  # two openings in flight fill it
    book.settle("a", "s1")
    book.settle("a", None)  # that opening request opened nothing (refused by the server)
    assert book.reserve("a") and book.reserve("b")  # another client has room of its own
    book.settle("a", "s2")
    book.settle("b", "t1")
    assert not book.reserve("a") and book.open_count("a") == 2 and len(book) == 3
    book.began("a", "s1")  # a request in flight: never idle meanwhile
    book.began("b", "s2")  # another client's request for it: refused by the SDK, counts nothing here
    book.ended("b", "s2", closed=True)
    now[0] = 11.0
    assert book.open_count("a") == 1  # s2 went 10 s without a request: the SDK closed it
    book.ended("a", "s1", closed=False)
    now[0] = 22.0
    assert book.open_count("a") == 0
    assert book.reserve("a")
    book.settle("a", "s3")
    book.began("a", "s3")
    book.ended("a", "s3", closed=True)  # DELETE, or a 404 for it: gone at once
    assert book.open_count("a") == 0


@pytest.mark.parametrize("host, allowed", [("127.0.0.1:8001", True), ("faq.example.gov", True),
                                           ("faq.example.gov:443", True), ("evil.example", False), (None, False)])
def test_allowed_hosts(host, allowed):
    assert host_allowed(host, ("127.0.0.1:*", "faq.example.gov", "faq.example.gov:*")) is allowed


# --- stdio: a real subprocess -----------------------------------------------------------------------------


@pytest.mark.parametrize("line, code, answered_id", [
    ('{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"search_faq","arguments":{"query":"\\ud800"}}}',
     -32600, 7),
    ("{not json", -32700, None),
    ('{"jsonrpc":"2.0","id":"x","method":5}', -32600, "x"),
    ("[1, 2]", -32600, None),
    ("", None, None),
])
def test_refusal_answers_what_the_sdk_cannot_read(line, code, answered_id):
    error = refusal(line)
    assert (error is None) if code is None else (error.error.code == code and error.id == answered_id)


class Stdio:
    """`faq-retriever mcp` over pipes, spoken to line by line with bounded waits."""

    def __init__(self, index_root, corpus):
        self.process = subprocess.Popen([sys.executable, "-m", "retriever", "mcp", "--index", str(index_root),
                                         "--collection", "jianzaoshi", "--corpus", str(corpus)],
                                        cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, env={**os.environ, "RETRIEVER_UNMATCHED_LOG": "off"})

    def send(self, line: bytes) -> None:
        self.process.stdin.write(line + b"\n")
        self.process.stdin.flush()

    def receive(self, timeout: float = 60) -> dict:
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        assert ready, "no answer within the time allowed"
        return json.loads(self.process.stdout.readline())

    def request(self, identifier, method, params) -> dict:
        self.send(json.dumps({"jsonrpc": "2.0", "id": identifier, "method": method, "params": params}).encode())
        return self.receive()


def test_stdio_answers_every_line_even_ones_it_cannot_read(collections_root, corpus_dir):
    stdio = Stdio(collections_root, corpus_dir)
    try:
        hello = stdio.request(1, "initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                                                "clientInfo": {"name": "raw", "version": "1"}})
        assert hello["result"]["serverInfo"]["name"] == "faq-retriever"
        stdio.send(b'{"jsonrpc":"2.0","method":"notifications/initialized"}')
        stdio.send(b'{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"search_faq",'
                   b'"arguments":{"query":"\\ud800\\u793e\\u4fdd"}}}')
        surrogate = stdio.receive(10)
        assert surrogate["id"] == 2 and surrogate["error"]["code"] == -32600
        assert "unpaired surrogate" in surrogate["error"]["message"]
        stdio.send(b"{not json")
        assert stdio.receive(10) == {"jsonrpc": "2.0", "id": None, "error": {
            "code": -32700,
            "message": "Parse error: the line is not JSON (Invalid JSON: key must be a string at line 1 column 2)"}}
        stdio.send(b"x" * (1024 * 1024))  # longer than a message may be (64 KiB)
        assert "longer than" in stdio.receive(20)["error"]["message"]
        found = stdio.request(3, "tools/call", {"name": "search_faq", "arguments": {"query": OFF_TOPIC}})
        assert found["result"]["structuredContent"]["message"] == NO_MATCH_MESSAGE  # still serving after all that
        stdio.process.stdin.close()
        assert stdio.process.wait(timeout=20) == 0  # end of input: the server ends
    finally:
        if stdio.process.poll() is None:
            stdio.process.kill()
            stdio.process.wait()


def test_stdio_with_the_sdk_client(collections_root):
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    params = StdioServerParameters(command=sys.executable, cwd=str(REPO),
                                   args=["-m", "retriever", "mcp", "--index", str(collections_root)],
                                   env={**os.environ, "PYTHONPATH": str(REPO), "RETRIEVER_UNMATCHED_LOG": "off"})

    async def run():
        with anyio.fail_after(120):
            async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
                await session.initialize()
                await _check_tools(session)

    anyio.run(run)


async def _check_tools(session):
    tools = {tool.name: tool for tool in (await session.list_tools()).tools}
    assert set(tools) == {"search_faq", "list_collections"} and tools["search_faq"].annotations.read_only_hint
    listed = await session.call_tool("list_collections", {})
    assert {c["name"] for c in listed.structured_content["collections"]} == COLLECTIONS
    found = await session.call_tool("search_faq", {"query": "社保卡丢了怎么办", "collection": "shebao", "top_k": 2})
    assert not found.is_error and found.structured_content["hits"][0]["faq_id"] == "sb-03"
    assert "社保卡丢了怎么挂失补办" in found.content[0].text
    unknown = await session.call_tool("search_faq", {"query": "社保", "collection": "shebao", "limit": 3})
    assert unknown.is_error and "unknown argument 'limit'" in unknown.content[0].text


# --- streamable HTTP: a real server -------------------------------------------------------------------------

INITIALIZE = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}}).encode()


def test_an_answer_counts_a_hit_for_its_entry_as_search_does(registry, tmp_path):
    """The editors' hit counts (retriever/editorial/hits.py) include MCP: an answer counts its first entry, no_match nothing."""
    counter = HitCounter(tmp_path / "hits", flush_seconds=0)
    server = build_server(registry, ServerOptions(hits=counter))
    answered, missed = call(server, ("search_faq", {"query": "社保卡丢了怎么办", "collection": "shebao"}),
                            ("search_faq", {"query": OFF_TOPIC, "collection": "jianzaoshi"}))
    assert answered.structured_content["decision"] == "answer" and missed.structured_content["decision"] == "no_match"
    totals = read_totals(tmp_path / "hits")  # what GET /admin/api/hits reads, from the file
    assert list(totals) == ["shebao"] and {faq_id: c.hits for faq_id, c in totals["shebao"].items()} == {"sb-03": 1}
    assert totals["shebao"]["sb-03"].last_hit is not None


@pytest.fixture(scope="module")
def http_server(collections_root, corpus_dir, tmp_path_factory):
    """`mcp --http` with two API keys, a proxy's Host allowed, sessions idle after 3 s; yields (url, process, log)."""
    port = free_port()
    unmatched = tmp_path_factory.mktemp("mcp-logs") / "unmatched.jsonl"
    command = [sys.executable, "-m", "retriever", "mcp", "--index", str(collections_root), "--http", "--port",
               str(port), "--collection", "jianzaoshi", "--corpus", str(corpus_dir), "--allowed-host",
               "faq.example.gov", "--session-idle", "3"]
    env = {"RETRIEVER_API_KEYS": ",".join(KEYS), "RETRIEVER_UNMATCHED_LOG": str(unmatched)}
    with started(command, port_open(port), env=env, timeout=120) as process:
        yield f"http://127.0.0.1:{port}", process, unmatched, collections_root


def post(url: str, key: str | None = None, body: bytes = INITIALIZE, **headers):
    """A raw POST /mcp: status, headers (any case), body."""
    sent = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream", **headers}
    if key:
        sent["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(url + "/mcp", data=body, headers=sent, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


@pytest.mark.parametrize("key, words", [(None, "Authorization: Bearer <key>"), ("wrong", "unknown API key")])
def test_http_asks_for_one_of_the_api_keys(http_server, key, words):
    status, headers, body = post(http_server[0], key)
    assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
    assert words in json.loads(body)["error"]["message"]


def test_http_with_the_sdk_client_and_a_key_counts_what_it_decides(http_server):
    import httpx2
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    url, process, unmatched, index_root = http_server

    async def run():
        with anyio.fail_after(60):
            async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {KEYS[1]}"}, timeout=30) as http, \
                    streamable_http_client(url + "/mcp", http_client=http) as (read, write), \
                    ClientSession(read, write) as session:
                await session.initialize()
                await _check_tools(session)
                missed = await session.call_tool("search_faq", {"query": OFF_TOPIC})
                assert missed.structured_content["message"] == NO_MATCH_MESSAGE

    anyio.run(run)
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        families = {f.name: f for f in text_string_to_metric_families(response.read().decode())}
    counted = {(s.labels["route"], s.labels["decision"]): s.value for s in families["retriever_decisions"].samples
               if s.name.endswith("_total")}
    assert counted[("mcp", "answer")] >= 1 and counted[("mcp", "no_match")] >= 1
    assert any(json.loads(line)["query"] == OFF_TOPIC and json.loads(line)["source"] == "mcp"
               for line in unmatched.read_text(encoding="utf-8").splitlines())
    # Its hit counts, in its own file where `serve` keeps them (<index>/data/hits), within FLUSH_SECONDS.
    written, deadline = [], time.monotonic() + 15
    while not written and time.monotonic() < deadline:
        time.sleep(0.5)
        written = list((index_root / "data" / "hits").glob(f"*-{process.pid}-*.json"))
    assert written and json.loads(written[0].read_text(encoding="utf-8"))["shebao"]["sb-03"][0] >= 1


def test_http_refuses_a_body_over_the_apis_limit(http_server):
    status, _, answer = post(http_server[0], KEYS[1], body=INITIALIZE.replace(b'"raw"', b'"' + b"x" * 70_000 + b'"'))
    assert status == 413 and "the limit is 65536" in json.loads(answer)["error"]["message"]


@pytest.mark.parametrize("body", [INITIALIZE.replace(b'"raw"', b'"\\ud800"'), b"{not json"])
def test_http_answers_a_body_it_cannot_read_with_a_parse_error(http_server, body):
    status, _, answer = post(http_server[0], KEYS[1], body=body)
    assert status == 400 and json.loads(answer)["error"]["code"] == -32700


def test_http_behind_a_proxy_that_passes_host(http_server):
    url = http_server[0]
    for host in ("faq.example.gov", "faq.example.gov:8443"):  # a bare name: any port
        status, headers, _ = post(url, KEYS[1], Host=host)
        assert status == 200 and headers.get("mcp-session-id")
    status, _, body = post(url, KEYS[1], Host="other.example:8443")
    assert status == 421 and "--allowed-host other.example " in json.loads(body)["error"]["message"]


def _nginx() -> str:
    """The nginx binary; skipped where it is missing, unless RETRIEVER_REQUIRE_NGINX=1 (CI) makes that a failure."""
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
    if found is None:
        if os.environ.get("RETRIEVER_REQUIRE_NGINX") == "1":
            pytest.fail("nginx test required but nginx is not installed (make nginx-deps)", pytrace=False)
        pytest.skip("nginx is not installed (make nginx-deps)")
    return found


def _nginx_config(folder, port: int, mcp_port: int) -> str:
    """A server for faq.example.gov holding docs/mcp.md's `location /mcp` block as written there."""
    guide = (REPO / "docs" / "mcp.md").read_text(encoding="utf-8")
    location = guide.split("```nginx\n", 1)[1].split("```", 1)[0]
    assert "proxy_pass http://127.0.0.1:8001;" in location and "proxy_set_header Host $host;" in location
    location = location.replace("127.0.0.1:8001", f"127.0.0.1:{mcp_port}")
    temp = "".join(f"  {kind}_temp_path {folder / kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi",
                                                                          "scgi"))
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers must reach the test's private folder
    return (f"{user}daemon off;\nworker_processes 1;\npid {folder}/nginx.pid;\nerror_log {folder}/error.log;\n"
            f"events {{ worker_connections 64; }}\nhttp {{\n  log_format hosts '$host \"$request\" $status';\n"
            f"  access_log {folder}/access.log hosts;\n{temp}"
            f"  server {{\n    listen 127.0.0.1:{port};\n    server_name faq.example.gov;\n{location}  }}\n}}\n")


def test_http_behind_a_real_nginx_configured_as_the_guide_says(http_server, tmp_path):
    import httpx2
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    nginx, port = _nginx(), free_port()
    config = tmp_path / "nginx.conf"
    config.write_text(_nginx_config(tmp_path, port, int(http_server[0].rsplit(":", 1)[1])), encoding="utf-8")
    checked = subprocess.run([nginx, "-t", "-p", str(tmp_path), "-c", str(config)], capture_output=True, text=True,
                             check=False, timeout=30)
    assert checked.returncode == 0, checked.stderr

    async def run():
        headers = {"Authorization": f"Bearer {KEYS[1]}", "Host": "faq.example.gov"}  # as a browser of the site
        with anyio.fail_after(60):
            async with httpx2.AsyncClient(headers=headers, timeout=30) as http, \
                    streamable_http_client(f"http://127.0.0.1:{port}/mcp", http_client=http) as (read, write), \
                    ClientSession(read, write) as session:
                await session.initialize()
                found = await session.call_tool("search_faq", {"query": "社保卡丢了怎么办", "collection": "shebao"})
                assert found.structured_content["hits"][0]["faq_id"] == "sb-03"

    with started([nginx, "-p", str(tmp_path), "-c", str(config)], port_open(port)):
        anyio.run(run)
    assert 'faq.example.gov "POST /mcp HTTP/1.1" 200' in (tmp_path / "access.log").read_text(encoding="utf-8")


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        return int(status.read().split("VmRSS:")[1].split()[0]) / 1024


def test_one_client_cannot_exhaust_the_sessions(http_server):
    url, process, _, _ = http_server
    before = _rss_mb(process.pid)
    statuses = [post(url, KEYS[0])[0] for _ in range(200)]  # initialize, never closed
    assert statuses.count(200) == 16 and statuses.count(429) == 184
    status, headers, body = post(url, KEYS[0])
    assert status == 429 and int(headers["Retry-After"]) == 3 and "DELETE /mcp" in json.loads(body)["error"]["message"]
    assert post(url, KEYS[1])[0] == 200  # another client is served meanwhile
    assert _rss_mb(process.pid) - before < 30
    time.sleep(4.5)  # the idle sessions close
    assert post(url, KEYS[0])[0] == 200


def test_http_without_keys_does_not_start(collections_root, monkeypatch, capsys):
    monkeypatch.delenv("RETRIEVER_API_KEYS", raising=False)
    assert main(["mcp", "--index", str(collections_root), "--http", "--port", str(free_port())]) == 2
    assert "error: MCP over HTTP asks every client for an API key: set RETRIEVER_API_KEYS" in capsys.readouterr().err
