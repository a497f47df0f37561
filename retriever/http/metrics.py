"""Prometheus metrics of the service, in a registry of its own per app.

Under gunicorn every worker writes its values to files in one folder (prometheus-client's
multiprocess mode) and ``/metrics`` reports the sum over workers, whichever worker answers the
scrape. The server sets this up itself (retriever/http/server.py): a private folder per start,
or ``PROMETHEUS_MULTIPROC_DIR`` when the operator names one. Names and their renames: docs/metrics.md.
"""
from __future__ import annotations

import os
from typing import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess, values

from ..cascade import PATHS
from ..scoring import DECISIONS

# Where an answer decision is made: every route counts in the same counter, so all are listed from the start.
DECISION_ROUTES = ("search", "classify", "dify", "mcp")
STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx")
CACHE_OUTCOMES = ("hit", "miss")
RELOAD_OUTCOMES = ("changed", "unchanged", "refused")
LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10)


def write_values_to(folder: str) -> None:
    """Keep this process's metric values (and those of processes forked from it) in files under ``folder``.

    prometheus-client picks where values live from PROMETHEUS_MULTIPROC_DIR once, when it is first
    imported; the server decides on the folder after that import (the command line imports the app),
    so the choice is made again here, before any worker creates a metric.
    """
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    values.ValueClass = values.get_value_class()


def _folder_in_use() -> str | None:
    """The folder prometheus-client writes values to in this process, None when it keeps them in memory."""
    if values.ValueClass is values.MutexValue:
        return None
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR")


def status_class(status: int) -> str:
    return f"{status // 100}xx"


class Metrics:
    """The service's metrics, in a registry of its own (one per app).

    ``multiprocess_dir``: the values of every worker are summed from that folder; by default the one
    prometheus-client already writes to (set by the server), else this process's values alone.
    """

    def __init__(self, multiprocess_dir: str | None = None) -> None:
        self.registry = CollectorRegistry()
        folder = multiprocess_dir or _folder_in_use()
        self.multiprocess = folder is not None
        if self.multiprocess:
            # The metrics stay out of the registry: the collector reads every worker's files, this one's too.
            multiprocess.MultiProcessCollector(self.registry, path=folder)
        registry = None if self.multiprocess else self.registry
        self.requests = Counter("retriever_requests", "HTTP requests", ["route", "method", "status"],
                                registry=registry)
        self.responses = Counter("retriever_responses", "HTTP responses by status class (2xx, 3xx, 4xx, 5xx)",
                                 ["status_class"], registry=registry)
        self.duration = Histogram("retriever_request_duration_seconds", "Time to answer a request, by route",
                                  ["route"], registry=registry, buckets=LATENCY_BUCKETS)
        # Deprecated name of retriever_request_duration_seconds, kept for one release (docs/metrics.md).
        self.latency = Histogram("retriever_request_seconds", "Deprecated: use retriever_request_duration_seconds",
                                 ["route"], registry=registry, buckets=LATENCY_BUCKETS)
        self.decisions = Counter("retriever_decisions", "Answer decisions by route (search, classify, dify, mcp)",
                                 ["route", "decision"], registry=registry)
        # With a cascade index (build --fast-model): which path answered; "full" for every answer without one.
        self.answer_paths = Counter("retriever_answer_paths", "Answers by cascade path (fast, full)", ["path"],
                                    registry=registry)
        self.cache_lookups = Counter("retriever_cache_lookups", "Answer cache lookups by outcome (hit, miss)",
                                     ["outcome"], registry=registry)
        # livemax: 1 for each version some live worker serves (a worker that moved on sets its old one to 0).
        self.index_info = Gauge("retriever_index_info", "The served index version (value 1)", ["version", "model"],
                                registry=registry, multiprocess_mode="livemax")
        self.reloads = Counter("retriever_reloads", "Index reload attempts (admin, poller, other workers)",
                               ["outcome"], registry=registry)
        # livesum: the classify requests every live worker runs now; at RETRIEVER_BATCH_JOBS per worker, more get 503.
        self.batch_jobs = Gauge("retriever_batch_jobs_running", "Classify requests running now (each holds a batch slot)",
                                registry=registry, multiprocess_mode="livesum")
        self._declare_known_labels()
        self._index_labels: tuple[str, str] | None = None
        self._reloads_seen: dict[tuple[str, str], int] = {}  # (collection, outcome) -> count published

    def _declare_known_labels(self) -> None:
        """Every series whose labels are known in advance, at 0: a rate or ratio over them exists from the start."""
        for route in DECISION_ROUTES:
            for decision in DECISIONS:
                self.decisions.labels(route, decision)
        for path in PATHS:
            self.answer_paths.labels(path)
        for klass in STATUS_CLASSES:
            self.responses.labels(klass)
        for outcome in CACHE_OUTCOMES:
            self.cache_lookups.labels(outcome)
        for outcome in RELOAD_OUTCOMES:
            self.reloads.labels(outcome)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.responses.labels(status_class(status)).inc()
        self.duration.labels(route).observe(seconds)
        self.latency.labels(route).observe(seconds)

    def count_decision(self, route: str, decision: str, path: str) -> None:
        """One answer decision made on ``route`` (one of DECISION_ROUTES), and the cascade path that made it."""
        self.decisions.labels(route, decision).inc()
        self.answer_paths.labels(path).inc()

    def set_index(self, version: str, model: str) -> None:
        labels = (version, model)
        if labels == self._index_labels:
            return
        if self._index_labels is not None:
            if self.multiprocess:
                self.index_info.labels(*self._index_labels).set(0)  # multiprocess gauges cannot remove labels
            else:
                self.index_info.clear()
        self.index_info.labels(*labels).set(1)
        self._index_labels = labels

    def set_reloads(self, collection: str, counts: Mapping[str, int]) -> None:
        """One collection's reload attempts by outcome, as its SearcherHolder counts them (added as they grow)."""
        for outcome, count in counts.items():
            grown = count - self._reloads_seen.get((collection, outcome), 0)
            if grown > 0:
                self.reloads.labels(outcome).inc(grown)
            self._reloads_seen[collection, outcome] = count
