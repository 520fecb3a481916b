"""The real app (demo participants and demo staff) on SQLite and PostgreSQL, over HTTPS."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from gateway.app import create_app
from gateway.clock import ManualClock
from gateway.settings import Settings
from tests.access.access_support import make_login


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    clock = ManualClock(datetime(2026, 12, 7, 10, tzinfo=UTC))
    application = create_app(
        settings.model_copy(update={"demo": True, "deadline_in_process": False}), clock=clock
    )
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    # https: the session cookie is Secure, so a client sends it over HTTPS only.
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
        yield c


@pytest.fixture
def as_(client: httpx.AsyncClient, settings: Settings) -> Any:
    return make_login(client, settings)
