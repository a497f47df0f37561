"""What every view shares, kept on the app (``app.extensions``), never in closures."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import current_app, g

from ..config import ServiceConfig
from ..registry import CollectionRegistry, UnknownCollection
from ..search import Searcher
from .errors import ApiError
from .logs import UnmatchedLog
from .metrics import Metrics
from ..reload import SearcherHolder, without_paths
from .schemas import RequestSchemas

EXTENSION = "retriever"


@dataclass
class ServiceState:
    collections: CollectionRegistry
    config: ServiceConfig
    metrics: Metrics
    schemas: RequestSchemas
    unmatched: UnmatchedLog | None
    limiter: Any = None  # flask_limiter.Limiter when rate limiting is on

    @property
    def holder(self) -> SearcherHolder:
        """The default collection's holder (what /v1/search serves)."""
        return collection_holder(None)


def state() -> ServiceState:
    return current_app.extensions[EXTENSION]


def collection_holder(collection: str | None) -> SearcherHolder:
    """The holder of ``collection`` (None: the default one); 404 ``unknown_collection`` naming those there are."""
    try:
        return state().collections.holder(collection)
    except UnknownCollection as exc:
        raise ApiError(404, "unknown_collection", str(exc)) from None


def serving(collection: str | None = None) -> Searcher:
    """The searcher for this request, taken once: a reload meanwhile does not change it."""
    if "searcher" not in g:
        holder = collection_holder(collection)
        g.collection = collection or state().collections.default_name()  # what hit counts are kept under
        g.searcher = holder.current
        if g.searcher is None:
            raise ApiError(503, "not_ready", not_ready_message(collection, holder))
    return g.searcher


def corpus_folder() -> Path:
    """The draft corpus the workbench edits (RETRIEVER_CORPUS); 409 ``no_corpus`` when none is configured."""
    folder = state().config.corpus_dir
    if not folder:
        raise ApiError(409, "no_corpus", "服务没有配置语料文件夹：启动时设置 RETRIEVER_CORPUS 或 serve --corpus")
    return Path(folder)


def not_ready_message(collection: str | None, holder: SearcherHolder) -> str:
    """Which collection cannot answer and why, without the server's paths."""
    name = collection or state().collections.default_name()
    if holder.problem is None:
        return f"collection '{name}': no index is loaded yet"
    return f"collection '{name}' cannot be served: {without_paths(holder.problem, holder.index_root)}"
