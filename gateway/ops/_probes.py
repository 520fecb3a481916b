"""``/healthz`` (the process answers), ``/readyz`` (the database answers and is migrated), and
``/metrics`` (Prometheus text format). The probes need no token (expose them only inside the
deployment); ``/metrics`` needs the operator token (gateway/ops/_operator.py).
"""

from __future__ import annotations

import asyncio
import logging
from functools import lru_cache
from typing import Final

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import JSONResponse, Response

from gateway.api.responses import fhir_response
from gateway.errors import Issue, operation_outcome
from gateway.ops._metrics import metrics_of
from gateway.ops._operator import refuse_unless_operator
from gateway.store.database import Database, head_revision

READINESS_TIMEOUT_SECONDS: Final = 3.0
_NO_STORE: Final = {"Cache-Control": "no-store"}

log = logging.getLogger("gateway.ops")
router = APIRouter(tags=["operations"], include_in_schema=False)


@lru_cache(maxsize=1)
def _expected_revision() -> str | None:
    # The migration scripts ship with the code, so the head cannot change while we run.
    return head_revision()


@router.get("/healthz")
async def healthz() -> Response:
    return JSONResponse({"status": "ok"}, headers=_NO_STORE)


@router.get("/readyz")
async def readyz(request: Request) -> Response:
    database = getattr(request.app.state, "database", None)
    expected = _expected_revision()
    problem = await readiness_problem(database, expected)
    if problem is not None:
        log.warning("not ready: %s", problem)
        outcome = operation_outcome([Issue("transient", problem)])
        return fhir_response(outcome, status_code=503, headers=_NO_STORE)
    body = {"status": "ok", "checks": {"database": "ok", "schema": expected}}
    return JSONResponse(body, headers=_NO_STORE)


async def readiness_problem(database: Database | None, expected: str | None) -> str | None:
    """What keeps the gateway from serving (one sentence, no secrets), or None when ready."""
    if database is None:
        return "database: not opened yet (start-up has not finished)"
    try:
        async with asyncio.timeout(READINESS_TIMEOUT_SECONDS):
            await database.ping()
            current = await database.current_revision()
    except TimeoutError:
        return f"database: no answer within {READINESS_TIMEOUT_SECONDS:g} s"
    except Exception as exc:
        # The type only: driver messages can carry host names and connection details.
        return f"database: not reachable ({type(exc).__name__})"
    if current != expected:
        return (
            f"schema: database is at revision {current or 'none'}, the gateway needs "
            f"{expected}; run `brobygger db upgrade`"
        )
    return None


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    refused = refuse_unless_operator(request)
    if refused is not None:
        return refused
    gateway_metrics = metrics_of(request)
    content = gateway_metrics.exposition() if gateway_metrics is not None else b""
    return Response(content, media_type=CONTENT_TYPE_LATEST, headers=_NO_STORE)
