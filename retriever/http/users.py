"""Users and the audit trail as JSON under ``/admin/api``: who am I, the admin's user management, the audit log.

Users (admin only): list, create, change roles / password / disabled, remove, issue or revoke a
user's API token (shown once). The audit log (reviewer or admin): filtered and paged, or exported
whole as JSON Lines or CSV. Every change here is itself audited; passwords and tokens never are.
"""
from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timezone
from typing import Any, Literal

from flask import Blueprint, Response, jsonify, request, stream_with_context
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..editorial.accounts import MAX_PASSWORD_CHARS, ROLES, AccountError, UserStore
from ..editorial.audit import MAX_READ, AuditError
from .access import (acting_user, audit, audit_log, change_own_password, require_login, require_role,
                     user_store)
from .errors import ApiError
from .parsing import json_body
from .state import state

bp = Blueprint("users", __name__)
Role = Literal["editor", "reviewer", "admin"]
ACCOUNT_STATUS = {"invalid": (400, "invalid_user"), "not_found": (404, "unknown_user"),
                  "exists": (409, "user_exists"), "last_admin": (409, "last_admin"),
                  "unreadable": (503, "users_unreadable")}
CSV_COLUMNS = ("time", "actor", "action", "details")
_SPREADSHEET_FORMULA = ("=", "+", "-", "@", "\t", "\r")


# --- request and response shapes (the OpenAPI document is built from them) ----------------------


class NewUser(BaseModel):
    """A user to create: roles, and a password (to log in to the workbench) and/or an API token."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64)
    roles: list[Role] = Field(min_length=1, max_length=len(ROLES))
    password: str | None = Field(None, max_length=MAX_PASSWORD_CHARS)
    token: bool = False  # issue an API token now (shown once, in the answer)


class UserChange(BaseModel):
    """What to change of a user; fields left out stay as they are."""

    model_config = ConfigDict(extra="forbid")
    roles: list[Role] | None = Field(None, min_length=1, max_length=len(ROLES))
    password: str | None = Field(None, max_length=MAX_PASSWORD_CHARS)
    disabled: bool | None = None


class UserView(BaseModel):
    name: str
    roles: list[Role]
    disabled: bool
    password: bool = Field(description="the user has a password (never the hash)")
    token: bool = Field(description="the user has an API token (never the token)")
    token_created: str | None
    created: str
    updated: str


class UsersList(BaseModel):
    users: list[UserView]


class UserCreated(BaseModel):
    user: UserView
    token: str | None = Field(description="the new API token, shown this once; null if none was asked for")


class TokenIssued(BaseModel):
    user: UserView
    token: str = Field(description="the new API token, shown this once (the earlier one no longer works)")


class Me(BaseModel):
    user: str
    roles: list[Role]
    via: Literal["session", "token", "user_token"]
    users_file: bool = Field(description="users can be managed here (a users file is configured)")
    own_password: bool = Field(description="this user can change their own password here "
                                           "(a users-file user with a password; not the admin token)")
    audit_log: bool = Field(description="changes are recorded in an audit log")


class PasswordChange(BaseModel):
    """Your own new password, with the current one."""

    model_config = ConfigDict(extra="forbid")
    current_password: str = Field(min_length=1, max_length=MAX_PASSWORD_CHARS)
    new_password: str = Field(min_length=1, max_length=MAX_PASSWORD_CHARS)


class AuditRecord(BaseModel):
    model_config = ConfigDict(extra="allow")
    time: str
    actor: str
    action: str


class AuditPage(BaseModel):
    enabled: bool = Field(description="false: the audit log is off (RETRIEVER_AUDIT_LOG)")
    total: int = Field(description="records matching the filters")
    offset: int
    limit: int
    records: list[AuditRecord] = Field(description="newest first")


# --- helpers -------------------------------------------------------------------------------------


def _store() -> UserStore:
    store = user_store()
    if store is None:
        raise ApiError(409, "users_unavailable", "没有配置用户文件（RETRIEVER_USERS_FILE，默认在数据文件夹中），"
                                                 "只能用管理令牌登录")
    return store


def _account_error(exc: AccountError) -> ApiError:
    status, code = ACCOUNT_STATUS.get(exc.kind, (400, "invalid_user"))
    return ApiError(status, code, str(exc))


def _body(model: type[BaseModel]) -> Any:
    try:
        return model.model_validate(json_body(state().config.max_body_bytes), strict=True)
    except ValidationError as exc:
        error = exc.errors()[0]
        raise ApiError(400, "invalid_user", f"{'.'.join(map(str, error['loc'])) or 'body'}: {error['msg']}") from None


def _keep_admin() -> bool:
    """Without the admin token, the last enabled admin cannot be removed, disabled or demoted (no way back in)."""
    return not state().config.admin_token


# --- who am I ------------------------------------------------------------------------------------


@bp.get("/admin/api/me")
def me():
    """The user this session or token acts as, and their roles."""
    actor = require_login()
    user = acting_user()
    return jsonify(Me(user=actor.name, roles=list(actor.roles), via=actor.via, users_file=user_store() is not None,
                      own_password=bool(user and user.password), audit_log=audit_log() is not None).model_dump())


@bp.post("/admin/api/me/password")
def change_password():
    """Change your own password, the current one given: your other sessions end, this one goes on."""
    require_login()
    user = acting_user()
    if user is None:
        raise ApiError(409, "no_own_password", "管理令牌没有密码可改；用户的密码由管理员在用户面板中设置")
    change = _body(PasswordChange)
    changed = change_own_password(user, change.current_password, change.new_password)
    audit("user.password_changed", user=user.name)
    return jsonify(changed.public())


# --- users (admin) -------------------------------------------------------------------------------


@bp.get("/admin/api/users")
def list_users():
    """Every user (never a password hash or a token)."""
    require_role("admin")
    store = user_store()
    try:
        users = sorted(store.users().values(), key=lambda u: u.name) if store is not None else []
    except AccountError as exc:
        raise _account_error(exc) from None
    return jsonify({"users": [user.public() for user in users]})


@bp.post("/admin/api/users")
def create_user():
    """Create a user (201); with ``token: true`` the answer carries their API token, once."""
    require_role("admin")
    store, new = _store(), _body(NewUser)
    if new.password is None and not new.token:
        raise ApiError(400, "invalid_user", "password: 请设置密码，或用 token: true 发放 API 令牌")
    try:
        user = store.add(new.name, new.roles, new.password)
        token = store.issue_token(new.name) if new.token else None
    except AccountError as exc:
        raise _account_error(exc) from None
    audit("user.created", user=user.name, roles=list(user.roles), password=new.password is not None,
          token=token is not None)
    return jsonify({"user": (store.get(user.name) or user).public(), "token": token}), 201


@bp.get("/admin/api/users/<name>")
def get_user(name: str):
    """One user."""
    require_role("admin")
    try:
        user = _store().get(name)
    except AccountError as exc:
        raise _account_error(exc) from None
    if user is None:
        raise ApiError(404, "unknown_user", f"no user {name!r}")
    return jsonify(user.public())


@bp.patch("/admin/api/users/<name>")
def update_user(name: str):
    """Change a user's roles, password or disabled flag; a new password or disabling ends their sessions."""
    require_role("admin")
    store, change = _store(), _body(UserChange)
    changes = change.model_dump(exclude_none=True)
    if not changes:
        raise ApiError(400, "invalid_user", "body: 请给出要修改的 roles、password 或 disabled")
    try:
        before = store.get(name)
        user = store.update(name, keep_admin=_keep_admin(), **changes)
    except AccountError as exc:
        raise _account_error(exc) from None
    audit("user.updated", user=name, **_changed(before, user, changes))
    return jsonify(user.public())


def _changed(before, after, changes: dict[str, Any]) -> dict[str, Any]:
    """What the audit log says of an update: old and new roles and flag; that the password changed, not to what."""
    detail: dict[str, Any] = {}
    if "roles" in changes:
        detail["roles"] = {"from": list(before.roles) if before else None, "to": list(after.roles)}
    if "disabled" in changes:
        detail["disabled"] = after.disabled
    if "password" in changes:
        detail["password"] = "changed"
    return detail


@bp.delete("/admin/api/users/<name>")
def remove_user(name: str):
    """Remove a user: their sessions and token stop working at once."""
    require_role("admin")
    try:
        user = _store().remove(name, keep_admin=_keep_admin())
    except AccountError as exc:
        raise _account_error(exc) from None
    audit("user.removed", user=name, roles=list(user.roles))
    return jsonify(user.public())


@bp.post("/admin/api/users/<name>/token")
def issue_token(name: str):
    """A new API token for the user (201), shown once; their earlier token stops working."""
    require_role("admin")
    store = _store()
    try:
        token = store.issue_token(name)
    except AccountError as exc:
        raise _account_error(exc) from None
    audit("user.token_issued", user=name)
    return jsonify({"user": store.get(name).public(), "token": token}), 201


@bp.delete("/admin/api/users/<name>/token")
def revoke_token(name: str):
    """Revoke the user's API token."""
    require_role("admin")
    try:
        user = _store().revoke_token(name)
    except AccountError as exc:
        raise _account_error(exc) from None
    audit("user.token_revoked", user=name)
    return jsonify(user.public())


# --- the audit log (reviewer, admin) -------------------------------------------------------------


def _filters() -> dict[str, Any]:
    """The audit filters of the query string; 400 naming a bad one."""
    filters = {}
    for name in ("actor", "action", "since", "until", "entry"):
        value = request.args.get(name)
        if value:
            if len(value) > 200:
                raise ApiError(400, "invalid_parameter", f"{name}: at most 200 characters")
            filters[name] = value
    return filters


def _number(name: str, default: int, minimum: int, maximum: int) -> int:
    value = request.args.get(name)
    if value is None or value == "":
        return default
    if not value.isascii() or not value.isdigit() or not minimum <= int(value) <= maximum:
        raise ApiError(400, "invalid_parameter", f"{name}: must be an integer between {minimum} and {maximum}")
    return int(value)


@bp.get("/admin/api/audit")
def audit_page():
    """The audit log, newest first, filtered by actor, action (and its sub-actions), time, entry; paged."""
    require_role("reviewer")
    filters = _filters()
    limit, offset = _number("limit", 100, 1, MAX_READ), _number("offset", 0, 0, 10 ** 9)
    trail = audit_log()
    if trail is None:
        return jsonify({"enabled": False, "total": 0, "offset": offset, "limit": limit, "records": []})
    try:
        found = trail.page(limit=limit, offset=offset, **filters)
    except AuditError as exc:
        raise ApiError(400, "invalid_parameter", str(exc)) from None
    return jsonify({"enabled": True, "total": found["total"], "offset": offset, "limit": limit,
                    "records": found["records"]})


@bp.get("/admin/api/audit/export")
def audit_export():
    """The matching records, oldest first, as a JSON Lines or CSV download."""
    require_role("reviewer")
    filters, kind = _filters(), request.args.get("format", "jsonl")
    if kind not in ("jsonl", "csv"):
        raise ApiError(400, "invalid_parameter", "format: must be jsonl or csv")
    trail = audit_log()
    if trail is None:
        raise ApiError(409, "audit_disabled", "审计日志未开启（RETRIEVER_AUDIT_LOG）")
    try:  # what the log holds now: the export's own record, and any after it, are not in it
        records = trail.matching(end=trail.size(), **filters)
    except AuditError as exc:
        raise ApiError(400, "invalid_parameter", str(exc)) from None
    audit("audit.exported", format=kind, **{f"filter_{key}": value for key, value in filters.items()})
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    lines = _jsonl_lines(records) if kind == "jsonl" else _csv_lines(records)
    media = "application/x-ndjson" if kind == "jsonl" else "text/csv; charset=utf-8"
    return Response(stream_with_context(lines), mimetype=media,
                    headers={"Content-Disposition": f'attachment; filename="audit-{stamp}.{kind}"'})


def _jsonl_lines(records):
    for record in records:
        yield json.dumps(record, ensure_ascii=False) + "\n"


def _cell(value: Any) -> str:
    """A CSV cell a spreadsheet will not run: text starting like a formula gets a leading apostrophe."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return "'" + text if text.startswith(_SPREADSHEET_FORMULA) else text


def _csv_lines(records):
    yield "\ufeff"  # so that Excel reads the Chinese as UTF-8
    yield _csv_row(list(CSV_COLUMNS))
    for record in records:
        details = {key: value for key, value in record.items() if key not in CSV_COLUMNS}
        yield _csv_row([_cell(record.get("time", "")), _cell(record.get("actor", "")), _cell(record.get("action", "")),
                        _cell(details) if details else ""])


def _csv_row(cells: list[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerow(cells)
    return buffer.getvalue()


# --- the OpenAPI document's part for these routes ----------------------------------------------


_USER_ERRORS = {"400": "invalid body: the message names the field", "404": "no such user",
                "409": "no users file here (users_unavailable), the user exists (user_exists), or the change "
                       "would leave no admin (last_admin)"}


def openapi_paths(components, error: dict) -> dict:
    """The users and audit routes for /openapi.json (openapi.py merges them)."""
    from .openapi import _BODY, _ANY_REQUEST, _QUERY_STRING, ADMIN_TOKEN, _errors, _json, _operation

    def errors(*statuses: int, own: tuple[int, ...] = ()) -> dict:
        return {**_errors(error, 401, 403, 429, 503, *_ANY_REQUEST, *statuses),
                **{str(status): _json(error, _USER_ERRORS[str(status)]) for status in own}}

    def op(operation_id: str, summary: str, responses: dict, **rest) -> dict:
        return _operation(operation_id, "admin", summary, responses, security=[{ADMIN_TOKEN: []}], **rest)

    name = [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}]
    user = components.ref(UserView)
    body = {"requestBody": {"required": True, **_json(components.ref(NewUser), "")}}
    change = {"requestBody": {"required": True, **_json(components.ref(UserChange), "")}}
    return {
        "/admin/api/me": {"get": op("whoAmI", "The user this session or token acts as", {
            "200": _json(components.ref(Me), "the user and their roles"), **errors(_QUERY_STRING[0])})},
        "/admin/api/me/password": {"post": op("changeOwnPassword", "Change your own password (the current one given)", {
            "200": _json(user, "you, with the new password (this session goes on, your others end)"),
            **{**errors(*_BODY, own=(400,)),
               "403": _json(error, "the current password is wrong (wrong_password), or a cookie write without the "
                                   "workbench header"),
               "409": _json(error, "the admin token has no password to change (no_own_password)")}},
            requestBody={"required": True, **_json(components.ref(PasswordChange), "")})},
        "/admin/api/users": {
            "get": op("listUsers", "Every user (admin)", {
                "200": _json(components.ref(UsersList), "the users, by name"), **errors(*_QUERY_STRING)}),
            "post": op("createUser", "Create a user (admin)", {
                "201": _json(components.ref(UserCreated), "created; the token shown once"),
                **errors(*_BODY, own=(400, 409))}, **body)},
        "/admin/api/users/{name}": {
            "get": op("getUser", "One user (admin)", {"200": _json(user, "the user"),
                                                      **errors(*_QUERY_STRING, own=(404, 409))}, parameters=name),
            "patch": op("updateUser", "Change a user's roles, password or disabled flag (admin)", {
                "200": _json(user, "the user as changed"), **errors(*_BODY, own=(400, 404, 409))},
                parameters=name, **change),
            "delete": op("removeUser", "Remove a user (admin)", {
                "200": _json(user, "the user removed"), **errors(own=(404, 409))}, parameters=name)},
        "/admin/api/users/{name}/token": {
            "post": op("issueUserToken", "A new API token for the user, shown once (admin)", {
                "201": _json(components.ref(TokenIssued), "the new token"), **errors(own=(404, 409))},
                parameters=name),
            "delete": op("revokeUserToken", "Revoke the user's API token (admin)", {
                "200": _json(user, "the user, without a token"), **errors(own=(404, 409))}, parameters=name)},
        "/admin/api/audit": {"get": op("readAudit", "The audit log, newest first, filtered and paged (reviewer)", {
            "200": _json(components.ref(AuditPage), "one page of records"),
            **errors(*_QUERY_STRING, 400)}, parameters=_AUDIT_FILTERS + _PAGING)},
        "/admin/api/audit/export": {"get": op("exportAudit", "The matching audit records as a download (reviewer)", {
            "200": {"description": "JSON Lines (format=jsonl) or CSV (format=csv), oldest first",
                    "content": {"application/x-ndjson": {"schema": {"type": "string"}},
                                "text/csv": {"schema": {"type": "string"}}}},
            **errors(*_QUERY_STRING, 400), "409": _json(error, "the audit log is off (audit_disabled)")},
            parameters=_AUDIT_FILTERS + [{"name": "format", "in": "query", "required": False,
                                          "schema": {"type": "string", "enum": ["jsonl", "csv"],
                                                     "default": "jsonl"}}])},
    }


def _query(name: str, description: str, **schema) -> dict:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": {"type": "string", "maxLength": 200, **schema}}


_AUDIT_FILTERS = [
    _query("actor", "only what this user did"),
    _query("action", "only this action and its sub-actions (user: user.created, user.removed ...)"),
    _query("since", "from this time on (ISO date or date-time; UTC unless it says otherwise)", format="date-time"),
    _query("until", "up to this time", format="date-time"),
    _query("entry", "only records naming this entry id"),
]
_PAGING = [
    {"name": "limit", "in": "query", "required": False,
     "schema": {"type": "integer", "minimum": 1, "maximum": MAX_READ, "default": 100}},
    {"name": "offset", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 0,
                                                                    "maximum": 10 ** 9, "default": 0}},
]
