"""The search and classification API, per collection: ``/v1/collections/<name>/search|classify``.

``/v1/search`` and ``/v1/classify`` serve the default collection.
"""
from __future__ import annotations

import contextlib
import dataclasses
import time
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request
from pydantic import ValidationError

from ..batch.classify import classify_texts
from ..cascade import PATHS
from ..encoders.coalescing import batch_work
from ..errors import QueryError
from ..filters import metadata_filter
from ..normalize import normalize
from ..results import SearchResult
from ..scoring import DECISIONS, NO_MATCH
from .content import count_answer
from .cache import EXTENSION as CACHE_EXTENSION, AnswerCache, answer_key, cache_control, etag, etag_matches
from .errors import ApiError
from .parsing import json_body
from .ratelimit import BatchAdmission, Refused, client_identity
from .schemas import classify_error, inquiry_error, search_error
from .state import EXTENSION, serving, state

bp = Blueprint("api", __name__)
ADMISSION = "retriever_batch_admission"  # app.extensions key: this worker's BatchAdmission


@bp.record_once
def _configure_admission(setup) -> None:
    app = setup.app
    app.extensions[ADMISSION] = BatchAdmission.from_config(app.extensions[EXTENSION].config)


def _took_ms() -> float:
    return round((time.perf_counter() - g.started) * 1000, 2)


def note_decision(query: str, decision: str, top_faq_id: str | None, score: float | None,
                  threshold: float | None, route: str, path: str) -> None:
    """Count the decision and the cascade path that answered; log a no_match query for the FAQ editors.

    Every route that decides calls this (search, classify, Dify's /retrieval), so all count alike."""
    shared = state()
    shared.metrics.count_decision(route, decision, path)
    count_answer(decision, top_faq_id)
    if shared.unmatched is not None and decision == NO_MATCH:
        shared.unmatched.record(query, top_faq_id, score, threshold, serving().version, route)


def note_result(query: str, result: SearchResult, route: str) -> None:
    """:func:`note_decision` for one search result (its first hit is what the unmatched log names)."""
    shared = state()
    shared.metrics.count_decision(route, result.decision, result.path)
    count_answer(result.decision, result.hits[0].faq_id if result.hits else None)
    if shared.unmatched is not None:
        shared.unmatched.record_result(query, result, serving().version, route)


def _search_params() -> dict[str, Any]:
    if request.method == "GET":
        params: dict[str, Any] = request.args.to_dict()
        if "q" in params:
            params["query"] = params.pop("q")
        for name in ("category", "tags"):  # repeatable: ?tags=流程&tags=在线办理
            if name in params:
                params[name] = request.args.getlist(name)
        return params
    return json_body(state().config.max_body_bytes)


def _entry_filter(parsed: Any):
    categories = [parsed.category] if isinstance(parsed.category, str) else parsed.category
    return metadata_filter(categories, parsed.tags)


@bp.get("/v1/collections")
def collections():
    """The collections served: name, entries, version, model, mode, calibration."""
    registry = state().collections
    return jsonify({"collections": registry.describe(), "default": registry.default_name()})


@bp.route("/v1/search", methods=["GET", "POST"])
@bp.route("/v1/collections/<name>/search", methods=["GET", "POST"])
def search(name: str | None = None):
    """The best entries for a query, with the answer decision."""
    searcher, shared = serving(name), state()
    try:
        # Query strings are all text, so lenient there; JSON has types, so strict ("5" is not 5).
        parsed = shared.schemas.search.model_validate(_search_params(), strict=request.method == "POST")
    except ValidationError as exc:
        raise ApiError(400, *search_error(exc, shared.config)) from None
    top_k = parsed.top_k or shared.config.default_top_k
    key = _answer_key(name, searcher, parsed, top_k)
    tag = etag(key) if key is not None and request.method == "GET" else None
    if tag is not None and etag_matches(request.headers.get("If-None-Match"), tag):
        return _with_cache_headers(Response(status=304), tag)  # the client's copy is this answer: no model call
    result = _search_once(searcher, parsed, top_k, key)
    note_result(parsed.query, result, "search")
    g.answer_path = result.path  # for the access log
    response = jsonify({**result.to_dict(), "index_version": searcher.version, "took_ms": _took_ms()})
    return _with_cache_headers(response, tag) if tag is not None else response


def _answer_key(name: str | None, searcher, parsed: Any, top_k: int) -> tuple | None:
    """The answer cache's key for this search; None for a query the searcher will refuse anyway."""
    try:
        # The validity epoch too: on the day an entry expires or a new answer takes over, the key changes.
        version = f"{searcher.version}@{searcher.validity_epoch()}"
        return answer_key(name or state().collections.default_name(), version, parsed.query, top_k,
                          parsed.mode, parsed.threshold, parsed.category, parsed.tags)
    except UnicodeError:
        return None


def _search_once(searcher, parsed: Any, top_k: int, key: tuple | None):
    """The answer from this worker's cache if it holds it, else from the model (then kept)."""
    cache: AnswerCache = current_app.extensions[CACHE_EXTENSION]
    use_cache = cache.size > 0 and key is not None
    if use_cache:
        cache.observe(key[0], searcher)
        if (cached := cache.get(key)) is not None:
            g.cached = True
            state().metrics.cache_lookups.labels("hit").inc()
            return dataclasses.replace(cached, query=parsed.query)  # the query as this client wrote it
    try:
        result = searcher.search(parsed.query, top_k, mode=parsed.mode, threshold=parsed.threshold,
                                 entry_filter=_entry_filter(parsed))
    except QueryError as exc:
        raise ApiError(400, "invalid_query", str(exc)) from None
    g.cached = False
    if use_cache:
        state().metrics.cache_lookups.labels("miss").inc()
        cache.put(key, result)
    return result


def _with_cache_headers(response: Response, tag: str) -> Response:
    response.headers["ETag"] = tag
    response.headers["Cache-Control"] = cache_control(state().config.cache_max_age)
    return response


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


@contextlib.contextmanager
def _admitted(texts: list[str], api_keys: tuple[str, ...]):
    """Run the block within this worker's batch bounds (BatchAdmission), charged to this client; else refuse."""
    chars = sum(len(normalize(text)) for text in texts)  # what the model reads
    client = client_identity(request.headers.get("Authorization", ""), request.remote_addr, api_keys)
    try:
        with current_app.extensions[ADMISSION].admitted(client, chars, time.time()), \
                state().metrics.batch_jobs.track_inprogress():
            yield
    except Refused as refused:
        headers = {"Retry-After": str(refused.retry_after)} if refused.retry_after else None
        raise ApiError(refused.status, refused.code, refused.message, headers) from None


@bp.post("/v1/classify")
@bp.post("/v1/collections/<name>/classify")
def classify(name: str | None = None):
    """Many inquiries in one model call; each answered, or reported under ``errors`` by its index."""
    searcher, shared = serving(name), state()
    try:
        envelope = shared.schemas.classify.model_validate(json_body(shared.config.max_batch_body_bytes), strict=True)
    except ValidationError as exc:
        raise ApiError(400, *classify_error(exc)) from None
    valid, errors = _valid_inquiries(envelope.inquiries)
    texts = [text for _, _, text in valid]
    with _admitted(texts, shared.config.api_keys), batch_work():
        outcomes = classify_texts(searcher, texts, envelope.threshold, entry_filter=_entry_filter(envelope)) \
            if valid else []
    threshold = envelope.threshold if envelope.threshold is not None else searcher.calibration().get("threshold")
    results = []
    for (index, item_id, text), outcome in zip(valid, outcomes):
        note_decision(text, outcome["decision"], outcome["top_faq_id"], outcome["score"], threshold, "classify",
                      outcome["path"])
        results.append({"index": index, "id": item_id, **outcome})
    g.answer_path = {path: sum(r["path"] == path for r in results) for path in PATHS}  # for the access log
    counts = {decision: sum(r["decision"] == decision for r in results) for decision in DECISIONS}
    return jsonify({"results": results, "errors": errors, "counts": {**counts, "invalid": len(errors)},
                    "threshold": threshold, "index_version": searcher.version, "took_ms": _took_ms()})
