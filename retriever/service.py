"""The HTTP API: a thin Flask layer over a :class:`~retriever.search.Searcher`.

Every error is JSON: ``{"error": "<stable code>", "message": "<what to fix>"}``
with a 4xx status (5xx only for a fault of the service itself, never with a trace).
"""
from __future__ import annotations

import logging
import time
from typing import Any

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from .classify import classify_texts
from .config import ServiceConfig
from .errors import QueryError
from .normalize import normalize
from .scoring import MODES
from .search import Searcher

log = logging.getLogger(__name__)

# Stable codes for werkzeug's HTTP errors that a client can cause.
_HTTP_ERROR_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _error_response(status: int, code: str, message: str):
    return jsonify({"error": code, "message": message}), status


def _parse_top_k(value: Any, config: ServiceConfig, from_query_string: bool) -> int:
    if value is None:
        return config.default_top_k
    if from_query_string:
        try:
            value = int(value.strip())
        except ValueError:
            raise ApiError(400, "invalid_top_k", f"top_k must be an integer, got {value!r}") from None
    elif isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(400, "invalid_top_k", f"top_k must be an integer, got {value!r}")
    if not 1 <= value <= config.max_top_k:
        raise ApiError(400, "invalid_top_k", f"top_k must be between 1 and {config.max_top_k}, got {value}")
    return value


def _parse_threshold(value: Any, from_query_string: bool) -> float | None:
    if value is None:
        return None
    if from_query_string:
        try:
            value = float(value)
        except ValueError:
            raise ApiError(400, "invalid_threshold", f"threshold must be a number, got {value!r}") from None
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ApiError(400, "invalid_threshold", f"threshold must be a number, got {value!r}")
    if not -1.0 <= value <= 1.0:
        raise ApiError(400, "invalid_threshold", f"threshold must be between -1 and 1, got {value}")
    return float(value)


def _parse_mode(value: Any) -> str | None:
    if value is None:
        return None
    if value not in MODES:
        raise ApiError(400, "invalid_mode", f"mode must be one of {', '.join(MODES)}, got {value!r}")
    return value


def _parse_query(value: Any, config: ServiceConfig) -> str:
    if value is None:
        raise ApiError(400, "missing_query", "the query is missing: pass ?q=... or {\"query\": \"...\"}")
    if not isinstance(value, str):
        raise ApiError(400, "invalid_query", f"the query must be a string, got {type(value).__name__}")
    if not value.strip():
        raise ApiError(400, "missing_query", "the query is blank")
    if len(value) > config.max_query_chars:
        raise ApiError(400, "query_too_long",
                       f"the query has {len(value)} characters; the limit is {config.max_query_chars}")
    return value


def _json_body(max_bytes: int) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > max_bytes:
        raise ApiError(413, "payload_too_large", f"the body has {request.content_length} bytes; the limit is {max_bytes}")
    if not request.is_json:
        raise ApiError(415, "unsupported_media_type",
                       f"send the body as application/json, not {request.mimetype or 'no content type'}")
    body = request.get_json(silent=True)
    if body is None:
        raise ApiError(400, "malformed_json", "the request body is not valid JSON")
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_body", "the JSON body must be an object")
    return body


def _check_fields(body: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ApiError(400, "unknown_field",
                       f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")


def _validate_inquiries(items: Any, config: ServiceConfig) -> tuple[list[tuple[int, str, str]], list[dict]]:
    """Split a classify request's items into valid ``(index, id, text)`` and per-item errors."""
    if not isinstance(items, list) or not items:
        raise ApiError(400, "invalid_inquiries", "'inquiries' must be a non-empty list of {\"id\", \"text\"} objects")
    if len(items) > config.max_batch:
        raise ApiError(400, "too_many_inquiries", f"{len(items)} inquiries; the limit is {config.max_batch} a request")
    valid, errors, seen = [], [], set()

    def reject(index: int, item_id: Any, code: str, message: str) -> None:
        errors.append({"index": index, "id": item_id, "error": code, "message": message})

    for index, item in enumerate(items):
        item_id = item.get("id") if isinstance(item, dict) else None
        if not isinstance(item, dict):
            reject(index, None, "invalid_item", "an inquiry must be an object with 'id' and 'text'")
        elif set(item) - {"id", "text"}:
            reject(index, item_id, "unknown_field", f"unknown field(s) {', '.join(sorted(set(item) - {'id', 'text'}))}")
        elif isinstance(item_id, bool) or not isinstance(item_id, (str, int)) or str(item_id).strip() == "":
            reject(index, item_id, "missing_id", "'id' must be a non-empty string or an integer")
        elif str(item_id) in seen:
            reject(index, item_id, "duplicate_id", f"id {item_id!r} appears earlier in this request")
        elif not isinstance(item.get("text"), str) or not normalize(item["text"]):
            reject(index, item_id, "missing_text", "'text' must be a non-empty string")
        elif len(item["text"]) > config.max_query_chars:
            reject(index, item_id, "text_too_long",
                   f"'text' has {len(item['text'])} characters; the limit is {config.max_query_chars}")
        else:
            seen.add(str(item_id))
            valid.append((index, item_id, item["text"]))
    return valid, errors


def create_app(searcher: Searcher, config: ServiceConfig | None = None) -> Flask:
    """The Flask application serving ``searcher``."""
    config = config or ServiceConfig()
    app = Flask(__name__, static_folder="static", static_url_path="/static")
    # The largest body any route takes; each route checks its own, smaller limit.
    app.config["MAX_CONTENT_LENGTH"] = max(config.max_body_bytes, config.max_batch_body_bytes)
    app.json.ensure_ascii = False  # Chinese stays readable in responses
    app.json.sort_keys = False
    app.extensions["retriever"] = {"searcher": searcher, "config": config}
    if config.cors_origins:
        from flask_cors import CORS

        # Browser clients on other origins (the embeddable widget) may call the API.
        CORS(app, resources={r"/v1/*": {"origins": list(config.cors_origins)}, r"/widget.js": {"origins": "*"}})

    @app.errorhandler(ApiError)
    def _api_error(error: ApiError):
        return _error_response(error.status, error.code, error.message)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException):
        code = _HTTP_ERROR_CODES.get(error.code or 500, "http_error")
        return _error_response(error.code or 500, code, error.description or error.name)

    @app.errorhandler(Exception)
    def _unexpected(error: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _error_response(500, "internal_error", "the service failed to handle this request")

    @app.get("/")
    def page():
        return app.send_static_file("index.html")

    @app.get("/widget.js")
    def widget():
        return app.send_static_file("widget.js")

    @app.get("/healthz")
    def healthz():
        return jsonify({"status": "ok", "index": searcher.info()})

    @app.route("/v1/search", methods=["GET", "POST"])
    def search():
        started = time.perf_counter()
        from_query_string = request.method == "GET"
        if from_query_string:
            params = request.args.to_dict()
            params["query"] = params.pop("q", None)
        else:
            params = _json_body(config.max_body_bytes)
        _check_fields(params, {"query", "top_k", "threshold", "mode"})
        query = _parse_query(params.get("query"), config)
        top_k = _parse_top_k(params.get("top_k"), config, from_query_string)
        threshold = _parse_threshold(params.get("threshold"), from_query_string)
        mode = _parse_mode(params.get("mode"))
        try:
            result = searcher.search(query, top_k, mode=mode, threshold=threshold)
        except QueryError as exc:
            raise ApiError(400, "invalid_query", str(exc)) from None
        return jsonify({
            **result.to_dict(),
            "index_version": searcher.version,
            "took_ms": round((time.perf_counter() - started) * 1000, 2),
        })

    @app.post("/v1/classify")
    def classify():
        started = time.perf_counter()
        body = _json_body(config.max_batch_body_bytes)
        _check_fields(body, {"inquiries", "threshold"})
        threshold = _parse_threshold(body.get("threshold"), from_query_string=False)
        valid, errors = _validate_inquiries(body.get("inquiries"), config)
        # One model call for the whole request.
        outcomes = classify_texts(searcher, [text for _, _, text in valid], threshold) if valid else []
        results = [{"index": index, "id": item_id, **outcome}
                   for (index, item_id, _), outcome in zip(valid, outcomes)]
        counts = {"answer": 0, "ambiguous": 0, "no_match": 0}
        for result in results:
            counts[result["decision"]] += 1
        return jsonify({
            "results": results,
            "errors": errors,
            "counts": {**counts, "invalid": len(errors)},
            "threshold": threshold if threshold is not None else searcher.calibration().get("threshold"),
            "index_version": searcher.version,
            "took_ms": round((time.perf_counter() - started) * 1000, 2),
        })

    return app
