"""What every view shares, kept on the app (``app.extensions``), never in closures."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import current_app, g

from ..config import ServiceConfig
from ..search import Searcher
from .errors import ApiError
from .logs import UnmatchedLog
from .metrics import Metrics
from .reload import SearcherHolder
from .schemas import RequestSchemas

EXTENSION = "retriever"


@dataclass
class ServiceState:
    holder: SearcherHolder
    config: ServiceConfig
    metrics: Metrics
    schemas: RequestSchemas
    unmatched: UnmatchedLog | None
    limiter: Any = None  # flask_limiter.Limiter when rate limiting is on


def state() -> ServiceState:
    return current_app.extensions[EXTENSION]


def serving() -> Searcher:
    """The searcher for this request, taken once: a reload meanwhile does not change it."""
    if "searcher" not in g:
        g.searcher = state().holder.current
        if g.searcher is None:
            raise ApiError(503, "not_ready", "no index is loaded yet")
    return g.searcher
