"""Who may do what under ``/admin``: logins, sessions, roles, and the audit trail of what they did.

Three ways in, each naming a user:

- a session cookie from ``POST /admin/login`` with a user name and password (users file,
  docs/accounts.md), or with the legacy ``RETRIEVER_ADMIN_TOKEN`` alone, which acts as the user
  ``admin`` holding every role;
- ``Authorization: Bearer <token>``: the admin token, or a user's own API token.

A session is a signed cookie (HttpOnly, SameSite=Strict, path /admin) naming a server-side session
(``SessionStore``: logout ends it in every worker) and carrying a keyed digest of the credential it
was made with, so a new admin token or a new password ends the sessions made with the old one. A
write with the cookie must carry ``X-Requested-With: workbench``: a page on another site cannot send
that header without a CORS preflight this service never allows. Wrong tokens and passwords count
per client address (``FailedGuesses``); past the limit every attempt waits.

:func:`require_role` is what a route calls first; :func:`audit` records what it changed, as that user.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable

from flask import abort, current_app, g, make_response, request, session

from ..editorial.accounts import LEGACY_ADMIN, ROLES, AccountError, User, UserStore
from ..editorial.audit import AuditError, AuditLog
from ..privacy import masker_for
from .admin import GUESSES, FailedGuesses, SessionStore, TokenMessages, check_admin_token
from .errors import ApiError, error_response
from .state import state

log = logging.getLogger(__name__)
WORKBENCH = "retriever_workbench"  # app.extensions key: the vector cache (grouping.py) and the sessions
ACCOUNTS = "retriever_accounts"  # app.extensions key: the users file and the audit log
SESSION_KEY, SESSION_ID, SESSION_USER = "editor", "sid", "user"
CSRF_HEADER, CSRF_VALUE = "X-Requested-With", "workbench"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ROLE_LABELS = {"editor": "编辑", "reviewer": "审核", "admin": "管理员"}
ANONYMOUS = "(anonymous)"  # the actor of what no one logged in did (a failed login); no user name has ( )
WORKBENCH_TOKEN_MESSAGES = TokenMessages(disabled="工作台未开启：请设置 RETRIEVER_ADMIN_TOKEN 或添加用户",
                                         too_many="令牌错误次数过多，请 {wait} 秒后再试",
                                         wrong_code="wrong_token", wrong="管理令牌不正确")
TOO_MANY_LOGINS = "登录失败次数过多，请 {wait} 秒后再试"


@dataclass(frozen=True)
class Actor:
    """Who is asking: a user of the users file, or ``admin`` (the legacy token, every role)."""

    name: str
    roles: tuple[str, ...]
    via: str  # "session", "token" (the admin token), "user_token"

    def holds(self, role: str) -> bool:
        return role in self.roles or "admin" in self.roles

    @classmethod
    def legacy_admin(cls, via: str) -> "Actor":
        return cls(LEGACY_ADMIN, ROLES, via)

    @classmethod
    def of(cls, user: User, via: str) -> "Actor":
        return cls(user.name, user.roles, via)


# --- the users file and the audit log of this app ------------------------------------------------


def _accounts() -> dict[str, Any]:
    found = current_app.extensions.get(ACCOUNTS)
    if found is None:
        config = state().config
        found = {"users": UserStore(config.users_file) if config.users_file else None,
                 "audit": AuditLog(config.audit_log, masker_for(config)) if config.audit_log else None}
        current_app.extensions[ACCOUNTS] = found
    return found


def user_store() -> UserStore | None:
    """The users file of this server (None: RETRIEVER_USERS_FILE off, or no data folder)."""
    return _accounts()["users"]


def audit_log() -> AuditLog | None:
    """The audit log of this server (None: RETRIEVER_AUDIT_LOG off, or no data folder)."""
    return _accounts()["audit"]


def _users() -> dict[str, User]:
    store = user_store()
    if store is None:
        return {}
    try:
        return store.users()
    except AccountError as exc:  # a broken users file: the admin token still works, users cannot log in
        log.error("%s", exc)
        return {}


def workbench_enabled() -> bool:
    """Anyone can log in: the admin token is set, or the users file has an enabled user."""
    return bool(state().config.admin_token) or any(not u.disabled for u in _users().values())


# --- sessions ------------------------------------------------------------------------------------


def _sessions() -> SessionStore:
    return current_app.extensions[WORKBENCH]["sessions"]


def _mark(credential: str) -> str:
    """What the session holds: a keyed digest of the credential (a new one ends every session made with the old)."""
    return hmac.new(current_app.secret_key.encode(), credential.encode("utf-8", "replace"),
                    hashlib.sha256).hexdigest()


def _user_credential(user: User) -> str:
    return f"user\0{user.name}\0{user.password or ''}"


def session_actor() -> Actor | None:
    """The actor of this request's session cookie: alive (not logged out, not expired), made with the
    credential that is current now (the admin token, or the user's password), the user still enabled."""
    mark, name = session.get(SESSION_KEY), session.get(SESSION_USER)
    if not isinstance(mark, str) or not _sessions().alive(session.get(SESSION_ID)):
        return None
    if name is None:
        token = state().config.admin_token
        return Actor.legacy_admin("session") if token and hmac.compare_digest(mark, _mark(token)) else None
    user = _users().get(name) if isinstance(name, str) else None
    if user is None or user.disabled or not hmac.compare_digest(mark, _mark(_user_credential(user))):
        return None
    return Actor.of(user, "session")


def start_session(actor: Actor, user: User | None = None) -> None:
    """A new session for ``actor`` (``user``: the one it logged in as; none: the admin token)."""
    session.clear()
    session.permanent = True
    session[SESSION_KEY] = _mark(_user_credential(user) if user else state().config.admin_token)
    if user is not None:
        session[SESSION_USER] = user.name
    session[SESSION_ID] = _sessions().create()
    g.actor = actor


def end_session() -> str | None:
    """End this browser's session in every worker; the name of whoever it was (None: no live session)."""
    actor = session_actor()
    _sessions().end(session.get(SESSION_ID))
    session.clear()
    return actor.name if actor else None


# --- logging in ----------------------------------------------------------------------------------


def _guesses() -> FailedGuesses:
    return current_app.extensions.setdefault(GUESSES, FailedGuesses())


def _wait_if_guessing(message: str) -> None:
    """429 while this client has failed too often (even a right password waits: guessing stays slow)."""
    guesses = _guesses()
    wait = guesses.retry_after(request.remote_addr or "", time.monotonic())
    if wait:
        abort(make_response(error_response(429, "too_many_attempts", message.format(
            limit=guesses.limit, window=guesses.window, wait=wait), {"Retry-After": str(wait)})))


def _failed(code: str, message: str, **detail: Any) -> ApiError:
    _guesses().record(request.remote_addr or "", time.monotonic())
    audit_as(ANONYMOUS, "login.failed", client=request.remote_addr, **detail)
    return ApiError(401, code, message)


def log_in(body: dict[str, Any]) -> Actor:
    """Check a login body (``{"token"}`` or ``{"name", "password"}``), start the session, audit it."""
    if not workbench_enabled():
        raise ApiError(403, "admin_disabled", WORKBENCH_TOKEN_MESSAGES.disabled)
    if "name" in body or "password" in body:
        actor = _password_login(body)
        start_session(actor, _users().get(actor.name))
    else:
        _token_login(body.get("token"))
        actor = Actor.legacy_admin("session")
        start_session(actor)
    audit("login", via="password" if session.get(SESSION_USER) else "token", client=request.remote_addr)
    return actor


def _checked(check: Callable[[UserStore], User | None]) -> User | None:
    """``check(users file)``: None without one; 503 if it cannot be read (the admin token still works)."""
    store = user_store()
    if store is None:
        return None
    try:
        return check(store)
    except AccountError as exc:
        log.error("%s", exc)
        raise ApiError(503, "users_unreadable", "用户文件无法读取，请联系管理员（管理令牌仍可登录）") from None


def _token_login(token: object) -> None:
    if not isinstance(token, str) or not token:
        raise ApiError(400, "missing_token", "请输入管理令牌，或用户名和密码")
    if not state().config.admin_token:  # users only: no token is right, and guessing one is counted
        _wait_if_guessing(WORKBENCH_TOKEN_MESSAGES.too_many)
        raise _failed("wrong_token", WORKBENCH_TOKEN_MESSAGES.wrong, user=LEGACY_ADMIN, via="token")
    try:
        check_admin_token(token, WORKBENCH_TOKEN_MESSAGES)
    except ApiError as exc:
        if exc.status == 401:
            audit_as(ANONYMOUS, "login.failed", client=request.remote_addr, user=LEGACY_ADMIN, via="token")
        raise


def _password_login(body: dict[str, Any]) -> Actor:
    name, password = body.get("name"), body.get("password")
    if not isinstance(name, str) or not name:
        raise ApiError(400, "missing_name", "name: 请输入用户名")
    if not isinstance(password, str) or not password:
        raise ApiError(400, "missing_password", "password: 请输入密码")
    if len(name) > 64 or len(password) > 1024:
        raise ApiError(400, "invalid_login", "用户名或密码过长")
    _wait_if_guessing(TOO_MANY_LOGINS)
    user = _checked(lambda store: store.authenticate(name, password))
    if user is None:
        raise _failed("wrong_password", "用户名或密码不正确", user=name, via="password")
    return Actor.of(user, "session")


# --- your own password --------------------------------------------------------------------------


def acting_user() -> User | None:
    """The users-file user this request acts as (after :func:`require_login`); None for the admin token."""
    actor = current_actor()
    if actor is None or actor.via == "token" or (actor.via == "session" and session.get(SESSION_USER) is None):
        return None
    return _users().get(actor.name)


def change_own_password(user: User, current: str, new: str) -> User:
    """Set ``user``'s new password once ``current`` is theirs: a wrong one is 403, counted as a guess
    and audited. Their other sessions end (made with the old password); this one is renewed."""
    _wait_if_guessing(TOO_MANY_LOGINS)
    store = user_store()
    if _checked(lambda users: users.authenticate(user.name, current)) is None:
        _guesses().record(request.remote_addr or "", time.monotonic())
        audit("user.password_change_failed", user=user.name, client=request.remote_addr)
        raise ApiError(403, "wrong_password", "current_password: 当前密码不正确")
    try:
        changed = store.update(user.name, password=new)
    except AccountError as exc:
        raise ApiError(503 if exc.kind == "unreadable" else 400, "invalid_password", f"new_password: {exc}") from None
    if session.get(SESSION_USER) == user.name:
        _sessions().end(session.get(SESSION_ID))
        start_session(Actor.of(changed, "session"), changed)
    return changed


# --- who may: every /admin/api route asks first ---------------------------------------------------


def _bearer_actor(authorization: str) -> Actor:
    """The admin token's actor, or the user whose API token it is; a wrong one counts as a failed guess."""
    scheme, _, supplied = authorization.partition(" ")
    if scheme != "Bearer" or not supplied:
        raise ApiError(401, "unauthorized", "请使用 'Authorization: Bearer <令牌>' 或先登录")
    _wait_if_guessing(WORKBENCH_TOKEN_MESSAGES.too_many)
    token = state().config.admin_token
    # Header text may hold anything a client sent, even what UTF-8 cannot encode.
    if token and hmac.compare_digest(supplied.encode("utf-8", "replace"), token.encode()):
        return Actor.legacy_admin("token")
    user = _checked(lambda store: store.by_token(supplied)) if supplied.isascii() else None
    if user is None:
        _guesses().record(request.remote_addr or "", time.monotonic())
        raise ApiError(401, "wrong_token", "令牌不正确")
    return Actor.of(user, "user_token")


def admin_bearer() -> str:
    """Who calls a bearer-only admin route (``POST /admin/reload``): ``admin`` for the admin token, or an
    admin user's name for their API token. Anything else gets the admin token's own answers (401, 403
    ``admin_disabled``, 429), or 403 ``forbidden_role`` for another user's token."""
    authorization = request.headers.get("Authorization", "")
    supplied = authorization.removeprefix("Bearer ") if authorization.startswith("Bearer ") else ""
    token = state().config.admin_token
    is_admin_token = bool(token) and hmac.compare_digest(supplied.encode("utf-8", "replace"), token.encode())
    if supplied and not is_admin_token:
        _wait_if_guessing(TokenMessages().too_many)  # the API's own words, as check_admin_token's
        user = _checked(lambda store: store.by_token(supplied)) if supplied.isascii() else None
        if user is not None:
            if not user.holds("admin"):
                raise ApiError(403, "forbidden_role", f"user {user.name} does not hold the admin role")
            g.actor = Actor.of(user, "user_token")
            return user.name
        if not token and _users():  # users only: a wrong token is a wrong token, counted
            _guesses().record(request.remote_addr or "", time.monotonic())
            raise ApiError(401, "unauthorized", "send 'Authorization: Bearer <an admin user's API token>'")
    check_admin_token(supplied)
    g.actor = Actor.legacy_admin("token")
    return LEGACY_ADMIN


def current_actor() -> Actor | None:
    """Who this request acts as, once :func:`require_role` let it in (None before)."""
    return g.get("actor")


def require_login() -> Actor:
    """Whoever this request acts as, any role (the session, or a bearer token); else 401/403 as JSON."""
    if not workbench_enabled():
        raise ApiError(403, "admin_disabled", WORKBENCH_TOKEN_MESSAGES.disabled)
    authorization = request.headers.get("Authorization", "")
    if authorization:
        actor = _bearer_actor(authorization)
    else:
        actor = session_actor()
        if actor is None:
            raise ApiError(401, "login_required", "请先登录工作台（登录已过期或已退出）")
        if request.method not in SAFE_METHODS and request.headers.get(CSRF_HEADER) != CSRF_VALUE:
            raise ApiError(403, "missing_csrf_header", f"工作台的请求需要请求头 {CSRF_HEADER}: {CSRF_VALUE}")
    g.actor = actor
    return actor


def require_role(role: str) -> str:
    """The name of the user this request acts as, if they hold ``role``; else an ApiError as JSON.

    403 admin_disabled (no admin token and no users), 401 login_required / wrong_token / unauthorized,
    403 missing_csrf_header (a write with the cookie but without the header), 403 forbidden_role.
    """
    return require_any(role)


def require_any(*roles: str) -> str:
    """As :func:`require_role`, for a route any of ``roles`` may use (editor or reviewer: both read drafts)."""
    unknown = [role for role in roles if role not in ROLES]
    if unknown or not roles:
        raise ValueError(f"unknown role {unknown[0] if unknown else None!r}")
    actor = require_login()
    if not any(actor.holds(role) for role in roles):
        needed = "或".join(f"「{ROLE_LABELS[role]}」（{role}）" for role in roles)
        held = "、".join(ROLE_LABELS[r] for r in actor.roles) or "无"
        raise ApiError(403, "forbidden_role", f"需要{needed}角色才能这样做；用户 {actor.name} 的角色：{held}")
    return actor.name


# --- the audit trail -----------------------------------------------------------------------------


def audit_as(actor: str, action: str, **detail: Any) -> None:
    """Append ``action`` by ``actor`` to the audit log (nothing if it is off).

    The change it records is already on disk: a log that cannot be written is logged as an error,
    not answered as one (a client retrying would make the change twice).
    """
    _append(audit_log(), actor, action, detail)


def _append(trail, actor: str, action: str, detail: dict[str, Any]) -> None:
    if trail is None:
        return
    try:
        trail.record(actor, action, **detail)
    except AuditError as exc:
        log.error("audit record lost: %s by %s: %s", action, actor, exc)


def audit(action: str, **detail: Any) -> None:
    """Append ``action`` to the audit log as the user this request acts as (after :func:`require_role`).

    Details are free-form JSON values; name one entry ``entry=<id>`` (several: ``entries=[...]``) so the
    log can be filtered by entry, and a change set ``change_set=<id>``.
    """
    actor = current_actor()
    audit_as(actor.name if actor else ANONYMOUS, action, **detail)


def audit_recorder() -> Callable[..., None]:
    """``record(action, **detail)`` as this request's actor, usable after the request ends (a background job's
    thread, which has no request or app context)."""
    trail, actor = audit_log(), current_actor()
    name = actor.name if actor else ANONYMOUS

    def record(action: str, **detail: Any) -> None:
        _append(trail, name, action, detail)
    return record
