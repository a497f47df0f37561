"""Prometheus metrics of the service, in a registry of its own per app."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


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
