"""The entry editor's JSON API under ``/admin/api/entries``, and "test a query" against the draft.

Reads take any logged-in user; writes take the editor role, carry the version of the entry they
were based on (409 ``version_conflict`` with both versions when it changed meanwhile) and are
recorded in the audit log. The corpus folder (``RETRIEVER_CORPUS``) is the draft; nothing here
changes what citizens get until the draft is published. See docs/entries.md.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Annotated, Any, Literal

from flask import Blueprint, current_app, jsonify, request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..corpus import (MAX_ANSWER_CHARS, MAX_LABEL_CHARS, MAX_NEGATIVES, MAX_PARAPHRASES, MAX_QUESTION_CHARS,
                      MAX_TAGS, EntryError)
from ..corpus.entry_store import (STATUSES, EditError, EntryNotFound, EntryQuery, IdTaken, NotWritable,
                                  StoredEntry, VersionConflict, create_entry, delete_entry, find_entries,
                                  get_entry, read_entries, update_entry)
from ..editorial.draft import DraftSearchers, encoder_embed
from ..errors import CorpusError, QueryError
from ..filters import metadata_filter
from ..store.embedding_cache import EmbeddingCache
from .access import audit, require_any, require_role
from .errors import ApiError
from .parsing import json_body
from .schemas import SearchResponse, search_error
from .state import corpus_folder, serving, state

log = logging.getLogger(__name__)
bp = Blueprint("entries", __name__)
EXTENSION = "retriever_entries"  # app.extensions key: the draft searcher and its embedder
# An entry at its limits is ~400 KB of JSON (200 paraphrases of 500 characters, a 20,000-character answer).
MAX_ENTRY_BODY_BYTES = 1024 * 1024
MAX_PAGE = 200
DEFAULT_PAGE = 50

Question = Annotated[str, Field(min_length=1, max_length=MAX_QUESTION_CHARS)]
Label = Annotated[str, Field(min_length=1, max_length=MAX_LABEL_CHARS)]
Answer = Annotated[str, Field(min_length=1, max_length=MAX_ANSWER_CHARS)]
Version = Annotated[str, Field(min_length=1, max_length=64, description="the version the edit is based on")]


class EntryFields(BaseModel):
    """Fields of an entry; limits as corpus/schema.py. Other schema fields (valid_from, ...) pass through to it."""

    model_config = ConfigDict(extra="allow")
    paraphrases: list[Question] | None = Field(None, max_length=MAX_PARAPHRASES)
    category: Label | None = None
    tags: list[Label] | None = Field(None, max_length=MAX_TAGS)
    negatives: list[Question] | None = Field(None, max_length=MAX_NEGATIVES)
    enabled: bool | None = Field(None, description="false: kept in the file, never answered")


class NewEntry(EntryFields):
    id: Label | None = Field(None, description="default: derived from the question")
    file: str | None = Field(None, max_length=300, description="corpus file for it (default: docs/entries.md)")
    question: Question
    answer: Answer


class EntryUpdate(EntryFields):
    """Only the fields sent change; null or [] removes an optional field."""

    version: Version
    question: Question | None = None
    answer: Answer | None = None


class VersionOnly(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: Version


# --- who may, and where the draft is ------------------------------------------------------------


def _body(model: type[BaseModel]) -> BaseModel:
    try:
        return model.model_validate(json_body(MAX_ENTRY_BODY_BYTES), strict=True)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(map(str, error["loc"])) or "body"
        raise ApiError(400, "invalid_entry", f"{where}: {error['msg']}") from None


@bp.errorhandler(VersionConflict)
def _conflict(exc: VersionConflict):
    return jsonify({"error": "version_conflict", "message": str(exc),
                    "current": exc.current.to_dict() if exc.current else None, "submitted": exc.submitted}), 409


# Most specific first; any other CorpusError is the draft failing to load (a broken file): 409.
_STATUS = ((EntryNotFound, 404, "unknown_entry"), (IdTaken, 409, "id_taken"), (NotWritable, 409, "not_writable"),
           (EntryError, 400, "invalid_entry"), (EditError, 400, "invalid_edit"))


@bp.errorhandler(CorpusError)
def _corpus_error(exc: CorpusError):
    status, code = next(((status, code) for kind, status, code in _STATUS if isinstance(exc, kind)),
                        (409, "corpus_invalid"))
    body = {"error": code, "message": str(exc) if code != "corpus_invalid" else f"语料有错误，请先修正：{exc}"}
    if isinstance(exc, EntryError) and exc.field:
        body["field"] = exc.field
    return jsonify(body), status


# --- reading ----------------------------------------------------------------------------------------


def _list_query() -> tuple[EntryQuery, int, int]:
    args = request.args
    text = args.get("q", "")
    if len(text) > MAX_QUESTION_CHARS:
        raise ApiError(400, "invalid_q", f"q: at most {MAX_QUESTION_CHARS} characters")
    status = args.get("status", "all")
    if status not in STATUSES:
        raise ApiError(400, "invalid_status", f"status: one of {', '.join(STATUSES)}")
    numbers = {}
    for name, default, low, high in (("offset", 0, 0, 10**9), ("limit", DEFAULT_PAGE, 1, MAX_PAGE)):
        value = args.get(name, str(default))
        if not value.isascii() or not value.isdigit() or not low <= int(value) <= high:
            raise ApiError(400, f"invalid_{name}", f"{name}: a whole number from {low} to {high}")
        numbers[name] = int(value)
    for name in ("category", "tag"):
        if len(args.get(name) or "") > MAX_LABEL_CHARS:
            raise ApiError(400, f"invalid_{name}", f"{name}: at most {MAX_LABEL_CHARS} characters")
    query = EntryQuery(text, args.get("category") or None, args.get("tag") or None, status)
    return query, numbers["offset"], numbers["limit"]


@bp.get("/admin/api/entries")
def list_entries():
    """The draft's entries that match q (id, question, paraphrases, answer), category, tag and status; a page."""
    require_any("editor", "reviewer")  # any logged-in user reads (an admin holds both)
    query, offset, limit = _list_query()
    every = read_entries(corpus_folder())
    found = find_entries(every, query)
    return jsonify({"entries": [s.to_dict() for s in found[offset:offset + limit]], "total": len(found),
                    "offset": offset, "limit": limit,
                    "categories": sorted({s.entry.category for s in every if s.entry.category}),
                    "tags": sorted({tag for s in every for tag in s.entry.tags})})


def _entry_response(stored: StoredEntry, status: int = 200):
    response = jsonify(stored.to_dict())
    response.status_code = status
    response.headers["ETag"] = f'"{stored.version}"'
    return response


@bp.get("/admin/api/entries/<faq_id>")
def read_entry(faq_id: str):
    """One entry of the draft, with its version (also as ETag)."""
    require_any("editor", "reviewer")  # any logged-in user reads (an admin holds both)
    return _entry_response(get_entry(corpus_folder(), faq_id))


# --- writing ----------------------------------------------------------------------------------------


@bp.post("/admin/api/entries")
def add_entry():
    """Add an entry to the draft (201)."""
    require_role("editor")
    corpus, body = corpus_folder(), _body(NewEntry)
    fields = {**body.model_dump(exclude={"file"}, exclude_none=True), **(body.model_extra or {})}
    stored = create_entry(corpus, fields, body.file)
    audit("entry.create", entry=stored.entry.id, before=None, after=stored.to_dict())
    response = _entry_response(stored, 201)
    response.headers["Location"] = f"/admin/api/entries/{stored.entry.id}"
    return response


@bp.put("/admin/api/entries/<faq_id>")
def change_entry(faq_id: str):
    """Change the fields sent, if the entry is still at ``version`` (else 409 with both versions)."""
    require_role("editor")
    corpus, body = corpus_folder(), _body(EntryUpdate)
    changes = {name: getattr(body, name) for name in body.model_fields_set if name != "version"}
    return _update(corpus, faq_id, {**changes, **(body.model_extra or {})}, body.version, "entry.update")


def _update(corpus: Path, faq_id: str, changes: dict[str, Any], version: str, action: str):
    before = get_entry(corpus, faq_id)  # a stale version is refused below, so this is what gets replaced
    stored = update_entry(corpus, faq_id, changes, version)
    if before.version != stored.version:  # saving an unchanged entry changes nothing, and is not recorded
        audit(action, entry=faq_id, before=before.to_dict(), after=stored.to_dict())
    return _entry_response(stored)


@bp.post("/admin/api/entries/<faq_id>/disable")
def disable_entry(faq_id: str):
    """Keep the entry in its file but never answer with it (after the next publish)."""
    require_role("editor")
    return _update(corpus_folder(), faq_id, {"enabled": False}, _body(VersionOnly).version, "entry.disable")


@bp.post("/admin/api/entries/<faq_id>/enable")
def enable_entry(faq_id: str):
    """Answer with a disabled entry again (after the next publish)."""
    require_role("editor")
    return _update(corpus_folder(), faq_id, {"enabled": True}, _body(VersionOnly).version, "entry.enable")


@bp.delete("/admin/api/entries/<faq_id>")
def remove_entry(faq_id: str):
    """Remove the entry from its file, if it is still at ``version`` (query parameter or If-Match)."""
    require_role("editor")
    version = request.args.get("version") or request.headers.get("If-Match", "").strip().strip('"')
    if not version or len(version) > 64:
        raise ApiError(400, "missing_version", "version: 删除需要条目的版本（?version= 或 If-Match）")
    stored = delete_entry(corpus_folder(), faq_id, version)
    audit("entry.delete", entry=faq_id, before=stored.to_dict(), after=None)
    return jsonify({"deleted": faq_id, "entry": stored.to_dict()})


# --- test a query against the draft -----------------------------------------------------------------


def _draft_parts() -> dict[str, Any]:
    """This app's draft searcher, and what embeds the draft's new texts (the index's embedding cache)."""
    parts = current_app.extensions.get(EXTENSION)
    if parts is None:
        parts = current_app.extensions.setdefault(EXTENSION, {"searchers": DraftSearchers(), "embed": {}})
    return parts


def _embedder(served):
    parts, root = _draft_parts(), state().holder.index_root
    key = (str(root), served.encoder.name)
    if key not in parts["embed"]:
        plain = encoder_embed(served.encoder.encode_queries, served.encoder.encode_passages)
        parts["embed"][key] = plain if root is None else _through_cache(root, served.encoder, plain)
    return parts["embed"][key]


def _through_cache(root: Path, encoder, plain):
    """The index's embedding cache; the model alone where the cache cannot be used (a read-only index folder)."""
    def embed(texts, kind):
        try:
            return EmbeddingCache.for_index(root, encoder, progress=False).normalised_vectors(texts, kind)
        except OSError as exc:
            log.warning("draft search: embedding cache under %s not usable (%s); embedding without it", root, exc)
            return plain(texts, kind)
    return embed


@bp.post("/admin/api/draft/search")
def draft_search():
    """What the draft corpus would answer (ranking, decision, confidence), with the served decision parameters."""
    require_any("editor", "reviewer")  # any logged-in user reads (an admin holds both)
    started, corpus, shared = time.perf_counter(), corpus_folder(), state()
    try:
        parsed = shared.schemas.search.model_validate(json_body(shared.config.max_body_bytes), strict=True)
    except ValidationError as exc:
        raise ApiError(400, *search_error(exc, shared.config)) from None
    served = serving()
    searchers: DraftSearchers = _draft_parts()["searchers"]
    draft = searchers.get(corpus, served, _embedder(served))
    categories = [parsed.category] if isinstance(parsed.category, str) else parsed.category
    try:
        result = draft.search(parsed.query, parsed.top_k or shared.config.default_top_k, mode=parsed.mode,
                              threshold=parsed.threshold, entry_filter=metadata_filter(categories, parsed.tags))
    except QueryError as exc:
        raise ApiError(400, "invalid_query", str(exc)) from None
    return jsonify({**result.to_dict(), "index_version": draft.version,
                    "took_ms": round((time.perf_counter() - started) * 1000, 1),
                    "draft": {"served_version": served.version, "entries": len(draft.index.entries),
                              "texts_embedded": searchers.embedded, "decision_parameters": served.version}})


# --- the OpenAPI document's part --------------------------------------------------------------------


class EntryRecord(BaseModel):
    """An entry of the draft as the editor sees it (other schema fields, e.g. valid_from, may follow)."""

    model_config = ConfigDict(extra="allow")
    id: str
    question: str
    answer: str
    paraphrases: list[str]
    category: str | None
    tags: list[str]
    negatives: list[str]
    enabled: bool
    file: str = Field(description="the corpus file that defines it")
    version: str = Field(description="send it back with the next change; also the ETag")


class EntryList(BaseModel):
    entries: list[EntryRecord]
    total: int = Field(description="entries matching, over all pages")
    offset: int
    limit: int
    categories: list[str] = Field(description="every category of the draft (for filters)")
    tags: list[str] = Field(description="every tag of the draft")


class EntryConflict(BaseModel):
    error: Literal["version_conflict"]
    message: str
    current: EntryRecord | None = Field(description="the entry as it is now (null: deleted meanwhile)")
    submitted: dict[str, Any] = Field(description="what was sent, with the version it was based on")


class DeletedEntry(BaseModel):
    deleted: str
    entry: EntryRecord


class DraftInfo(BaseModel):
    served_version: str
    entries: int = Field(description="enabled entries in the draft")
    texts_embedded: int = Field(description="draft texts the served index did not hold, embedded for it")
    decision_parameters: str = Field(description="the served version whose thresholds and judge decide")


class DraftSearchResponse(SearchResponse):
    draft: DraftInfo


_ENTRY_ID = {"name": "faq_id", "in": "path", "required": True, "schema": {"type": "string", "maxLength": 100},
             "description": "the entry's id"}


def openapi_paths(components, error: dict) -> dict:
    """The entry editor's operations for /openapi.json (merged by openapi.openapi_document)."""
    from .openapi import _ANY_REQUEST, _BODY, _QUERY_STRING, ADMIN_TOKEN, _errors, _json, _operation

    entry = components.ref(EntryRecord)
    saved = {"200": _json(entry, "saved"), "404": _json(error, "no entry with that id"),
             "409": _json({"anyOf": [components.ref(EntryConflict), error]},
                          "version_conflict: the entry changed meanwhile (both versions; nothing written); or no "
                          "corpus folder, a draft that does not load, a file that cannot be rewritten safely")}
    refused = _json(error, "no corpus folder configured, the draft does not load, the id is taken, or the file "
                           "cannot be rewritten safely")

    def op(operation_id: str, summary: str, ok: dict, statuses: tuple[int, ...], **rest: Any) -> dict:
        responses = {**_errors(error, 400, 401, 403, 429, *statuses, *_ANY_REQUEST), "409": refused, **ok}
        return _operation(operation_id, "entries", summary, dict(sorted(responses.items())),
                          security=[{ADMIN_TOKEN: []}], **rest)

    def body(model: type[BaseModel], name: str) -> dict:
        return {"requestBody": {"required": True, **_json(components.ref(model, name), "")}}

    query = [{"name": name, "in": "query", "required": False, "schema": schema, "description": text}
             for name, schema, text in (
                 ("q", {"type": "string", "maxLength": MAX_QUESTION_CHARS},
                  "text in id, question, paraphrases, answer"),
                 ("category", {"type": "string", "maxLength": MAX_LABEL_CHARS}, "only this category"),
                 ("tag", {"type": "string", "maxLength": MAX_LABEL_CHARS}, "only entries with this tag"),
                 ("status", {"type": "string", "enum": list(STATUSES)}, "enabled, disabled or all (default)"),
                 ("offset", {"type": "integer", "minimum": 0, "maximum": 10**9}, "entries to skip"),
                 ("limit", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}, f"default {DEFAULT_PAGE}"))]
    version = {"name": "version", "in": "query", "required": True, "description": "the version it is based on",
               "schema": {"type": "string", "minLength": 1, "maxLength": 64}}
    deleted = {**saved, "200": _json(components.ref(DeletedEntry), "removed")}
    toggles = {f"/admin/api/entries/{{faq_id}}/{action}": {"post": op(
        f"{action}Entry", summary, saved, _BODY, parameters=[_ENTRY_ID], **body(VersionOnly, "EntryVersion"))}
        for action, summary in (("disable", "Keep an entry but never answer with it (role editor)"),
                                ("enable", "Answer with a disabled entry again (role editor)"))}
    return {
        "/admin/api/entries": {
            "get": op("listEntries", "List and search the draft's entries",
                      {"200": _json(components.ref(EntryList), "a page")}, _QUERY_STRING, parameters=query),
            "post": op("createEntry", "Add an entry to the draft (role editor)", {"201": _json(entry, "created")},
                       _BODY, **body(NewEntry, "NewEntry")),
        },
        "/admin/api/entries/{faq_id}": {
            "get": op("getEntry", "One entry of the draft", {"200": _json(entry, "the entry"), "404": saved["404"]},
                      (), parameters=[_ENTRY_ID]),
            "put": op("updateEntry", "Change an entry (role editor); only the fields sent change", saved, _BODY,
                      parameters=[_ENTRY_ID], **body(EntryUpdate, "EntryUpdate")),
            "delete": op("deleteEntry", "Remove an entry from the draft (role editor)", deleted, (),
                         parameters=[_ENTRY_ID, version]),
        },
        **toggles,
        "/admin/api/draft/search": {"post": op(
            "searchDraft", "What the draft would answer, with the served version's decision parameters",
            {"200": _json(components.ref(DraftSearchResponse), "as /v1/search, plus what the draft is")}, _BODY,
            requestBody={"required": True, **_json({"$ref": "#/components/schemas/SearchRequest"}, "")})},
    }
