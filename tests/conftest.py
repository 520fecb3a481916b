"""Shared fixtures: a database per test on SQLite and (when reachable) PostgreSQL.

Migrations run once per test session (per xdist worker): SQLite tests get a copy of a
migrated template file; PostgreSQL tests share the session's migrated database, emptied
(TRUNCATE) before each test. Measured on four PostgreSQL-heavy files (README, "Tests"):
copying a PostgreSQL template per test (CREATE DATABASE … TEMPLATE …, dropped after) cost
about twice the TRUNCATE (≈120 ms against ≈60 ms a test), so PostgreSQL keeps the TRUNCATE.

PostgreSQL is real: ``BROBYGGER_TEST_PG_URL`` (default the local ``test`` database, used only
to connect and create databases). Each run creates its own database and drops it.
Under ``CI=true`` a missing PostgreSQL fails the run instead of skipping.
"""

from __future__ import annotations

import asyncio
import os
import shutil
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


def _pg_url(name: str) -> str:
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    return f"{base.replace('postgresql://', 'postgresql+psycopg://', 1)}/{name}"


async def _migrate_and_dispose(database: Database) -> None:
    await database.migrate()
    await database.dispose()


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """The session's PostgreSQL database, migrated once (its name)."""
    problem = _pg_available()
    if problem is not None:
        if IN_CI:
            pytest.fail(f"CI=true and {problem}")
        pytest.skip(f"SKIPPING POSTGRESQL TESTS: {problem}")
    name = f"brobygger_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    asyncio.run(_migrate_and_dispose(Database(_pg_url(name))))
    yield name
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_database(pg_template: str) -> str:
    """The session's migrated PostgreSQL database (SQLAlchemy URL); ``database_url`` empties
    it before each test."""
    return _pg_url(pg_template)


async def _truncate(url: str) -> None:
    database = Database(url)
    names = ", ".join(t.name for t in metadata.sorted_tables)
    try:
        async with database.engine.begin() as conn:
            await conn.execute(text(f"TRUNCATE {names}"))
    finally:
        await database.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for every test."""
    path = tmp_path_factory.mktemp("template") / "store.db"
    asyncio.run(_migrate_and_dispose(Database(f"sqlite+aiosqlite:///{path}")))
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Both stores, migrated and empty: a copied SQLite file, or the session's PostgreSQL
    database emptied."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        shutil.copyfile(template, tmp_path / "store.db")
        return f"sqlite+aiosqlite:///{tmp_path}/store.db"
    url: str = request.getfixturevalue("pg_database")
    asyncio.run(_truncate(url))
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
