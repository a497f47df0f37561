"""Review before publish: change sets under ``/admin/api/changesets`` (docs/review.md).

An editor submits the draft (what the corpus folder would change in the served index) with a
comment; a reviewer approves it or sends it back with a comment; publishing then takes the
approved change set, and only while the draft is still what was approved. The rules live in
``retriever/editorial/changesets.py``; this module maps them to HTTP, in the editors' language, audits every
step, and gives the publish route (workbench.py) what it needs: :func:`approved_change_set`,
:func:`publish_guard` and :func:`publish_recorder`.

Review is required when ``RETRIEVER_REVIEW`` is on, or (auto, the default) as soon as the users
file has an enabled user; with the legacy admin token alone, publishing works as before.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Literal

from flask import Blueprint, abort, jsonify, make_response, request
from pydantic import BaseModel, ConfigDict, Field

from ..editorial.accounts import LEGACY_ADMIN
from ..editorial.changesets import (MAX_COMMENT_CHARS, OPEN, ChangeSet, ChangeSetStore, DraftChanged, Drafts, InvalidComment,
                          NothingToSubmit, NotApproved, NotOpen, OwnSubmission, ReviewError, UnknownChangeSet,
                          Unreadable, built_from)
from ..config import ServiceConfig
from ..corpus import load_corpus
from ..errors import CorpusError, RetrieverError
from .access import audit, audit_recorder, current_actor, require_any, require_role, user_store
from .errors import ApiError
from .parsing import json_body
from .state import corpus_folder, serving, state

log = logging.getLogger(__name__)
bp = Blueprint("review", __name__)
MAX_LISTED = 100
STATUS_LABELS = {"submitted": "待审核", "approved": "已批准", "sent_back": "已退回", "published": "已发布",
                 "superseded": "已被新的提交取代"}
STEPS = {"approve": "批准", "send back": "退回"}
# Each refusal: its HTTP status and what the editor reads (formatted with the error's detail).
REFUSALS: dict[type[ReviewError], tuple[int, Callable[[ReviewError], str]]] = {
    UnknownChangeSet: (404, lambda e: f"没有这个变更集：{e.detail.get('id')}"),
    NothingToSubmit: (409, lambda e: "草稿与正在服务的版本相同，没有需要审核的修改"),
    NotOpen: (409, lambda e: f"该变更集{STATUS_LABELS.get(e.detail.get('status'), '')}，不能再"
                             f"{STEPS.get(e.detail.get('step'), '处理')}"),
    DraftChanged: (409, lambda e: "提交审核之后草稿又有修改：请重新提交并审核" + (
        f"（变化的条目：{'、'.join(e.detail['entries'][:20])}）" if e.detail.get("entries") else "")),
    OwnSubmission: (403, lambda e: "不能批准自己提交的变更集：请由另一位审核人批准"),
    NotApproved: (409, lambda e: "发布前需要审核人批准变更集" + (
        f"（变更集 {e.detail['changeset']} 尚在审核中）" if e.detail.get("changeset") else "：请先提交审核")),
    InvalidComment: (400, lambda e: "请填写退回意见：说明需要修改什么" if e.detail.get("missing")
                     else f"意见最多 {MAX_COMMENT_CHARS} 个字" if e.detail.get("limit") else "意见必须是文字"),
    Unreadable: (500, lambda e: f"变更集 {e.detail.get('id')} 的文件无法读取（详情见服务日志）"),
}


def review_required(config: ServiceConfig) -> bool:
    """Whether publishing needs an approved change set: RETRIEVER_REVIEW, else whether the server has users."""
    if config.review is not None:
        return config.review
    store = user_store()
    try:
        return store is not None and store.any_enabled()
    except RetrieverError:  # a broken users file: users cannot log in, review stays on for safety
        log.error("users file unreadable: review before publish stays required")
        return True


def refusal(exc: ReviewError):
    """The JSON answer to a refused step: ``{error, message}`` and what the rule names (entries, status)."""
    status, message = REFUSALS.get(type(exc), (409, lambda e: str(e)))
    if status >= 500:
        log.error("%s", exc)
    body = {"error": exc.code, "message": message(exc),
            **{key: value for key, value in exc.detail.items() if key in ("entries", "status", "changeset")}}
    return make_response(jsonify(body), status)


def _drafts(corpus: Path) -> Drafts:
    searcher = serving()
    try:
        draft = load_corpus(corpus)
    except CorpusError as exc:
        raise ApiError(409, "corpus_invalid", f"语料有错误，请先修正：{exc}") from None
    return Drafts(draft, searcher.index.entries, searcher.version)


def _comment_body() -> Any:
    body = json_body(state().config.max_body_bytes) if request.content_length else {}
    unknown = sorted(set(body) - {"comment"})
    if unknown:
        raise ApiError(400, "unknown_field", f"{unknown[0]}: 不认识的字段（只接受 comment）")
    return body.get("comment")


def _view(changeset: ChangeSet, drafts: Drafts | None, full: bool = True) -> dict[str, Any]:
    shown = changeset.to_dict() if full else changeset.summary()
    return {**shown, "counts": changeset.counts(), "status_label": STATUS_LABELS[changeset.status],
            "draft_matches": drafts is not None and drafts.checksum == changeset.checksum}


@bp.post("/admin/api/changesets")
def submit():
    """Submit the draft for review (an editor), with an optional comment; a newer submission supersedes the open one."""
    author = require_role("editor")
    corpus = corpus_folder()
    comment = _comment_body()
    drafts = _drafts(corpus)
    try:
        new, superseded = ChangeSetStore.for_corpus(corpus).submit(drafts, author, comment)
    except ReviewError as exc:
        return refusal(exc)
    if superseded is not None:
        audit("changeset.supersede", change_set=superseded.id, by=new.id)
    audit("changeset.submit", change_set=new.id, entries=[c["faq_id"] for c in new.changes], counts=new.counts(),
          comment=new.comment or None, draft_checksum=new.checksum, served_version=new.served_version)
    return jsonify({**_view(new, drafts), "superseded": superseded.id if superseded else None}), 201


@bp.get("/admin/api/changesets")
def listing():
    """The change sets, newest first (without their diffs), the open one, and whether review is required here."""
    name = require_any("editor", "reviewer")
    corpus = corpus_folder()
    try:
        drafts, problem = _drafts(corpus), None
    except ApiError as exc:
        drafts, problem = None, exc.message
    found = ChangeSetStore.for_corpus(corpus).all(limit=MAX_LISTED)
    opened = found[0] if found and found[0].status in OPEN else None  # only the newest can be open
    actor, config = current_actor(), state().config
    return jsonify({"changesets": [_view(c, drafts, full=False) for c in found],
                    "open": opened.id if opened else None,
                    "review": {"required": review_required(config),
                               "self_approval": config.review_self_approval or name == LEGACY_ADMIN},
                    "user": {"name": name, "roles": list(actor.roles) if actor else []},
                    "draft": {"checksum": drafts.checksum if drafts else None, "corpus_error": problem}})


@bp.get("/admin/api/changesets/<changeset_id>")
def detail(changeset_id: str):
    """One change set with its diff: each entry added, changed or removed, field by field (before, after)."""
    require_any("editor", "reviewer")
    corpus = corpus_folder()
    try:
        changeset = ChangeSetStore.for_corpus(corpus).get(changeset_id)
    except ReviewError as exc:
        return refusal(exc)
    try:
        drafts = _drafts(corpus)
    except ApiError:
        drafts = None
    return jsonify(_view(changeset, drafts))


@bp.post("/admin/api/changesets/<changeset_id>/approve")
def approve(changeset_id: str):
    """Approve a submitted change set (a reviewer, not its author), if the draft is still what was submitted."""
    reviewer = require_role("reviewer")
    corpus = corpus_folder()
    comment = _comment_body()
    store = ChangeSetStore.for_corpus(corpus)
    try:
        store.get(changeset_id)  # unknown: 404 before the corpus is read
        drafts = _drafts(corpus)
        may_approve_own = state().config.review_self_approval or reviewer == LEGACY_ADMIN
        changeset = store.approve(changeset_id, reviewer, drafts, may_approve_own, comment)
    except ReviewError as exc:
        return refusal(exc)
    audit("changeset.approve", change_set=changeset.id, author=changeset.author,
          entries=[c["faq_id"] for c in changeset.changes], comment=changeset.review_comment or None)
    return jsonify(_view(changeset, drafts))


@bp.post("/admin/api/changesets/<changeset_id>/send-back")
def send_back(changeset_id: str):
    """Send a change set back to its editors with a comment (required): what to change."""
    reviewer = require_role("reviewer")
    corpus = corpus_folder()
    comment = _comment_body()
    try:
        changeset = ChangeSetStore.for_corpus(corpus).send_back(changeset_id, reviewer, comment)
    except ReviewError as exc:
        return refusal(exc)
    audit("changeset.send_back", change_set=changeset.id, author=changeset.author, comment=changeset.review_comment,
          entries=[c["faq_id"] for c in changeset.changes])
    return jsonify(_view(changeset, None))


# --- what the publish route asks ------------------------------------------------------------------


def approved_change_set(corpus: Path) -> ChangeSet | None:
    """The approved change set a publish carries out (None: review is off here); a 409 answer otherwise."""
    if not review_required(state().config):
        return None
    try:
        return ChangeSetStore.for_corpus(corpus).approved_for(_drafts(corpus))
    except ReviewError as exc:
        abort(refusal(exc))


def publish_guard(changeset: ChangeSet | None) -> Callable[[Callable], Callable] | None:
    """What wraps the build's check so that only the approved draft goes live (None: review is off)."""
    if changeset is None:
        return None

    def guard(check: Callable[[Path, dict], dict]) -> Callable[[Path, dict], dict]:
        guarded = built_from(check, changeset.checksum)

        def check_in_chinese(staging: Path, fields: dict) -> dict:
            try:
                return guarded(staging, fields)
            except DraftChanged:
                raise RetrieverError("批准之后草稿又有修改，没有发布：请重新提交并审核") from None

        return check_in_chinese

    return guard


def publish_recorder(corpus: Path, changeset: ChangeSet | None) -> Callable[[dict[str, Any]], None]:
    """``ended(outcome)`` for the publish job's end (in its thread): the outcome noted on the change set
    (published, or still approved with the reason), and a published one in the audit log."""
    record, actor = audit_recorder(), current_actor()
    store, name = ChangeSetStore.for_corpus(corpus), actor.name if actor else "-"

    def ended(outcome: dict[str, Any]) -> None:
        if changeset is None:
            return
        try:
            store.record_publish(changeset.id, name, outcome)
        except (OSError, ReviewError) as exc:
            log.error("change set %s: publish outcome not recorded: %s", changeset.id, exc)
        if outcome.get("state") == "done":
            record("changeset.publish", change_set=changeset.id, version=outcome.get("version"),
                   entries=[c["faq_id"] for c in changeset.changes])

    return ended


# --- the OpenAPI document's part for these routes ------------------------------------------------


class CommentBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    comment: str | None = Field(None, max_length=MAX_COMMENT_CHARS,
                                description="what the change is for (submit), what to change (send back: required)")


class EntryChange(BaseModel):
    faq_id: str
    change: Literal["added", "changed", "removed"]
    question: str = Field(description="the draft's question (the served one for a removed entry)")
    fields: dict[str, dict[str, Any]] = Field(description="per field that differs: before, after (null where the "
                                                          "entry is absent); list fields also added, removed")


class ChangeSetSummary(BaseModel):
    id: str
    status: Literal["submitted", "approved", "sent_back", "published", "superseded"]
    status_label: str = Field(description="the status in Chinese")
    author: str
    comment: str
    checksum: str = Field(description="of the draft it was made from (corpus_checksum)")
    served_version: str | None
    submitted_at: str
    reviewer: str | None = None
    review_comment: str | None = None
    reviewed_at: str | None = None
    published_by: str | None = None
    published_version: str | None = None
    published_at: str | None = None
    superseded_by: str | None = None
    last_publish: dict[str, Any] | None = Field(None, description="the latest publish attempt: state, message, "
                                                                  "actor, at")
    history: list[dict[str, Any]] = Field(description="every step: action, actor, at")
    counts: dict[str, int] = Field(description="entries added, changed, removed")
    draft_matches: bool = Field(description="the draft is still what was submitted")


class ChangeSetView(ChangeSetSummary):
    changes: list[EntryChange]
    superseded: str | None = Field(None, description="(submit) the open change set this one replaced")


class ChangeSetList(BaseModel):
    changesets: list[ChangeSetSummary] = Field(description=f"newest first, at most {MAX_LISTED}")
    open: str | None = Field(description="the change set waiting for review or publication")
    review: dict[str, bool] = Field(description="required: publishing needs an approved change set here; "
                                                "self_approval: this user may approve their own")
    user: dict[str, Any]
    draft: dict[str, Any] = Field(description="checksum of the draft now, or corpus_error")


_CHANGESET_ID = {"name": "changeset_id", "in": "path", "required": True, "description": "a change set's id",
                 "schema": {"type": "string", "maxLength": 64}}


def openapi_paths(components, error: dict) -> dict:
    """The review routes for /openapi.json (openapi.openapi_document merges them)."""
    from .openapi import _ANY_REQUEST, _BODY, _QUERY_STRING, ADMIN_TOKEN, _errors, _json, _operation

    view = components.ref(ChangeSetView)
    body = {"requestBody": {"required": False, **_json(components.ref(CommentBody), "")}}
    refused = {
        "submit": "no corpus folder (no_corpus), the draft does not load (corpus_invalid), or nothing to submit",
        "step": "no corpus folder, the change set is closed (changeset_closed), or the draft changed since it was "
                "submitted (draft_changed, with the entries that differ)"}

    def op(operation_id: str, summary: str, ok: dict, conflict: str, *statuses: int, **rest) -> dict:
        return _operation(operation_id, "admin", summary, {
            **ok, **_errors(error, 401, 403, 429, 503, *_ANY_REQUEST, *statuses),
            "409": _json(error, conflict)}, security=[{ADMIN_TOKEN: []}], **rest)

    one = [_CHANGESET_ID]
    return {
        "/admin/api/changesets": {
            "get": op("listChangeSets", "The change sets, newest first, and whether review is required (editor, "
                                        "reviewer)", {"200": _json(components.ref(ChangeSetList), "the list")},
                      "no corpus folder (no_corpus)", *_QUERY_STRING),
            "post": op("submitChangeSet", "Submit the draft for review; supersedes the open change set (editor)",
                       {"201": _json(view, "submitted, with its diff")}, refused["submit"], 400, *_BODY, **body)},
        "/admin/api/changesets/{changeset_id}": {
            "get": op("getChangeSet", "One change set with its diff, field by field (editor, reviewer)",
                      {"200": _json(view, "the change set")}, "no corpus folder (no_corpus)", 404, *_QUERY_STRING,
                      parameters=one)},
        "/admin/api/changesets/{changeset_id}/approve": {
            "post": op("approveChangeSet", "Approve a submitted change set: not one's own, and only while the draft "
                                           "is what was submitted (reviewer)", {"200": _json(view, "approved")},
                       refused["step"], 400, 404, *_BODY, parameters=one, **body)},
        "/admin/api/changesets/{changeset_id}/send-back": {
            "post": op("sendBackChangeSet", "Send a change set back to the editors with a comment (reviewer)",
                       {"200": _json(view, "sent back")}, refused["step"], 400, 404, *_BODY, parameters=one,
                       requestBody={"required": True, **_json(components.ref(CommentBody), "")})},
    }
