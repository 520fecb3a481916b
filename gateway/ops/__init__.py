"""Operations: ``/healthz``, ``/readyz``, ``/metrics``, JSON logs and request ids, and the
token-guarded ``/openapi.json`` and ``/docs``.

``install_operations`` is called once by the app factory (which creates the FastAPI app with
``openapi_url=None, docs_url=None, redoc_url=None``: the unguarded defaults). Others may call:

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
from gateway.ops._operator import docs_router, load_operator_token, operator_token_path
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
    "operator_token_path",
    "record_store_error",
]


def install_operations(app: FastAPI, settings: Settings) -> None:
    """JSON logging at ``settings.log_level``, the middleware, the three probe routes, the
    operator token and the guarded ``/openapi.json`` and ``/docs``."""
    configure_logging(settings.log_level)
    if metrics_of(app) is not None:
        return  # already installed on this app
    metrics = GatewayMetrics()
    app.state.metrics = metrics
    app.state.operator_token = load_operator_token(settings)
    app.add_middleware(OperationsMiddleware, metrics=metrics)
    app.include_router(operations_router)
    app.include_router(docs_router)
