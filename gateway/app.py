"""The application factory: wires settings, database, store, auth and the routers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from gateway.api.fhir import router as fhir_router
from gateway.api.responses import fhir_response
from gateway.api.validate import router as validate_router
from gateway.auth.routes import router as auth_router
from gateway.auth.tokens import TokenService
from gateway.clock import SYSTEM_CLOCK, Clock
from gateway.coordination import start_deadline_worker
from gateway.errors import (
    BadRequest,
    GatewayError,
    Issue,
    MethodNotAllowed,
    NotFound,
    operation_outcome,
)
from gateway.figures.routes import router as figures_router
from gateway.ingest.routes import router as ingest_router
from gateway.limits import search_limits
from gateway.messaging.delivery import start_delivery_worker
from gateway.messaging.mailbox import router as mailbox_router
from gateway.messaging.routes import fhir_router as messaging_fhir_router
from gateway.messaging.routes import router as messaging_router
from gateway.ops import install_operations
from gateway.participants.demo import ensure_demo_participants
from gateway.settings import Settings, get_settings
from gateway.store.audit_writer import AuditWriter
from gateway.store.database import Database
from gateway.store.repository import Store
from gateway.web import SessionService, StaffDirectory, ensure_demo_staff, install_web
from gateway.workers import cpu_pool


def create_app(settings: Settings | None = None, clock: Clock | None = None) -> FastAPI:
    settings = settings or get_settings()
    clock = clock or SYSTEM_CLOCK

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database = Database(settings.database_url)
        await database.migrate()
        store = Store(database, fhir_base=settings.fhir_base)
        await store.refresh_statistics()
        app.state.database = database
        app.state.store = store
        store.search_limits = search_limits(settings)
        app.state.tokens = TokenService.from_settings(settings, database)
        app.state.audit_writer = store.audit_writer = AuditWriter(store, settings.audit_write)
        # The web view: a session signed with the gateway's key; staff sign in with a password
        # (or, replacing web_identity, at a municipality's own IdP: docs/web.md).
        app.state.web_sessions = SessionService(app.state.tokens.key, settings.base_url)
        app.state.web_identity = StaffDirectory(database)
        if settings.demo:
            await ensure_demo_participants(settings, database, store)
            await ensure_demo_staff(database)
        delivery = start_delivery_worker(store, settings) if settings.delivery_in_process else None
        deadlines = (
            start_deadline_worker(store, settings, clock) if settings.deadline_in_process else None
        )
        try:
            yield
        finally:
            if deadlines is not None:
                await deadlines.stop()
            if delivery is not None:
                await delivery.stop()
            await app.state.audit_writer.close()
            await database.dispose()
            # Idle workers go with the app (a new app in this process starts new ones).
            cpu_pool(settings.cpu_workers).shutdown()

    app = FastAPI(
        title="Brobygger",
        summary="FHIR R4 gateway between Danish health and employment systems",
        version="0.1.0",
        lifespan=lifespan,
        # Not FastAPI's open defaults: gateway.ops serves /openapi.json and /docs behind a token.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.clock = clock
    _install_error_handlers(app)
    install_operations(app, settings)
    app.include_router(auth_router)
    # $validate first: "POST /fhir/$validate" must not reach "POST /fhir/{resource_type}".
    app.include_router(validate_router, prefix="/fhir")
    app.include_router(messaging_fhir_router, prefix="/fhir")
    # Measure/$evaluate-measure before "/fhir/{resource_type}/{id}" (Measures are not stored).
    app.include_router(figures_router, prefix="/fhir")
    app.include_router(messaging_router)
    app.include_router(mailbox_router)
    app.include_router(fhir_router, prefix="/fhir")
    app.include_router(ingest_router)
    install_web(app)
    return app


def _install_error_handlers(app: FastAPI) -> None:
    async def gateway_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, GatewayError)  # noqa: S101 - registered for this class only
        return fhir_response(exc.outcome(), status_code=exc.status, headers=exc.headers)

    async def validation_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)  # noqa: S101
        issues = [
            Issue(
                "invalid",
                str(err.get("msg", "invalid")),
                ".".join(str(p) for p in err.get("loc", ())),
            )
            for err in exc.errors()
        ]
        return fhir_response(operation_outcome(issues), status_code=BadRequest.status)

    async def http_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)  # noqa: S101
        if exc.status_code == 404:
            outcome = NotFound("no such endpoint").outcome()
        elif exc.status_code == 405:
            outcome = MethodNotAllowed("method not allowed on this endpoint").outcome()
        else:
            outcome = operation_outcome([Issue("processing", str(exc.detail))])
        status = exc.status_code if exc.status_code >= 400 else 500
        return fhir_response(outcome, status_code=status)

    async def unexpected_error(_request: Request, _exc: Exception) -> Response:
        # Never a stack trace (or health data) on the wire; the log has the details.
        outcome = operation_outcome([Issue("exception", "internal error; see the gateway log")])
        # The server drops the connection after an unhandled error: tell the client.
        return fhir_response(outcome, status_code=500, headers={"Connection": "close"})

    app.add_exception_handler(GatewayError, gateway_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected_error)
