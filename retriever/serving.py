"""Running the WSGI app on a real socket."""
from __future__ import annotations

import re

from werkzeug.serving import WSGIRequestHandler

_NON_ASCII = re.compile(rb"[\x80-\xff]")


class PercentEncodingRequestHandler(WSGIRequestHandler):
    """Percent-encodes raw non-ASCII bytes of the request line before it is parsed.

    ``curl 'host/v1/search?q=注销进度'`` sends the Chinese as raw UTF-8. The
    standard library decodes the line as latin-1 and splits it with str.split(),
    which also splits on \\xa0 and \\x85, bytes found inside many Chinese characters
    (样 is E6 A0 B7): such requests fail with 400, and the rest reach the app
    double-encoded by Werkzeug. Encoding the bytes as the client should have
    done avoids both; percent-encoded requests are unchanged.
    """

    def parse_request(self) -> bool:
        self.raw_requestline = _NON_ASCII.sub(lambda match: b"%%%02X" % match.group()[0], self.raw_requestline)
        return super().parse_request()


def serve(app, host: str, port: int, debug: bool = False) -> None:
    """Serve ``app`` (a Flask app) on host:port with one thread per request, until interrupted."""
    app.run(host=host, port=port, debug=debug, threaded=True, use_reloader=False,
            request_handler=PercentEncodingRequestHandler)
