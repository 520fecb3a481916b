"""Fixtures for auth tests: the real app with its lifespan, demo participants and dev keys."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from joserfc.jwk import Key

from gateway.app import create_app
from gateway.auth.assertions import CLIENT_ASSERTION_TYPE, make_client_assertion
from gateway.auth.keys import private_key_path, read_private_key
from gateway.settings import Settings


@pytest.fixture
def demo_settings(settings: Settings) -> Settings:
    """The shared per-test settings (SQLite, and PostgreSQL when reachable) with demo on."""
    return settings.model_copy(update={"demo": True})


@pytest.fixture
async def app(demo_settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(demo_settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@pytest.fixture
def dev_key(demo_settings: Settings) -> Callable[[str], Key]:
    def load(name: str) -> Key:
        return read_private_key(private_key_path(demo_settings.keys_dir, name))

    return load


def token_form(assertion: str, **extra: str) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "client_assertion_type": CLIENT_ASSERTION_TYPE,
        "client_assertion": assertion,
        **extra,
    }


@pytest.fixture
def request_token(
    client: httpx.AsyncClient, dev_key: Callable[[str], Key], demo_settings: Settings
) -> Callable[..., Any]:
    """``await request_token("jobcenter-aarhus", purpose=...)`` → the token endpoint response."""

    async def call(
        name: str, *, key: Key | None = None, assertion: str | None = None, **form: str
    ) -> httpx.Response:
        signed = assertion or make_client_assertion(
            key or dev_key(name), name, demo_settings.token_url
        )
        return await client.post("/auth/token", data=token_form(signed, **form))

    return call
