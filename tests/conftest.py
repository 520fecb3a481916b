"""Shared fixtures: a database per test on SQLite and (when reachable) PostgreSQL.

PostgreSQL is real: ``BROBYGGER_TEST_PG_URL`` (default the local ``test`` database). Each test
run creates its own database and drops it afterwards; each test starts from empty tables.
Under ``CI=true`` a missing PostgreSQL fails the run instead of skipping.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text

from gateway.settings import Settings
from gateway.store.database import Database
from gateway.store.schema import metadata

PG_ADMIN_URL = os.environ.get("BROBYGGER_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() == "true"


def _pg_available() -> str | None:
    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return f"PostgreSQL at {PG_ADMIN_URL} is not reachable: {exc}"


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A throw-away PostgreSQL database for this test run (SQLAlchemy URL)."""
    problem = _pg_available()
    if problem is not None:
        if IN_CI:
            pytest.fail(f"CI=true and {problem}")
        pytest.skip(f"SKIPPING POSTGRESQL TESTS: {problem}")
    name = f"brobygger_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    url = f"{base.replace('postgresql://', 'postgresql+psycopg://', 1)}/{name}"
    migrated = Database(url)
    asyncio.run(_migrate_and_dispose(migrated))
    yield url
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _migrate_and_dispose(database: Database) -> None:
    await database.migrate()
    await database.dispose()


async def _truncate(database: Database) -> None:
    names = ", ".join(t.name for t in metadata.sorted_tables)
    async with database.engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {names}"))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Both stores: a fresh SQLite file, or the run's PostgreSQL database emptied."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/store.db"
    url: str = request.getfixturevalue("pg_database")
    database = Database(url)

    async def empty() -> None:
        await _truncate(database)
        await database.dispose()

    asyncio.run(empty())
    return url


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    db = Database(database_url)
    await db.migrate()
    yield db
    await db.dispose()


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        environment="test",
        database_url=database_url,
        base_url="http://testserver",
        var_dir=tmp_path / "var",
        keys_dir=tmp_path / "keys",
    )
