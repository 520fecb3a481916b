"""Prometheus metrics in a registry owned by the app (several apps in one process never clash).

Label values are bounded: the route *template* (never the raw path, which carries ids), a fixed
set of methods, the status code and a short store operation name.

With ``uvicorn --workers N`` each worker process has its own registry, and a scrape sees
whichever worker answered. Set ``PROMETHEUS_MULTIPROC_DIR`` (an empty, writable directory,
before the server starts) and every worker writes its values there and ``/metrics`` adds
them all up (prometheus_client's multiprocess mode).
"""

from __future__ import annotations

import os
import re
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from starlette.applications import Starlette
from starlette.requests import HTTPConnection

from gateway.ops._context import UNMATCHED_ROUTE

MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
OTHER: Final = "other"
_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_OPERATION = re.compile(r"[a-z][a-z0-9_]{0,39}")


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


class GatewayMetrics:
    """The gateway's metrics and the registry ``/metrics`` exports; one per app."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.http_requests = Counter(
            "brobygger_http_requests",
            "HTTP requests by method, route template and status code.",
            ("method", "route", "status"),
            registry=self.registry,
        )
        self.http_request_duration = Histogram(
            "brobygger_http_request_duration_seconds",
            "Time from request start to the end of the response, by method and route template.",
            ("method", "route"),
            registry=self.registry,
        )
        self.store_errors = Counter(
            "brobygger_store_errors",
            "Store (database) operations that failed, by operation.",
            ("operation",),
            registry=self.registry,
        )

    def observe_request(self, method: str, route: str | None, status: int, seconds: float) -> None:
        method_label = method if method in _METHODS else OTHER
        route_label = route or UNMATCHED_ROUTE
        self.http_requests.labels(method_label, route_label, str(status)).inc()
        self.http_request_duration.labels(method_label, route_label).observe(seconds)

    def record_store_error(self, operation: str) -> None:
        """Count one failed store operation (``"create"``, ``"search"``, ``"transaction"`` …).

        Names that are not short snake_case words are counted as ``other`` (labels must stay
        few and must never carry data).
        """
        label = operation if _OPERATION.fullmatch(operation) else OTHER
        self.store_errors.labels(label).inc()

    def exposition(self) -> bytes:
        """The Prometheus text format: this process's registry, or all workers' in multiproc."""
        if multiprocess_dir() is None:
            return generate_latest(self.registry)
        combined = CollectorRegistry()
        multiprocess.MultiProcessCollector(combined)  # type: ignore[no-untyped-call]
        return generate_latest(combined)


def metrics_of(where: Starlette | HTTPConnection) -> GatewayMetrics | None:
    """The app's metrics (from the app itself or from a request), None if not installed."""
    app = where.app if isinstance(where, HTTPConnection) else where
    metrics = getattr(app.state, "metrics", None)
    return metrics if isinstance(metrics, GatewayMetrics) else None


def record_store_error(where: Starlette | HTTPConnection, operation: str) -> None:
    """Count a failed store operation on ``brobygger_store_errors_total{operation}``.

    ``where`` is the app or the current request; a no-op when operations are not installed.
    """
    metrics = metrics_of(where)
    if metrics is not None:
        metrics.record_store_error(operation)
