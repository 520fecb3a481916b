"""A store with the demo participants (the samples' senders), on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from gateway.app import create_app
from gateway.clock import ManualClock
from gateway.participants.demo import ensure_demo_participants
from gateway.settings import Settings
from gateway.store.database import Database
from gateway.store.repository import Store
from tests.access.access_support import make_login


@pytest.fixture
async def store(database: Database, settings: Settings) -> Store:
    store = Store(database, fhir_base=settings.fhir_base)
    await ensure_demo_participants(settings, database, store)
    return store


@pytest.fixture
def clock() -> ManualClock:
    # Ole's week-12 assessment is due 2026-11-23; this is the Wednesday after.
    return ManualClock(datetime(2026, 11, 25, 10, tzinfo=UTC))


@pytest.fixture
async def app(settings: Settings, clock: ManualClock) -> AsyncIterator[FastAPI]:
    application = create_app(settings.model_copy(update={"demo": True}), clock=clock)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@pytest.fixture
def as_(client: httpx.AsyncClient, settings: Settings) -> Any:
    return make_login(client, settings)


# The external validator's fixture (skips loudly, or fails under CI, when it cannot run).
from tests.validate.conftest import fhir_validate  # noqa: E402, F401
