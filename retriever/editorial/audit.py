"""The audit trail: who changed what and when, one JSON line per event, appended and never rewritten.

Each line is ``{"time": "<UTC ISO>", "actor": "<user>", "action": "<what>", ...details}``. Lines are
appended whole and on disk before :meth:`AuditLog.record` returns (``files.append_line``: one write
under ``flock``, fsync), never rotated or pruned by the service: archiving it is the operator's
choice. Details that are free text (a reviewer's comment, a reason) are masked for personal data
as the other logs are; ids, versions and diffs of the corpus are kept as they are.
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from ..errors import RetrieverError
from ..files import append_line

log = logging.getLogger(__name__)

NEVER_ROTATE = 1 << 62  # append_line rotates past max_bytes; the audit log never is
FREE_TEXT = frozenset({"comment", "reason", "note", "message", "query"})  # details masked for personal data
MAX_READ = 1000


class AuditError(RetrieverError):
    """The audit log cannot be written or a filter is not valid."""


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(value: str | datetime | None, name: str = "time") -> datetime | None:
    """An ISO date or date-time as an aware UTC datetime (a naive one is taken as UTC); None stays None."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        moment = value
    else:
        text = str(value).strip()
        # RFC 3339 allows a lower-case t and z, and a leap second; fromisoformat takes neither.
        text = re.sub(r"[zZ]$", "+00:00", text[:10] + text[10:11].upper() + text[11:])
        text = re.sub(r"(T\d\d:\d\d):60", r"\1:59", text)
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise AuditError(f"{name}: {value!r} is not an ISO date or date-time such as 2026-12-05 or "
                             f"2026-12-05T08:30:00Z") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def parse_until(value: str | datetime | None) -> datetime | None:
    """The end of a time range: a date alone means the end of that day (until=2026-12-05 includes it)."""
    moment = parse_time(value, "until")
    if moment is not None and isinstance(value, str) and len(value.strip()) == 10:
        moment += timedelta(days=1, microseconds=-1)
    return moment


@dataclass(frozen=True)
class AuditFilter:
    """Which records to show: all given conditions hold (``entry``: the record names that entry id)."""

    actor: str | None = None
    action: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    entry: str | None = None

    def matches(self, record: dict[str, Any]) -> bool:
        if self.actor is not None and record.get("actor") != self.actor:
            return False
        if self.action is not None and record.get("action") != self.action and \
                not str(record.get("action", "")).startswith(self.action + "."):
            return False
        if self.entry is not None and not _names_entry(record, self.entry):
            return False
        if self.since is None and self.until is None:
            return True
        moment = _record_time(record)
        return moment is not None and (self.since is None or moment >= self.since) and \
            (self.until is None or moment <= self.until)


def _names_entry(record: dict[str, Any], entry: str) -> bool:
    entries = record.get("entries")
    return record.get("entry") == entry or (isinstance(entries, list) and entry in entries)


def _record_time(record: dict[str, Any]) -> datetime | None:
    try:
        return parse_time(record.get("time"))
    except AuditError:
        return None


class AuditLog:
    """The audit log at ``path`` (created on first record, mode 0640 like the other logs)."""

    def __init__(self, path: str | Path, masker: Callable[[str], str] | None = None) -> None:
        self.path, self.masker = Path(path), masker

    def record(self, actor: str, action: str, **detail: Any) -> dict[str, Any]:
        """Append one event (on disk when this returns) and give it back as written; AuditError if it cannot be."""
        entry = {"time": utc_now(), "actor": actor, "action": action,
                 **{key: self._masked(key, value) for key, value in detail.items() if value is not None}}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            append_line(self.path, json.dumps(entry, ensure_ascii=False, default=str), max_bytes=NEVER_ROTATE)
        except OSError as exc:
            raise AuditError(f"{self.path}: cannot append to the audit log ({exc.strerror or exc})") from None
        return entry

    def _masked(self, key: str, value: Any) -> Any:
        if self.masker is not None and key in FREE_TEXT and isinstance(value, str):
            return self.masker(value)
        return value

    def size(self) -> int:
        """The log's length in bytes now: ``records(end=size)`` reads what it held then, whatever is appended since."""
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def records(self, end: int | None = None) -> Iterator[dict[str, Any]]:
        """Every record (in the first ``end`` bytes), oldest first; a line that is not a JSON object (edited by
        hand) is skipped and logged."""
        try:
            handle = open(self.path, "rb")
        except FileNotFoundError:
            return
        except OSError as exc:
            raise AuditError(f"{self.path}: cannot read the audit log ({exc.strerror or exc})") from None
        with handle:
            read = 0
            for number, raw in enumerate(handle, start=1):
                read += len(raw)
                if end is not None and read > end:
                    return
                line = raw.decode("utf-8", "replace")
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    record = None
                if isinstance(record, dict):
                    yield record
                else:
                    log.warning("%s:%d: not an audit record, skipped", self.path, number)

    def read(self, actor: str | None = None, action: str | None = None, since: str | datetime | None = None,
             until: str | datetime | None = None, entry: str | None = None, limit: int = 100,
             offset: int = 0) -> list[dict[str, Any]]:
        """The matching records, newest first, ``offset`` of them skipped, at most ``limit`` (``action``: also
        its sub-actions, "user" matches "user.created")."""
        return self.page(actor, action, since, until, entry, limit, offset)["records"]

    def page(self, actor: str | None = None, action: str | None = None, since: str | datetime | None = None,
             until: str | datetime | None = None, entry: str | None = None, limit: int = 100,
             offset: int = 0) -> dict[str, Any]:
        """``{"total": matching records, "records": the page}``, newest first."""
        wanted = AuditFilter(actor, action, parse_time(since, "since"), parse_until(until), entry)
        matching = [record for record in self.records() if wanted.matches(record)]
        matching.reverse()
        return {"total": len(matching), "records": matching[offset:offset + max(0, min(limit, MAX_READ))]}

    def matching(self, end: int | None = None, **conditions: Any) -> Iterator[dict[str, Any]]:
        """Every record (in the first ``end`` bytes) matching ``conditions`` (AuditFilter's fields), oldest first:
        what an export writes."""
        wanted = AuditFilter(conditions.get("actor"), conditions.get("action"),
                             parse_time(conditions.get("since"), "since"), parse_until(conditions.get("until")),
                             conditions.get("entry"))
        return (record for record in self.records(end) if wanted.matches(record))
