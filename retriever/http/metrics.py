"""Operations: Prometheus metrics, JSON access log lines, the unmatched-query log."""
from __future__ import annotations

import json
import logging
import logging.handlers
import time
from datetime import datetime, timezone

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

access_log = logging.getLogger("retriever.access")


class Metrics:
    """The service's metrics, in a registry of its own (one per app)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("retriever_requests", "HTTP requests", ["route", "method", "status"],
                                registry=self.registry)
        self.latency = Histogram("retriever_request_seconds", "Request latency", ["route"], registry=self.registry,
                                 buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10))
        self.decisions = Counter("retriever_decisions", "Answer decisions", ["decision"], registry=self.registry)
        self.index_info = Gauge("retriever_index_info", "The served index version (value 1)", ["version", "model"],
                                registry=self.registry)
        self.reloads = Counter("retriever_reloads", "Index reload attempts", ["outcome"], registry=self.registry)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def set_index(self, version: str, model: str) -> None:
        self.index_info.clear()
        self.index_info.labels(version, model).set(1)


def configure_access_log(stream=None) -> None:
    """Access lines as bare JSON (one object a line) on stderr, apart from the human-readable log."""
    if access_log.handlers:
        return
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    access_log.addHandler(handler)
    access_log.setLevel(logging.INFO)
    access_log.propagate = False


def log_access(method: str, path: str, status: int, seconds: float, client: str | None, **extra) -> None:
    """One JSON line per request on the ``retriever.access`` logger."""
    record = {"ts": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), "method": method, "path": path,
              "status": status, "ms": round(seconds * 1000, 2), "client": client, **extra}
    access_log.info(json.dumps(record, ensure_ascii=False))


class UnmatchedLog:
    """Queries answered ``no_match``, one JSON object a line, for FAQ editors; rotated at 10 MB, 5 kept."""

    def __init__(self, path: str) -> None:
        self._logger = logging.getLogger(f"retriever.unmatched.{path}")
        self._logger.propagate = False
        self._logger.setLevel(logging.INFO)
        if not self._logger.handlers:
            handler = logging.handlers.RotatingFileHandler(path, maxBytes=10 * 1024 * 1024, backupCount=5,
                                                           encoding="utf-8")
            handler.setFormatter(logging.Formatter("%(message)s"))
            self._logger.addHandler(handler)

    def record(self, query: str, top_faq_id: str | None, score: float | None, threshold: float | None,
               version: str, source: str) -> None:
        self._logger.info(json.dumps({"ts": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                      "query": query, "top_faq_id": top_faq_id, "score": score,
                                      "threshold": threshold, "index_version": version, "source": source},
                                     ensure_ascii=False))


def monotonic() -> float:
    return time.perf_counter()
