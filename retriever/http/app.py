"""The application factory: configuration, extensions, error handlers and blueprints; no views here."""
from __future__ import annotations

import time

from flask import Flask, g, request

from ..config import ServiceConfig
from ..registry import CollectionRegistry
from ..search import Searcher
from . import admin, api, dify, feedback, ops, pages, workbench
from . import review
from . import entries
from . import users
from . import content
from .cache import EXTENSION as CACHE_EXTENSION, AnswerCache
from .errors import register_error_handlers
from ..privacy import masker_for
from .logs import UnmatchedLog, log_access
from .metrics import Metrics
from .parsing import StandardJSONProvider
from .ratelimit import rate_limiter
from ..reload import SearcherHolder
from .schemas import request_schemas
from .state import EXTENSION, ServiceState, state


def create_app(source: Searcher | SearcherHolder | CollectionRegistry, config: ServiceConfig | None = None) -> Flask:
    """The Flask application serving a searcher, a holder's searcher, or every collection of a registry."""
    config = config or ServiceConfig()
    collections = _as_registry(source)
    app = Flask(__name__, static_folder="static", static_url_path="/static")
    # The largest body any route takes; each route checks its own, smaller limit.
    app.config["MAX_CONTENT_LENGTH"] = max(config.max_body_bytes, config.max_batch_body_bytes)
    app.json = StandardJSONProvider(app)  # never NaN/Infinity in a body
    app.json.ensure_ascii = False  # Chinese stays readable in responses
    app.json.sort_keys = False
    app.extensions[EXTENSION] = ServiceState(
        collections=collections, config=config, metrics=Metrics(config.metrics_dir), schemas=request_schemas(config),
        unmatched=UnmatchedLog(config.unmatched_log, masker_for(config), config.log_retention_days)
        if config.unmatched_log else None)
    if config.cors_origins:
        from flask_cors import CORS

        # Browser clients on other origins (the embeddable widget) may call the API.
        CORS(app, resources={r"/v1/*": {"origins": list(config.cors_origins)}, r"/widget.js": {"origins": "*"}})
    app.extensions[CACHE_EXTENSION] = AnswerCache(config.cache_size)  # per worker; a reload empties it
    limiter = _rate_limiter(app, config)
    register_error_handlers(app)
    app.before_request(_start_timer)
    app.after_request(_observe)
    for blueprint in (api.bp, dify.bp, feedback.bp, ops.bp, admin.bp, pages.bp, workbench.bp, review.bp, users.bp, entries.bp, content.bp):
        if limiter is not None and blueprint not in (api.bp, dify.bp, feedback.bp):
            limiter.exempt(blueprint)  # only the /v1 API is open to every client
        app.register_blueprint(blueprint)
    return app


def _as_registry(source: Searcher | SearcherHolder | CollectionRegistry) -> CollectionRegistry:
    if isinstance(source, CollectionRegistry):
        return source
    return CollectionRegistry.single(source if isinstance(source, SearcherHolder) else SearcherHolder.fixed(source))


def _rate_limiter(app: Flask, config: ServiceConfig):
    limiter = rate_limiter(app, config)
    app.extensions[EXTENSION].limiter = limiter
    return limiter


def _start_timer() -> None:
    g.started = time.perf_counter()


def _observe(response):
    seconds = time.perf_counter() - g.get("started", time.perf_counter())
    route = request.url_rule.rule if request.url_rule else "unmatched"
    state().metrics.observe_request(route, request.method, response.status_code, seconds)
    searcher = g.get("searcher")
    cached = {"cached": g.cached} if "cached" in g else {}  # searches only: answered from the cache or not
    log_access(request.method, request.path, response.status_code, seconds, request.remote_addr,
               masker_for(state().config), index_version=searcher.version if searcher else None, **cached)
    return response
