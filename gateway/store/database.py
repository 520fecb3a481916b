"""The database handle: an async SQLAlchemy engine plus Alembic migrations.

SQLite (aiosqlite) is the embedded default; PostgreSQL (psycopg 3) is used when
``BROBYGGER_DATABASE_URL`` names it. Migrations run through Alembic on a sync view of the
async connection, so one code path serves ``brobygger db upgrade``, start-up and tests.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def _alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@lru_cache(maxsize=1)
def head_revision() -> str | None:
    """The newest migration's id (read from the scripts once per process)."""
    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers run beside the one writer; busy_timeout makes writers queue, not fail.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class Database:
    """Owns the engine; knows its dialect and how to migrate itself."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        parsed = make_url(url)
        self.url = url
        self.dialect = parsed.get_backend_name()
        # hide_parameters: SQL errors must not quote values (they may be health data).
        kwargs: dict[str, Any] = {"echo": echo, "hide_parameters": True}
        if self.dialect == "sqlite":
            database = parsed.database
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
        else:
            kwargs.update(pool_size=10, max_overflow=10, pool_pre_ping=True)
            # No server-side prepared statements: after five runs psycopg would prepare a
            # query, and PostgreSQL may then switch to a generic plan that ignores the
            # parameter values — for our skewed index tables (one code, many rows) a scan of
            # every token row of a type (31 ms instead of 0.7 ms, measured by bench.messaging
            # on a server without fresh statistics). Planning per execution is cheap here.
            kwargs["connect_args"] = {"prepare_threshold": None}
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        if self.dialect == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _on_sqlite_connect)

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    async def migrate(self) -> None:
        """Bring the schema to the newest migration (idempotent)."""
        async with self.engine.begin() as conn:
            await conn.run_sync(_upgrade)

    async def current_revision(self) -> str | None:
        async with self.engine.connect() as conn:
            return await conn.run_sync(_current)

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    def connect(self) -> AsyncConnection:
        return self.engine.connect()

    async def dispose(self) -> None:
        await self.engine.dispose()


def _upgrade(connection: Connection) -> None:
    # Already at head (every start but the first, every test copied from a migrated
    # template): skip Alembic's script loading, which costs more than the check.
    if _current(connection) == head_revision():
        return
    command.upgrade(_alembic_config(connection), "head")


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()
