"""The search and classification API: ``/v1/search`` and ``/v1/classify``."""
from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, g, jsonify, request
from pydantic import ValidationError

from ..batch.classify import classify_texts
from ..errors import QueryError
from ..scoring import DECISIONS, NO_MATCH
from .errors import ApiError
from .parsing import json_body
from .schemas import classify_error, inquiry_error, search_error
from .state import serving, state

bp = Blueprint("api", __name__)


def _took_ms() -> float:
    return round((time.perf_counter() - g.started) * 1000, 2)


def _note_decision(query: str, decision: str, top_faq_id: str | None, score: float | None,
                   threshold: float | None, route: str) -> None:
    """Count the decision; log a no_match query for the FAQ editors."""
    shared = state()
    shared.metrics.decisions.labels(decision).inc()
    if shared.unmatched is not None and decision == NO_MATCH:
        shared.unmatched.record(query, top_faq_id, score, threshold, serving().version, route)


def _search_params() -> dict[str, Any]:
    if request.method == "GET":
        params: dict[str, Any] = request.args.to_dict()
        if "q" in params:
            params["query"] = params.pop("q")
        return params
    return json_body(state().config.max_body_bytes)


@bp.route("/v1/search", methods=["GET", "POST"])
def search():
    """The best entries for a query, with the answer decision."""
    searcher, shared = serving(), state()
    try:
        # Query strings are all text, so lenient there; JSON has types, so strict ("5" is not 5).
        parsed = shared.schemas.search.model_validate(_search_params(), strict=request.method == "POST")
    except ValidationError as exc:
        raise ApiError(400, *search_error(exc, shared.config)) from None
    try:
        result = searcher.search(parsed.query, parsed.top_k or shared.config.default_top_k, mode=parsed.mode,
                                 threshold=parsed.threshold)
    except QueryError as exc:
        raise ApiError(400, "invalid_query", str(exc)) from None
    top = result.hits[0] if result.hits else None
    _note_decision(parsed.query, result.decision, top and top.faq_id, top and round(top.score, 6), result.threshold,
                   "search")
    return jsonify({**result.to_dict(), "index_version": searcher.version, "took_ms": _took_ms()})


def _valid_inquiries(items: list[Any]) -> tuple[list[tuple[int, Any, str]], list[dict]]:
    """(index, id, text) of each valid inquiry, first of each id only; errors for the others, by index."""
    schema = state().schemas.inquiry
    valid, errors, seen = [], [], set()
    for index, item in enumerate(items):
        try:
            inquiry = schema.model_validate(item, strict=True)
        except ValidationError as exc:
            code, message = inquiry_error(exc)
            errors.append({"index": index, "id": item.get("id") if isinstance(item, dict) else None,
                           "error": code, "message": message})
            continue
        if str(inquiry.id) in seen:
            errors.append({"index": index, "id": inquiry.id, "error": "duplicate_id",
                           "message": f"id {inquiry.id!r} appears earlier in this request"})
            continue
        seen.add(str(inquiry.id))
        valid.append((index, inquiry.id, inquiry.text))
    return valid, errors


@bp.post("/v1/classify")
def classify():
    """Many inquiries in one model call; each answered, or reported under ``errors`` by its index."""
    searcher, shared = serving(), state()
    try:
        envelope = shared.schemas.classify.model_validate(json_body(shared.config.max_batch_body_bytes), strict=True)
    except ValidationError as exc:
        raise ApiError(400, *classify_error(exc)) from None
    valid, errors = _valid_inquiries(envelope.inquiries)
    outcomes = classify_texts(searcher, [text for _, _, text in valid], envelope.threshold) if valid else []
    threshold = envelope.threshold if envelope.threshold is not None else searcher.calibration().get("threshold")
    results = []
    for (index, item_id, text), outcome in zip(valid, outcomes):
        _note_decision(text, outcome["decision"], outcome["top_faq_id"], outcome["score"], threshold, "classify")
        results.append({"index": index, "id": item_id, **outcome})
    counts = {decision: sum(r["decision"] == decision for r in results) for decision in DECISIONS}
    return jsonify({"results": results, "errors": errors, "counts": {**counts, "invalid": len(errors)},
                    "threshold": threshold, "index_version": searcher.version, "took_ms": _took_ms()})
