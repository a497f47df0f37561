"""Batch classification: each inquiry mapped to an FAQ entry, or flagged for a person.

Reading is streaming (one batch in memory at a time; ``readers.py``). A run locks its
output (``writers.OutputLock``: a second run into the same file is refused), writes
``OUT.partial`` and ``REJECTS.partial`` and, after every batch, a checkpoint
``OUT.progress.json`` saying how many input rows are done and how long each
file was at that moment; ``resume`` truncates the partial files back to the
checkpoint and skips the rows done, so no row is lost or written twice. A
finished run renames the files into place. Every input row ends in the output
or in the rejects file, with its line number and the reason.
"""
from __future__ import annotations

import contextlib
import errno
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

from tqdm.auto import tqdm

from ..files import sha256_file, write_text_atomic
from ..filters import EntryFilter
from ..privacy import DEFAULT_MASKER, Masker
from ..search import Searcher
from .readers import INPUT_FORMATS, ClassifyError, Row, detect_format, read_rows
from .writers import OutputLock, PartialWriter, read_output

__all__ = ["ClassifyError", "ClassifySummary", "Row", "checkpoint_path_for", "classify_file", "classify_texts",
           "read_output", "read_rows", "rejects_path_for"]

# "path": which path of a cascade answered the row ("fast" or "full"; "full" without a fast model).
OUTPUT_FIELDS = ("line", "id", "text", "decision", "faq_id", "question", "score", "margin",
                 "top_faq_id", "runner_up_faq_id", "runner_up_score", "path")
CHECKPOINT_VERSION = 1


def classify_texts(searcher: Searcher, texts: list[str], threshold: float | None = None,
                   entry_filter: EntryFilter | None = None) -> list[dict]:
    """Classify many texts (top 2 entries each, for the runner-up), within ``entry_filter``.

    With a cascade index, one fast-model pass over all of them, then one full-model call for
    those the fast path did not answer (``Searcher.search_many``).
    """
    return [r.classification() for r in searcher.search_many(texts, top_k=2, threshold=threshold,
                                                             entry_filter=entry_filter)]


@dataclass
class ClassifySummary:
    rows: int = 0
    classified: int = 0
    rejected: int = 0
    decisions: dict[str, int] = field(default_factory=lambda: {"answer": 0, "ambiguous": 0, "no_match": 0})
    resumed_from: int = 0


def _fingerprint(path: Path, options: dict) -> dict:
    """What a resumed run must match: the input's content (not its mtime, which an edit can restore), the options."""
    return {"input": str(path.resolve()), "size": path.stat().st_size, "sha256": sha256_file(path),
            "options": options}


def rejects_path_for(out: Path) -> Path:
    return out.with_name(out.stem + ".rejects.jsonl")


def checkpoint_path_for(out: Path) -> Path:
    """Where a run into ``out`` keeps its checkpoint; present only while a run is unfinished."""
    return out.with_name(out.name + ".progress.json")


def classify_file(searcher: Searcher, input_path: str | Path, out: str | Path, *,
                  input_format: str | None = None, id_column: str | None = "id", text_column: str = "text",
                  rejects: str | Path | None = None, threshold: float | None = None, batch_size: int = 256,
                  max_chars: int = 500, resume: bool = False, progress: bool = True,
                  on_batch: Callable[[ClassifySummary], None] | None = None,
                  masker: Masker = DEFAULT_MASKER) -> ClassifySummary:
    """Classify every row of ``input_path`` into ``out`` (CSV or JSON Lines by its suffix).

    Unreadable rows go to ``rejects`` (default ``OUT_STEM.rejects.jsonl``) as
    ``{"line", "reason"}``. With ``resume``, an interrupted run of the same input
    and options continues where its last checkpoint left it. The ``text`` column of the output
    is the inquiry with its personal data masked by ``masker`` (rows keep ``line`` and ``id`` to
    find the original in the input; ``NO_MASKING`` writes it as read). Raises ``ClassifyError``
    when another run is writing ``out`` or ``rejects``.
    """
    input_path, out = Path(input_path), Path(out)
    rejects = Path(rejects) if rejects else rejects_path_for(out)
    input_format = input_format or detect_format(input_path)
    if input_format == "parquet":
        raise ClassifyError("Parquet is read by the Ray engine; add --engine ray")
    if input_format not in INPUT_FORMATS:
        raise ClassifyError(f"unknown input format '{input_format}'; use one of {', '.join(INPUT_FORMATS)}")
    if input_format == "text":
        id_column = None
    if not input_path.is_file():
        raise ClassifyError(f"{input_path}: no such input file")
    if rejects.resolve() == out.resolve():
        raise ClassifyError(f"{out}: the rejects file must be another file than the output")
    options = {"format": input_format, "id_column": id_column, "text_column": text_column, "threshold": threshold,
               "max_chars": max_chars, "out": str(out), "rejects": str(rejects), "index": searcher.version,
               "mode": searcher.mode, "masked": masker.enabled}
    fingerprint = _fingerprint(input_path, options)
    reader = read_rows(input_path, input_format, id_column=id_column, text_column=text_column, max_chars=max_chars)
    with contextlib.closing(reader), OutputLock(out), OutputLock(rejects):
        first = next(reader, None)  # reads the header: a bad one is refused before any output is opened
        rows = itertools.chain([first] if first is not None else [], reader)
        summary, offsets = _resume_state(fingerprint, out, rejects, resume)
        total = count_lines(input_path) - (input_format == "csv")
        with tqdm(total=total, desc="classifying", unit=" rows", disable=not progress, initial=summary.rows) as bar:
            def after_batch(done: ClassifySummary, size: int) -> None:
                bar.update(size)
                if on_batch is not None:
                    on_batch(done)

            _classify_rows(searcher, rows, summary, out, rejects, offsets, fingerprint,
                           threshold=threshold, batch_size=batch_size, after_batch=after_batch, masker=masker)
    return summary


def _resume_state(fingerprint: dict, out: Path, rejects: Path, resume: bool) -> tuple[ClassifySummary, dict | None]:
    """The summary and file offsets to continue from: the checkpoint's with ``resume``, else a fresh start."""
    checkpoint_path = checkpoint_path_for(out)
    if not (resume and checkpoint_path.is_file()):
        return ClassifySummary(), None
    try:
        checkpoint = json.loads(checkpoint_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ClassifyError(f"{checkpoint_path}: unreadable checkpoint ({exc}); "
                            f"run again without --resume to start over") from None
    if checkpoint.get("fingerprint") != fingerprint:
        raise ClassifyError(f"{checkpoint_path}: the interrupted run used another input, index or options; "
                            f"run again without --resume to start over")
    for path in (out, rejects):
        if not path.with_name(path.name + ".partial").is_file():
            raise ClassifyError(f"{path}.partial is missing, so the interrupted run cannot continue; "
                                f"run again without --resume to start over")
    summary = ClassifySummary(**checkpoint["summary"])
    summary.resumed_from = summary.rows
    return summary, checkpoint["offsets"]


def _classify_rows(searcher: Searcher, rows: Iterator[Row], summary: ClassifySummary, out: Path, rejects: Path,
                   offsets: dict | None, fingerprint: dict, *, threshold: float | None, batch_size: int,
                   after_batch: Callable[[ClassifySummary, int], None], masker: Masker = DEFAULT_MASKER) -> None:
    """Write every row not yet done to the partial files, checkpoint after each batch, then put them in place.

    A write that fails (a full disk) raises ClassifyError: the partial files are good up to the last checkpoint.
    """
    writers, committed = [], summary.rows
    try:
        output = PartialWriter(out, out.suffix.lower() == ".csv", OUTPUT_FIELDS, offsets and offsets["out"])
        writers.append(output)
        rejected = PartialWriter(rejects, False, ("line", "reason"), offsets and offsets["rejects"])
        writers.append(rejected)
        for batch in _batches(_skip(rows, summary.rows), batch_size):
            good = [row for row in batch if row.problem is None]
            results = iter(classify_texts(searcher, [row.text for row in good], threshold) if good else [])
            for row in batch:
                if row.problem:
                    rejected.write({"line": row.line, "reason": row.problem})
                    summary.rejected += 1
                else:
                    record = {"line": row.line, "id": row.id, "text": masker(row.text), **next(results)}
                    output.write(record)
                    summary.classified += 1
                    summary.decisions[record["decision"]] += 1
            summary.rows += len(batch)
            state = {"version": CHECKPOINT_VERSION, "fingerprint": fingerprint,
                     "offsets": {"out": output.commit(), "rejects": rejected.commit()},
                     "summary": {k: v for k, v in summary.__dict__.items() if k != "resumed_from"}}
            write_text_atomic(checkpoint_path_for(out), json.dumps(state, ensure_ascii=False))
            committed = summary.rows
            after_batch(summary, len(batch))
        output.finish()
        rejected.finish()
        checkpoint_path_for(out).unlink(missing_ok=True)
    except OSError as exc:
        raise _stopped(exc, out, committed) from None
    finally:
        for writer in writers:
            writer.close()


def _stopped(exc: OSError, out: Path, committed: int) -> ClassifyError:
    """Why the run stopped, and that it can go on: the checkpoint holds the rows written before the failure."""
    where = f" ({exc.filename})" if exc.filename else ""
    full = " (the disk is full or the file too large)" if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT) else ""
    kept = f"the first {committed} rows are kept in {out}.partial" if committed else "no rows were kept"
    return ClassifyError(f"cannot write the output: {exc.strerror or exc}{where}{full}; {kept}. "
                         f"Free space and run the same command with --resume to continue")


def count_lines(path: Path) -> int:
    """Lines in the file (rows, give or take CSV fields spanning lines): the progress bar's total."""
    with open(path, "rb") as handle:
        return sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 20), b""))


def _skip(rows: Iterator[Row], count: int) -> Iterator[Row]:
    for done, row in enumerate(rows):
        if done >= count:
            yield row


def _batches(rows: Iterable[Row], size: int) -> Iterator[list[Row]]:
    batch: list[Row] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
