"""Review before publish: change sets, the diff of entries an editor submits and a reviewer signs off.

A change set is what the draft (the corpus folder editors work in) would change in the served
index, entry by entry and field by field (before and after), as it stood when the editor
submitted it, with the checksum of that draft. Its life: ``submitted`` → ``approved`` or
``sent_back`` (with the reviewer's comment); ``approved`` → ``published``. A newer submission
supersedes the open one (``superseded``): there is one open change set at a time, and it is the
editors' latest word.

What the rules guard:

- approval is of the draft as submitted: if the draft changed since, approving is refused
  (:class:`DraftChanged`, naming the entries whose change differs) and the editor resubmits;
- a reviewer does not approve their own submission (unless the caller allows it: the service
  lets the legacy single admin token do it, so one-person deployments keep working);
- publishing takes an approved change set whose checksum is the draft's checksum now
  (:meth:`ChangeSetStore.approved_for`); the build checks it again on what it built.

Stored one JSON file per change set under ``<corpus>/.workbench/changesets/`` (atomic writes;
changes of status under a lock, so two server workers never both act on one).
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import json
import logging
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from ..corpus import FaqEntry, corpus_checksum
from .editing import workbench_dir
from ..errors import RetrieverError
from ..files import write_text_atomic
from ..normalize import normalize
from ..store import MANIFEST

log = logging.getLogger(__name__)
FOLDER = "changesets"
STATUSES = ("submitted", "approved", "sent_back", "published", "superseded")
OPEN = ("submitted", "approved")
MAX_COMMENT_CHARS = 2000
_ID = re.compile(r"^\d{8}T\d{6}\.\d{6}Z-[0-9a-f]{6}$")  # made by _new_id; anything else is unknown


class ReviewError(RetrieverError):
    """A review step that cannot be taken; ``code`` names the rule (the HTTP layer maps it to a status)."""

    code = "review_refused"

    def __init__(self, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.detail = detail


class UnknownChangeSet(ReviewError):
    code = "unknown_changeset"


class NothingToSubmit(ReviewError):
    code = "nothing_to_submit"


class NotOpen(ReviewError):
    """The change set is no longer waiting for this step (approved, sent back, published or superseded)."""

    code = "changeset_closed"


class DraftChanged(ReviewError):
    """The draft is not what was submitted (or approved): ``detail["entries"]`` names what differs."""

    code = "draft_changed"


class OwnSubmission(ReviewError):
    code = "own_submission"


class NotApproved(ReviewError):
    code = "not_approved"


class InvalidComment(ReviewError):
    code = "invalid_comment"


class Unreadable(ReviewError):
    """A change set's file is not one (edited by hand)."""

    code = "changeset_unreadable"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# --- the diff of entries (pure) ------------------------------------------------------------------


def _fields(entry: FaqEntry) -> dict[str, Any]:
    record = entry.to_record()
    record.pop("id")
    return record


def _field_change(before: Any, after: Any) -> dict[str, Any]:
    change: dict[str, Any] = {"before": before, "after": after}
    if isinstance(before, list) or isinstance(after, list):  # lists: which items came and went, too
        old, new = {normalize(t) for t in before or ()}, {normalize(t) for t in after or ()}
        change["added"] = [t for t in after or () if normalize(t) not in old]
        change["removed"] = [t for t in before or () if normalize(t) not in new]
    return change


def _entry_change(kind: str, faq_id: str, question: str, before: dict, after: dict) -> dict[str, Any]:
    names = list(dict.fromkeys([*after, *before]))  # the draft's field order first
    empty = (None, "", [])
    fields = {name: _field_change(before.get(name), after.get(name)) for name in names
              if before.get(name) != after.get(name) and not (before.get(name) in empty and after.get(name) in empty)}
    return {"faq_id": faq_id, "change": kind, "question": question, "fields": fields}


def entry_changes(draft: Sequence[FaqEntry], served: Sequence[FaqEntry]) -> list[dict[str, Any]]:
    """What publishing ``draft`` over ``served`` changes: one item per entry added, changed or removed.

    Each item: ``faq_id``, ``change`` ("added", "changed", "removed"), ``question`` (the draft's,
    or the served one's for a removed entry) and ``fields``: ``{name: {"before", "after"}}`` for
    every field that differs (a list field also lists the items ``added`` and ``removed``).
    """
    old = {e.id: e for e in served}
    new_ids = {e.id for e in draft}
    changes = []
    for entry in draft:
        before = old.get(entry.id)
        if before is None:
            changes.append(_entry_change("added", entry.id, entry.question, {}, _fields(entry)))
        elif before != entry:
            changes.append(_entry_change("changed", entry.id, entry.question, _fields(before), _fields(entry)))
    changes += [_entry_change("removed", e.id, e.question, _fields(e), {}) for e in served if e.id not in new_ids]
    return changes


def differing_entries(submitted: Sequence[dict], current: Sequence[dict]) -> list[str]:
    """The ids whose change is not the same in ``current`` as in ``submitted`` (both from :func:`entry_changes`)."""
    before = {c["faq_id"]: c for c in submitted}
    after = {c["faq_id"]: c for c in current}
    return sorted(i for i in before.keys() | after.keys() if before.get(i) != after.get(i))


def draft_checksum(entries: Sequence[FaqEntry]) -> str:
    """The checksum a build of these entries records (``corpus_checksum`` in its manifest)."""
    return corpus_checksum(list(entries))


@dataclass(frozen=True)
class Drafts:
    """The draft's entries and the served ones, as they are now."""

    draft: Sequence[FaqEntry]
    served: Sequence[FaqEntry]
    served_version: str | None = None

    @functools.cached_property
    def checksum(self) -> str:  # computed once: a listing compares it with every change set
        return draft_checksum(self.draft)


# --- the change set ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChangeSet:
    id: str
    status: str
    author: str
    comment: str
    checksum: str  # of the draft it was made from
    served_version: str | None  # what the diff is against
    changes: tuple[dict[str, Any], ...]
    submitted_at: str
    reviewer: str | None = None
    review_comment: str | None = None
    reviewed_at: str | None = None
    published_by: str | None = None
    published_version: str | None = None
    published_at: str | None = None
    superseded_by: str | None = None
    last_publish: dict[str, Any] | None = None  # the latest publish attempt: state, message, at
    history: tuple[dict[str, Any], ...] = field(default_factory=tuple)  # every step: action, actor, at

    def counts(self) -> dict[str, int]:
        kinds = [c["change"] for c in self.changes]
        return {kind: kinds.count(kind) for kind in ("added", "changed", "removed")}

    def summary(self) -> dict[str, Any]:
        """Everything but the diff itself (for lists)."""
        record = self.to_dict()
        record.pop("changes")
        return {**record, "counts": self.counts()}

    def to_dict(self) -> dict[str, Any]:
        record = dataclasses.asdict(self)
        record["changes"], record["history"] = list(self.changes), list(self.history)
        return record

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> "ChangeSet":
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in record.items() if k in known}
        values["changes"], values["history"] = tuple(values.get("changes", ())), tuple(values.get("history", ()))
        return cls(**values)

    def step(self, action: str, actor: str, at: str, **values: Any) -> "ChangeSet":
        """This change set after one step (recorded in its history)."""
        event = {"action": action, "actor": actor, "at": at}
        return dataclasses.replace(self, **values, history=(*self.history, event))


def clean_comment(comment: Any, required: bool) -> str:
    """The comment stripped; InvalidComment when it is not text, too long, or missing where required."""
    if comment is None:
        comment = ""
    if not isinstance(comment, str):
        raise InvalidComment("the comment must be text")
    comment = comment.strip()
    if len(comment) > MAX_COMMENT_CHARS:
        raise InvalidComment(f"the comment has {len(comment)} characters; at most {MAX_COMMENT_CHARS} are allowed",
                             limit=MAX_COMMENT_CHARS)
    if required and not comment:
        raise InvalidComment("a comment is required: say what to change", missing=True)
    return comment


def _new_id() -> str:
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S.%fZ}-{secrets.token_hex(3)}"


class ChangeSetStore:
    """The change sets of one corpus folder: one JSON file each, steps taken under one lock."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    @classmethod
    def for_corpus(cls, corpus: str | Path) -> "ChangeSetStore":
        """The change sets of a corpus folder: ``<corpus>/.workbench/changesets/``."""
        return cls(workbench_dir(corpus) / FOLDER)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / ".lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _path(self, changeset_id: str) -> Path:
        return self.folder / f"{changeset_id}.json"

    def _save(self, changeset: ChangeSet) -> ChangeSet:
        write_text_atomic(self._path(changeset.id), json.dumps(changeset.to_dict(), ensure_ascii=False))
        return changeset

    def get(self, changeset_id: str) -> ChangeSet:
        if not isinstance(changeset_id, str) or not _ID.match(changeset_id) or not self._path(changeset_id).is_file():
            raise UnknownChangeSet(f"no change set '{changeset_id}'", id=changeset_id)
        try:
            return ChangeSet.from_dict(json.loads(self._path(changeset_id).read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError) as exc:  # edited by hand: named, never a trace
            raise Unreadable(f"{self._path(changeset_id)}: not a change set ({exc})", id=changeset_id) from None

    def all(self, limit: int | None = None) -> list[ChangeSet]:
        """The change sets, newest first (at most ``limit``); a file that does not read is left out, and logged."""
        if not self.folder.is_dir():
            return []
        names = sorted((p.stem for p in self.folder.glob("*.json") if _ID.match(p.stem)), reverse=True)
        found = []
        for name in names:
            if limit is not None and len(found) >= limit:
                break
            try:
                found.append(self.get(name))
            except Unreadable as exc:
                log.warning("%s", exc)
        return found

    def open(self) -> ChangeSet | None:
        """The change set waiting for review or publication, if any.

        Only the newest can be: each submission supersedes the one open before it."""
        newest = self.all(limit=1)
        return newest[0] if newest and newest[0].status in OPEN else None

    def submit(self, now: Drafts, author: str, comment: Any) -> tuple[ChangeSet, ChangeSet | None]:
        """A new change set of the draft against the served entries; the open one it supersedes (or None)."""
        comment = clean_comment(comment, required=False)
        changes = entry_changes(now.draft, now.served)
        if not changes:
            raise NothingToSubmit("the draft is the same as the served version: nothing to review")
        at = _now()
        with self._locked():
            new = ChangeSet(_new_id(), "submitted", author, comment, now.checksum, now.served_version,
                            tuple(changes), at, history=({"action": "submit", "actor": author, "at": at},))
            old = self.open()
            if old is not None:
                old = self._save(old.step("supersede", author, at, status="superseded", superseded_by=new.id))
            return self._save(new), old

    def approve(self, changeset_id: str, reviewer: str, now: Drafts, may_approve_own: bool = False,
                comment: Any = None) -> ChangeSet:
        """Approve the change set, if the draft is still what was submitted (else DraftChanged)."""
        comment = clean_comment(comment, required=False)
        with self._locked():
            changeset = self._waiting(changeset_id, ("submitted",), "approve")
            if changeset.author == reviewer and not may_approve_own:
                raise OwnSubmission(f"'{reviewer}' submitted this change set: another reviewer approves it",
                                    author=reviewer)
            self._check_draft(changeset, now)
            at = _now()
            return self._save(changeset.step("approve", reviewer, at, status="approved", reviewer=reviewer,
                                             review_comment=comment or None, reviewed_at=at))

    def send_back(self, changeset_id: str, reviewer: str, comment: Any) -> ChangeSet:
        """Send the change set back to the editors with ``comment`` (required): what to change."""
        comment = clean_comment(comment, required=True)
        with self._locked():
            changeset = self._waiting(changeset_id, OPEN, "send back")
            at = _now()
            return self._save(changeset.step("send_back", reviewer, at, status="sent_back", reviewer=reviewer,
                                             review_comment=comment, reviewed_at=at))

    def approved_for(self, now: Drafts) -> ChangeSet:
        """The approved change set that the draft is now (NotApproved or DraftChanged otherwise)."""
        changeset = self.open()
        if changeset is None:
            raise NotApproved("publishing needs an approved change set: submit the draft for review")
        if changeset.status != "approved":
            raise NotApproved(f"publishing needs an approved change set: {changeset.id} waits for review",
                              changeset=changeset.id)
        self._check_draft(changeset, now)
        return changeset

    def record_publish(self, changeset_id: str, actor: str, outcome: dict[str, Any]) -> ChangeSet:
        """Note a publish attempt's outcome; ``{"state": "done", "version": ...}`` makes it published."""
        with self._locked():
            changeset = self.get(changeset_id)
            at = _now()
            attempt = {"state": outcome.get("state"), "message": outcome.get("message"), "actor": actor, "at": at}
            if outcome.get("state") == "done":
                return self._save(changeset.step("publish", actor, at, status="published", published_by=actor,
                                                 published_version=outcome.get("version"), published_at=at,
                                                 last_publish=attempt))
            return self._save(changeset.step("publish_" + str(outcome.get("state")), actor, at,
                                             last_publish=attempt))

    def _waiting(self, changeset_id: str, statuses: Sequence[str], action: str) -> ChangeSet:
        changeset = self.get(changeset_id)
        if changeset.status not in statuses:
            raise NotOpen(f"change set {changeset.id} is {changeset.status}: it cannot {action} now",
                          status=changeset.status, step=action)
        return changeset

    @staticmethod
    def _check_draft(changeset: ChangeSet, now: Drafts) -> None:
        if now.checksum == changeset.checksum:
            return
        differing = differing_entries(changeset.changes, entry_changes(now.draft, now.served))
        raise DraftChanged(f"the draft changed since change set {changeset.id} was submitted: resubmit",
                           entries=differing)




def built_from(check: Callable[[Path, dict], dict], checksum: str) -> Callable[[Path, dict], dict]:
    """The build's ``check`` hook, first making sure the version built is the approved draft.

    The corpus is read again by the build: an edit landing between the approval check and that
    read would otherwise be published unreviewed. Raises DraftChanged before the gate runs.
    """
    def check_built(staging: Path, fields: dict) -> dict:
        built = json.loads((staging / MANIFEST).read_text(encoding="utf-8")).get("corpus_checksum")
        if built != checksum:
            raise DraftChanged("the draft changed after the change set was approved: nothing was published; "
                               "submit and approve it again")
        return check(staging, fields)

    return check_built
