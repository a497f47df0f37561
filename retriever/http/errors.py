"""Every error the API gives is JSON: ``{"error": "<stable code>", "message": "<what to fix>"}``.

4xx for what a client can fix, 5xx only for a fault of the service itself, never with a trace.
"""
from __future__ import annotations

import logging
import math
import time

from flask import Flask, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

# Stable codes for werkzeug's HTTP errors that a client can cause.
HTTP_ERROR_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


class ApiError(Exception):
    """An error answered as JSON with ``status``; raised by views and request parsing."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None):
    return jsonify({"error": code, "message": message}), status, headers or {}


def _api_error(error: ApiError):
    return error_response(error.status, error.code, error.message, error.headers)


def _http_error(error: HTTPException):
    status = error.code or 500
    # werkzeug's own headers carry Allow on 405 (RFC 9110 requires it) and Retry-After on 429.
    headers = {k: v for k, v in error.get_headers() if k.lower() in ("allow", "retry-after")}
    if status == 429:
        headers.setdefault("Retry-After", "1")
    return error_response(status, HTTP_ERROR_CODES.get(status, "http_error"), error.description or error.name,
                          headers)


def _unexpected(error: Exception):
    log.exception("unhandled error on %s %s", request.method, request.path)
    return error_response(500, "internal_error", "the service failed to handle this request")


def retry_after_seconds(reset_time: float | None, now: float, fallback: str | None = None) -> int:
    """Whole seconds until the rate-limit window resets, rounded up, at least 1 (0 invites a retry at once)."""
    if reset_time is not None:
        return max(1, math.ceil(reset_time - now))
    return max(1, int(fallback)) if fallback and fallback.isdigit() else 1


def _window_reset_time() -> float | None:
    """When the rate limit that refused this request resets (flask-limiter's window), if known."""
    for limiter in current_app.extensions.get("limiter", ()):
        current = limiter.current_limit
        if current is not None and current.breached:  # another refusal (a budget) set its own Retry-After
            return float(current.window[0])  # limits' WindowStats.reset_time, epoch seconds
    return None


def _truthful_retry_after(response):
    # flask-limiter writes int(ceil(reset) - now): 0 in the last second of a window, else up to 1 s long.
    if response.status_code == 429:
        response.headers["Retry-After"] = str(retry_after_seconds(_window_reset_time(), time.time(),
                                                                  response.headers.get("Retry-After")))
    return response


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(ApiError, _api_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
    # Flask runs after_request functions last-registered first: at the front of the list, this
    # one has the last word on Retry-After, after the rate limiter's own headers.
    app.after_request_funcs.setdefault(None, []).insert(0, _truthful_retry_after)
