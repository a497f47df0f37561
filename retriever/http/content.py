"""What the editors learn about their content: ``/admin/api/expiring`` (validity dates ahead) and
``/admin/api/hits`` (how often each entry answers, how often it was 没帮助).

Both read the served index (the entries as published) and are open to editors and reviewers.
Hits are counted here too: :func:`count_answer` after every decision, :func:`count_unhelpful` after
没帮助 feedback, into this worker's :class:`~retriever.editorial.hits.HitCounter` (``RETRIEVER_HITS_DIR``,
default ``<data folder>/hits``; ``off`` turns counting off).
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Blueprint, current_app, g, jsonify, request
from pydantic import BaseModel, Field

from ..editorial.hits import SORTS, HitCounter, open_counter, sorted_rows
from ..scoring import ANSWER
from ..validity import CHANGE_KINDS, upcoming_changes
from .access import require_any
from .errors import ApiError
from .state import EXTENSION, serving

bp = Blueprint("content", __name__)
HITS = "retriever_hits"  # app.extensions key: this worker's HitCounter, or None (counting off)
MAX_DAYS = 366
DEFAULT_DAYS = 30
MAX_LIMIT = 5000
DEFAULT_LIMIT = 200


@bp.record_once
def _setup(setup) -> None:
    setup.app.extensions[HITS] = open_counter(setup.app.extensions[EXTENSION].config.hits_dir)


def _counter() -> HitCounter | None:
    return current_app.extensions.get(HITS)


def count_answer(decision: str, faq_id: str | None) -> None:
    """Count ``faq_id`` as answering this request's query when the decision is ``answer`` (nothing else kept)."""
    counter = _counter()
    if counter is not None and decision == ANSWER and faq_id:
        counter.record_answer(g.get("collection") or "", faq_id)


def count_unhelpful(faq_id: str) -> None:
    """Count 没帮助 on ``faq_id`` of the default collection (an id it does not hold is not kept)."""
    counter = _counter()
    if counter is None:
        return
    try:
        searcher = serving()
    except ApiError:
        return  # nothing served: nothing to count against
    if faq_id in searcher.entry_ids:
        counter.record_unhelpful(g.collection, faq_id)


def _number(name: str, default: int, maximum: int) -> int:
    value = request.args.get(name)
    if value is None:
        return default
    if not value.isdigit() or not 1 <= int(value) <= maximum:
        raise ApiError(400, f"invalid_{name}", f"'{name}' must be a whole number from 1 to {maximum}; got {value!r}")
    return int(value)


def _known_args(*names: str) -> None:
    unknown = sorted(set(request.args) - set(names))
    if unknown:
        raise ApiError(400, "unknown_parameter", f"unknown parameter(s) {', '.join(map(repr, unknown))}; "
                                                 f"allowed: {', '.join(names)}")


@bp.get("/admin/api/expiring")
def expiring():
    """Entries whose last valid day or next answer version falls in the next ``days`` days, and those not valid today."""
    require_any("editor", "reviewer")
    _known_args("days", "collection")
    days = _number("days", DEFAULT_DAYS, MAX_DAYS)
    searcher = serving(request.args.get("collection") or None)
    today: dt.date = searcher.clock()
    changes = upcoming_changes(searcher.index.entries, today, days)
    return jsonify({"today": today.isoformat(), "days": days, "index_version": searcher.version,
                    "changes": [change.to_dict() for change in changes]})


@bp.get("/admin/api/hits")
def hits():
    """Every entry of the served index with its hit counts (zero for those nobody asked about), sorted."""
    require_any("editor", "reviewer")
    _known_args("sort", "limit", "collection")
    sort = request.args.get("sort", "hits")
    if sort not in SORTS:
        raise ApiError(400, "invalid_sort", f"'sort' must be one of {', '.join(SORTS)}; got {sort!r}")
    limit = _number("limit", DEFAULT_LIMIT, MAX_LIMIT)
    collection = request.args.get("collection") or None
    searcher = serving(collection)
    counter = _counter()
    if counter is None:
        raise ApiError(403, "hits_disabled", "这里不统计命中次数（RETRIEVER_HITS_DIR=off）")
    rows = sorted_rows(searcher.index.entries, counter.totals(g.collection), sort)
    return jsonify({"sort": sort, "index_version": searcher.version, "total": len(rows),
                    "never_hit": sum(row["hits"] == 0 for row in rows), "entries": rows[:limit]})


# --- the OpenAPI document ----------------------------------------------------------------------------------


class UpcomingChangeModel(BaseModel):
    faq_id: str
    question: str
    kind: str = Field(description="expires (its last valid day), starts, answer_changes (an answer version takes "
                                  "over), not_yet_valid (starts after the window), expired (no longer answered)",
                      json_schema_extra={"enum": list(CHANGE_KINDS)})
    date: str = Field(description="the day (YYYY-MM-DD, the service's time zone)")
    days_left: int = Field(description="days from today; negative for an expired entry")


class ExpiringResponse(BaseModel):
    today: str = Field(description="the service's date (RETRIEVER_TODAY when set)")
    days: int
    index_version: str
    changes: list[UpcomingChangeModel]


class EntryHitsModel(BaseModel):
    faq_id: str
    question: str
    category: str | None
    hits: int = Field(description="searches it answered (decision answer, first hit), every worker and restart")
    unhelpful: int = Field(description="没帮助 feedback on its answer")
    last_hit: float | None = Field(description="Unix time it last answered; null: never")


class HitsResponse(BaseModel):
    sort: str
    index_version: str
    total: int = Field(description="entries in the served index")
    never_hit: int = Field(description="entries that never answered")
    entries: list[EntryHitsModel]


def openapi_paths(components: Any, error: dict) -> dict:
    """This blueprint's operations for /openapi.json."""
    from .openapi import ADMIN_TOKEN, _errors, _json, _operation

    collection = {"name": "collection", "in": "query", "required": False, "schema": {"type": "string"},
                  "description": "a collection (default: the default one)"}
    return {
        "/admin/api/expiring": {"get": _operation(
            "listExpiring", "admin", "Entries whose validity ends, starts or whose answer changes soon",
            {"200": _json(components.ref(ExpiringResponse), "soonest first; expired entries last"),
             **_errors(error, 400, 401, 403, 404, 429, 503, 500, 431)},
            security=[{ADMIN_TOKEN: []}],
            parameters=[{"name": "days", "in": "query", "required": False,
                         "schema": {"type": "integer", "minimum": 1, "maximum": MAX_DAYS, "default": DEFAULT_DAYS},
                         "description": "the window ahead, in days"}, collection])},
        "/admin/api/hits": {"get": _operation(
            "listHits", "admin", "Every entry with how often it answered and was marked unhelpful",
            {"200": _json(components.ref(HitsResponse), "entries in the order asked"),
             **_errors(error, 400, 401, 403, 404, 429, 503, 500, 431)},
            security=[{ADMIN_TOKEN: []}],
            parameters=[{"name": "sort", "in": "query", "required": False,
                         "schema": {"type": "string", "enum": list(SORTS), "default": "hits"},
                         "description": "hits, unhelpful, last_hit: most first; never: entries never hit first"},
                        {"name": "limit", "in": "query", "required": False,
                         "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT}},
                        collection])},
    }
