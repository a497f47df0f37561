"""The per-client rate limit of the /v1 API, counted in memory (per worker) or in a shared store.

``RETRIEVER_RATE_LIMIT_STORAGE=redis://host:6379`` makes every worker and every replica count in
one place, so a client gets the limit once, not once per worker. When that store does not answer
(at start or later), each worker limits in its own memory instead, logs one line saying so, and
goes back to the store once it answers again: serving never depends on the limiter's store.
"""
from __future__ import annotations

import logging

from flask import Flask

from ..config import ServiceConfig

log = logging.getLogger(__name__)
STORE_TIMEOUT_SECONDS = 1.0  # a store that does not answer within this costs a request no more


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


def rate_limiter(app: Flask, config: ServiceConfig):
    """A flask-limiter Limiter on ``app`` with ``config.rate_limit`` per client address; None when off."""
    if not config.rate_limit:
        return None
    from flask_limiter import Limiter
    from flask_limiter.util import get_remote_address

    uri = config.rate_limit_storage
    shared = not uri.startswith("memory://")
    limiter = Limiter(get_remote_address, app=app, default_limits=[config.rate_limit], storage_uri=uri,
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
