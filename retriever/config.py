"""Settings, read from the environment once at the entry points and passed in explicitly."""
from __future__ import annotations

import os
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
    rate_limit: str | None = "50 per second"  # per client address and worker (flask-limiter syntax)
    unmatched_log: str | None = None  # JSON Lines of no_match queries, rotated at 10 MB
    reload_poll_seconds: float = 2.0  # how often workers look for a new CURRENT version; 0: never

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
            cors_origins=tuple(o.strip() for o in environ.get("RETRIEVER_CORS_ORIGINS", "").split(",") if o.strip()),
            admin_token=environ.get("RETRIEVER_ADMIN_TOKEN") or None,
            rate_limit=environ.get("RETRIEVER_RATE_LIMIT", defaults.rate_limit) or None,
            unmatched_log=environ.get("RETRIEVER_UNMATCHED_LOG") or None,
            reload_poll_seconds=_number_env(environ, "RETRIEVER_RELOAD_POLL_SECONDS",
                                            defaults.reload_poll_seconds, float, 0),
        )
