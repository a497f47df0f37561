"""Validity dates: which entries may answer on a given day, and which answer version they give.

An entry may carry ``valid_from`` / ``valid_until`` (ISO dates, both inclusive) and ``answer_versions``
(an answer that takes over from its ``from`` date). Days are days in the service's time zone
(:data:`DEFAULT_TIME_ZONE`, ``RETRIEVER_TIME_ZONE``): a rule that starts on 1 January starts at
midnight in Beijing, not in UTC.

A search masks the entries outside their dates out *before* ranking (as a filter does), so their
queries go to the entry that replaces them or are refused. The mask depends only on which of the
corpus's date boundaries today has passed: :class:`ValiditySchedule` finds that interval with one
bisection per query and keeps one mask per interval, so the switch happens on the date, without a
rebuild, at the cost of a comparison when nothing changes.

Pure apart from the clock; imports nothing of ours, so that the corpus schema can use its date rules.
"""
from __future__ import annotations

import bisect
import datetime as dt
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

Clock = Callable[[], dt.date]
DEFAULT_TIME_ZONE = "Asia/Shanghai"
# China keeps one offset all year: the fallback when a machine has no time zone database.
_FALLBACK_OFFSETS = {"Asia/Shanghai": 8, "Asia/Chongqing": 8, "Asia/Harbin": 8, "Asia/Urumqi": 6,
                     "PRC": 8, "Asia/Hong_Kong": 8, "Asia/Macau": 8, "Asia/Taipei": 8, "UTC": 0}
_OFFSET = re.compile(r"^(?:UTC)?([+-])(\d{1,2})(?::?(\d{2}))?$")
_ISO_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
MAX_ANSWER_VERSIONS = 20


# --- days -----------------------------------------------------------------------------------------------


def parse_day(value: object) -> dt.date:
    """``value`` (an ISO date string ``2027-01-01`` or a date, as YAML reads it) as a date; ValueError else."""
    if isinstance(value, dt.datetime):
        raise ValueError(f"{value!s} is a date and time; give the date only (YYYY-MM-DD)")
    if isinstance(value, dt.date):
        return value
    if not isinstance(value, str) or not _ISO_DAY.match(value.strip()):
        raise ValueError(f"{value!r} is not a date written YYYY-MM-DD")
    try:
        return dt.date.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"{value!r} is not a calendar date") from None


@dataclass(frozen=True)
class Period:
    """The days an entry may answer, both ends inclusive; None: open on that side."""

    start: dt.date | None = None
    end: dt.date | None = None

    @classmethod
    def of(cls, valid_from: str | None, valid_until: str | None) -> Period:
        return cls(dt.date.fromisoformat(valid_from) if valid_from else None,
                   dt.date.fromisoformat(valid_until) if valid_until else None)

    def contains(self, day: dt.date) -> bool:
        return (self.start is None or self.start <= day) and (self.end is None or day <= self.end)

    def overlaps(self, other: Period) -> bool:
        """Whether some day lies in both (an old rule and the new one that follows it do not overlap)."""
        return (self.start is None or other.end is None or self.start <= other.end) and \
               (other.start is None or self.end is None or other.start <= self.end)

    @property
    def unbounded(self) -> bool:
        return self.start is None and self.end is None


# --- clocks ---------------------------------------------------------------------------------------------


def time_zone(name: str) -> dt.tzinfo:
    """The zone ``name``: an IANA name (Asia/Shanghai) or an offset (+08:00, UTC+8); ValueError if unknown."""
    found = _OFFSET.match(name.strip())
    if found:
        sign, hours, minutes = found.group(1), int(found.group(2)), int(found.group(3) or 0)
        if hours > 14 or minutes > 59:
            raise ValueError(f"{name!r} is not a UTC offset between -14:00 and +14:00")
        offset = dt.timedelta(hours=hours, minutes=minutes)
        return dt.timezone(-offset if sign == "-" else offset)
    try:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError):
        if name.strip() in _FALLBACK_OFFSETS:  # no time zone database on this machine
            return dt.timezone(dt.timedelta(hours=_FALLBACK_OFFSETS[name.strip()]))
        raise ValueError(f"{name!r} is not a time zone (use a name such as Asia/Shanghai, or an offset "
                         f"such as +08:00)") from None


def zone_clock(name: str = DEFAULT_TIME_ZONE) -> Clock:
    """Today's date in the time zone ``name``, read from the system clock at every call."""
    zone = time_zone(name)
    return lambda: dt.datetime.now(zone).date()


def fixed_clock(day: dt.date | str) -> Clock:
    """Always ``day``: for tests, and to preview what the service will answer on a future date."""
    fixed = parse_day(day)
    return lambda: fixed


def clock_for(zone: str | None = None, today: str | dt.date | None = None) -> Clock:
    """The service's clock: ``today`` fixed if given (RETRIEVER_TODAY), else the system date in ``zone``."""
    return fixed_clock(today) if today else zone_clock(zone or DEFAULT_TIME_ZONE)


# --- the schedule of a corpus -----------------------------------------------------------------------------


class ValiditySchedule:
    """Per day: which entries may answer (a mask) and which answer version each gives.

    ``periods[i]`` is entry i's period; ``versions[i]`` its answer versions as ``(from day, answer)``,
    earliest first. Masks are computed once per interval between two date boundaries.
    """

    def __init__(self, periods: Sequence[Period], versions: Sequence[Sequence[tuple[dt.date, str]]]) -> None:
        self._periods = list(periods)
        self._versions = {i: list(v) for i, v in enumerate(versions) if v}
        boundaries: set[dt.date] = set()
        for period in self._periods:
            if period.start is not None:
                boundaries.add(period.start)
            if period.end is not None:
                boundaries.add(period.end + dt.timedelta(days=1))  # inclusive: the day after is the change
        for entry_versions in self._versions.values():
            boundaries.update(day for day, _ in entry_versions)
        self.boundaries = sorted(boundaries)
        self._dated = [i for i, p in enumerate(self._periods) if not p.unbounded]
        self._masks: dict[int, np.ndarray | None] = {}
        self._lock = threading.Lock()

    @classmethod
    def of_entries(cls, entries: Sequence) -> ValiditySchedule:
        """From entries with ``valid_from``, ``valid_until`` and ``answer_versions`` (FaqEntry)."""
        return cls([Period.of(e.valid_from, e.valid_until) for e in entries],
                   [[(dt.date.fromisoformat(v.valid_from), v.answer) for v in e.answer_versions] for e in entries])

    @property
    def dated(self) -> bool:
        """Whether any entry has dates or answer versions (else every day is the same)."""
        return bool(self.boundaries)

    def epoch(self, day: dt.date) -> int:
        """Which interval between boundaries ``day`` falls in: equal epochs, equal answers."""
        return bisect.bisect_right(self.boundaries, day)

    def kept(self, day: dt.date) -> np.ndarray | None:
        """Per entry, whether it may answer on ``day``; None when every entry may (nothing to mask)."""
        if not self._dated:
            return None
        epoch = self.epoch(day)
        with self._lock:
            if epoch not in self._masks:
                mask = np.ones(len(self._periods), dtype=bool)
                for i in self._dated:
                    mask[i] = self._periods[i].contains(day)
                self._masks[epoch] = None if mask.all() else mask
            return self._masks[epoch]

    def answer(self, entry: int, base: str, day: dt.date) -> str:
        """Entry ``entry``'s answer on ``day``: the latest version that has started, else ``base``."""
        current = base
        for start, answer in self._versions.get(entry, ()):
            if start > day:
                break
            current = answer
        return current

    def period(self, entry: int) -> Period:
        return self._periods[entry]


# --- what changes soon (the workbench's list) -------------------------------------------------------------

EXPIRES, STARTS, ANSWER_CHANGES, NOT_YET_VALID, EXPIRED = "expires", "starts", "answer_changes", "not_yet_valid", \
    "expired"
CHANGE_KINDS = (EXPIRES, STARTS, ANSWER_CHANGES, NOT_YET_VALID, EXPIRED)


@dataclass(frozen=True)
class UpcomingChange:
    """One date on which an entry's answering changes: ``kind`` (:data:`CHANGE_KINDS`) on ``day``."""

    faq_id: str
    question: str
    kind: str
    day: dt.date
    days_left: int  # from today; negative for an entry already expired

    def to_dict(self) -> dict:
        return {"faq_id": self.faq_id, "question": self.question, "kind": self.kind, "date": self.day.isoformat(),
                "days_left": self.days_left}


def upcoming_changes(entries: Sequence, today: dt.date, days: int) -> list[UpcomingChange]:
    """What changes within ``days`` days from ``today`` (last valid days, answer versions taking over), and
    the entries not valid today (not yet valid, whenever they start; expired), soonest first."""
    horizon = today + dt.timedelta(days=days)
    found = []
    for entry in entries:
        period = Period.of(entry.valid_from, entry.valid_until)
        changes = []
        if period.start is not None and period.start > today:
            changes.append((NOT_YET_VALID if period.start > horizon else STARTS, period.start))
        if period.end is not None and period.end < today:
            changes.append((EXPIRED, period.end))
        elif period.end is not None and period.end <= horizon:
            changes.append((EXPIRES, period.end))
        for version in entry.answer_versions:
            start = dt.date.fromisoformat(version.valid_from)
            if today < start <= horizon:
                changes.append((ANSWER_CHANGES, start))
        found += [UpcomingChange(entry.id, entry.question, kind, day, (day - today).days) for kind, day in changes]
    kinds = {kind: n for n, kind in enumerate(CHANGE_KINDS)}
    return sorted(found, key=lambda c: (c.kind == EXPIRED, c.day, kinds[c.kind], c.faq_id))
