"""Fixtures for the live-server tests: a gateway under uvicorn per test, on both stores."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from live.harness import LiveGateway, serve

from gateway.settings import Settings


@pytest.fixture
def live_gateway(settings: Settings) -> Iterator[LiveGateway]:
    """The real app on a real socket (``database_url`` parametrizes it over both stores)."""
    with serve(settings) as gateway:
        yield gateway


@pytest.fixture
def token(live_gateway: LiveGateway) -> str:
    """A read/write access token of the demo hospital department, via ``POST /auth/token``."""
    return live_gateway.token()
