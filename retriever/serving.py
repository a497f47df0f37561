"""Running the WSGI app on a real socket."""
from __future__ import annotations

from typing import Any, Callable, Iterable

WsgiApp = Callable[[dict, Callable], Iterable[bytes]]


def repair_raw_utf8_query(wsgi_app: WsgiApp) -> WsgiApp:
    """Undo Werkzeug's server double-encoding a request target sent as raw UTF-8.

    ``curl 'host/v1/search?q=注销进度'`` sends the Chinese bytes unescaped. The
    standard library decodes the request line as latin-1 (as PEP 3333 wants), then
    Werkzeug's server encodes that text as UTF-8 once more, and the app would see
    mojibake. Percent-encoded queries are ASCII and pass through untouched.
    (Gunicorn 27 and waitress refuse such requests with 400 instead.)
    """

    def app(environ: dict[str, Any], start_response: Callable):
        query = environ.get("QUERY_STRING", "")
        if not query.isascii() and environ.get("SERVER_SOFTWARE", "").startswith("Werkzeug"):
            environ["QUERY_STRING"] = query.encode("latin-1").decode("utf-8")
        return wsgi_app(environ, start_response)

    return app


def serve(app, host: str, port: int, debug: bool = False) -> None:
    """Serve ``app`` (a Flask app) on host:port with one thread per request, until interrupted."""
    app.wsgi_app = repair_raw_utf8_query(app.wsgi_app)
    app.run(host=host, port=port, debug=debug, threaded=True, use_reloader=False)
