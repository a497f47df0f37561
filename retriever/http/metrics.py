"""Prometheus metrics of the service, in a registry of its own per app.

Under gunicorn with ``PROMETHEUS_MULTIPROC_DIR`` set (before the server starts; prometheus-client
reads it at import), every worker writes its values to files in that folder and ``/metrics``
reports the sum over workers, whichever worker answers the scrape.
"""
from __future__ import annotations

from typing import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess


class Metrics:
    """The service's metrics, in a registry of its own (one per app); ``multiprocess_dir``: summed over workers."""

    def __init__(self, multiprocess_dir: str | None = None) -> None:
        self.registry = CollectorRegistry()
        self.multiprocess = multiprocess_dir is not None
        if self.multiprocess:
            # The metrics stay out of the registry: the collector reads every worker's files, this one's too.
            multiprocess.MultiProcessCollector(self.registry, path=multiprocess_dir)
        registry = None if self.multiprocess else self.registry
        self.requests = Counter("retriever_requests", "HTTP requests", ["route", "method", "status"],
                                registry=registry)
        self.latency = Histogram("retriever_request_seconds", "Request latency", ["route"], registry=registry,
                                 buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10))
        self.decisions = Counter("retriever_decisions", "Answer decisions", ["decision"], registry=registry)
        # With a cascade index (build --fast-model): which path answered; "full" for every answer without one.
        self.answer_paths = Counter("retriever_answer_paths", "Answers by cascade path (fast, full)", ["path"],
                                    registry=registry)
        for path in ("fast", "full"):
            self.answer_paths.labels(path)  # both present at 0 before the first answer
        self.cache_lookups = Counter("retriever_cache_lookups", "Answer cache lookups by outcome (hit, miss)",
                                     ["outcome"], registry=registry)
        # livemax: 1 for each version some live worker serves (a worker that moved on sets its old one to 0).
        self.index_info = Gauge("retriever_index_info", "The served index version (value 1)", ["version", "model"],
                                registry=registry, multiprocess_mode="livemax")
        self.reloads = Counter("retriever_reloads", "Index reload attempts (admin, poller, other workers)",
                               ["outcome"], registry=registry)
        self._index_labels: tuple[str, str] | None = None
        self._reloads_seen: dict[tuple[str, str], int] = {}  # (collection, outcome) -> count published

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route).observe(seconds)

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
        for outcome in ("changed", "unchanged", "refused"):
            self.reloads.labels(outcome)  # present at 0 before the first reload
