"""Pure ASGI middleware: request id, timing, metrics and one access log line per request."""

from __future__ import annotations

import logging
import time
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.api.responses import fhir_response
from gateway.errors import Issue, operation_outcome
from gateway.ops._context import (
    REQUEST_ID_HEADER,
    UNMATCHED_ROUTE,
    RequestContext,
    enter_request,
    leave_request,
    sane_request_id,
)
from gateway.ops._logging import mark_logged
from gateway.ops._metrics import GatewayMetrics

_HEADER_KEY: Final = REQUEST_ID_HEADER.lower().encode("latin-1")

access_log = logging.getLogger("gateway.access")
error_log = logging.getLogger("gateway.error")


def _header(scope: Scope, key: bytes) -> str | None:
    for name, value in scope.get("headers", ()):
        if name.lower() == key:
            return bytes(value).decode("latin-1")
    return None


class OperationsMiddleware:
    """Gives each HTTP request an id (``X-Request-ID``, echoed), times it and logs it.

    Unhandled exceptions are logged here, with the request id, and answered with a 500
    OperationOutcome carrying ``X-Request-ID``; then re-raised so the server (and a test
    client) still sees them.
    """

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started_at = time.perf_counter()
        request_id = sane_request_id(_header(scope, _HEADER_KEY))
        state = scope.setdefault("state", {})
        if isinstance(state, dict):
            state["request_id"] = request_id
        context = RequestContext(request_id=request_id, method=scope["method"], scope=scope)
        token = enter_request(context)
        status = 500
        response_started = False

        async def send_with_request_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                headers = [
                    (k, v) for k, v in message.get("headers", ()) if k.lower() != _HEADER_KEY
                ]
                headers.append((_HEADER_KEY, request_id.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_request_id)
        except Exception as exc:
            error_log.error("unhandled exception", exc_info=exc)
            mark_logged(exc)
            if not response_started:
                outcome = operation_outcome(
                    [Issue("exception", "internal error; see the gateway log")]
                )
                # The exception goes on to the server, which then drops the connection: say
                # so, or a keep-alive client sends its next request into a closed socket.
                response = fhir_response(outcome, status_code=500, headers={"Connection": "close"})
                await response(scope, receive, send_with_request_id)
            raise
        finally:
            seconds = time.perf_counter() - started_at
            route = context.route
            self.metrics.observe_request(context.method, route, status, seconds)
            access_log.log(
                logging.ERROR if status >= 500 else logging.INFO,
                "%s %s %s",
                context.method,
                route or UNMATCHED_ROUTE,
                status,
                extra={
                    "route": route or UNMATCHED_ROUTE,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 2),
                },
            )
            leave_request(token)
