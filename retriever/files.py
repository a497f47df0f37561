"""File I/O every part shares: atomic replacement, JSON Lines reading and writing, checksums, append-only logs.

Atomic means a reader sees the old content or the new, never a part: write to a temporary
file in the same folder, fsync, rename over the target.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from .errors import RetrieverError


def write_text_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so that readers see the old or the new content, never a part."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically (temporary file in the same folder, fsync, rename)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def jsonl_text(records: Iterable[dict]) -> str:
    """Records as JSON Lines: one object a line, UTF-8 kept readable."""
    return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)


def write_jsonl(path: Path, records: Iterable[dict]) -> None:
    """Write records as JSON Lines to a new file (inside a staging folder: not atomic by itself)."""
    with open(path, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def read_jsonl(path: str | Path, error: type[RetrieverError] = RetrieverError,
               what: str = "records") -> Iterator[tuple[int, Any]]:
    """``(line number, value)`` for every non-blank line; a problem raises ``error`` naming file and line."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    yield number, json.loads(line)
                except json.JSONDecodeError as exc:
                    raise error(f"{path}:{number}: invalid JSON ({exc.msg} at column {exc.colno})") from None
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise error(f"{path}: cannot read {what} ({exc.strerror or exc})") from None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- append-only logs: whole lines, on disk before they count, rotated, old records removed -----


def _locked_append_fd(path: Path, create: bool = True) -> int | None:
    """An O_APPEND descriptor of ``path`` holding its exclusive lock, opened anew if rotation replaced the file.

    None if ``path`` does not exist and ``create`` is false.
    """
    while True:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | (os.O_CREAT if create else 0), 0o640)
        except FileNotFoundError:
            if create:
                raise
            return None
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)  # another process rotated or pruned it between our open and lock


def log_parts(path: Path, backups: int) -> list[Path]:
    """A rotated log's files, newest first: ``path``, ``path.1`` ... ``path.<backups>``."""
    return [Path(f"{path}.{number}" if number else path) for number in range(backups + 1)]


def _rotate(path: Path, backups: int) -> None:
    """``path`` becomes ``path.1``, ``path.1`` becomes ``path.2`` ...; the oldest beyond ``backups`` is deleted."""
    parts = log_parts(path, backups)
    parts[-1].unlink(missing_ok=True)
    for newer, older in zip(reversed(parts[:-1]), reversed(parts[1:])):
        if newer.exists():
            os.replace(newer, older)


def append_line(path: str | Path, line: str, max_bytes: int = 10 * 1024 * 1024, backups: int = 5) -> None:
    """Append ``line`` (one line, no line break inside) to ``path`` whole and flushed to disk, or raise OSError.

    One ``write`` on an O_APPEND descriptor under an exclusive ``flock`` (processes and threads
    take turns), then ``fsync``: when this returns, the record is on disk. If the write or the
    fsync fails (a full disk), the file is cut back to its length before, so it never holds a
    partial line, and the error is raised for the caller to report. Past ``max_bytes`` the file is
    rotated first (``path.1`` ... ``path.<backups>``).
    """
    path = Path(path)
    data = (line.rstrip("\n") + "\n").encode("utf-8")
    fd = _locked_append_fd(path)
    try:
        size = os.fstat(fd).st_size
        if size and size + len(data) > max_bytes:
            _rotate(path, backups)
            os.close(fd)
            fd = _locked_append_fd(path)
            size = os.fstat(fd).st_size
        try:
            written = os.write(fd, data)
            if written != len(data):
                raise OSError(errno.ENOSPC, f"{path}: only {written} of {len(data)} bytes written (disk full?)")
            os.fsync(fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
            raise
    finally:
        os.close(fd)


def remove_old_records(path: str | Path, backups: int, cutoff: float,
                       record_time: Callable[[str], float | None]) -> int:
    """Delete what a rotated log holds from before ``cutoff`` (seconds since the epoch); the lines removed.

    A part last written before the cutoff goes whole; in a newer part, the lines whose
    ``record_time`` is before the cutoff are removed (atomically). Each part under its lock, so an
    append never lands in a file about to go. Lines without a time are kept.
    """
    removed = 0
    for part in log_parts(Path(path), backups):
        fd = _locked_append_fd(part, create=False)
        if fd is None:
            continue
        try:
            with open(part, encoding="utf-8", errors="replace") as handle:
                lines = handle.readlines()
            if os.fstat(fd).st_mtime < cutoff:
                part.unlink()
                removed += len(lines)
                continue
            kept = [line for line in lines if (record_time(line) or cutoff) >= cutoff]
            if len(kept) != len(lines):
                write_text_atomic(part, "".join(kept))
                removed += len(lines) - len(kept)
        finally:
            os.close(fd)
    return removed
