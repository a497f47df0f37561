"""Administration: ``POST /admin/reload`` behind a bearer token."""
from __future__ import annotations

import hmac

from flask import Blueprint, jsonify, request

from .errors import ApiError
from .reload import ReloadRefused
from .state import state

bp = Blueprint("admin", __name__)


def _require_token() -> None:
    token = state().config.admin_token
    if not token:
        raise ApiError(403, "admin_disabled", "admin endpoints are off: set RETRIEVER_ADMIN_TOKEN to enable them")
    # Header text may hold anything a client sent, even what UTF-8 cannot encode.
    supplied = request.headers.get("Authorization", "").encode("utf-8", "replace")
    if not hmac.compare_digest(supplied, f"Bearer {token}".encode()):
        raise ApiError(401, "unauthorized", "send 'Authorization: Bearer <RETRIEVER_ADMIN_TOKEN>'")


@bp.post("/admin/reload")
def reload():
    """Load the index's current version beside the served one and swap."""
    _require_token()
    shared = state()
    try:
        outcome = shared.holder.reload()
    except ReloadRefused as exc:
        shared.metrics.reloads.labels("refused").inc()
        raise ApiError(409, "reload_refused", str(exc)) from None
    shared.metrics.reloads.labels("changed" if outcome["changed"] else "unchanged").inc()
    return jsonify(outcome)
