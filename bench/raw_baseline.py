"""The database's own rate for the rows a gateway transaction wrote: the baseline in each run.

``capture`` reads back, after the gateway stored them, every row one transaction created:
the current rows, their history rows, the four index tables' rows and the
``patient_identities`` rows. ``measure`` then writes copies of exactly those rows (fresh ids,
fresh identifier values, the same contents and sizes), one transaction per copy, straight
through the same driver the gateway uses (``sqlite3`` under aiosqlite with the gateway's
pragmas, ``psycopg`` 3 with ``prepare_threshold=None``), with one ``executemany`` per table and
no gateway or SQLAlchemy code. That is the limit a store transaction of the same rows can
approach; the benchmarks print the store's rate divided by it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.engine import make_url

from gateway.store.database import Database
from gateway.store.schema import (
    INDEX_TABLES,
    patient_identities,
    resource_history,
    resources,
)

_TABLES = (resource_history, resources, *INDEX_TABLES)


@dataclass(slots=True)
class RowSet:
    """Rows of one transaction, per table (column order as in the schema)."""

    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def resources(self) -> int:
        return len(self.rows.get("resources", []))

    @property
    def total_rows(self) -> int:
        return sum(len(v) for v in self.rows.values())


async def keys_of(database_url: str) -> set[tuple[str, str]]:
    """Every (type, id) in ``resources`` now (diff two snapshots to find a transaction's)."""
    database = Database(database_url)
    try:
        async with database.engine.connect() as conn:
            found = await conn.execute(select(resources.c.type, resources.c.id))
            return {(r.type, r.id) for r in found}
    finally:
        await database.dispose()


async def capture(database_url: str, keys: set[tuple[str, str]]) -> RowSet:
    """The stored rows of ``keys`` (resources created by one transaction)."""
    database = Database(database_url)
    out = RowSet()
    wanted = sorted(keys)
    try:
        async with database.engine.connect() as conn:
            for table in _TABLES:
                query = select(table).where(tuple_(table.c.type, table.c.id).in_(wanted))
                out.rows[table.name] = [dict(r._mapping) for r in await conn.execute(query)]
            patients = [rid for rtype, rid in wanted if rtype == "Patient"]
            if patients:
                query = select(patient_identities).where(
                    patient_identities.c.patient_id.in_(patients)
                )
                out.rows[patient_identities.name] = [
                    dict(r._mapping) for r in await conn.execute(query)
                ]
    finally:
        await database.dispose()
    return out


def _copy(rowset: RowSet) -> dict[str, list[dict[str, Any]]]:
    """The same rows under fresh ids (references between them follow)."""
    ids: dict[str, str] = {}

    def fresh(rid: str) -> str:
        if rid not in ids:
            ids[rid] = str(uuid.uuid4())
        return ids[rid]

    out: dict[str, list[dict[str, Any]]] = {}
    for name, rows in rowset.rows.items():
        copied = []
        for row in rows:
            new = dict(row)
            if "id" in new:
                new["id"] = fresh(str(new["id"]))
            if "target_id" in new and new["target_id"] in ids:
                new["target_id"] = ids[new["target_id"]]
            if name == patient_identities.name:
                new["patient_id"] = fresh(str(new["patient_id"]))
                new["value"] = uuid.uuid4().hex[:10]
            copied.append(new)
        out[name] = copied
    return out


def _statements(paramstyle: str, rowset: RowSet) -> list[tuple[str, list[str]]]:
    out = []
    for name, rows in rowset.rows.items():
        if not rows:
            continue
        columns = list(rows[0])
        marks = ", ".join("?" if paramstyle == "qmark" else f"%({c})s" for c in columns)
        # Table and column names come from the schema, values are parameters.
        sql = f"INSERT INTO {name} ({', '.join(columns)}) VALUES ({marks})"  # noqa: S608
        out.append((sql, columns))
    return out


def measure_sync(database_url: str, rowset: RowSet, transactions: int) -> float:
    """Seconds for ``transactions`` transactions, each writing a fresh copy of ``rowset``."""
    url = make_url(database_url)
    copies = [_copy(rowset) for _ in range(transactions)]
    if url.get_backend_name() == "sqlite":
        import sqlite3

        conn = sqlite3.connect(str(url.database), isolation_level=None)
        for pragma in ("journal_mode=WAL", "busy_timeout=10000", "synchronous=NORMAL"):
            conn.execute(f"PRAGMA {pragma}")
        statements = _statements("qmark", rowset)
        try:
            started = time.perf_counter()
            for copy in copies:
                conn.execute("BEGIN IMMEDIATE")
                for (sql, columns), name in zip(statements, _names(rowset), strict=True):
                    conn.executemany(sql, [tuple(r[c] for c in columns) for r in copy[name]])
                conn.execute("COMMIT")
            return time.perf_counter() - started
        finally:
            conn.close()
    import psycopg

    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    statements = _statements("pyformat", rowset)
    with psycopg.connect(dsn, prepare_threshold=None) as pg:
        started = time.perf_counter()
        for copy in copies:
            with pg.transaction(), pg.cursor() as cur:
                for (sql, _columns), name in zip(statements, _names(rowset), strict=True):
                    cur.executemany(sql, copy[name])
        return time.perf_counter() - started


def _names(rowset: RowSet) -> list[str]:
    return [name for name, rows in rowset.rows.items() if rows]


async def measure(database_url: str, rowset: RowSet, transactions: int) -> float:
    """``measure_sync`` off the event loop (the drivers are the sync ones beneath the async)."""
    return await asyncio.to_thread(measure_sync, database_url, rowset, transactions)
