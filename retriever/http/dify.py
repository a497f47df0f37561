"""Dify's External Knowledge API: ``POST /retrieval`` (register this service's URL in Dify; it appends /retrieval).

Dify keeps a response only when it is 200 and reads errors as ``{"error_code", "error_msg"}``, so
every other answer of this route, whoever makes it (the view, body parsing, routing's 405, the rate
limiter's 429, a failure's 500), leaves in that form (:func:`_in_difys_form`).
"""
from __future__ import annotations

import json
import logging

from flask import Blueprint, Response, g, jsonify, request

from ..errors import QueryError
from ..integrations.dify import HTTP_ERROR_CODES, INVALID_BODY, DifyError, entry_filter, parse_request, records
from ..registry import UnknownCollection
from .api import note_result
from .errors import ApiError
from .parsing import json_body
from .ratelimit import bearer_key, known_key
from .state import state

bp = Blueprint("dify", __name__)
log = logging.getLogger(__name__)
ROUTE = "/retrieval"


def _dify_error(error: DifyError):
    return jsonify({"error_code": error.error_code, "error_msg": error.error_msg}), error.status


def _authorize() -> None:
    """Bearer keys from RETRIEVER_API_KEYS: 1001 for a malformed header, 1002 for a wrong (or no configured) key."""
    keys = state().config.api_keys
    if not keys:
        raise DifyError(403, 1002, "Authorization failed: this service has no API keys (set RETRIEVER_API_KEYS)")
    header = request.headers.get("Authorization", "")
    if bearer_key(header) is None:
        raise DifyError(403, 1001, "Invalid Authorization header format. Expected 'Bearer <api-key>' format.")
    if known_key(header, keys) is None:
        raise DifyError(403, 1002, "Authorization failed: unknown API key")


@bp.post(ROUTE)
def retrieval():
    """Records for a query in the collection named by ``knowledge_id``; suggestions only when nothing answers it."""
    try:
        _authorize()
        config = state().config
        try:
            body = json_body(config.max_body_bytes)
        except ApiError as exc:  # size, media type, JSON syntax: the API's checks, in Dify's form
            raise DifyError(exc.status, INVALID_BODY, exc.message) from None
        wanted = parse_request(body, config.max_top_k, config.max_query_chars, config.default_top_k)
        try:
            searcher = state().collections.holder(wanted.knowledge_id).current
        except UnknownCollection as exc:
            raise DifyError(404, 2001, f"The knowledge does not exist: {exc}") from None
        if searcher is None:
            raise DifyError(503, 2002, f"The knowledge '{wanted.knowledge_id}' is not ready yet")
        g.searcher = searcher  # the version in the access log and the unmatched log
        g.collection = wanted.knowledge_id  # what hit counts are kept under
        try:
            result = searcher.search(wanted.query, wanted.top_k, entry_filter=entry_filter(wanted))
        except QueryError as exc:
            raise DifyError(400, INVALID_BODY, str(exc)) from None
    except DifyError as error:
        return _dify_error(error)
    if wanted.truncated_from is not None:
        # The length only: the text may carry personal data.
        log.warning("dify query truncated from %d to %d characters (knowledge %s)", wanted.truncated_from,
                    len(wanted.query), wanted.knowledge_id)
    note_result(wanted.query, result, "dify")
    return jsonify({"records": records(result, wanted.score_threshold, wanted.truncated_from is not None)})


@bp.after_app_request
def _in_difys_form(response: Response) -> Response:
    """Any error of this route (405 and 429 come from outside the view) as ``{"error_code", "error_msg"}``."""
    if request.path != ROUTE or response.status_code < 400 or not response.is_json:
        return response
    body = response.get_json(silent=True)
    if not isinstance(body, dict) or "error_code" in body:
        return response
    message = body.get("message") or body.get("error") or f"HTTP {response.status_code}"
    code = HTTP_ERROR_CODES.get(response.status_code, 5001 if response.status_code >= 500 else INVALID_BODY)
    response.set_data(json.dumps({"error_code": code, "error_msg": message}, ensure_ascii=False))
    return response
