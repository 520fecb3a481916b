"""Time passes with no new export: a deadline turns overdue and its owner is told once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from gateway.clock import ManualClock
from gateway.coordination import notification_id, refresh_deadlines
from gateway.data.path import DataPath
from gateway.ingest.pipeline import ingest
from gateway.messaging import outbound, records
from gateway.participants.directory import ParticipantDirectory
from gateway.settings import Settings
from gateway.store.repository import Store
from gateway.store.schema import deliveries, messages

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "formats" / "samples"
OLE = (SAMPLES / "jobcentre-case" / "sag-ole-aarhus.xml").read_bytes()
DEADLINE = "http://brobygger.dk/fhir/CodeSystem/deadline"
# Ole's week-12 broad assessment is due 2026-11-23 (first day of absence 2026-09-01).
MAPPED = datetime(2026, 11, 20, 10, tzinfo=UTC)


async def _task(store: Store, code: str) -> dict[str, Any]:
    page = await DataPath.for_operator(store).search("Task", [("code", f"{DEADLINE}|{code}")])
    assert len(page.result.matches) == 1
    return page.result.matches[0]


def _business(task: dict[str, Any]) -> str | None:
    codings = (task.get("businessStatus") or {}).get("coding") or []
    return codings[0]["code"] if codings else None


async def _notices(store: Store) -> list[tuple[str, str, str]]:
    async with store.read_connection() as conn:
        rows = await conn.execute(
            select(messages.c.message_id, deliveries.c.receiver, deliveries.c.status)
            .join(deliveries, deliveries.c.message_key == messages.c.key)
            .where(messages.c.sender == "gateway")
        )
        return [tuple(r) for r in rows]


async def test_a_task_turns_overdue_without_an_export_and_the_owner_is_told_once(
    store: Store, settings: Settings
) -> None:
    await ingest(store, OLE, sender_participant=None, now=MAPPED)
    clock = ManualClock(MAPPED)
    task = await _task(store, "broad-assessment")
    assert task["status"] == "requested" and _business(task) is None

    # Still in time: nothing changes, nobody is told.
    report = await refresh_deadlines(store, settings, clock)
    assert report.checked >= 1 and not report.turned_overdue and not report.notified
    clock.set(datetime(2026, 11, 23, 22, 59, tzinfo=UTC))  # 23:59 in Denmark: the due day
    assert not (await refresh_deadlines(store, settings, clock)).turned_overdue

    clock.advance(timedelta(minutes=2))  # 2026-11-24 in Denmark
    report = await refresh_deadlines(store, settings, clock)
    ref = f"Task/{task['id']}"
    assert report.turned_overdue == [ref]
    assert report.notified == [(ref, "jobcenter-aarhus")]
    overdue = await _task(store, "broad-assessment")
    assert _business(overdue) == "overdue" and overdue["status"] == "requested"
    assert overdue["meta"]["source"] == task["meta"]["source"]  # the author stays
    assert overdue["meta"]["versionId"] == "2"

    # Again, and a week later: nothing more (idempotent), the owner told exactly once.
    clock.advance(timedelta(days=7))
    for _ in range(2):
        again = await refresh_deadlines(store, settings, clock)
        assert not again.turned_overdue and not again.notified
    notices = await _notices(store)
    assert notices == [(notification_id(task["id"], "2026-11-23"), "jobcenter-aarhus", "pending")]
    assert (await _task(store, "broad-assessment"))["meta"]["versionId"] == "2"

    # The notice reaches the owner with the Task in it, read through its own guarded path.
    async with store.read_connection() as conn:
        key = (
            await conn.execute(select(messages.c.key).where(messages.c.sender == "gateway"))
        ).scalar_one()
        record = await records.get_message(conn, key)
    assert record is not None
    owner = await ParticipantDirectory(store.database).get("jobcenter-aarhus")
    bundle = await outbound.render_for(store, settings, record, owner)
    assert bundle is not None
    shown = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Task"]
    assert [t["id"] for t in shown] == [task["id"]]
    # Nobody else gets it: the employer's view of the same record is withheld.
    employer = await ParticipantDirectory(store.database).get("lys-montage")
    assert await outbound.render_for(store, settings, record, employer) is None


async def test_a_met_deadline_is_never_overdue_and_two_runs_at_once_notify_once(
    store: Store, settings: Settings
) -> None:
    import asyncio

    await ingest(store, OLE, sender_participant=None, now=MAPPED)
    clock = ManualClock(datetime(2026, 12, 1, 10, tzinfo=UTC))
    reports = await asyncio.gather(
        refresh_deadlines(store, settings, clock), refresh_deadlines(store, settings, clock)
    )
    notified = [n for r in reports for n in r.notified]
    assert len(notified) == 1  # only the broad assessment is overdue on 2026-12-01
    first = await _task(store, "first-follow-up")
    assert first["status"] == "completed" and _business(first) == "met"
    async with store.read_connection() as conn:
        count = (
            await conn.execute(
                select(func.count()).select_from(messages).where(messages.c.sender == "gateway")
            )
        ).scalar_one()
    assert count == 1
