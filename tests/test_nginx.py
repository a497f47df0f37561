"""deploy/nginx.conf with a real nginx in front of a real server: the workbench, the API, errors as JSON.

The test runs the file itself, its listen addresses, upstream port, certificate and static paths swapped
for a free 127.0.0.1/::1 port, the test's server, a throw-away certificate and this checkout. Skipped
with the reason where nginx is missing, unless RETRIEVER_REQUIRE_NGINX=1 (set by .ci/run, which
installs it with `make nginx-deps`), where that is a failure instead.
"""
import contextlib
import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import urllib.parse

import pytest

from conftest import REPO, free_port, port_open, running_server, started

ADMIN_TOKEN = "nginx-admin-token"
SEARCH = "/v1/search?" + urllib.parse.urlencode({"q": "注销进度怎么查"})


def _nginx() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
    if found is None:
        reason = "nginx is not installed (make nginx-deps)"
        if os.environ.get("RETRIEVER_REQUIRE_NGINX") == "1":
            pytest.fail(f"nginx test required but {reason}", pytrace=False)
        pytest.skip(reason)
    return found


def _site(app_port: int, http_port: int, https_port: int, folder) -> str:
    """deploy/nginx.conf as shipped, pointed at this test's ports, certificate and checkout."""
    site = (REPO / "deploy" / "nginx.conf").read_text(encoding="utf-8")
    swaps = {"server 127.0.0.1:8000;": f"server 127.0.0.1:{app_port};",
             "listen 80;": f"listen 127.0.0.1:{http_port};",
             "listen [::]:80;": f"listen [::1]:{http_port};",
             "listen 443 ssl http2;": f"listen 127.0.0.1:{https_port} ssl http2;",
             "listen [::]:443 ssl http2;": f"listen [::1]:{https_port} ssl http2;",
             "/etc/ssl/certs/faq.example.org.pem": str(folder / "cert.pem"),
             "/etc/ssl/private/faq.example.org.key": str(folder / "key.pem"),
             "/srv/faq-retriever/retriever/http/static/": f"{REPO}/retriever/http/static/"}
    for shipped, here in swaps.items():
        assert shipped in site, f"deploy/nginx.conf no longer has {shipped!r}: update the test"
        site = site.replace(shipped, here)
    return site


def _main_config(site: str, folder) -> str:
    temp = {name: folder / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for path in temp.values():
        path.mkdir()
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers must reach the test's private folders
    return (f"{user}daemon off;\nworker_processes 1;\npid {folder}/nginx.pid;\nerror_log {folder}/error.log;\n"
            "events { worker_connections 256; }\n"
            f"http {{\n  include /etc/nginx/mime.types;\n  access_log {folder}/access.log;\n"
            + "".join(f"  {name}_temp_path {path};\n" for name, path in
                      (("client_body", temp["body"]), *((n, temp[n]) for n in ("proxy", "fastcgi", "uwsgi", "scgi"))))
            + site + "\n}\n")


@contextlib.contextmanager
def _running_nginx(app_port: int, folder):
    nginx = _nginx()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "1", "-subj", "/CN=faq.example.org", "-keyout", str(folder / "key.pem"),
                    "-out", str(folder / "cert.pem")], check=True, capture_output=True, timeout=60)
    http_port, https_port = free_port(), free_port()
    config = folder / "nginx.conf"
    config.write_text(_main_config(_site(app_port, http_port, https_port, folder), folder), encoding="utf-8")
    check = subprocess.run([nginx, "-t", "-p", str(folder), "-c", str(config)], capture_output=True, text=True,
                           timeout=30)
    assert check.returncode == 0, check.stderr
    with started([nginx, "-p", str(folder), "-c", str(config)], port_open(https_port)) as process:
        assert int((folder / "nginx.pid").read_text()) == process.pid  # stopped by this pid at the end
        yield http_port, https_port


def _request(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
             host: str = "127.0.0.1", tls: bool = True) -> tuple[int, dict, bytes]:
    """One request on a connection of its own (HTTPS with the test's certificate unchecked)."""
    if tls:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        connection = http.client.HTTPSConnection(host, port, timeout=30, context=context)
    else:
        connection = http.client.HTTPConnection(host, port, timeout=30)
    try:
        connection.request(method, path, body=body, headers={"Host": "faq.example.org", **(headers or {})})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def _json_error(status: int, headers: dict, body: bytes) -> dict:
    assert headers["content-type"].startswith("application/json"), (status, headers, body[:200])
    return json.loads(body)


def _declared_too_large(port: int, path: str) -> tuple[int, dict, bytes]:
    """A POST declaring 3 MB: nginx refuses it from the headers, before any body is sent."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=30) as raw, \
            context.wrap_socket(raw, server_hostname="faq.example.org") as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: faq.example.org\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {3 * 1024 * 1024}\r\nConnection: close\r\n\r\n".encode())
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()


@pytest.fixture(scope="module")
def proxied(seed_index, tmp_path_factory):
    _nginx()
    folder = tmp_path_factory.mktemp("nginx")
    env = {"RETRIEVER_ADMIN_TOKEN": ADMIN_TOKEN, "RETRIEVER_API_KEYS": "nginx-dify-key", "RETRIEVER_RATE_LIMIT": ""}
    with running_server(seed_index, env=env) as (url, server):
        with _running_nginx(int(url.rsplit(":", 1)[1]), folder) as ports:
            yield ports, server


def test_the_api_and_the_workbench_through_nginx(proxied):
    (http_port, https_port), _ = proxied
    status, headers, body = _request(https_port, "GET", SEARCH)
    assert status == 200 and json.loads(body)["results"][0]["faq_id"]
    for host in ("127.0.0.1", "::1"):  # editors on other addresses reach the workbench too
        status, headers, body = _request(https_port, "GET", "/admin", host=host)
        assert status == 200 and "FAQ 编辑工作台" in body.decode("utf-8"), (host, status)
    status, headers, _ = _request(https_port, "GET", "/admin/")
    assert status == 301 and headers["location"].endswith("/admin")
    status, headers, body = _request(https_port, "GET", "/static/workbench.js")  # from disk
    assert status == 200 and len(body) > 1000
    status, headers, _ = _request(http_port, "GET", SEARCH, tls=False)
    assert status == 301 and headers["location"].startswith("https://faq.example.org/v1/search?")


def test_admin_reload_is_the_hosts_own_and_refused_elsewhere_as_json(proxied):
    (_, https_port), _ = proxied
    status, headers, body = _request(https_port, "POST", "/admin/reload", host="::1")
    assert status == 403 and _json_error(status, headers, body)["error"] == "forbidden"
    status, headers, body = _request(https_port, "POST", "/admin/reload")  # from the host: the service answers
    assert status == 401 and _json_error(status, headers, body)["error"] == "unauthorized"
    status, headers, body = _request(https_port, "POST", "/admin/reload",
                                     headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert status == 200 and json.loads(body)["changed"] is False


def test_nginx_own_errors_are_the_apis_json(proxied):
    (_, https_port), _ = proxied
    status, headers, body = _declared_too_large(https_port, "/v1/classify")
    assert status == 413 and _json_error(status, headers, body)["error"] == "payload_too_large"
    status, headers, body = _declared_too_large(https_port, "/retrieval")  # Dify's form on Dify's route
    assert status == 413 and _json_error(status, headers, body)["error_code"] == 3001
    status, headers, body = _request(https_port, "GET", "/v1/search?q=" + "a" * 9000)
    assert status == 414 and _json_error(status, headers, body)["error"] == "uri_too_long"
    status, headers, body = _request(https_port, "GET", "/static/nothing-here.js")
    assert status == 404 and _json_error(status, headers, body)["error"] == "not_found"
    status, headers, body = _request(https_port, "GET", "/v1/nowhere")  # the service's own 404 passes through
    assert status == 404 and _json_error(status, headers, body)["error"] == "not_found"


def test_rate_limited_as_json(proxied):
    (_, https_port), _ = proxied
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    connection = http.client.HTTPSConnection("127.0.0.1", https_port, timeout=30, context=context)
    statuses = []
    try:
        for _ in range(400):  # 50 a second with a burst of 100: well past it at this pace (bounded)
            connection.request("GET", "/v1/nowhere", headers={"Host": "faq.example.org"})
            response = connection.getresponse()
            body = response.read()
            statuses.append(response.status)
            if response.status == 429:
                assert response.getheader("Retry-After") == "1"
                assert json.loads(body)["error"] == "rate_limited"
                break
    finally:
        connection.close()
    assert statuses[-1] == 429 and set(statuses[:-1]) == {404}, statuses[-5:]


def test_service_down_is_json_with_retry_after(proxied):
    """Runs last (its server stops): 502 from a refused upstream becomes the API's 503."""
    (_, https_port), server = proxied
    server.terminate()
    server.wait(timeout=45)
    status, headers, body = _request(https_port, "GET", SEARCH)
    assert status == 503 and _json_error(status, headers, body)["error"] == "unavailable"
    assert headers["retry-after"] == "5"
    status, headers, body = _request(https_port, "POST", "/retrieval", body=b"{}",
                                     headers={"Content-Type": "application/json"})
    assert status == 503 and _json_error(status, headers, body)["error_code"] == 5001
