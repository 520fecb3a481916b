"""Operations: ``/healthz``, ``/readyz``, ``/metrics``, JSON logs and request ids.

``install_operations`` is called once by the app factory. Others may call:

- ``record_store_error(app_or_request, operation)`` — count a failed store operation;
- ``current_request_id()`` — the id of the request being handled (e.g. for outbound headers);
  inside a route it is also ``request.state.request_id``.
"""

from __future__ import annotations

from fastapi import FastAPI

from gateway.ops._context import REQUEST_ID_HEADER, current_request_id
from gateway.ops._logging import JsonFormatter, configure_logging
from gateway.ops._metrics import GatewayMetrics, metrics_of, record_store_error
from gateway.ops._middleware import OperationsMiddleware
from gateway.ops._probes import router as operations_router
from gateway.settings import Settings

__all__ = [
    "REQUEST_ID_HEADER",
    "GatewayMetrics",
    "JsonFormatter",
    "configure_logging",
    "current_request_id",
    "install_operations",
    "metrics_of",
    "record_store_error",
]


def install_operations(app: FastAPI, settings: Settings) -> None:
    """JSON logging at ``settings.log_level``, the middleware, and the three probe routes."""
    configure_logging(settings.log_level)
    if metrics_of(app) is not None:
        return  # already installed on this app
    metrics = GatewayMetrics()
    app.state.metrics = metrics
    app.add_middleware(OperationsMiddleware, metrics=metrics)
    app.include_router(operations_router)
