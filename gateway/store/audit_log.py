"""The audit trail: AuditEvents appended to their own table, read back as FHIR.

Appending is one multi-row insert inside the caller's transaction (so an event describing a
write commits with it). Events are never updated or deleted; each is version 1 for ever.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.search.dates import format_instant, utc_now
from gateway.store.schema import audit_events
from profiles import fhir_json


def patient_id_of(event: dict[str, Any]) -> str | None:
    for entity in event.get("entity", []):
        reference = str(entity.get("what", {}).get("reference", ""))
        if reference.startswith("Patient/"):
            return reference.split("/", 1)[1]
    return None


def _participant(event: dict[str, Any]) -> str:
    agents = event.get("agent") or [{}]
    return str(agents[0].get("who", {}).get("display", ""))[:64]


async def append(conn: AsyncConnection, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add ``events`` (with fresh ids) to the trail in the caller's transaction."""
    if not events:
        return []
    now = utc_now()
    stamp = format_instant(now)
    rows: list[dict[str, Any]] = []
    stored_all: list[dict[str, Any]] = []
    for event in events:
        meta = {**(event.get("meta") or {}), "versionId": "1", "lastUpdated": stamp}
        stored = {"resourceType": "AuditEvent", "id": event["id"], **event, "meta": meta}
        rows.append(
            {
                "id": event["id"],
                "recorded": now,
                "patient_id": patient_id_of(stored),
                "participant": _participant(stored),
                "outcome": str(stored.get("outcome", "")),
                "content": fhir_json.dumps(stored),
            }
        )
        stored_all.append(stored)
    await conn.execute(insert(audit_events), rows)
    return stored_all


@dataclass(slots=True)
class AuditQuery:
    """What the trail can be asked: by patient, time range, outcome, newest or oldest first."""

    patient_id: str | None = None
    recorded: list[ColumnElement[bool]] | None = None
    outcome: str | None = None
    newest_first: bool = True
    count: int = 50
    offset: int = 0


async def read(conn: AsyncConnection, event_id: str) -> dict[str, Any] | None:
    row = (
        await conn.execute(select(audit_events.c.content).where(audit_events.c.id == event_id))
    ).first()
    if row is None:
        return None
    content: dict[str, Any] = fhir_json.loads(row.content)
    return content


async def search(conn: AsyncConnection, query: AuditQuery) -> tuple[list[dict[str, Any]], int]:
    where: list[ColumnElement[bool]] = []
    if query.patient_id is not None:
        where.append(audit_events.c.patient_id == query.patient_id)
    if query.outcome is not None:
        where.append(audit_events.c.outcome == query.outcome)
    where += query.recorded or []
    total = int(
        (
            await conn.execute(select(func.count()).select_from(audit_events).where(*where))
        ).scalar_one()
    )
    order = (
        [audit_events.c.recorded.desc(), audit_events.c.id.desc()]
        if query.newest_first
        else [audit_events.c.recorded.asc(), audit_events.c.id.asc()]
    )
    rows = (
        await conn.execute(
            select(audit_events.c.content)
            .where(*where)
            .order_by(*order)
            .limit(query.count)
            .offset(query.offset)
        )
    ).all()
    return [fhir_json.loads(r.content) for r in rows], total


def recorded_between(low: datetime, high: datetime) -> list[ColumnElement[bool]]:
    return [audit_events.c.recorded >= low, audit_events.c.recorded < high]
