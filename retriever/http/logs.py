"""Logs for operators and editors: JSON access lines, and the append-only logs editors read.

Every text a citizen typed is masked (:mod:`retriever.privacy`) before it reaches any of them;
the search itself used the full text, in memory only. A record counts once it is on disk
(:func:`retriever.files.append_line`), and records older than the retention age are deleted.
"""
from __future__ import annotations

import json
import logging
import os
import time
import urllib.parse
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from flask import g, has_request_context

from ..editorial.editing import LOG_BACKUPS
from ..files import append_line, remove_old_records
from ..privacy import DEFAULT_MASKER, Masker
from ..results import SearchResult
from ..scoring import NO_MATCH

access_log = logging.getLogger("retriever.access")
log = logging.getLogger(__name__)
# JSON escapes C0 controls itself; with ensure_ascii=False it keeps DEL, the C1 controls (U+009B
# is a terminal's CSI: it can rewrite what an operator sees), the line breaks str.splitlines()
# and many log tools break at, and the bidirectional controls (U+202E shows a line reversed).
# All escaped: one record stays one line and reads as written.
_ESCAPED = {code: f"\\u{code:04x}" for code in (0x7F, *range(0x80, 0xA0), 0x2028, 0x2029, *range(0x202A, 0x202F),
                                                *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C)}
_CONTROLS_ESCAPED = {**{code: f"\\u{code:04x}" for code in range(0x20)}, **_ESCAPED}  # for plain-text lines
MAX_LOG_BYTES = 10 * 1024 * 1024
PRUNE_EVERY_SECONDS = 3600.0


def json_line(record: dict) -> str:
    """``record`` as one line of JSON: readable Chinese kept, control and line-breaking characters escaped."""
    return json.dumps(record, ensure_ascii=False).translate(_ESCAPED)


def configure_access_log(stream=None) -> None:
    """Access lines as bare JSON (one object a line) on stderr, apart from the human-readable log."""
    if access_log.handlers:
        return
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    access_log.addHandler(handler)
    access_log.setLevel(logging.INFO)
    access_log.propagate = False


def log_access(method: str, path: str, status: int, seconds: float, client: str | None,
               masker: Masker = DEFAULT_MASKER, **extra) -> None:
    """One JSON line per request on the ``retriever.access`` logger; the path and any text in it masked.

    A search also says which cascade path answered (``answer_path``: "fast" or "full"), a
    classification how many inquiries each path answered (set on ``flask.g`` by the API).
    """
    if has_request_context() and "answer_path" in g:
        extra.setdefault("answer_path", g.answer_path)
    extra = {key: masker(value) if isinstance(value, str) else value for key, value in extra.items()}
    record = {"ts": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), "method": method,
              "path": masker(path), "status": status, "ms": round(seconds * 1000, 2), "client": client, **extra}
    access_log.info(json_line(record))


class MaskingFilter(logging.Filter):
    """Masks personal data in a logger's messages (gunicorn's and werkzeug's carry request lines)."""

    def __init__(self, masker: Masker) -> None:
        super().__init__()
        self.masker = masker

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        # Request lines arrive percent-encoded (an e-mail's @ is %40): masked as the client meant them.
        decoded = urllib.parse.unquote_plus(message, errors="replace") if "%" in message or "+" in message else message
        masked = self.masker(decoded)
        if masked != decoded:
            record.msg, record.args = masked.translate(_CONTROLS_ESCAPED), ()
        return True


def mask_logger(name: str, masker: Masker) -> None:
    """Mask what the logger ``name`` writes from now on (once per logger)."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, MaskingFilter) for f in logger.filters):
        logger.addFilter(MaskingFilter(masker))


def record_time(line: str) -> float | None:
    """The ``ts`` of a log line in seconds since the epoch; None for a line without one."""
    try:
        stamp = json.loads(line).get("ts")
        return datetime.fromisoformat(stamp).timestamp() if isinstance(stamp, str) else None
    except (ValueError, AttributeError):
        return None


class MaskedJsonLog:
    """An append-only JSON Lines log of citizens' texts: masked, on disk before acknowledged, rotated, expiring.

    Rotated at 10 MB with 5 parts kept (``path.1`` ... ``path.5``, what the workbench reads).
    Records older than ``retention_days`` (0: kept until rotated away) are deleted when the log
    is opened and then at most once an hour, by whichever worker writes.
    """

    def __init__(self, path: str | Path, masker: Masker = DEFAULT_MASKER, retention_days: float = 90.0) -> None:
        self.path = Path(path)
        self.masker = masker
        self.retention_days = retention_days
        self._pruned_at = 0.0
        if self.path.parent.is_dir():
            self.prune()
        elif not os.access(_existing_ancestor(self.path.parent), os.W_OK):
            # every write will fail and say so (feedback: 503); the service still answers
            log.error("%s: the folder cannot be made: set RETRIEVER_DATA_DIR to a writable folder, or turn "
                      "the log off (=off)", self.path.parent)

    def prune(self) -> int:
        """Delete the records older than the retention age now; how many lines went."""
        self._pruned_at = time.monotonic()
        if self.retention_days <= 0:
            return 0
        cutoff = time.time() - self.retention_days * 86400
        try:
            removed = remove_old_records(self.path, LOG_BACKUPS, cutoff, record_time)
        except OSError as exc:
            log.warning("%s: records past the retention age could not be removed: %s", self.path, exc)
            return 0
        if removed:
            log.info("%s: %d record(s) older than %g days removed", self.path, removed, self.retention_days)
        return removed

    def masked_text(self, text: str) -> dict[str, Any]:
        """The fields a citizen's ``text`` becomes: ``query`` masked, and what was masked, if anything."""
        masked = self.masker.mask(text)
        fields: dict[str, Any] = {"query": masked.text}
        if masked.found:
            fields["masked"] = list(masked.kinds)
        if masked.mostly_personal:
            fields["personal"] = True  # mostly personal data: stored only masked, flagged for editors
        return fields

    def append(self, record: dict) -> None:
        """Write ``record`` whole and flushed; OSError (a full disk) leaves the log as it was."""
        if time.monotonic() - self._pruned_at > PRUNE_EVERY_SECONDS:
            self.prune()
        # Made on the first record, not at start: a worker starting while the index folder is gone must
        # not bring it back as an empty folder (the operator restores the index there).
        self.path.parent.mkdir(parents=True, exist_ok=True)
        append_line(self.path, json_line(record), MAX_LOG_BYTES, LOG_BACKUPS)


def _existing_ancestor(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


class UnmatchedLog(MaskedJsonLog):
    """Queries answered ``no_match``, one JSON object a line, for FAQ editors."""

    def record(self, query: str, top_faq_id: str | None, score: float | None, threshold: float | None,
               version: str, source: str) -> bool:
        """Log one unmatched query; False if it could not be written (the search answers all the same)."""
        try:
            self.append({"ts": datetime.now(timezone.utc).isoformat(timespec="seconds"), **self.masked_text(query),
                         "top_faq_id": top_faq_id, "score": score, "threshold": threshold, "index_version": version,
                         "source": source})
        except OSError as exc:
            log.warning("%s: an unmatched query was not logged: %s", self.path, exc.strerror or exc)
            return False
        return True

    def record_result(self, query: str, result: SearchResult, version: str, source: str) -> bool:
        """Log ``query`` if ``result`` is ``no_match`` (with its first hit), as every route that searches does."""
        if result.decision != NO_MATCH:
            return False
        top = result.hits[0] if result.hits else None
        return self.record(query, top and top.faq_id, top and round(top.score, 6), result.threshold, version, source)
