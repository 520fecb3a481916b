"""Fixtures for the operations tests: the real app on a fresh SQLite file, lifespan running."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.settings import Settings


@pytest.fixture
def ops_settings(tmp_path: Path) -> Settings:
    return Settings(
        environment="test",
        database_url=f"sqlite+aiosqlite:///{tmp_path}/t.db",
        var_dir=tmp_path / "var",
        keys_dir=tmp_path / "keys",
        base_url="http://testserver",
    )


@pytest.fixture
def ops_app(ops_settings: Settings) -> FastAPI:
    return create_app(ops_settings)


@pytest.fixture
def ops_client(ops_app: FastAPI) -> Iterator[TestClient]:
    with TestClient(ops_app) as client:
        yield client
