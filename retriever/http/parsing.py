"""JSON in and out: request bodies checked (size, framing, media type, syntax, numbers, depth, Unicode)
before any view sees them, and responses that can only be standard JSON.
"""
from __future__ import annotations

import json
import logging
import math
from typing import Any

from flask import request
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import RequestEntityTooLarge

from .errors import ApiError

log = logging.getLogger(__name__)

# Requests are at most three levels deep ({"inquiries": [{"id", "text"}]}); anything far deeper is
# an attack on the parser or on echoing it back, refused before it reaches either.
MAX_JSON_DEPTH = 32
MAX_INTEGER_DIGITS = 100
_READ_BLOCK = 64 * 1024


def json_body(max_bytes: int) -> dict[str, Any]:
    """The request's JSON object, or an :class:`ApiError` naming what is wrong with it."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise ApiError(413, "payload_too_large", f"the body has {request.content_length} bytes; the limit is {max_bytes}")
    if not request.is_json:
        raise ApiError(415, "unsupported_media_type",
                       f"send the body as application/json, not {request.mimetype or 'no content type'}")
    body = parse_json(read_body(max_bytes))
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_body", "the JSON body must be an object")
    return body


def undecoded_codings(transfer_encoding: str | None) -> list[str]:
    """The transfer codings of a ``Transfer-Encoding`` header other than chunked: none is decoded here."""
    codings = [c.strip().lower() for c in (transfer_encoding or "").split(",") if c.strip()]
    return [c for c in codings if c != "chunked"]


def not_implemented_message(codings: list[str]) -> str:
    return (f"transfer coding {', '.join(codings)} is not supported (RFC 9112 6.1): send the body plain, "
            f"with Content-Length or Transfer-Encoding: chunked")


def read_body(max_bytes: int) -> bytes:
    """The body, whatever its framing, reading at most ``max_bytes + 1`` bytes of it.

    A chunked body has no Content-Length to check up front, so the limit is enforced here.
    """
    codings = undecoded_codings(request.headers.get("Transfer-Encoding"))
    if codings:  # gzip bytes would otherwise reach the JSON parser as if they were the body
        raise ApiError(501, "not_implemented", not_implemented_message(codings))
    chunks, size = [], 0
    try:
        while size <= max_bytes:
            chunk = request.stream.read(min(_READ_BLOCK, max_bytes + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except RequestEntityTooLarge:  # werkzeug's own cap (the largest route limit) came first
        size = max_bytes + 1
    except Exception as exc:  # noqa: BLE001 - gunicorn's framing errors are plain Exceptions (ParseException)
        log.info("unreadable request body: %s: %s", type(exc).__name__, exc)
        raise ApiError(400, "malformed_body", "the request body cannot be read: broken chunked framing or "
                                              "the connection ended early") from None
    if size > max_bytes:
        raise ApiError(413, "payload_too_large", f"the body has more than {max_bytes} bytes; the limit is {max_bytes}")
    return b"".join(chunks)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ApiError(400, "invalid_number", f"the number {text[:40]} is too large to represent")
    return value


def _safe_int(text: str) -> int:
    # Large integers parse (a field's own validation bounds them: an id must be within ±2^53, so a
    # client's JSON parser can hold it); only absurd lengths are refused here, before int() spends
    # time on thousands of digits (it refuses past 4,300 anyway).
    if len(text.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise ApiError(400, "invalid_number", f"the integer {text[:40]}… has {len(text.lstrip('-'))} digits; "
                                              f"send large ids as strings")
    return int(text)


def _no_constant(name: str) -> Any:
    raise ApiError(400, "malformed_json", f"{name} is not JSON: numbers must be finite")


def json_depth_exceeds(value: Any, limit: int) -> bool:
    """Whether arrays and objects in ``value`` nest deeper than ``limit`` (without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return False


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Parsers disagree on which of two equal keys wins (Python: the last, some the first): a body
    # that a proxy or a log reads one way and this service another is refused, as the corpus does.
    record = dict(pairs)
    if len(record) != len(pairs):
        seen: set[str] = set()
        repeated = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise ApiError(400, "duplicate_key", f"the JSON body has the key '{repeated[:80]}' twice in one object; "
                                             f"send each key once")
    return record


def parse_json(data: bytes) -> Any:
    """The JSON value in ``data``: standard JSON only (finite numbers, safe integers, Unicode text, bounded depth,
    each key once per object)."""
    try:
        value = json.loads(data, parse_float=_finite_float, parse_int=_safe_int, parse_constant=_no_constant,
                           object_pairs_hook=_unique_keys)
    except RecursionError:
        raise ApiError(400, "malformed_json", f"the JSON body nests deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as exc:  # JSONDecodeError, or bytes that are not UTF-8/16/32
        raise ApiError(400, "malformed_json", f"the request body is not valid JSON ({exc})"[:300]) from None
    if json_depth_exceeds(value, MAX_JSON_DEPTH):
        raise ApiError(400, "malformed_json", f"the JSON body nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        # JSON may escape lone UTF-16 surrogates ("\ud800"), which are not text: refuse them here
        # rather than fail later while echoing them back.
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(400, "malformed_json", "the JSON body contains unpaired surrogate escapes (not Unicode text)"
                       ) from None
    return value


class StandardJSONProvider(DefaultJSONProvider):
    """Flask's JSON, refusing NaN and Infinity: a bug that makes one fails as a 500, not as a body that is not JSON."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        kwargs.setdefault("allow_nan", False)
        return super().dumps(obj, **kwargs)
