"""The FAQ editors' workbench: ``/admin`` (a page in Chinese) and its JSON endpoints under ``/admin/api``.

Editors log in with a user name and password, or the admin token (``POST /admin/login``): a
signed session cookie (HttpOnly, SameSite=Strict, path /admin), never part of a URL. Who may do
what, sessions and the audit trail live in ``access.py``; every JSON endpoint asks
:func:`~.access.require_role` first.

What editors do here: see unmatched queries and 没帮助 feedback grouped with their
near-duplicates; add a group as paraphrases or negatives of an entry, or note it as a candidate
for a new entry (the corpus files change at once, atomically, with a backup); see what is
pending (the corpus against the served index); rebuild and publish in the background, through
the publish gate, and watch it (:class:`PublishJob`).
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import secrets
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
from flask import Blueprint, current_app, jsonify, request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..corpus import MAX_LABEL_CHARS, ConflictError, find_identical, load_corpus, read_conflicts
from ..editorial.editing import (MAX_DISTINCT_QUERIES, EditOutcome, add_candidates, add_examples, group_items, inbox_items,
                       known_texts, pending_changes, read_candidates, read_log, workbench_dir)
from ..errors import CorpusError, RetrieverError
from ..files import write_text_atomic
from ..gate import GateRefused, publish_gate
from ..pipeline import build_from_corpus, default_labelled_path
from ..search import Searcher
from ..store import MANIFEST, current_version, rollback
from .access import (CSRF_HEADER, CSRF_VALUE, WORKBENCH, audit, audit_as, audit_recorder, end_session, log_in,
                     require_any, require_role, session_actor, workbench_enabled)
from .admin import SessionStore
from .errors import ApiError
from .grouping import GroupingVectors, reusing_vectors
from .parsing import json_body
from .review import approved_change_set, publish_guard, publish_recorder
from ..reload import ReloadRefused
from .state import EXTENSION, corpus_folder, serving, state

log = logging.getLogger(__name__)
bp = Blueprint("workbench", __name__)
MAX_GROUPS = 50
MAX_TEXTS = 50  # texts one assignment may add
CLOSEST = 3
SKIPPED = {"already_there": "条目中已有", "is_paraphrase": "已是该条目的相似问题，不能再作负例",
           "is_negative": "已是该条目的负例，不能再作相似问题", "already_candidate": "已在候选中"}
STAGES = (("corpus", "检查语料"), ("build", "生成向量并校准"), ("gate", "发布检查"), ("reload", "上线"))


@bp.record_once
def _configure(setup) -> None:
    app = setup.app
    config = app.extensions[EXTENSION].config
    app.secret_key = config.secret or secrets.token_urlsafe(32)
    app.config.update(SESSION_COOKIE_NAME="retriever_workbench", SESSION_COOKIE_HTTPONLY=True,
                      SESSION_COOKIE_SAMESITE="Strict", SESSION_COOKIE_PATH="/admin",
                      PERMANENT_SESSION_LIFETIME=timedelta(hours=config.session_hours))
    app.extensions[WORKBENCH] = {"vectors": GroupingVectors(),
                                 "sessions": SessionStore.for_config(config, app.secret_key)}


# --- pages and session ---------------------------------------------------------------------------


@bp.get("/admin")
def workbench_page():
    """The workbench page (it holds no data: its script asks the JSON endpoints)."""
    return current_app.send_static_file("workbench.html")


@bp.post("/admin/login")
def login():
    """Exchange a user name and password, or the admin token, for a session cookie."""
    if request.headers.get(CSRF_HEADER) != CSRF_VALUE:
        raise ApiError(403, "missing_csrf_header", f"请求需要请求头 {CSRF_HEADER}: {CSRF_VALUE}")
    actor = log_in(json_body(state().config.max_body_bytes))
    return jsonify({"editor": True, "user": actor.name, "roles": list(actor.roles)})


@bp.post("/admin/logout")
def logout():
    """End the session, in every worker: a copy of the cookie kept from before no longer works."""
    name = end_session()
    if name is not None:
        audit_as(name, "logout", client=request.remote_addr)
    return jsonify({"editor": False})


@bp.get("/admin/api/session")
def session_info():
    """Whether this browser is logged in, and what the workbench can do here."""
    config = state().config
    return jsonify({"editor": session_actor() is not None, "enabled": workbench_enabled(), "corpus": bool(config.corpus_dir),
                    "publish": state().holder.index_root is not None})


# --- groups of unmatched and unhelpful queries ---------------------------------------------------


def _grouped(searcher: Searcher, items: list) -> tuple[list, list, int]:
    """Groups of the items whose vectors this worker has (new ones embedded within a page's budget, the
    rest in the background: grouping.py), the closest entries of each, and how many items wait."""
    vectors = current_app.extensions[WORKBENCH]["vectors"].vectors(searcher.encoder, [i.norm for i in items])
    ready = [i for i in items if i.norm in vectors]
    rows = np.stack([vectors[i.norm] for i in ready]) if ready else np.empty((0, searcher.encoder.dim), np.float32)
    found = group_items(ready, rows)[:MAX_GROUPS]
    # The group names' vectors are known: their closest entries cost a search each, no model call.
    nearest = reusing_vectors(searcher, vectors).search_many([g.items[0].text for g in found], CLOSEST) \
        if found else []
    return found, nearest, len(items) - len(ready)


def _inbox(corpus: Path):
    config = state().config
    try:
        entries = load_corpus(corpus)
    except CorpusError as exc:
        raise ApiError(409, "corpus_invalid", f"语料有错误，请先修正：{exc}") from None
    known = known_texts(entries, read_candidates(corpus))
    return entries, inbox_items(read_log(config.unmatched_log), read_log(config.feedback_log), known)


@bp.get("/admin/api/groups")
def groups():
    """Unmatched queries and 没帮助 feedback, near-duplicates grouped, with the entries each group came closest to."""
    require_role("editor")
    searcher, corpus = serving(), corpus_folder()
    entries, items = _inbox(corpus)
    found, nearest, waiting = _grouped(searcher, items[:MAX_DISTINCT_QUERIES])
    config = state().config
    return jsonify({
        "groups": [{"id": hashlib.sha256(g.items[0].norm.encode()).hexdigest()[:12], "count": g.count,
                    "texts": [i.to_dict() for i in g.items],
                    "closest": [{"faq_id": h.faq_id, "question": h.question, "score": round(h.score, 4)}
                                for h in result.hits]} for g, result in zip(found, nearest)],
        "entries": [{"id": e.id, "question": e.question} for e in entries],
        "sources": {"unmatched_log": bool(config.unmatched_log), "feedback_log": bool(config.feedback_log)},
        "served_version": searcher.version,
        "pending_texts": waiting,  # texts still being embedded: grouped on a later view
    })


class Assignment(BaseModel):
    """One click on a group: add its texts as paraphrases or negatives of an entry, or note them as a candidate."""

    model_config = ConfigDict(extra="forbid")
    action: Literal["paraphrase", "negative", "candidate"]
    faq_id: str | None = Field(None, min_length=1, max_length=MAX_LABEL_CHARS)
    texts: list[str] = Field(min_length=1, max_length=MAX_TEXTS)


def _outcome(outcome: EditOutcome, corpus: Path) -> dict[str, Any]:
    return {"changed": str(outcome.path.relative_to(corpus)) if outcome.added else None,
            "backup": str(outcome.backup.relative_to(corpus)) if outcome.backup else None,
            "added": list(outcome.added),
            "skipped": [{"text": text, "reason": SKIPPED.get(why, why)} for text, why in outcome.skipped]}


@bp.post("/admin/api/assign")
def assign():
    """Apply one assignment to the corpus files (atomically, with a backup of what was replaced)."""
    require_role("editor")
    corpus = corpus_folder()
    try:
        assignment = Assignment.model_validate(json_body(state().config.max_body_bytes), strict=True)
    except ValidationError as exc:
        error = exc.errors()[0]
        raise ApiError(400, "invalid_assignment", f"{'.'.join(map(str, error['loc'])) or 'body'}: {error['msg']}"
                       ) from None
    try:
        if assignment.action == "candidate":
            _, items = _inbox(corpus)
            counts = {i.text: i.count for i in items}
            outcome = add_candidates(corpus, assignment.texts, counts)
        elif not assignment.faq_id:
            raise ApiError(400, "missing_faq_id", "请选择条目")
        else:
            outcome = add_examples(corpus, assignment.faq_id, assignment.action, assignment.texts)
    except CorpusError as exc:
        raise ApiError(409, "edit_refused", f"修改未保存：{exc}") from None
    log.info("workbench: %s %s -> %s: added %s", assignment.action, assignment.faq_id or "", outcome.path,
             list(outcome.added))
    return jsonify(_outcome(outcome, corpus))


@bp.get("/admin/api/pending")
def pending():
    """What publishing would change: the corpus against the served index, and the candidates noted."""
    require_role("editor")
    searcher, corpus = serving(), corpus_folder()
    try:
        changes, problem = pending_changes(load_corpus(corpus), searcher.index.entries), None
    except CorpusError as exc:
        changes, problem = [], f"语料有错误，发布前请先修正：{exc}"
    return jsonify({"changes": changes, "candidates": read_candidates(corpus), "corpus_error": problem,
                    "served_version": searcher.version})


@bp.get("/admin/api/conflicts")
def conflicts():
    """Conflicts between entries: what the served version's build found, and texts the corpus now shares."""
    require_role("editor")
    searcher = serving()
    try:
        stored = read_conflicts(searcher.index.path)
    except CorpusError as exc:
        raise ApiError(500, "conflicts_unreadable", f"无法读取冲突检查结果：{exc}") from None
    corpus_dir, in_corpus, problem = state().config.corpus_dir, [], None
    if corpus_dir:
        try:
            in_corpus = [conflict.to_dict() for conflict in find_identical(load_corpus(corpus_dir))]
        except CorpusError as exc:
            problem = f"语料有错误，无法检查：{exc}"
    return jsonify({"served_version": searcher.version, "checked": stored is not None,
                    **(stored.to_dict() if stored else {}), "corpus_identical_texts": in_corpus,
                    "corpus_error": problem})


# --- rebuild and publish -------------------------------------------------------------------------


class PublishJob:
    """The rebuild-and-publish job of one corpus folder: one at a time, its status in a file every worker reads."""

    def __init__(self, corpus: Path) -> None:
        folder = workbench_dir(corpus)
        self.status_path, self.lock_path = folder / "publish.json", folder / "publish.lock"

    def status(self, holder=None) -> dict[str, Any]:
        """The job as the status file has it, checked against what is served (``holder``: this worker's)."""
        try:
            status = json.loads(self.status_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            status = {"state": "idle"}
        if status.get("state") == "running" and not self._held():
            status.update(_interrupted(status, holder))
        if status.get("state") == "done" and holder is not None and holder.index_root is not None:
            status.update(holder.serving())  # what every worker serves now, not what it did at the end
        return {**status, "stages": [{"id": s, "label": label} for s, label in STAGES]}

    def _held(self) -> bool:
        with open(self.lock_path, "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
            return False

    def _write(self, **status: Any) -> None:
        write_text_atomic(self.status_path, json.dumps(status, ensure_ascii=False))

    def start(self, work: Callable[[Callable[[str], None]], dict[str, Any]], served_before: str | None = None,
              on_start: Callable[[], None] | None = None,
              on_end: Callable[[dict[str, Any]], None] | None = None) -> None:
        """Run ``work(stage)`` in a background thread; 409 if a job is running already (in any worker).

        ``served_before``: the version served when it starts; if the job dies, CURRENT against it tells
        whether the new version went live. ``on_start()``: called once the job holds the lock, before its
        thread starts; ``on_end(outcome)``: called in the thread before the outcome is written, so that a
        client who sees the job finished also finds what ``on_end`` recorded (the audit log, the change set)."""
        handle = open(self.lock_path, "a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise ApiError(409, "publish_running", "已有一个发布正在进行，请等它结束") from None
        started = {"started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                   "served_before": served_before, "pid": os.getpid()}
        self._write(state="running", stage=STAGES[0][0], **started)
        try:
            if on_start is not None:
                on_start()
        except BaseException:  # no thread will release the lock: release it here, and say so
            self._write(**started, state="failed", message="发布没有开始（内部错误，详情见服务日志）")
            _release(handle)
            raise
        threading.Thread(target=self._run, args=(handle, work, started, on_end), name="workbench-publish",
                         daemon=True).start()

    def _run(self, handle, work, started: dict[str, Any], on_end=None) -> None:
        def stage(name: str) -> None:
            self._write(state="running", stage=name, **started)

        try:
            outcome = {"state": "done", **work(stage)}
        except GateRefused as exc:
            outcome = {"state": "refused", "message": "发布检查未通过，没有发布",
                       "gate": exc.report.to_dict() if exc.report else None, "detail": str(exc)}
        except ConflictError as exc:  # texts two entries share: named for the editor, in Chinese
            outcome = {"state": "failed", "message": f"语料中有冲突的问法，没有发布：\n{exc.message_zh()}",
                       "conflicts": [conflict.to_dict() for conflict in exc.conflicts]}
        except RetrieverError as exc:
            outcome = {"state": "failed", "message": f"发布失败，没有发布：{exc}"}
        except Exception:  # noqa: BLE001 - the editor sees a message; the trace goes to the log
            log.exception("workbench publish failed")
            outcome = {"state": "failed", "message": "发布失败（内部错误，详情见服务日志），没有发布"}
        try:
            self._recorded(on_end, outcome)
            self._write(**started, finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                        **outcome)
        finally:
            _release(handle)

    @staticmethod
    def _recorded(on_end, outcome: dict[str, Any]) -> None:
        """``on_end(outcome)``; a failure to record is logged and never keeps the outcome from being written."""
        if on_end is None:
            return
        try:
            on_end(outcome)
        except Exception:  # noqa: BLE001 - the job's outcome still reaches the editor
            log.exception("workbench publish: recording the outcome failed")


def _release(handle) -> None:
    """Give up the job's lock (the open lock file ``handle``) so that the next publish can start."""
    fcntl.flock(handle, fcntl.LOCK_UN)
    handle.close()


def _interrupted(status: dict[str, Any], holder) -> dict[str, Any]:
    """A job whose worker died: published if CURRENT moved past the version served when it started."""
    current = current_version(holder.index_root) if holder is not None and holder.index_root is not None else None
    if current is not None and status.get("served_before") and current != status["served_before"]:
        return {"state": "done", "version": current, "interrupted": True,
                "message": f"发布过程中服务中断，但新版本 {current} 已经生效，无需重新发布"}
    return {"state": "failed", "message": "构建中断：服务在构建期间停止了，请重新发布"}


def _publish(corpus: Path, holder, searcher: Searcher, force: bool, stage: Callable[[str], None],
             guard: Callable[[Callable], Callable] | None = None) -> dict[str, Any]:
    """Build the corpus with the served model and settings, through the gate; then every worker reloads.

    ``guard`` wraps the gate's check (review.py: the version built must be the approved draft)."""
    load_corpus(corpus)  # a broken corpus fails here, with its message, before any model time
    stage("build")
    manifest = searcher.index.manifest
    gate = publish_gate(holder.index_root, searcher.encoder, default_labelled_path(corpus), force=force,
                        on_start=lambda: stage("gate"))
    gate = guard(gate) if guard else gate
    built = build_from_corpus(corpus, holder.index_root, searcher.encoder, mode=manifest.get("default_mode", "hybrid"),
                              index_answers=manifest.get("index_answers", True), progress=False, check=gate)
    stage("reload")
    try:
        reloaded = holder.reload_everywhere()
    except ReloadRefused as exc:  # CURRENT back to what is served: never a version on disk that no one serves
        rollback(holder.index_root, to=searcher.version)
        raise ReloadRefused(f"新版本无法加载，已恢复为正在服务的版本 {searcher.version}：{exc.public}") from None
    published = json.loads((built.version_dir / MANIFEST).read_text(encoding="utf-8"))
    return {"version": reloaded["version"], "gate": published.get("publish_gate"),
            "all_workers": reloaded.get("all_workers", True)}


@bp.post("/admin/api/publish")
def publish():
    """Start rebuilding and publishing the corpus (202); poll GET for progress.

    With review on (review.py), only the approved change set: 409 when there is none or the draft changed since."""
    require_any("editor", "reviewer")
    corpus, shared = corpus_folder(), state()
    body = json_body(shared.config.max_body_bytes) if request.content_length else {}
    force = body.get("force", False)
    if not isinstance(force, bool):
        raise ApiError(400, "invalid_force", "'force' 必须是 true 或 false")
    if shared.holder.index_root is None:
        raise ApiError(409, "publish_unavailable", "这个服务没有从索引文件夹启动，不能在这里发布")
    searcher, holder = serving(), shared.holder
    changeset = approved_change_set(corpus)  # None: review is off here
    guard, note = publish_guard(changeset), publish_recorder(corpus, changeset)
    job, record = PublishJob(corpus), audit_recorder()

    def ended(outcome: dict[str, Any]) -> None:
        note(outcome)
        record(f"publish.{outcome['state']}", version=outcome.get("version"), served_before=searcher.version,
               message=outcome.get("message"), change_set=changeset.id if changeset else None)

    def started() -> None:  # audited before the job's thread runs: "started" always precedes its outcome
        audit("publish.started", served_before=searcher.version, force=force,
              change_set=changeset.id if changeset else None)

    job.start(lambda stage: _publish(corpus, holder, searcher, force, stage, guard), served_before=searcher.version,
              on_start=started, on_end=ended)
    log.info("workbench: publishing %s into %s%s", corpus, holder.index_root, " (forced)" if force else "")
    return jsonify(job.status(holder)), 202


@bp.get("/admin/api/publish")
def publish_status():
    """The publish job: state (idle, running, done, refused, failed), stage, gate result, version."""
    require_any("editor", "reviewer")
    return jsonify(PublishJob(corpus_folder()).status(state().holder))


# --- the OpenAPI document's part (publish only: the other workbench routes serve its own page) ---------


class PublishStage(BaseModel):
    id: str
    label: str = Field(description="the stage in Chinese")


class PublishStatus(BaseModel):
    """The publish job as ``PublishJob.status`` reports it (fields beyond ``state`` depend on the state)."""

    model_config = ConfigDict(extra="allow")
    state: Literal["idle", "running", "done", "refused", "failed"]
    stage: str | None = Field(None, description="while running: the stage's id")
    stages: list[PublishStage] = Field(description="every stage, in order")
    started_at: str | None = None
    finished_at: str | None = None
    served_before: str | None = Field(None, description="the version served when it started")
    version: str | None = Field(None, description="done: the version published")
    message: str | None = Field(None, description="refused or failed: why, in Chinese")
    gate: dict[str, Any] | None = Field(None, description="the publish gate's report")
    all_workers: bool | None = Field(None, description="done: every worker serves the new version")


class PublishRequest(BaseModel):
    force: bool = Field(False, description="publish even if the publish gate refuses (recorded in the manifest)")


def openapi_paths(components, error: dict) -> dict:
    """``/admin/api/publish`` for /openapi.json (merged by openapi.openapi_document)."""
    from .openapi import _ANY_REQUEST, _BODY, _QUERY_STRING, ADMIN_TOKEN, _errors, _json, _operation

    status = components.ref(PublishStatus)
    forbidden = _json(error, "admin_disabled (no admin token, no users), missing_csrf_header (a cookie session "
                             "without X-Requested-With), or forbidden_role (the user is neither editor nor reviewer)")

    def op(operation_id: str, summary: str, ok: dict, conflict: str, *statuses: int, **rest: Any) -> dict:
        responses = {**ok, **_errors(error, 401, 429, 503, *_ANY_REQUEST, *statuses), "403": forbidden,
                     "409": _json(error, conflict)}
        return _operation(operation_id, "admin", summary, dict(sorted(responses.items())),
                          security=[{ADMIN_TOKEN: []}], **rest)

    return {"/admin/api/publish": {
        "get": op("getPublishStatus", "The publish job: idle, running (stage), done, refused or failed (editor, "
                                      "reviewer)", {"200": _json(status, "the job")},
                  "no corpus folder configured (no_corpus)", *_QUERY_STRING),
        "post": op("startPublish", "Rebuild and publish the draft in the background; poll GET (editor, reviewer)",
                   {"202": _json(status, "started")},
                   "no_corpus; publish_unavailable (not served from an index folder); publish_running (a job runs "
                   "already); with review on: not_approved (no approved change set), draft_changed, corpus_invalid",
                   400, *_BODY, requestBody={"required": False, **_json(components.ref(PublishRequest), "")})},
    }
