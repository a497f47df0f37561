"""The HTTP API: a thin Flask layer over a :class:`~retriever.search.Searcher`.

Every error is JSON: ``{"error": "<stable code>", "message": "<what to fix>"}``
with a 4xx status (5xx only for a fault of the service itself, never with a trace).
"""
from __future__ import annotations

import hmac
import json
import logging
import time
from typing import Any

from flask import Flask, g, jsonify, request
from pydantic import ValidationError
from werkzeug.exceptions import BadRequest, HTTPException

from ..batch.classify import classify_texts
from ..config import ServiceConfig
from ..errors import QueryError
from .metrics import Metrics, UnmatchedLog, log_access
from .reload import ReloadRefused, SearcherHolder
from .schemas import classify_error, inquiry_error, openapi_document, request_schemas, search_error
from ..search import Searcher

log = logging.getLogger(__name__)

# Stable codes for werkzeug's HTTP errors that a client can cause.
_HTTP_ERROR_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _error_response(status: int, code: str, message: str):
    return jsonify({"error": code, "message": message}), status


def _json_body(max_bytes: int) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > max_bytes:
        raise ApiError(413, "payload_too_large", f"the body has {request.content_length} bytes; the limit is {max_bytes}")
    if not request.is_json:
        raise ApiError(415, "unsupported_media_type",
                       f"send the body as application/json, not {request.mimetype or 'no content type'}")
    try:
        body = request.get_json()
    except BadRequest:
        raise ApiError(400, "malformed_json", "the request body is not valid JSON") from None
    try:
        # JSON may escape lone UTF-16 surrogates ("\ud800"), which are not text: refuse them here
        # rather than fail later while echoing them back.
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(400, "malformed_json", "the JSON body contains unpaired surrogate escapes (not Unicode text)"
                       ) from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_body", "the JSON body must be an object")
    return body


def _duplicate_ids(valid: list[tuple[int, Any, str]]) -> tuple[list[tuple[int, Any, str]], list[dict]]:
    """Keep the first inquiry of each id; later ones are errors."""
    kept, errors, seen = [], [], set()
    for index, item_id, text in valid:
        if str(item_id) in seen:
            errors.append({"index": index, "id": item_id, "error": "duplicate_id",
                           "message": f"id {item_id!r} appears earlier in this request"})
        else:
            seen.add(str(item_id))
            kept.append((index, item_id, text))
    return kept, errors


def create_app(source: Searcher | SearcherHolder, config: ServiceConfig | None = None) -> Flask:
    """The Flask application serving a searcher, or whatever searcher ``source`` (a holder) holds."""
    config = config or ServiceConfig()
    holder = source if isinstance(source, SearcherHolder) else SearcherHolder.fixed(source)
    metrics = Metrics()
    schemas = request_schemas(config)
    unmatched = UnmatchedLog(config.unmatched_log) if config.unmatched_log else None
    app = Flask(__name__, static_folder="static", static_url_path="/static")
    # The largest body any route takes; each route checks its own, smaller limit.
    app.config["MAX_CONTENT_LENGTH"] = max(config.max_body_bytes, config.max_batch_body_bytes)
    app.json.ensure_ascii = False  # Chinese stays readable in responses
    app.json.sort_keys = False
    app.extensions["retriever"] = {"holder": holder, "config": config, "metrics": metrics}
    if config.cors_origins:
        from flask_cors import CORS

        # Browser clients on other origins (the embeddable widget) may call the API.
        CORS(app, resources={r"/v1/*": {"origins": list(config.cors_origins)}, r"/widget.js": {"origins": "*"}})
    limiter = None
    if config.rate_limit:
        from flask_limiter import Limiter
        from flask_limiter.util import get_remote_address

        # In memory, so per worker process: with N workers a client gets up to N times the limit.
        limiter = Limiter(get_remote_address, app=app, default_limits=[config.rate_limit], storage_uri="memory://",
                          headers_enabled=True)

    def serving() -> Searcher:
        """The searcher for this request, taken once: a reload meanwhile does not change it."""
        if "searcher" not in g:
            g.searcher = holder.current
            if g.searcher is None:
                raise ApiError(503, "not_ready", "no index is loaded yet")
        return g.searcher

    def note_unmatched(query: str, outcome: dict, source_route: str) -> None:
        metrics.decisions.labels(outcome["decision"]).inc()
        if unmatched is not None and outcome["decision"] == "no_match":
            unmatched.record(query, outcome.get("top_faq_id"), outcome.get("score"), outcome.get("threshold"),
                             serving().version, source_route)

    @app.before_request
    def _start_timer():
        g.started = time.perf_counter()

    @app.after_request
    def _observe(response):
        seconds = time.perf_counter() - g.get("started", time.perf_counter())
        route = request.url_rule.rule if request.url_rule else "unmatched"
        metrics.observe_request(route, request.method, response.status_code, seconds)
        searcher = g.get("searcher")
        log_access(request.method, request.path, response.status_code, seconds, request.remote_addr,
                   index_version=searcher.version if searcher else None)
        return response

    @app.errorhandler(ApiError)
    def _api_error(error: ApiError):
        return _error_response(error.status, error.code, error.message)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException):
        code = _HTTP_ERROR_CODES.get(error.code or 500, "http_error")
        response = _error_response(error.code or 500, code, error.description or error.name)
        if error.code == 429 and limiter is not None:
            return response[0], 429, {"Retry-After": "1"}
        return response

    @app.errorhandler(Exception)
    def _unexpected(error: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _error_response(500, "internal_error", "the service failed to handle this request")

    def exempt(view):
        return limiter.exempt(view) if limiter is not None else view

    @app.get("/")
    @exempt
    def page():
        return app.send_static_file("index.html")

    @app.get("/widget.js")
    @exempt
    def widget():
        return app.send_static_file("widget.js")

    @app.get("/healthz")
    @exempt
    def healthz():
        """Alive: the process answers. Index facts when one is loaded."""
        searcher = holder.current
        return jsonify({"status": "ok", "index": searcher.info() if searcher else None})

    @app.get("/readyz")
    @exempt
    def readyz():
        """Ready: an index is loaded and can answer."""
        searcher = holder.current
        if searcher is None:
            raise ApiError(503, "not_ready", "no index is loaded yet")
        return jsonify({"status": "ready", "version": searcher.version})

    @app.get("/metrics")
    @exempt
    def prometheus_metrics():
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        searcher = holder.current
        if searcher is not None:
            metrics.set_index(searcher.version, searcher.index.manifest.get("model", ""))
        return generate_latest(metrics.registry), 200, {"Content-Type": CONTENT_TYPE_LATEST}

    @app.get("/openapi.json")
    @exempt
    def openapi():
        from importlib.metadata import PackageNotFoundError, version

        try:
            release = version("faq-retriever")
        except PackageNotFoundError:
            release = "dev"
        return jsonify(openapi_document(schemas, config, release))

    @app.get("/docs")
    @exempt
    def docs():
        return app.send_static_file("docs.html")

    @app.get("/docs/<path:name>")
    @exempt
    def docs_assets(name: str):
        from pathlib import Path

        import flask_swagger_ui
        from flask import send_from_directory

        # Swagger UI 5 (renders OpenAPI 3.1) as shipped in the flask-swagger-ui package: no CDN.
        return send_from_directory(Path(flask_swagger_ui.__file__).parent / "dist", name)

    @app.post("/admin/reload")
    @exempt
    def admin_reload():
        if not config.admin_token:
            raise ApiError(403, "admin_disabled", "admin endpoints are off: set RETRIEVER_ADMIN_TOKEN to enable them")
        # Header text may hold anything a client sent, even what UTF-8 cannot encode.
        supplied = request.headers.get("Authorization", "").encode("utf-8", "replace")
        if not hmac.compare_digest(supplied, f"Bearer {config.admin_token}".encode()):
            raise ApiError(401, "unauthorized", "send 'Authorization: Bearer <RETRIEVER_ADMIN_TOKEN>'")
        try:
            outcome = holder.reload()
        except ReloadRefused as exc:
            metrics.reloads.labels("refused").inc()
            raise ApiError(409, "reload_refused", str(exc)) from None
        metrics.reloads.labels("changed" if outcome["changed"] else "unchanged").inc()
        return jsonify(outcome)

    @app.route("/v1/search", methods=["GET", "POST"])
    def search():
        searcher = serving()
        if request.method == "GET":
            params: Any = request.args.to_dict()
            if "q" in params:
                params["query"] = params.pop("q")
        else:
            params = _json_body(config.max_body_bytes)
        try:
            # Query strings are all text, so lenient there; JSON has types, so strict ("5" is not 5).
            parsed = schemas.search.model_validate(params, strict=request.method == "POST")
        except ValidationError as exc:
            raise ApiError(400, *search_error(exc, config)) from None
        query, mode, threshold = parsed.query, parsed.mode, parsed.threshold
        top_k = parsed.top_k or config.default_top_k
        try:
            result = searcher.search(query, top_k, mode=mode, threshold=threshold)
        except QueryError as exc:
            raise ApiError(400, "invalid_query", str(exc)) from None
        top = result.hits[0] if result.hits else None
        note_unmatched(query, {"decision": result.decision, "top_faq_id": top and top.faq_id,
                               "score": top and round(top.score, 6), "threshold": result.threshold}, "search")
        return jsonify({
            **result.to_dict(),
            "index_version": searcher.version,
            "took_ms": round((time.perf_counter() - g.started) * 1000, 2),
        })

    @app.post("/v1/classify")
    def classify():
        searcher = serving()
        try:
            envelope = schemas.classify.model_validate(_json_body(config.max_batch_body_bytes), strict=True)
        except ValidationError as exc:
            raise ApiError(400, *classify_error(exc)) from None
        threshold = envelope.threshold
        valid, errors = [], []
        for index, item in enumerate(envelope.inquiries):
            try:
                inquiry = schemas.inquiry.model_validate(item, strict=True)
            except ValidationError as exc:
                code, message = inquiry_error(exc)
                errors.append({"index": index, "id": item.get("id") if isinstance(item, dict) else None,
                               "error": code, "message": message})
                continue
            valid.append((index, inquiry.id, inquiry.text))
        valid, duplicates = _duplicate_ids(valid)
        errors = sorted(errors + duplicates, key=lambda e: e["index"])
        # One model call for the whole request.
        outcomes = classify_texts(searcher, [text for _, _, text in valid], threshold) if valid else []
        effective_threshold = threshold if threshold is not None else searcher.calibration().get("threshold")
        results = []
        for (index, item_id, text), outcome in zip(valid, outcomes):
            note_unmatched(text, {**outcome, "threshold": effective_threshold}, "classify")
            results.append({"index": index, "id": item_id, **outcome})
        counts = {"answer": 0, "ambiguous": 0, "no_match": 0}
        for result in results:
            counts[result["decision"]] += 1
        return jsonify({
            "results": results,
            "errors": errors,
            "counts": {**counts, "invalid": len(errors)},
            "threshold": effective_threshold,
            "index_version": searcher.version,
            "took_ms": round((time.perf_counter() - g.started) * 1000, 2),
        })

    return app
