"""Administration: ``POST /admin/reload`` behind a bearer token; the token check and the editors' sessions."""
from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import secrets
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from flask import Blueprint, abort, current_app, jsonify, make_response, request

from .errors import ApiError, error_response
from ..reload import ReloadRefused
from .state import state

bp = Blueprint("admin", __name__)
GUESSES = "retriever_admin_guesses"


class FailedGuesses:
    """Wrong admin tokens per client address in a sliding window: past ``limit``, every attempt waits.

    In memory, so per worker process: with N workers a client gets up to N times the limit.
    """

    def __init__(self, limit: int = 10, window_seconds: float = 60.0, max_clients: int = 10_000) -> None:
        self.limit, self.window, self.max_clients = limit, window_seconds, max_clients
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, client: str, now: float) -> int:
        """Seconds ``client`` must wait before its next attempt (0: it may try now)."""
        with self._lock:
            failures = self._failures.get(client)
            while failures and failures[0] <= now - self.window:
                failures.popleft()
            if not failures:
                self._failures.pop(client, None)
                return 0
            return math.ceil(failures[0] + self.window - now) if len(failures) >= self.limit else 0

    def record(self, client: str, now: float) -> None:
        with self._lock:
            if len(self._failures) >= self.max_clients:  # many addresses: forget those quiet for a window
                self._failures = {c: f for c, f in self._failures.items() if f and f[-1] > now - self.window}
            self._failures.setdefault(client, deque(maxlen=self.limit)).append(now)


class SessionStore:
    """Live workbench sessions, one small file each in a folder every worker reads.

    A session is alive while its file exists and has not expired: logout deletes the file, so a
    cookie kept from before it is refused by every worker at once (a signed cookie alone would
    stay valid until it expired). Files are named by a digest of the session id: reading the
    folder gives no cookie away.
    """

    def __init__(self, folder: str | Path, lifetime_seconds: float) -> None:
        self.folder, self.lifetime = Path(folder), lifetime_seconds

    @classmethod
    def for_config(cls, config, secret: str) -> "SessionStore":
        """The store of this server: ``config.session_dir``, else one named after the secret every worker shares."""
        folder = config.session_dir or Path(tempfile.gettempdir()) / \
            f"retriever-sessions-{hashlib.sha256(secret.encode()).hexdigest()[:16]}"
        return cls(folder, config.session_hours * 3600)

    def _path(self, session_id: str) -> Path:
        return self.folder / hashlib.sha256(session_id.encode("utf-8", "replace")).hexdigest()

    def create(self) -> str:
        """A new session's id (its file written before the id is handed out); expired ones are swept."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._sweep()
        session_id = secrets.token_urlsafe(32)
        path = self._path(session_id)
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(json.dumps({"expires": time.time() + self.lifetime}), encoding="utf-8")
        os.replace(temporary, path)
        return session_id

    def alive(self, session_id: object) -> bool:
        if not isinstance(session_id, str) or not session_id:
            return False
        try:
            expires = json.loads(self._path(session_id).read_text(encoding="utf-8"))["expires"]
        except (OSError, ValueError, KeyError, TypeError):
            return False
        return isinstance(expires, (int, float)) and time.time() < expires

    def end(self, session_id: object) -> None:
        if isinstance(session_id, str) and session_id:
            self._path(session_id).unlink(missing_ok=True)

    def _sweep(self) -> None:
        now = time.time()
        for path in self.folder.iterdir():
            try:
                if json.loads(path.read_text(encoding="utf-8"))["expires"] < now:
                    path.unlink(missing_ok=True)
            except (OSError, ValueError, KeyError, TypeError):
                continue  # being written, or not ours


@dataclass(frozen=True)
class TokenMessages:
    """What a token check says, in the language of whoever asks (the API in English, the workbench in Chinese)."""

    disabled: str = "admin endpoints are off: set RETRIEVER_ADMIN_TOKEN to enable them"
    too_many: str = "{limit} wrong admin tokens from this address within {window:g} s; try again in {wait} s"
    wrong_code: str = "unauthorized"
    wrong: str = "send 'Authorization: Bearer <RETRIEVER_ADMIN_TOKEN>'"


def check_admin_token(supplied: str, messages: TokenMessages = TokenMessages()) -> None:
    """Accept the admin token; count wrong ones per client (429 past the limit, even for a right one)."""
    token = state().config.admin_token
    if not token:
        raise ApiError(403, "admin_disabled", messages.disabled)
    guesses = current_app.extensions.setdefault(GUESSES, FailedGuesses())
    client, now = request.remote_addr or "", time.monotonic()
    wait = guesses.retry_after(client, now)
    if wait:  # even a right token waits: otherwise guessing would go on at full speed
        message = messages.too_many.format(limit=guesses.limit, window=guesses.window, wait=wait)
        abort(make_response(error_response(429, "too_many_attempts", message, {"Retry-After": str(wait)})))
    # Header text may hold anything a client sent, even what UTF-8 cannot encode.
    if not hmac.compare_digest(supplied.encode("utf-8", "replace"), token.encode()):
        guesses.record(client, now)
        raise ApiError(401, messages.wrong_code, messages.wrong)


@bp.post("/admin/reload")
def reload():
    """Load each collection's current version beside the served one and swap, in every worker of the server.

    One collection: its outcome. Several: ``{"collections": {name: outcome or {"error", "message"}}}``.
    """
    from .access import admin_bearer, audit_as  # access builds on this module: imported when used

    actor = admin_bearer()  # the admin token, or an admin user's API token
    registry = state().collections
    names = registry.names()
    if len(names) == 1:
        try:
            outcome = registry.holder(names[0]).reload_everywhere()
        except ReloadRefused as exc:
            audit_as(actor, "reload.refused", collection=names[0], message=exc.public)
            raise ApiError(409, "reload_refused", exc.public) from None  # counted by the holder, logged with paths
        audit_as(actor, "reload", collection=names[0], version=outcome.get("version"))
        return jsonify(outcome)
    # Only the collections whose version changed are reloaded; those not loaded load CURRENT on first use.
    outcome = {"collections": registry.reload_changed()}
    audit_as(actor, "reload", collections={name: result.get("version") for name, result in
                                                  outcome["collections"].items() if isinstance(result, dict)})
    return jsonify(outcome)
