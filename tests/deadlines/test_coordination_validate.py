"""Every new resource kind of the loop, as the server returns it, passes ``fhir-validate``.

Referral ServiceRequest and its Task (answered, started, discharged), the note deadline Tasks
(met), the note's Communication, QuestionnaireResponse and score Observations, the format 1.1
Observations (hours worked) and shortfall Task, and the gateway's overdue notice as the owner
receives it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import select

from gateway.clock import ManualClock
from gateway.coordination import refresh_deadlines
from gateway.messaging import outbound, records
from gateway.participants.directory import ParticipantDirectory
from gateway.settings import Settings
from gateway.store.database import Database
from gateway.store.repository import Store
from gateway.store.schema import messages
from mappings.coordination import (
    STATUS_NOTE,
    Score,
    accepted,
    discharged,
    note_bundle,
    training_started,
)
from tests.deadlines.test_referral_loop import (
    JOBCENTRE,
    ORG,
    REHAB,
    _as_transaction,
    _refer,
    _refresh,
)
from tests.validate.conftest import Validation

WORKED = '<ArbejdetTimer uge="2026-W47" timer="15"/></DelvisRaskmelding>'


async def _notice(settings: Settings) -> dict[str, Any]:
    database = Database(settings.database_url)
    try:
        store = Store(database, fhir_base=settings.fhir_base)
        clock = ManualClock(datetime(2027, 6, 1, 10, tzinfo=UTC))
        await refresh_deadlines(store, settings, clock)
        async with store.read_connection() as conn:
            key = (
                await conn.execute(
                    select(messages.c.key).where(messages.c.sender == "gateway").limit(1)
                )
            ).scalar_one()
            record = await records.get_message(conn, key)
        assert record is not None
        owner = await ParticipantDirectory(database).get(JOBCENTRE)
        bundle = await outbound.render_for(store, settings, record, owner)
        assert bundle is not None
        return bundle
    finally:
        await database.dispose()


async def test_every_new_kind_passes_fhir_validate(
    as_: Any,
    settings: Settings,
    tmp_path: Path,
    fhir_validate: Callable[[list[Path]], Validation],
) -> None:
    jobcentre, _patient, task_ref = await _refer(as_)
    rehab = await as_(REHAB)
    kept: dict[str, Any] = {}
    task = (await rehab.get(task_ref)).json()
    kept["referral"] = (await rehab.get(task["focus"]["reference"])).json()
    task = (await rehab.put(task_ref, accepted(task, date(2026, 11, 30)))).json()
    task = (await rehab.put(task_ref, training_started(task, date(2026, 11, 30)))).json()
    await _refresh(settings, date(2026, 12, 1))
    [note_task] = [
        e["resource"]
        for e in (await rehab.get("Task", owner=ORG[REHAB], status="requested")).json()["entry"]
    ]
    note = note_bundle(
        STATUS_NOTE,
        task=f"Task/{note_task['id']}",
        cpr="1507791235",
        jobcentre=ORG[JOBCENTRE],
        rehab_unit=ORG[REHAB],
        written=date(2027, 1, 8),
        citizen_assessment="Bedre.",
        therapist_assessment="Bedre bevægelighed.",
        sessions_attended=11,
        sessions_offered=12,
        end=date(2027, 2, 26),
        scores=[Score(code, Decimal(3), Decimal(5)) for code in ("psfs", "rtw-self-efficacy")]
        + [
            Score("oswestry-odi", Decimal(40), Decimal(30)),
            Score("astrand-fitness", Decimal(28), Decimal(31)),
        ],
    )
    stored = await rehab.client.post(
        "/fhir", json=_as_transaction(note, task["for"]["reference"]), headers=rehab.headers
    )
    assert stored.status_code == 200, stored.text
    for entry in stored.json()["entry"]:
        location = entry["response"]["location"].split("/_history")[0]
        kept[location.replace("/", "-")] = (await rehab.get(location)).json()
    await _refresh(settings, date(2027, 1, 9))
    kept["status-note-met"] = (await jobcentre.get(f"Task/{note_task['id']}")).json()
    kept["referral-discharged"] = (
        await rehab.put(task_ref, discharged(task, date(2027, 2, 26)))
    ).json()
    # Format 1.1: hours worked below the plan (an Observation flagged, a Task).
    samples = Path(__file__).resolve().parents[3] / "shared" / "formats" / "samples"
    case = (samples / "jobcentre-case" / "sag-ole-aarhus.xml").read_text(encoding="utf-8")
    case = case.replace("2026-11-03T12:00:00+01:00", "2026-11-25T12:00:00+01:00")
    case = case.replace("</DelvisRaskmelding>", WORKED)
    loaded = await jobcentre.client.post(
        "/ingest/jobcentre-case",
        content=case.encode(),
        headers={**jobcentre.headers, "Content-Type": "application/xml"},
    )
    assert loaded.status_code in (200, 201), loaded.text
    for entry in loaded.json()["entry"]:
        resource = entry.get("resource") or {}
        if resource.get("resourceType") in ("Observation", "Task", "RiskAssessment"):
            kept[f"case-{resource['resourceType']}-{resource['id']}"] = resource
    assert any("hours-worked" in json.dumps(r) for r in kept.values())
    assert any(r.get("resourceType") == "RiskAssessment" for r in kept.values())
    kept["notice"] = await _notice(settings)

    files = []
    for name, resource in kept.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(resource, ensure_ascii=False), encoding="utf-8")
        files.append(path)
    result = fhir_validate(files)
    assert result.returncode == 0, result.output
