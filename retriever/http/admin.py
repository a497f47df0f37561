"""Administration: ``POST /admin/reload`` behind a bearer token."""
from __future__ import annotations

import hmac
import math
import threading
import time
from collections import deque
from dataclasses import dataclass

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


def _require_token() -> None:
    supplied = request.headers.get("Authorization", "")
    check_admin_token(supplied.removeprefix("Bearer ") if supplied.startswith("Bearer ") else "")


@bp.post("/admin/reload")
def reload():
    """Load each collection's current version beside the served one and swap, in every worker of the server.

    One collection: its outcome. Several: ``{"collections": {name: outcome or {"error", "message"}}}``.
    """
    _require_token()
    holders = state().collections.holders()
    if len(holders) == 1:
        try:
            return jsonify(next(iter(holders.values())).reload_everywhere())
        except ReloadRefused as exc:
            raise ApiError(409, "reload_refused", exc.public) from None  # counted by the holder, logged with paths
    outcomes = {}
    for name, holder in holders.items():
        try:
            outcomes[name] = holder.reload_everywhere()
        except ReloadRefused as exc:  # one collection's bad version leaves the others reloaded
            outcomes[name] = {"error": "reload_refused", "message": exc.public}
    return jsonify({"collections": outcomes})
