"""A rebuild that changed few entries keeps what the served version learned: its judge and thresholds.

Calibrating and training the judge cost a rebuild of a 20,000-entry corpus about 30 of its 40
seconds, to learn again what one edited entry barely moves: the judge and the thresholds are
learned from thousands of rounds drawn from the whole corpus. A build therefore takes the served
version's ``judge.json`` and its decision fields (:data:`REUSED_FIELDS`) when

* that version was built with the same model and settings (tokenizer, labelled queries, retrieval
  mode, answers indexed or not, self-calibration, fast path: :func:`settings_digest`), and
* the entries changed since those decisions were learned (added, removed or edited; this build's
  changes added to those of every earlier build that reused them) are at most
  :data:`MAX_CHANGED_SHARE` of the corpus.

So a series of small edits relearns once their sum passes 1% of the entries. The manifest's
``decisions_learned`` says where the decisions come from; ``build --retrain`` learns them again
whatever changed. Every version still goes through the publish gate, which searches it.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from ..corpus import FaqEntry
from ..errors import IndexLoadError
from ..files import read_jsonl
from .layout import ENTRIES, FORMAT_VERSION, JUDGE, NORMALIZE_VERSION
from .versions import read_manifest, resolve_version_dir

MAX_CHANGED_SHARE = 0.01
LEARNED = "decisions_learned"  # manifest key: {"version", "entries_changed_since", "settings"}
REUSED_FIELDS = ("calibration", "judge", "calibration_source")


@dataclass(frozen=True)
class LearnedDecisions:
    """The served version's judge and decision fields, and how many entries changed since they were learned."""
    version_dir: Path
    fields: dict[str, Any]
    learned_in: str
    changed: int
    settings: str

    def copy_into(self, staging: Path) -> dict[str, Any]:
        """Copy the judge into ``staging``; returns the manifest fields to add."""
        shutil.copyfile(self.version_dir / JUDGE, staging / JUDGE)
        return {**self.fields, LEARNED: {"version": self.learned_in, "entries_changed_since": self.changed,
                                         "settings": self.settings, "reused": True}}


def learned_here(version: str, settings: str) -> dict[str, Any]:
    """The ``decisions_learned`` record of a build that calibrated and trained its judge itself."""
    return {"version": version, "entries_changed_since": 0, "settings": settings, "reused": False}


def settings_digest(model_name: str, settings: dict[str, Any]) -> str:
    """A digest of what a build learns its decisions from besides the entries."""
    inputs = {"model": model_name, "normalize": NORMALIZE_VERSION, "format": FORMAT_VERSION, **settings}
    return hashlib.sha256(json.dumps(inputs, ensure_ascii=False, sort_keys=True).encode()).hexdigest()


def changed_entries(before: Iterable[dict[str, Any]], after: Iterable[FaqEntry]) -> int:
    """Entries added, removed or edited between ``before`` (stored records) and ``after``."""
    old = {record.get("id"): _canonical(record) for record in before}
    new = {entry.id: _canonical(entry.to_record()) for entry in after}
    return sum(old.get(key) != text for key, text in new.items()) + len(old.keys() - new.keys())


def _canonical(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, sort_keys=True, default=str)


def reusable_decisions(out_root: str | Path, entries: list[FaqEntry], settings: str,
                       max_share: float | None = None) -> LearnedDecisions | None:
    """The current version's decisions if this build may take them (module docstring), else None;
    ``max_share`` defaults to :data:`MAX_CHANGED_SHARE`."""
    try:
        version_dir = resolve_version_dir(out_root)
        manifest = read_manifest(version_dir)
    except IndexLoadError:
        return None
    learned = manifest.get(LEARNED) or {}
    if (learned.get("settings") != settings or not (version_dir / JUDGE).is_file()
            or any(field not in manifest for field in REUSED_FIELDS)):
        return None
    try:
        before = [record for _, record in read_jsonl(version_dir / ENTRIES, IndexLoadError, "index entries")]
    except IndexLoadError:
        return None
    changed = int(learned.get("entries_changed_since", 0)) + changed_entries(before, entries)
    if changed > (MAX_CHANGED_SHARE if max_share is None else max_share) * len(entries):
        return None
    return LearnedDecisions(version_dir, {field: manifest[field] for field in REUSED_FIELDS},
                            learned["version"], changed, settings)
