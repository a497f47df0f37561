"""Classification output files: a lock per output, checkpointable partial writers, reading results back.

Two runs into the same output would interleave their rows; ``OutputLock`` makes the second
refuse at once, naming the process that holds the output.
"""
from __future__ import annotations

import csv
import fcntl
import json
import os
from pathlib import Path
from typing import Iterator

from .readers import ClassifyError


class OutputLock:
    """An exclusive, non-blocking ``flock`` on ``PATH.lock`` for as long as a run writes ``PATH``.

    The lock file holds the owner's pid, for the message of the run refused. It is removed
    on release; a run that opened it just before checks the inode and takes the lock anew.
    """

    def __init__(self, target: Path) -> None:
        self.target = Path(target)
        self.path = self.target.with_name(self.target.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = os.read(fd, 64).decode("ascii", "replace").strip() or "unknown"
                os.close(fd)
                raise ClassifyError(f"{self.target} is being written by another classify run (pid {owner}); "
                                    f"wait for it to finish or choose another --out") from None
            if self._still_linked(fd):
                break
            os.close(fd)  # the holder removed the file between our open and flock: lock the new one
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        self._fd = fd

    def _still_linked(self, fd: int) -> bool:
        try:
            return os.stat(self.path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False

    def release(self) -> None:
        if self._fd is not None:
            self.path.unlink(missing_ok=True)  # while still held, so no one locks a file about to vanish
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "OutputLock":
        self.acquire()
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()


class PartialWriter:
    """Rows to a .partial file, CSV or JSON Lines, whose committed length a checkpoint records."""

    def __init__(self, path: Path, as_csv: bool, fields: tuple[str, ...], resume_at: int | None) -> None:
        self.partial = path.with_name(path.name + ".partial")
        self.path = path
        self.fields = fields
        if resume_at is None:
            self._handle = open(self.partial, "w", encoding="utf-8", newline="")
        else:
            self._handle = open(self.partial, "r+", encoding="utf-8", newline="")
            self._handle.truncate(resume_at)  # drop what was written after the last checkpoint
            self._handle.seek(resume_at)
        self._csv = csv.DictWriter(self._handle, fieldnames=fields, extrasaction="ignore") if as_csv else None
        if self._csv is not None and resume_at is None:
            self._csv.writeheader()

    def write(self, record: dict) -> None:
        if self._csv is not None:
            self._csv.writerow(record)
        else:
            self._handle.write(json.dumps(record, ensure_ascii=False) + "\n")

    def commit(self) -> int:
        """Flush to disk; returns the length a checkpoint may rely on."""
        self._handle.flush()
        os.fsync(self._handle.fileno())
        return self._handle.tell()

    def finish(self) -> None:
        """Put the file in place, unless it is no longer exactly what this writer wrote."""
        length = self.commit()
        try:
            on_disk = os.stat(self.partial)
        except FileNotFoundError:
            on_disk = None
        ours = os.fstat(self._handle.fileno())
        self._handle.close()
        if on_disk is None or on_disk.st_ino != ours.st_ino or on_disk.st_size != length:
            raise ClassifyError(f"{self.partial} was replaced or changed by someone else during the run; "
                                f"its rows cannot be trusted, run again")
        os.replace(self.partial, self.path)

    def close(self) -> None:
        if not self._handle.closed:
            try:
                self._handle.close()
            except OSError:  # rows past the checkpoint that could not be flushed: a resume truncates them anyway
                pass


def read_output(path: str | Path) -> Iterator[dict]:
    """Stream the records of a classification output file (CSV or JSON Lines)."""
    path = Path(path)
    with open(path, encoding="utf-8", newline="") as handle:
        if path.suffix.lower() == ".csv":
            for record in csv.DictReader(handle):
                record["line"] = int(record["line"])
                for key in ("score", "margin", "runner_up_score"):
                    record[key] = float(record[key]) if record.get(key) not in (None, "") else None
                record["faq_id"] = record.get("faq_id") or None
                yield record
        else:
            for line in handle:
                if line.strip():
                    yield json.loads(line)
