"""Dify's External Knowledge API: ``POST /retrieval`` (register this service's URL in Dify; it appends /retrieval)."""
from __future__ import annotations

import hmac

from flask import Blueprint, jsonify, request

from ..errors import QueryError
from ..integrations.dify import INVALID_BODY, DifyError, entry_filter, parse_request, records
from ..registry import UnknownCollection
from .errors import ApiError
from .parsing import json_body
from .state import state

bp = Blueprint("dify", __name__)


def _dify_error(error: DifyError):
    return jsonify({"error_code": error.error_code, "error_msg": error.error_msg}), error.status


def _authorize() -> None:
    """Bearer keys from RETRIEVER_API_KEYS: 1001 for a malformed header, 1002 for a wrong (or no configured) key."""
    keys = state().config.api_keys
    if not keys:
        raise DifyError(403, 1002, "Authorization failed: this service has no API keys (set RETRIEVER_API_KEYS)")
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme != "Bearer" or not key.strip():
        raise DifyError(403, 1001, "Invalid Authorization header format. Expected 'Bearer <api-key>' format.")
    supplied = key.strip().encode("utf-8", "replace")
    if not any(hmac.compare_digest(supplied, known.encode()) for known in keys):
        raise DifyError(403, 1002, "Authorization failed: unknown API key")


@bp.post("/retrieval")
def retrieval():
    """Records for a query in the collection named by ``knowledge_id``; none when nothing answers it."""
    try:
        _authorize()
        config = state().config
        try:
            body = json_body(config.max_body_bytes)
        except ApiError as exc:  # size, media type, JSON syntax: the API's checks, in Dify's form
            raise DifyError(exc.status, INVALID_BODY, exc.message) from None
        wanted = parse_request(body, config.max_top_k, config.max_query_chars)
        try:
            searcher = state().collections.holder(wanted.knowledge_id).current
        except UnknownCollection as exc:
            raise DifyError(404, 2001, f"The knowledge does not exist: {exc}") from None
        if searcher is None:
            raise DifyError(503, 2002, f"The knowledge '{wanted.knowledge_id}' is not ready yet")
        try:
            result = searcher.search(wanted.query, wanted.top_k, entry_filter=entry_filter(wanted))
        except QueryError as exc:
            raise DifyError(400, 3001, str(exc)) from None
    except DifyError as error:
        return _dify_error(error)
    return jsonify({"records": records(result, wanted.score_threshold)})
