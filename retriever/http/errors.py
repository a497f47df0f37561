"""Every error the API gives is JSON: ``{"error": "<stable code>", "message": "<what to fix>"}``.

4xx for what a client can fix, 5xx only for a fault of the service itself, never with a trace.
"""
from __future__ import annotations

import logging

from flask import Flask, jsonify, request
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

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None):
    return jsonify({"error": code, "message": message}), status, headers or {}


def _api_error(error: ApiError):
    return error_response(error.status, error.code, error.message)


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


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(ApiError, _api_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
