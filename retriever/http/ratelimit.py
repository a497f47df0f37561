"""The per-client rate limit of the /v1 API, counted in memory (per worker) or in a shared store.

``RETRIEVER_RATE_LIMIT_STORAGE=redis://host:6379`` makes every worker and every replica count in
one place, so a client gets the limit once, not once per worker. When that store does not answer
(at start or later), each worker limits in its own memory instead, logs one line saying so, and
goes back to the store once it answers again: serving never depends on the limiter's store.

Batch work is also bounded by what it costs (:class:`BatchAdmission`): characters per request and
per client's window (counted in the same store), and classify requests running per worker.
"""
from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import math
import threading
from typing import Iterator

from flask import Flask

from ..config import ServiceConfig

log = logging.getLogger(__name__)
STORE_TIMEOUT_SECONDS = 1.0  # a store that does not answer within this costs a request no more
BUSY_RETRY_SECONDS = 5  # a guess: a slot frees when a running classify request ends (seconds to half a minute)


def _storage_options(uri: str) -> dict:
    options: dict = {}
    if uri.startswith(("redis", "valkey")):
        # Without timeouts, a store that drops packets would hold every request indefinitely.
        options.update(socket_connect_timeout=STORE_TIMEOUT_SECONDS, socket_timeout=STORE_TIMEOUT_SECONDS)
    if uri.startswith("redis://"):
        options["connection_class"] = _native_socket_connection()
    return options


def _native_socket_connection():
    """A redis-py connection over a native socket, whichever thread opened it.

    The gevent workers patch ``socket``, and the app runs in a pool of native threads: a pooled
    gevent socket opened by one thread fails in another ("Cannot switch to a different thread"),
    which would silently drop the limit to per-worker memory under concurrent requests.
    """
    import socket

    import redis
    from gevent.monkey import get_original

    native_socket, native_getaddrinfo = get_original("socket", ["socket", "getaddrinfo"])

    class NativeSocketConnection(redis.Connection):
        def _connect(self):
            error = None
            for family, kind, proto, _, address in native_getaddrinfo(self.host, self.port, 0, socket.SOCK_STREAM):
                sock = native_socket(family, kind, proto)
                try:
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    sock.settimeout(self.socket_connect_timeout)
                    sock.connect(address)
                    sock.settimeout(self.socket_timeout)
                    return sock
                except OSError as exc:
                    error = exc
                    sock.close()
            raise error or OSError(f"{self.host}:{self.port} has no address")

    return NativeSocketConnection


def _without_password(uri: str) -> str:
    """The URI as logs may show it: ``redis://:secret@host`` becomes ``redis://***@host``."""
    scheme, _, rest = uri.partition("://")
    return f"{scheme}://***@{rest.rsplit('@', 1)[1]}" if "@" in rest else uri


def _limit_key(config: ServiceConfig, remote_address):
    """The limiter's key: the API key on Dify's route (every user of a Dify installation arrives from
    the one address of its server), the client address everywhere else and for unknown keys."""
    from flask import request

    def key() -> str:
        if request.blueprint == "dify":
            return client_identity(request.headers.get("Authorization", ""), remote_address(), config.api_keys)
        return remote_address()

    return key


def rate_limiter(app: Flask, config: ServiceConfig):
    """A flask-limiter Limiter on ``app`` with ``config.rate_limit`` per client (:func:`_limit_key`); None when off."""
    if not config.rate_limit:
        return None
    from flask_limiter import Limiter
    from flask_limiter.util import get_remote_address

    uri = config.rate_limit_storage
    shared = not uri.startswith("memory://")
    limiter = Limiter(_limit_key(config, get_remote_address), app=app, default_limits=[config.rate_limit],
                      storage_uri=uri,
                      storage_options=_storage_options(uri), headers_enabled=True,
                      # The same limit, per worker, while the shared store is down.
                      in_memory_fallback=[config.rate_limit] if shared else None,
                      in_memory_fallback_enabled=shared)
    if shared:
        _check_store(uri)
    return limiter


def _check_store(uri: str) -> None:
    from limits.storage import storage_from_string

    # A store of its own: connections the limiter's pool opened here, in the worker's main thread,
    # would be gevent sockets bound to this thread's hub, unusable by the threads that run requests.
    try:
        answered = storage_from_string(uri, **_storage_options(uri)).check()
    except Exception:  # noqa: BLE001 - any client error means the same thing here: no store
        answered = False
    if answered:
        log.info("rate limit counted in %s, shared by every worker using it", _without_password(uri))
    else:
        log.warning("rate-limit store %s does not answer: each worker limits in its own memory until it does "
                    "(start the store, or unset RETRIEVER_RATE_LIMIT_STORAGE)", _without_password(uri))


def bearer_key(header: str) -> str | None:
    """The key of an ``Authorization: Bearer <key>`` header; None for any other header."""
    scheme, _, key = header.partition(" ")
    return key.strip() or None if scheme == "Bearer" else None


def known_key(header: str, keys: tuple[str, ...]) -> str | None:
    """The configured API key the header carries (compared in constant time), or None."""
    key = bearer_key(header)
    if key is None:
        return None
    supplied = key.encode("utf-8", "replace")
    return next((known for known in keys if hmac.compare_digest(supplied, known.encode())), None)


def client_identity(authorization: str, remote_addr: str | None, api_keys: tuple[str, ...]) -> str:
    """Whom a limit or budget counts against: the API key a request authenticates with (by a digest, never
    the key itself), else its address."""
    key = known_key(authorization, api_keys)
    if key is not None:
        return "key:" + hashlib.sha256(key.encode()).hexdigest()[:16]
    return "address:" + (remote_addr or "")


class CostBudget:
    """An amount of work per client per window (``"60000 per minute"``), counted where the rate limit counts.

    Fixed windows: a refused client waits until its window ends, and then has the whole amount again,
    so the Retry-After it is told is exact. A request is charged only when it fits (a refused one
    costs nothing). A shared store that does not answer: counted in this worker's memory meanwhile.
    """

    def __init__(self, amount_per_window: str, storage_uri: str = "memory://") -> None:
        from limits import parse
        from limits.storage import MemoryStorage, storage_from_string
        from limits.strategies import FixedWindowRateLimiter

        self.item = parse(amount_per_window)
        self.described = amount_per_window
        self._shared = None if storage_uri.startswith("memory://") else \
            FixedWindowRateLimiter(storage_from_string(storage_uri, **_storage_options(storage_uri)))
        self._local = FixedWindowRateLimiter(MemoryStorage())
        self._uri = storage_uri

    @property
    def amount(self) -> int:
        return self.item.amount

    @property
    def window_seconds(self) -> int:
        return self.item.get_expiry()

    def charge(self, client: str, cost: int, now: float) -> int:
        """Charge ``cost`` to ``client`` and return 0; or, if it does not fit, charge nothing and
        return the whole seconds until ``client``'s window ends (at least 1)."""
        try:
            return self._charge(self._shared or self._local, client, cost, now)
        except Exception:  # noqa: BLE001 - any store error means the same: count here meanwhile
            log.warning("budget store %s does not answer: this worker counts budgets in memory meanwhile",
                        _without_password(self._uri))
            return self._charge(self._local, client, cost, now)

    def _charge(self, limiter, client: str, cost: int, now: float) -> int:
        if limiter.test(self.item, "budget", client, cost=cost):
            limiter.hit(self.item, "budget", client, cost=cost)
            return 0
        reset = limiter.get_window_stats(self.item, "budget", client).reset_time
        return max(1, math.ceil(reset - now))


class Refused(Exception):
    """Work not let in: answered with ``status``, a stable ``code``, a message and ``Retry-After`` (if any)."""

    def __init__(self, status: int, code: str, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.retry_after = status, code, message, retry_after


class BatchAdmission:
    """What batch work (/v1/classify) this worker lets in, so that one client cannot starve the others.

    Three bounds, checked in this order: the request's own size in characters (413: it can never
    fit), a free batch slot of this worker (503: the other threads stay free for searches), and the
    client's budget per window (429 with the seconds until it ends). A refused request costs nothing.
    """

    def __init__(self, max_chars: int, slots: int, budget: CostBudget | None) -> None:
        self.max_chars, self.slots, self.budget = max_chars, slots, budget
        self._free = threading.BoundedSemaphore(slots)

    @classmethod
    def from_config(cls, config: ServiceConfig) -> "BatchAdmission":
        budget = CostBudget(config.classify_budget, config.rate_limit_storage) if config.classify_budget else None
        return cls(config.classify_chars_per_request, config.batch_jobs, budget)

    @contextlib.contextmanager
    def admitted(self, client: str, chars: int, now: float) -> Iterator[None]:
        """Hold a batch slot for work of ``chars`` characters charged to ``client``; raises :class:`Refused`."""
        if chars > self.max_chars:
            raise Refused(413, "classify_too_large", f"the inquiries hold {chars} characters (after normalisation); "
                          f"one request may hold at most {self.max_chars}: send them in smaller requests")
        if not self._free.acquire(blocking=False):
            raise Refused(503, "batch_busy", f"this server is running {self.slots} classify requests already "
                          f"(its limit, so that searches are never kept waiting); retry shortly",
                          BUSY_RETRY_SECONDS)
        try:
            wait = self.budget.charge(client, chars, now) if self.budget is not None else 0
            if wait:
                raise Refused(429, "classify_budget_exceeded",
                              f"this client's classify budget is {self.budget.described} (characters of "
                              f"inquiry text); this request's {chars} do not fit in what is left of it: "
                              f"retry in {wait} s", wait)
            yield
        finally:
            self._free.release()
