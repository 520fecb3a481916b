"""The rehabilitation ↔ job-centre loop end to end, over real sockets, on both stores.

The gateway runs under uvicorn on loopback with the receiving app as the endpoints of the
rehabilitation unit and the job centre (tests/messaging/test_flows.py's world). The job centre
refers Ole to the unit as a message; the unit accepts, starts training, sends the status note
at week 6 and the final note at discharge as messages, each answering its deadline Task; the
deadline job runs on a controllable clock (no sleeping); the caseworker's worklist shows the
note due and then met; the employer sees none of the scores.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from gateway.clock import ManualClock
from gateway.coordination import RefreshReport, refresh_deadlines
from gateway.settings import Settings
from gateway.store.database import Database
from gateway.store.repository import Store
from mappings.coordination import (
    FINAL_NOTE,
    STATUS_NOTE,
    Score,
    accepted,
    discharged,
    note_bundle,
    referral_bundle,
    training_started,
)
from tests.messaging.test_flows import (
    EMPLOYER,
    JOBCENTRE,
    OBSERVATION_CODE,
    OLE_CPR,
    REHAB,
    World,
    content_message,
    open_world,
)

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "formats" / "samples"
OLE_CASE = (SAMPLES / "jobcentre-case" / "sag-ole-aarhus.xml").read_bytes()
DEADLINE = "http://brobygger.dk/fhir/CodeSystem/deadline"
ORG = {name: f"Organization/org-{name}" for name in (JOBCENTRE, REHAB, EMPLOYER)}
FOLLOW_UP = "sickness-benefit-follow-up"
MESSAGE_BASE = "https://brobygger.dk/message"


def refresh(settings: Settings, day: date) -> RefreshReport:
    """One run of the deadline job on ``day`` (the gateway's worker runs the same code)."""

    async def run() -> RefreshReport:
        database = Database(settings.database_url)
        try:
            clock = ManualClock(datetime(day.year, day.month, day.day, 10, tzinfo=UTC))
            store = Store(database, fhir_base=settings.fhir_base)
            return await refresh_deadlines(store, settings, clock)
        finally:
            await database.dispose()

    return asyncio.run(run())


def as_content(collection: dict[str, Any]) -> list[dict[str, Any]]:
    """A collection's resources with ids, their urn:uuid references rewritten to the fullUrls
    ``build_message`` gives them (``{base}/{type}/{id}``)."""
    names: dict[str, str] = {}
    for entry in collection["entry"]:
        resource = entry["resource"]
        resource["id"] = str(uuid.uuid4())
        names[entry["fullUrl"]] = f"{MESSAGE_BASE}/{resource['resourceType']}/{resource['id']}"
    text = json.dumps([e["resource"] for e in collection["entry"]])
    for urn, url in names.items():
        text = text.replace(urn, url)
    content: list[dict[str, Any]] = json.loads(text)
    return content


def search(
    world: World, name: str, path: str, purpose: str | None = None, **params: Any
) -> list[dict[str, Any]]:
    response = world.fhir("GET", name, path, purpose=purpose, params=params)
    assert response.status_code == 200, response.text
    return [
        e["resource"] for e in response.json().get("entry", []) if e["search"]["mode"] == "match"
    ]


def send_note(world: World, kind: str, task: str, written: date, end: date, factor: int) -> None:
    note = note_bundle(
        kind,
        task=task,
        cpr=OLE_CPR,
        jobcentre=ORG[JOBCENTRE],
        rehab_unit=ORG[REHAB],
        written=written,
        citizen_assessment="Jeg kan mere end før og er mindre bange for at løfte.",
        therapist_assessment="Bedre bevægelighed; løfter 5 kg over skulderhøjde.",
        sessions_attended=10 * factor,
        sessions_offered=12 * factor,
        end=end,
        scores=[
            Score("psfs", Decimal(3), Decimal(4 + factor)),
            Score("oswestry-odi", Decimal(42), Decimal(34 - 6 * factor)),
            Score("rtw-self-efficacy", Decimal(4), Decimal(5 + factor)),
            Score("fear-avoidance", Decimal(22), Decimal(20 - 4 * factor)),
            Score("astrand-fitness", Decimal(28), Decimal(29 + 2 * factor)),
        ],
    )
    message = content_message(
        REHAB, JOBCENTRE, as_content(note), event="care-communication-message"
    )
    sent = world.send(REHAB, message)
    assert sent.code == "ok", sent.diagnostics()
    state = world.settled(REHAB, sent.header_id, (JOBCENTRE,))
    assert state[JOBCENTRE]["status"] == "acknowledged", state
    got = world.receiving.wait_for(JOBCENTRE, sent.header_id)
    [focus] = got.focus()
    assert focus["resourceType"] == "Communication"
    assert focus["basedOn"] == [{"reference": task}]
    scores = {
        c["code"]
        for o in got.resources("Observation")
        for c in o["code"]["coding"]
        if c["system"] == OBSERVATION_CODE
    }
    assert scores == {
        "psfs",
        "oswestry-odi",
        "rtw-self-efficacy",
        "fear-avoidance",
        "astrand-fitness",
    }


def caseworkers_notes(world: World, code: str, status: str) -> list[dict[str, Any]]:
    """The caseworker's worklist of notes it waits for (it requested them), soonest first."""
    return search(
        world,
        JOBCENTRE,
        "Task",
        requester=ORG[JOBCENTRE],
        code=f"{DEADLINE}|{code}",
        status=status,
        period="le2027-12-31",
        _sort="period",
    )


def test_refer_accept_train_notes_and_the_caseworkers_worklist(settings: Settings) -> None:
    with open_world(settings) as world:
        settings = world.gateway.settings
        # The job centre's case of Ole (its Patient) and Ole's consent for the follow-up.
        loaded = httpx.post(
            f"{world.base}/ingest/jobcentre-case",
            content=OLE_CASE,
            headers={**world.auth(JOBCENTRE), "Content-Type": "application/xml"},
            timeout=30,
        )
        assert loaded.status_code == 201, loaded.text
        patient = next(
            e["resource"]["patient"]["reference"]
            for e in loaded.json()["entry"]
            if e.get("resource", {}).get("resourceType") == "EpisodeOfCare"
        )
        consent = world.record_consent(
            JOBCENTRE, patient.split("/")[1], JOBCENTRE, FOLLOW_UP, labels=("rehab-progress",)
        )

        # 1. The referral travels as a message; the unit's system gets it at its endpoint.
        referral = referral_bundle(
            patient=patient,
            jobcentre=ORG[JOBCENTRE],
            rehab_unit=ORG[REHAB],
            reason="Skulder: træning mod løft over skulderhøjde",
            job_situation="Elektriker hos Lys & Montage, delvist sygemeldt",
            wanted_start=date(2026, 12, 14),
            consent=f"Consent/{consent}",
            authored=date(2026, 12, 7),
        )
        content = as_content({"entry": referral["entry"]})
        message = content_message(
            JOBCENTRE, REHAB, content, event="sickness-benefit-case", focus=content[:1]
        )
        sent = world.send(JOBCENTRE, message)
        assert sent.code == "ok", sent.diagnostics()
        assert world.settled(JOBCENTRE, sent.header_id, (REHAB,))[REHAB]["status"] == "acknowledged"
        got = world.receiving.wait_for(REHAB, sent.header_id)
        assert [r["resourceType"] for r in got.focus()] == ["ServiceRequest"]

        # 2. The unit's worklist has the referral; it accepts and starts training.
        [task] = search(world, REHAB, "Task", owner=ORG[REHAB], status="requested", _sort="period")
        assert task["restriction"]["period"]["end"] == "2026-12-21"
        task_ref = f"Task/{task['id']}"
        answer = world.fhir("PUT", REHAB, task_ref, json=accepted(task, date(2026, 12, 14)))
        assert answer.status_code == 200, answer.text
        answer = world.fhir(
            "PUT", REHAB, task_ref, json=training_started(answer.json(), date(2026, 12, 14))
        )
        assert answer.status_code == 200, answer.text
        started = answer.json()

        # 3. The deadline job: the status note is due six weeks after the start.
        assert len(refresh(settings, date(2026, 12, 15)).created) == 1
        [due] = caseworkers_notes(world, "status-note", "requested")
        assert due["restriction"]["period"]["end"] == "2027-01-25"
        assert "businessStatus" not in due

        # 4. Week 6: the unit sends the status note; the job marks the Task met.
        send_note(world, STATUS_NOTE, f"Task/{due['id']}", date(2027, 1, 22), date(2027, 3, 5), 1)
        report = refresh(settings, date(2027, 1, 23))
        assert report.met == [f"Task/{due['id']}"]
        assert caseworkers_notes(world, "status-note", "requested") == []
        [met] = caseworkers_notes(world, "status-note", "completed")
        assert met["businessStatus"]["coding"][0]["code"] == "met"
        assert met["output"][0]["valueReference"]["reference"].startswith("Communication/")

        # 5. Discharge: the final note is due that day, sent, met.
        answer = world.fhir("PUT", REHAB, task_ref, json=discharged(started, date(2027, 3, 5)))
        assert answer.status_code == 200, answer.text
        assert len(refresh(settings, date(2027, 3, 5)).created) == 1
        [final] = caseworkers_notes(world, "final-note", "requested")
        assert final["restriction"]["period"]["end"] == "2027-03-05"
        send_note(world, FINAL_NOTE, f"Task/{final['id']}", date(2027, 3, 5), date(2027, 3, 5), 2)
        assert refresh(settings, date(2027, 3, 6)).met == [f"Task/{final['id']}"]
        [met] = caseworkers_notes(world, "final-note", "completed")
        assert met["businessStatus"]["coding"][0]["code"] == "met"

        # The caseworker reads the scores (Ole's consent); start and end paired per scale.
        patient_id = patient.split("/")[1]
        scores = search(
            world,
            JOBCENTRE,
            "Observation",
            purpose=FOLLOW_UP,
            patient=patient_id,
            code=f"{OBSERVATION_CODE}|oswestry-odi",
        )
        assert sorted(o["valueQuantity"]["value"] for o in scores) == [22, 28]
        assert {o["component"][0]["valueQuantity"]["value"] for o in scores} == {42}
        assert {o["interpretation"][0]["coding"][0]["code"] for o in scores} == {"B"}

        # The employer sees none of it: no scores, notes or assessments, by any search.
        for path in ("Observation", "QuestionnaireResponse", "Communication", "Task"):
            assert search(world, EMPLOYER, path, patient=patient_id) == [], path
        assert search(world, EMPLOYER, "Observation", code=f"{OBSERVATION_CODE}|psfs") == []
        mailbox = world.mailbox(EMPLOYER)
        assert all("Observation" not in json.dumps(item.get("bundle", {})) for item in mailbox)
