"""The application factory: configuration, extensions, error handlers and blueprints; no views here."""
from __future__ import annotations

import time

from flask import Flask, g, request

from ..config import ServiceConfig
from ..search import Searcher
from . import admin, api, ops, pages
from .errors import register_error_handlers
from .logs import UnmatchedLog, log_access
from .metrics import Metrics
from .parsing import StandardJSONProvider
from .reload import SearcherHolder
from .schemas import request_schemas
from .state import EXTENSION, ServiceState, state


def create_app(source: Searcher | SearcherHolder, config: ServiceConfig | None = None) -> Flask:
    """The Flask application serving a searcher, or whatever searcher ``source`` (a holder) holds."""
    config = config or ServiceConfig()
    holder = source if isinstance(source, SearcherHolder) else SearcherHolder.fixed(source)
    app = Flask(__name__, static_folder="static", static_url_path="/static")
    # The largest body any route takes; each route checks its own, smaller limit.
    app.config["MAX_CONTENT_LENGTH"] = max(config.max_body_bytes, config.max_batch_body_bytes)
    app.json = StandardJSONProvider(app)  # never NaN/Infinity in a body
    app.json.ensure_ascii = False  # Chinese stays readable in responses
    app.json.sort_keys = False
    app.extensions[EXTENSION] = ServiceState(
        holder=holder, config=config, metrics=Metrics(), schemas=request_schemas(config),
        unmatched=UnmatchedLog(config.unmatched_log) if config.unmatched_log else None)
    if config.cors_origins:
        from flask_cors import CORS

        # Browser clients on other origins (the embeddable widget) may call the API.
        CORS(app, resources={r"/v1/*": {"origins": list(config.cors_origins)}, r"/widget.js": {"origins": "*"}})
    limiter = _rate_limiter(app, config)
    register_error_handlers(app)
    app.before_request(_start_timer)
    app.after_request(_observe)
    for blueprint in (api.bp, ops.bp, admin.bp, pages.bp):
        if limiter is not None and blueprint is not api.bp:
            limiter.exempt(blueprint)  # only the API costs model time
        app.register_blueprint(blueprint)
    return app


def _rate_limiter(app: Flask, config: ServiceConfig):
    if not config.rate_limit:
        return None
    from flask_limiter import Limiter
    from flask_limiter.util import get_remote_address

    # In memory, so per worker process: with N workers a client gets up to N times the limit.
    limiter = Limiter(get_remote_address, app=app, default_limits=[config.rate_limit], storage_uri="memory://",
                      headers_enabled=True)
    app.extensions[EXTENSION].limiter = limiter
    return limiter


def _start_timer() -> None:
    g.started = time.perf_counter()


def _observe(response):
    seconds = time.perf_counter() - g.get("started", time.perf_counter())
    route = request.url_rule.rule if request.url_rule else "unmatched"
    state().metrics.observe_request(route, request.method, response.status_code, seconds)
    searcher = g.get("searcher")
    log_access(request.method, request.path, response.status_code, seconds, request.remote_addr,
               index_version=searcher.version if searcher else None)
    return response
