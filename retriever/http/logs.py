"""Logs for operators and editors: JSON access lines, and the rotated log of unmatched queries."""
from __future__ import annotations

import json
import logging
import logging.handlers
from datetime import datetime, timezone

from flask import g, has_request_context

access_log = logging.getLogger("retriever.access")
# JSON keeps these raw (with ensure_ascii=False), yet str.splitlines() and many log tools break
# lines at them: escaped, one record stays one line. JSON escapes every other line break itself.
_LINE_BREAKS_ESCAPED = {ord(c): f"\\u{ord(c):04x}" for c in "\u0085\u2028\u2029"}


def json_line(record: dict) -> str:
    """``record`` as one line of JSON, readable Chinese kept, nothing any reader takes for a line break."""
    return json.dumps(record, ensure_ascii=False).translate(_LINE_BREAKS_ESCAPED)


def configure_access_log(stream=None) -> None:
    """Access lines as bare JSON (one object a line) on stderr, apart from the human-readable log."""
    if access_log.handlers:
        return
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    access_log.addHandler(handler)
    access_log.setLevel(logging.INFO)
    access_log.propagate = False


def log_access(method: str, path: str, status: int, seconds: float, client: str | None, **extra) -> None:
    """One JSON line per request on the ``retriever.access`` logger.

    A search also says which cascade path answered (``answer_path``: "fast" or "full"), a
    classification how many inquiries each path answered (set on ``flask.g`` by the API).
    """
    if has_request_context() and "answer_path" in g:
        extra.setdefault("answer_path", g.answer_path)
    record = {"ts": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), "method": method, "path": path,
              "status": status, "ms": round(seconds * 1000, 2), "client": client, **extra}
    access_log.info(json_line(record))


def rotated_jsonl_logger(kind: str, path: str) -> logging.Logger:
    """A logger writing bare lines to ``path``, rotated at 10 MB with 5 kept (one per kind and path)."""
    logger = logging.getLogger(f"retriever.{kind}.{path}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    if not logger.handlers:
        handler = logging.handlers.RotatingFileHandler(path, maxBytes=10 * 1024 * 1024, backupCount=5,
                                                       encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    return logger


class UnmatchedLog:
    """Queries answered ``no_match``, one JSON object a line, for FAQ editors; rotated at 10 MB, 5 kept."""

    def __init__(self, path: str) -> None:
        self._logger = rotated_jsonl_logger("unmatched", path)

    def record(self, query: str, top_faq_id: str | None, score: float | None, threshold: float | None,
               version: str, source: str) -> None:
        self._logger.info(json_line({"ts": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                     "query": query, "top_faq_id": top_faq_id, "score": score,
                                     "threshold": threshold, "index_version": version, "source": source}))
