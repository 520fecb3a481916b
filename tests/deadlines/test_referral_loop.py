"""The referral loop in one process: refer, answer, start, note, discharge — under consent.

The job centre refers Ole to the rehabilitation unit (ServiceRequest + Task); the unit answers
on the Task (rule task-owner), starts training, and the deadline job gives the status note its
due date; the note (a Communication answering the Task, a QuestionnaireResponse, the scores)
completes it. Over real sockets and as messages: tests/deadlines/test_loop_live.py.
"""

from __future__ import annotations

import asyncio
import copy
import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gateway.cli import app as cli
from gateway.clock import ManualClock
from gateway.coordination import refresh_deadlines
from gateway.data.path import DataPath
from gateway.settings import Settings
from gateway.store.database import Database
from gateway.store.repository import Store
from mappings.coordination import (
    STATUS_NOTE,
    Score,
    accepted,
    declined,
    discharged,
    note_bundle,
    referral_bundle,
    training_course,
    training_started,
    waiting_days,
    waiting_time,
)
from tests.consent.consent_builders import actor_org, consent, provision

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "formats" / "samples"
OLE = (SAMPLES / "jobcentre-case" / "sag-ole-aarhus.xml").read_bytes()
JOBCENTRE, REHAB, EMPLOYER = "jobcenter-aarhus", "aarhus-genoptraening", "lys-montage"
ORG = {name: f"Organization/org-{name}" for name in (JOBCENTRE, REHAB, EMPLOYER)}
DEADLINE = "http://brobygger.dk/fhir/CodeSystem/deadline"


async def _refer(as_: Any) -> tuple[Any, str, str]:
    """Ole's case loaded, his consent recorded, the referral sent: (job centre, patient, Task)."""
    jobcentre = await as_(JOBCENTRE)
    loaded = await jobcentre.client.post(
        "/ingest/jobcentre-case",
        content=OLE,
        headers={**jobcentre.headers, "Content-Type": "application/xml"},
    )
    assert loaded.status_code == 201, loaded.text
    patient = next(
        e["resource"]["patient"]["reference"]
        for e in loaded.json()["entry"]
        if e.get("resource", {}).get("resourceType") == "EpisodeOfCare"
    )
    body = consent(
        "x",
        patient=patient,
        date_time="2026-11-20T09:00:00+01:00",
        top=provision(
            actors=[actor_org(JOBCENTRE)],
            purposes=("sickness-benefit-follow-up",),
            labels=("rehab-plan", "rehab-progress"),
        ),
    )
    body.pop("id")
    consent_id = await jobcentre.created(body)
    referral = referral_bundle(
        patient=patient,
        jobcentre=ORG[JOBCENTRE],
        rehab_unit=ORG[REHAB],
        reason="Skulderen: træning mod løft over skulderhøjde",
        job_situation="Elektriker, delvist sygemeldt 15 timer om ugen",
        wanted_start=date(2026, 12, 1),
        consent=f"Consent/{consent_id}",
        authored=date(2026, 11, 20),
    )
    answer = await jobcentre.client.post("/fhir", json=referral, headers=jobcentre.headers)
    assert answer.status_code == 200, answer.text
    task = next(
        e["response"]["location"].split("/_history")[0]
        for e in answer.json()["entry"]
        if e["response"]["location"].startswith("Task/")
    )
    return jobcentre, patient, task


async def _refresh(settings: Settings, day: date) -> Any:
    database = Database(settings.database_url)
    try:
        store = Store(database, fhir_base=settings.fhir_base)
        clock = ManualClock(datetime(day.year, day.month, day.day, 10, tzinfo=UTC))
        return await refresh_deadlines(store, settings, clock)
    finally:
        await database.dispose()


def _as_transaction(collection: dict[str, Any], patient: str) -> dict[str, Any]:
    """The note as a REST transaction, about the Patient the unit knows from the referral."""
    urn = next(
        e["fullUrl"] for e in collection["entry"] if e["resource"]["resourceType"] == "Patient"
    )
    text = json.dumps(collection).replace(urn, patient)
    bundle = json.loads(text)
    bundle["type"] = "transaction"
    bundle["entry"] = [e for e in bundle["entry"] if e["resource"]["resourceType"] != "Patient"]
    for entry in bundle["entry"]:
        entry["request"] = {"method": "POST", "url": entry["resource"]["resourceType"]}
    return bundle


async def test_refer_accept_start_note_discharge(
    as_: Any, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobcentre, patient, task_ref = await _refer(as_)
    rehab = await as_(REHAB)
    employer = await as_(EMPLOYER)

    # The unit's worklist has the referral, due 14 days after it was sent.
    worklist = await rehab.get("Task", owner=ORG[REHAB], status="requested", _sort="period")
    tasks = [e["resource"] for e in worklist.json()["entry"]]
    assert [t["restriction"]["period"]["end"] for t in tasks] == ["2026-12-04"]
    task = tasks[0]
    request = (await rehab.get(task["focus"]["reference"])).json()
    assert request["supportingInfo"][0]["reference"].startswith("Consent/")
    assert (await employer.get(task_ref)).status_code == 404

    # Accepted, with the planned start; then training starts.
    response = await rehab.put(task_ref, accepted(task, date(2026, 11, 30)))
    assert response.status_code == 200, response.text
    assert response.json()["meta"]["source"] == task["meta"]["source"]  # still the job centre's
    response = await rehab.put(task_ref, training_started(response.json(), date(2026, 11, 30)))
    assert response.status_code == 200, response.text
    started = response.json()
    assert waiting_days(date.fromisoformat(request["authoredOn"]), date(2026, 11, 30)) == 10

    # The job centre sees the answer on its own Task.
    seen = (await jobcentre.get(task_ref)).json()
    assert seen["status"] == "in-progress" and seen["executionPeriod"]["start"] == "2026-11-30"

    # The deadline job gives the status note its day: six weeks after the start.
    report = await _refresh(settings, date(2026, 12, 1))
    assert len(report.created) == 1
    assert not (await _refresh(settings, date(2026, 12, 2))).created  # once
    waiting = await jobcentre.get(
        "Task",
        requester=ORG[JOBCENTRE],
        code=f"{DEADLINE}|status-note",
        status="requested",
        period="le2027-01-31",
        _sort="period",
    )
    notes = [e["resource"] for e in waiting.json()["entry"]]
    assert [n["restriction"]["period"]["end"] for n in notes] == ["2027-01-11"]
    note_task = notes[0]
    owned = await rehab.get("Task", owner=ORG[REHAB], code=f"{DEADLINE}|status-note")
    assert [e["resource"]["id"] for e in owned.json()["entry"]] == [note_task["id"]]

    # The note answers it: the Task is met; the scores reach the caseworker, never the employer.
    note = note_bundle(
        STATUS_NOTE,
        task=f"Task/{note_task['id']}",
        cpr="1507791235",
        jobcentre=ORG[JOBCENTRE],
        rehab_unit=ORG[REHAB],
        written=date(2027, 1, 8),
        citizen_assessment="Jeg kan løfte mere og sover bedre.",
        therapist_assessment="Bedre bevægelighed; løft over skulderhøjde med 5 kg.",
        sessions_attended=11,
        sessions_offered=12,
        end=date(2027, 2, 26),
        scores=[
            Score("psfs", Decimal(3), Decimal(6)),
            Score("oswestry-odi", Decimal(42), Decimal(28)),
            Score("fear-avoidance", Decimal(18), Decimal(21)),
        ],
    )
    sent = await rehab.client.post(
        "/fhir", json=_as_transaction(note, task["for"]["reference"]), headers=rehab.headers
    )
    assert sent.status_code == 200, sent.text
    report = await _refresh(settings, date(2027, 1, 9))
    assert report.met == [f"Task/{note_task['id']}"]
    met = (await jobcentre.get(f"Task/{note_task['id']}")).json()
    assert met["status"] == "completed"
    assert met["businessStatus"]["coding"][0]["code"] == "met"
    patient_id = patient.split("/")[1]
    caseworker = await as_(JOBCENTRE, "sickness-benefit-follow-up")
    scores = (await caseworker.get("Observation", patient=patient_id)).json()
    codes = sorted(
        e["resource"]["code"]["coding"][0]["code"]
        for e in scores.get("entry", [])
        if e["resource"]["meta"]["security"][0]["code"] == "rehab-progress"
    )
    assert codes == ["fear-avoidance", "oswestry-odi", "psfs"]
    for path in ("Observation", "QuestionnaireResponse", "Communication"):
        hidden = await employer.get(path, patient=patient_id)
        assert hidden.status_code == 200 and not hidden.json().get("entry"), path

    # Discharge: the final note falls due that day.
    response = await rehab.put(task_ref, discharged(started, date(2027, 2, 26)))
    assert response.status_code == 200, response.text
    report = await _refresh(settings, date(2027, 2, 26))
    assert len(report.created) == 1
    final = await jobcentre.get("Task", requester=ORG[JOBCENTRE], code=f"{DEADLINE}|final-note")
    assert [e["resource"]["restriction"]["period"]["end"] for e in final.json()["entry"]] == [
        "2027-02-26"
    ]
    # The same from the command line: what the caseworker waits for, what the unit owes.
    monkeypatch.setenv("BROBYGGER_DATABASE_URL", settings.database_url)
    runner = CliRunner()
    for args in (
        ["worklist", "--as", JOBCENTRE, "--waiting", "--on", "2027-02-27"],
        ["worklist", "--as", REHAB, "--overdue", "--on", "2027-02-27"],
    ):
        shown = await asyncio.to_thread(runner.invoke, cli, args)
        assert shown.exit_code == 0, shown.output
        assert "final-note" in shown.output and "overdue" in shown.output
        assert "status-note" not in shown.output  # met, no longer open


@pytest.mark.parametrize(
    "change",
    [
        "owner",
        "label",
        "free-text-reason",
        "note",
        "for",
    ],
)
async def test_the_owner_changes_only_the_fulfilment(as_: Any, change: str) -> None:
    _, _, task_ref = await _refer(as_)
    rehab = await as_(REHAB)
    task = (await rehab.get(task_ref)).json()
    changed = copy.deepcopy(task)
    if change == "owner":
        changed["owner"] = {"reference": ORG[EMPLOYER]}
    elif change == "label":
        changed["meta"]["security"].append(
            {
                "system": "http://brobygger.dk/fhir/CodeSystem/data-category",
                "code": "employment-relevant",
            }
        )
    elif change == "free-text-reason":
        changed["status"] = "rejected"
        changed["statusReason"] = {"text": "diagnose: depression"}
    elif change == "note":
        changed["note"] = [{"text": "fri tekst"}]
    else:
        changed["for"] = {"reference": "Patient/someone-else"}
    response = await rehab.put(task_ref, changed)
    assert response.status_code in (403, 404), response.text
    assert (await rehab.get(task_ref)).json()["meta"]["versionId"] == task["meta"]["versionId"]


async def test_a_declined_referral(as_: Any, settings: Settings) -> None:
    jobcentre, _, task_ref = await _refer(as_)
    rehab = await as_(REHAB)
    task = (await rehab.get(task_ref)).json()
    response = await rehab.put(task_ref, declined(task, "no-capacity"))
    assert response.status_code == 200, response.text
    seen = (await jobcentre.get(task_ref)).json()
    assert seen["status"] == "rejected"
    assert seen["statusReason"]["coding"][0]["code"] == "no-capacity"
    employer = await as_(EMPLOYER)
    assert (await employer.get(task_ref)).status_code == 404
    # The unit wrote the job centre's Task: a Provenance names it as the last writer.
    database = Database(settings.database_url)
    try:
        page = await DataPath.for_operator(Store(database, fhir_base=settings.fhir_base)).search(
            "Provenance", [("target", f"{task_ref}/_history/2")]
        )
    finally:
        await database.dispose()
    [provenance] = page.result.matches
    assert provenance["agent"][0]["who"]["reference"] == ORG[REHAB]
    # Answered: never overdue, however late it gets.
    report = await _refresh(settings, date(2027, 6, 1))
    assert task_ref not in report.turned_overdue


async def test_training_on_a_hospital_plan_gives_its_waiting_time(as_: Any) -> None:
    hospital = await as_("auh-ortopaedi")
    plan = (SAMPLES / "rehab-plan" / "ggop-shoulder-electrician.xml").read_bytes()
    stored = await hospital.client.post(
        "/ingest/rehab-plan",
        content=plan,
        headers={**hospital.headers, "Content-Type": "application/xml"},
    )
    assert stored.status_code == 201, stored.text
    rehab = await as_(REHAB)
    [request] = [
        e["resource"] for e in (await rehab.get("ServiceRequest", intent="plan")).json()["entry"]
    ]
    started = date.fromisoformat(request["authoredOn"][:10]) + timedelta(days=9)
    course = training_course(
        plan=f"ServiceRequest/{request['id']}",
        patient=request["subject"]["reference"],
        unit=ORG[REHAB],
        started=started,
    )
    created = await rehab.post("Task", course)
    assert created.status_code == 201, created.text
    assert waiting_time(request, created.json()) == 9
    # The hospital's plan stays the hospital's: the unit's record is its own Task.
    assert created.json()["meta"]["source"].endswith(REHAB)


async def test_only_the_owners_note_meets_its_deadline(as_: Any, settings: Settings) -> None:
    _, _, task_ref = await _refer(as_)
    rehab = await as_(REHAB)
    task = (await rehab.get(task_ref)).json()
    answered = await rehab.put(task_ref, training_started(task, date(2026, 11, 30)))
    assert answered.status_code == 200, answered.text
    await _refresh(settings, date(2026, 12, 1))
    owned = await rehab.get("Task", owner=ORG[REHAB], code=f"{DEADLINE}|status-note")
    [note_task] = [e["resource"] for e in owned.json()["entry"]]
    # Someone else (a GP clinic) writes a Communication claiming to answer it: not the owner's.
    forged = {
        "resourceType": "Communication",
        "status": "completed",
        "basedOn": [{"reference": f"Task/{note_task['id']}"}],
        "sent": "2026-12-20",
    }
    gp = await as_("laegerne-soendergade")
    assert (await gp.post("Communication", forged)).status_code == 201
    report = await _refresh(settings, date(2026, 12, 21))
    assert report.met == []
    still = (await rehab.get(f"Task/{note_task['id']}")).json()
    assert still["status"] == "requested"
