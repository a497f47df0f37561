"""Reading request bodies: size, media type, JSON syntax and Unicode checked before any view sees them."""
from __future__ import annotations

import json
from typing import Any

from flask import request
from werkzeug.exceptions import BadRequest

from .errors import ApiError


def json_body(max_bytes: int) -> dict[str, Any]:
    """The request's JSON object, or an :class:`ApiError` naming what is wrong with it."""
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
