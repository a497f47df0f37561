"""Running the WSGI app on a real socket: gunicorn in production, Werkzeug's server with --debug.

Both accept a request target sent as raw UTF-8 (``curl 'host/v1/search?q=注销进度'``) by
percent-encoding its non-ASCII bytes before parsing, which is what the client should have
sent: gunicorn 27 refuses such request lines, and the standard library's parser splits them
on \\xa0 and \\x85, bytes found inside many Chinese characters (样 is E6 A0 B7).
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from typing import Any, Callable

from werkzeug.serving import WSGIRequestHandler

log = logging.getLogger(__name__)
_NON_ASCII = re.compile(rb"[\x80-\xff]")


def percent_encode_non_ascii(line: bytes) -> bytes:
    return _NON_ASCII.sub(lambda match: b"%%%02X" % match.group()[0], line)


class PercentEncodingRequestHandler(WSGIRequestHandler):
    """Werkzeug's handler, reading raw non-ASCII request-line bytes as percent-encoded."""

    def parse_request(self) -> bool:
        self.raw_requestline = percent_encode_non_ascii(self.raw_requestline)
        return super().parse_request()


def serve_debug(app, host: str, port: int) -> None:
    """Werkzeug's server with Flask's debug mode, for development only."""
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
    # Threads overlap I/O and JSON work; model calls within a worker are serialised by the encoder.
    threads: int = 8
    timeout: int = 60  # a worker silent this long (seconds) is killed and replaced
    graceful_timeout: int = 30  # in-flight requests get this long to finish on stop or SIGHUP
    keepalive: int = 5
    backlog: int = 512  # connections waiting while workers (re)start


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


def serve_gunicorn(make_app: Callable[[], Any], settings: ServerSettings) -> None:
    """Serve the app ``make_app`` builds (called once in each worker, after the fork) until stopped.

    SIGHUP restarts the workers gracefully: new ones load the current index version
    before taking requests; the old ones finish what they have.
    """
    from gunicorn.app.base import BaseApplication

    _accept_raw_utf8_in_gunicorn()
    options = {
        "bind": f"{settings.host}:{settings.port}",
        "workers": settings.workers,
        "threads": settings.threads,
        "worker_class": "gthread",
        "timeout": settings.timeout,
        "graceful_timeout": settings.graceful_timeout,
        "keepalive": settings.keepalive,
        "backlog": settings.backlog,
        # A 500-character Chinese query is ~4.5 KB percent-encoded; the default line limit is 4,094.
        "limit_request_line": 8190,
        "preload_app": False,  # the model's thread pool must start in the worker, not before fork
        "accesslog": None,  # the app writes JSON access lines itself
        "control_socket_disable": True,
    }

    class Server(BaseApplication):
        def load_config(self):
            for key, value in options.items():
                if key in self.cfg.settings:
                    self.cfg.set(key, value)

        def load(self):
            return make_app()

    Server().run()
