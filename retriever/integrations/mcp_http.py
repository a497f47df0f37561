"""The MCP server over streamable HTTP (``/mcp``): API keys, a bound on each client's sessions, idle
sessions closed, and the ``Host`` names a proxy may pass.

In front of the SDK's app, :class:`McpGuard` refuses a request without one of the API keys (401),
a new session from a client that already holds ``max_sessions_per_client`` open ones (429), and a
``Host`` or ``Origin`` that is not allowed (421 / 403, with the option that allows it). A client is
its API key (all callers with one key share its sessions), or its address when keys are off.
The SDK closes a session idle for ``session_idle_seconds`` and caps all sessions at ``max_sessions``.
"""
from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.mcpserver import MCPServer
from mcp.server.streamable_http import MCP_SESSION_ID_HEADER
from mcp.server.transport_security import TransportSecuritySettings
from starlette.requests import Request
from starlette.responses import Response

log = logging.getLogger(__name__)

MCP_PATH = "/mcp"
OPEN_PATHS = frozenset({"/metrics"})  # no key needed: counts only, like the search service's /metrics
LOOPBACK_HOSTS = ("127.0.0.1", "127.0.0.1:*", "localhost", "localhost:*", "[::1]", "[::1]:*")
LOOPBACK_ORIGINS = ("http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*")
WILDCARD_BINDS = frozenset({"0.0.0.0", "::", ""})
SWEEP_SECONDS = 10.0  # how often sessions of clients that never came back are forgotten


@dataclass(frozen=True)
class HttpSettings:
    """How ``faq-retriever mcp --http`` serves (docs/mcp.md)."""

    host: str = "127.0.0.1"
    port: int = 8001
    api_keys: tuple[str, ...] = ()  # RETRIEVER_API_KEYS, the keys of /retrieval
    anonymous: bool = False  # --no-auth: no key asked (a trusted network only)
    allowed_hosts: tuple[str, ...] = ()  # Host values a proxy passes ("name", "name:*"); "*": any
    allowed_origins: tuple[str, ...] = ()  # browser origins allowed besides loopback ones
    max_body_bytes: int = 64 * 1024  # one request (413 past it): RETRIEVER_MAX_BODY_BYTES, as the API
    max_sessions: int = 1000  # open sessions of all clients together (503 past it)
    max_sessions_per_client: int = 16  # open sessions of one client (429 past it)
    session_idle_seconds: float = 300.0  # a session with no request for this long is closed


def host_allowed(host: str | None, allowed: tuple[str, ...]) -> bool:
    """Whether ``host`` is one of ``allowed``, where ``name:*`` stands for the name with any port."""
    if not host:
        return False
    return any(host == pattern or (pattern.endswith(":*") and host.startswith(pattern[:-1])) for pattern in allowed)


def transport_security(settings: HttpSettings) -> TransportSecuritySettings:
    """The SDK's Host/Origin checks: loopback names plus the allowed ones; off for ``*``, and off for a
    wildcard bind with no names given (the SDK's own default for a non-loopback address)."""
    if "*" in settings.allowed_hosts or (settings.host in WILDCARD_BINDS and not settings.allowed_hosts):
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    own = () if settings.host in WILDCARD_BINDS else (settings.host,)
    return TransportSecuritySettings(enable_dns_rebinding_protection=True,
                                     allowed_hosts=[*LOOPBACK_HOSTS, *_any_port(own + settings.allowed_hosts)],
                                     allowed_origins=[*LOOPBACK_ORIGINS, *settings.allowed_origins])


def _any_port(hosts: tuple[str, ...]) -> list[str]:
    """Each host as given, and a bare name (``faq.example.org``, ``[::1]``) with any port too."""
    out = []
    for host in hosts:
        out.append(host)
        if (host.endswith("]") if host.startswith("[") else ":" not in host):
            out.append(f"{host}:*")
    return out


@dataclass
class _Session:
    client: str
    last_seen: float
    busy: int = 0  # requests in flight (an open GET stream too): the session is not idle meanwhile


@dataclass
class SessionBook:
    """Each client's open sessions, as the HTTP exchanges show them: opened by a response carrying a
    session id, ended by DELETE, by a 404 for it, or by ``idle_seconds`` without a request (when the SDK
    closes it too)."""

    per_client: int
    idle_seconds: float
    clock: Callable[[], float] = time.monotonic
    _sessions: dict[str, _Session] = field(default_factory=dict)
    _by_client: dict[str, set[str]] = field(default_factory=dict)
    _opening: dict[str, int] = field(default_factory=dict)  # session-opening requests in flight, by client
    _swept_at: float = 0.0

    def open_count(self, client: str) -> int:
        now = self.clock()
        for session_id in list(self._by_client.get(client, ())):
            if self._expired(self._sessions[session_id], now):
                self.forget(session_id)
        return len(self._by_client.get(client, ())) + self._opening.get(client, 0)

    def reserve(self, client: str) -> bool:
        """Room for one more session of ``client`` (held until :meth:`settle`), or False at its limit."""
        self._sweep()
        if self.open_count(client) >= self.per_client:
            return False
        self._opening[client] = self._opening.get(client, 0) + 1
        return True

    def settle(self, client: str, session_id: str | None) -> None:
        """The opening request of ``client`` ended: with the new session's id, or None if none was opened."""
        left = self._opening.get(client, 1) - 1
        if left:
            self._opening[client] = left
        else:
            self._opening.pop(client, None)
        if session_id:
            self._sessions[session_id] = _Session(client, self.clock())
            self._by_client.setdefault(client, set()).add(session_id)

    def began(self, client: str, session_id: str) -> None:
        if (session := self._sessions.get(session_id)) is not None and session.client == client:
            session.busy += 1

    def ended(self, client: str, session_id: str, closed: bool) -> None:
        """A request of ``client`` in the session ended; ``closed``: the session with it (another client's
        request for it changes nothing: the SDK refuses it, the session stays)."""
        session = self._sessions.get(session_id)
        if session is None or session.client != client:
            return
        if closed:
            self.forget(session_id)
            return
        session.busy = max(0, session.busy - 1)
        session.last_seen = self.clock()

    def forget(self, session_id: str) -> None:
        session = self._sessions.pop(session_id, None)
        if session is not None:
            ids = self._by_client.get(session.client, set())
            ids.discard(session_id)
            if not ids:
                self._by_client.pop(session.client, None)

    def __len__(self) -> int:
        return len(self._sessions)

    def _expired(self, session: _Session, now: float) -> bool:
        return session.busy == 0 and now - session.last_seen > self.idle_seconds

    def _sweep(self) -> None:
        now = self.clock()
        if now - self._swept_at < SWEEP_SECONDS:
            return
        self._swept_at = now
        for session_id in [sid for sid, session in self._sessions.items() if self._expired(session, now)]:
            self.forget(session_id)


def _bare_name(host: str | None) -> str:
    """``faq.example.org`` of ``faq.example.org:8443`` (``[::1]`` of ``[::1]:8001``); NAME when there is none."""
    if not host:
        return "NAME"
    name, _, port = host.rpartition(":")
    return name if port.isdigit() and (name.endswith("]") or not name.startswith("[")) else host


def _json_error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """A JSON-RPC error body (no request id), as the SDK's own HTTP refusals are."""
    body = {"jsonrpc": "2.0", "id": None, "error": {"code": -32000 if status != 401 else -32001, "message": message}}
    return Response(json.dumps(body, ensure_ascii=False), status_code=status, media_type="application/json",
                    headers=headers)


class McpGuard:
    """ASGI middleware before the SDK's app: API keys, Host/Origin with a clear refusal, sessions per client."""

    def __init__(self, app: Any, settings: HttpSettings, book: SessionBook | None = None) -> None:
        self.app = app
        self.settings = settings
        self.book = book or SessionBook(settings.max_sessions_per_client, settings.session_idle_seconds)
        self.security = transport_security(settings)
        self._keys = [key.encode("utf-8") for key in settings.api_keys]

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        refused = self._refused_origin(request) or self._unauthorized(request, scope) or self._too_large(request)
        if refused is not None:
            await refused(scope, receive, send)
            return
        client = self._client(scope)
        session_id = request.headers.get(MCP_SESSION_ID_HEADER)
        if session_id is None and request.method == "POST":
            await self._open_session(client, scope, receive, send)
        elif session_id is not None:
            await self._in_session(client, session_id, request.method, scope, receive, send)
        else:
            await self.app(scope, receive, send)

    def _refused_origin(self, request: Request) -> Response | None:
        if not self.security.enable_dns_rebinding_protection:
            return None
        host = request.headers.get("host")
        if not host_allowed(host, tuple(self.security.allowed_hosts)):
            return _json_error(421, f"Host {host!r} is not served here: behind a proxy that passes its own Host, "
                                    f"start the server with --allowed-host {_bare_name(host)} "
                                    f"(RETRIEVER_MCP_ALLOWED_HOSTS); see docs/mcp.md")
        origin = request.headers.get("origin")
        if origin and not host_allowed(origin, tuple(self.security.allowed_origins)):
            return _json_error(403, f"Origin {origin!r} is not allowed: add it with --allowed-origin "
                                    f"(RETRIEVER_MCP_ALLOWED_ORIGINS)")
        return None

    def _unauthorized(self, request: Request, scope: dict) -> Response | None:
        """None for a known key (the caller is then the key's user) or with keys off; else the 401."""
        if self.settings.anonymous:
            return None
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        supplied = key.strip().encode("utf-8", "replace")
        if scheme.lower() == "bearer" and supplied:
            for number, known in enumerate(self._keys, start=1):
                if hmac.compare_digest(supplied, known):
                    # The SDK binds each session to this user: another key cannot use it.
                    scope["user"] = AuthenticatedUser(AccessToken(token=f"api-key-{number}",
                                                                  client_id=f"api-key-{number}", scopes=[]))
                    return None
            message = "unknown API key"
        else:
            message = "send 'Authorization: Bearer <key>' with one of the keys in RETRIEVER_API_KEYS"
        return _json_error(401, message, {"WWW-Authenticate": 'Bearer realm="mcp"'})

    def _too_large(self, request: Request) -> Response | None:
        """A declared body over the limit, refused in words (the SDK's own check, for chunked bodies, is terse)."""
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.settings.max_body_bytes:
            return _json_error(413, f"the body has {declared} bytes; the limit is {self.settings.max_body_bytes} "
                                    f"(RETRIEVER_MAX_BODY_BYTES)")
        return None

    @staticmethod
    def _client(scope: dict) -> str:
        user = scope.get("user")
        if isinstance(user, AuthenticatedUser):
            return user.access_token.client_id
        address = scope.get("client")
        return f"address {address[0]}" if address else "address unknown"

    async def _open_session(self, client: str, scope: dict, receive: Any, send: Any) -> None:
        if not self.book.reserve(client):
            log.warning("MCP: %s already holds %d open sessions; a new one is refused", client,
                        self.settings.max_sessions_per_client)
            await _json_error(429, f"this client already holds {self.settings.max_sessions_per_client} open MCP "
                                   f"sessions: end one (DELETE {MCP_PATH} with its Mcp-Session-Id) or wait until "
                                   f"an idle one closes ({self.settings.session_idle_seconds:g} s without a request)",
                              {"Retry-After": str(int(self.settings.session_idle_seconds))})(scope, receive, send)
            return
        opened: list[str] = []

        async def watch(message: dict) -> None:
            if message["type"] == "http.response.start" and message["status"] < 400:
                header = MCP_SESSION_ID_HEADER.lower().encode("latin-1")
                opened.extend(v.decode("latin-1") for k, v in message.get("headers", []) if k.lower() == header)
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            self.book.settle(client, opened[0] if opened else None)

    async def _in_session(self, client: str, session_id: str, method: str, scope: dict, receive: Any,
                          send: Any) -> None:
        status: list[int] = []

        async def watch(message: dict) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        self.book.began(client, session_id)
        try:
            await self.app(scope, receive, watch)
        finally:
            answered = status[0] if status else None
            closed = answered == 404 or (method == "DELETE" and answered is not None and answered < 300)
            self.book.ended(client, session_id, closed)


def http_app(server: MCPServer, settings: HttpSettings, exposition: Callable[[], tuple[bytes, str]] | None = None):
    """The ASGI app serving ``server`` at ``/mcp`` (and ``/metrics`` when ``exposition`` gives its text)."""
    if exposition is not None:
        @server.custom_route("/metrics", methods=["GET"])
        async def metrics(request: Request) -> Response:
            body, content_type = exposition()
            return Response(body, media_type=content_type)

    app = server.streamable_http_app(streamable_http_path=MCP_PATH, session_idle_timeout=settings.session_idle_seconds,
                                     max_sessions=settings.max_sessions,
                                     max_request_body_size=settings.max_body_bytes,
                                     transport_security=transport_security(settings), host=settings.host)
    return McpGuard(app, settings)


def serve_http(server: MCPServer, settings: HttpSettings,
               exposition: Callable[[], tuple[bytes, str]] | None = None) -> None:
    """Serve until interrupted (uvicorn)."""
    import anyio
    import uvicorn

    config = uvicorn.Config(http_app(server, settings, exposition), host=settings.host, port=settings.port,
                            log_level="info", timeout_graceful_shutdown=5)
    anyio.run(uvicorn.Server(config).serve)
