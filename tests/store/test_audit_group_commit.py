"""Durable audit by group commit: concurrent requests' AuditEvents share transactions, and
each request returns only when a committed transaction holds its own events (both stores)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from sqlalchemy import func, select

from gateway.store.audit_writer import AuditWriter
from gateway.store.database import Database
from gateway.store.repository import Store
from gateway.store.schema import audit_events


def event(patient: str) -> dict[str, Any]:
    return {
        "resourceType": "AuditEvent",
        "id": str(uuid.uuid4()),
        "type": {"code": "rest"},
        "recorded": "2026-12-07T12:00:00Z",
        "agent": [{"who": {"display": "bench"}, "requestor": True}],
        "source": {"observer": {"display": "Brobygger gateway"}},
        "entity": [{"what": {"reference": f"Patient/{patient}"}}],
    }


async def stored(database: Database, ids: list[str]) -> int:
    # A connection of its own: only committed rows are visible to it.
    async with database.engine.connect() as conn:
        query = select(func.count()).select_from(audit_events).where(audit_events.c.id.in_(ids))
        return int((await conn.execute(query)).scalar_one())


async def test_concurrent_requests_share_commits_and_each_waits_for_its_own(
    database: Database,
) -> None:
    writer = AuditWriter(Store(database), "sync")
    committed: list[int] = []

    async def request(n: int) -> None:
        events = [event(f"p{n}"), event(f"p{n}")]
        await writer.write(events)
        # The answer may go now: its events are committed.
        committed.append(await stored(database, [e["id"] for e in events]))

    await asyncio.gather(*(request(n) for n in range(40)))
    assert committed == [2] * 40
    assert 1 <= writer.commits < 40  # grouped: fewer transactions than requests
    async with database.engine.connect() as conn:
        total = (await conn.execute(select(func.count()).select_from(audit_events))).scalar_one()
    assert total == 80
    await writer.close()


async def test_a_failed_group_commit_fails_every_request_in_it(database: Database) -> None:
    writer = AuditWriter(Store(database), "sync")
    first = event("p1")
    await writer.write([first])
    # The same id again: the primary key refuses the transaction that carries it.
    results = await asyncio.gather(
        writer.write([{**first}]), writer.write([event("p2")]), return_exceptions=True
    )
    failures = [r for r in results if isinstance(r, Exception)]
    assert failures, results
    # Nothing is reported as recorded that is not: every success is committed.
    assert await stored(database, [first["id"]]) == 1
    # The writer goes on after a failure.
    later = event("p3")
    await writer.write([later])
    assert await stored(database, [later["id"]]) == 1
    await writer.close()


@pytest.mark.parametrize("requests", [1, 5])
async def test_close_commits_what_is_waiting(database: Database, requests: int) -> None:
    writer = AuditWriter(Store(database), "sync")
    events = [event(f"p{n}") for n in range(requests)]
    tasks = [asyncio.create_task(writer.write([e])) for e in events]
    await asyncio.sleep(0)
    await writer.close()
    await asyncio.gather(*tasks)
    assert await stored(database, [e["id"] for e in events]) == requests
