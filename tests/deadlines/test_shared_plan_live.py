"""The shared plan end to end, over real sockets, with the demo participants, on both stores.

The job centre creates Ole's plan and names the coordinator; the rehabilitation unit and the GP
add their activities; after Ole's consent for the round-table meeting the employer proposes
the gradual-return steps and reports hours (a shortfall becomes the coordinator's Task); the
round table records its outcome; the changes are pushed to the parties; the citizen portal
reads the plan in plain Danish and adds a goal. Every read asserts what the reader may see:
the employer never gets a Condition, a diagnosis code or a health goal, by any door.
"""

from __future__ import annotations

import asyncio
import json
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from consent import DIAGNOSIS_SYSTEMS
from gateway.coordination.plan import PushReport, push_plan_changes
from gateway.settings import Settings
from gateway.store.database import Database
from gateway.store.repository import Store
from mappings.coordination import (
    Member,
    Step,
    gradual_return_proposal,
    hours_report_bundle,
    plan_activity,
    plan_goal,
    plan_note,
    shared_plan_bundle,
)
from tests.messaging.test_flows import (
    EMPLOYER,
    JOBCENTRE,
    OLE_CPR,
    REHAB,
    World,
    brobygger,
    open_world,
)

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "formats" / "samples"
OLE_CASE = (SAMPLES / "jobcentre-case" / "sag-ole-aarhus.xml").read_bytes()
GP = "laegerne-soendergade"
PORTAL = "borger-portal"
ORG = {name: f"Organization/org-{name}" for name in (JOBCENTRE, REHAB, EMPLOYER, GP)}
PLAN_SYSTEM = "http://brobygger.dk/fhir/CodeSystem/coordination-plan"
DEADLINE = "http://brobygger.dk/fhir/CodeSystem/deadline"
FOLLOW_UP = "sickness-benefit-follow-up"
ROUND_TABLE = "round-table-meeting"
EMPLOYER_SCOPE = (
    "system/*.read system/CarePlan.write system/Observation.write "
    "system/Communication.write system/Task.write"
)


def push(settings: Settings) -> PushReport:
    async def run() -> PushReport:
        database = Database(settings.database_url)
        try:
            return await push_plan_changes(Store(database, fhir_base=settings.fhir_base), settings)
        finally:
            await database.dispose()

    return asyncio.run(run())


class Party:
    """One participant's REST client on the live gateway."""

    def __init__(self, world: World, token: str) -> None:
        self.world, self.token = world, token

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/fhir+json"}
        headers.update(kwargs.pop("headers", {}))
        return httpx.request(
            method, f"{self.world.gateway.fhir_base}/{path}", headers=headers, timeout=30, **kwargs
        )

    def created(self, resource: dict[str, Any]) -> str:
        response = self.call("POST", resource["resourceType"], json=resource)
        assert response.status_code == 201, response.text
        return f"{resource['resourceType']}/{response.json()['id']}"

    def transaction(self, bundle: dict[str, Any]) -> list[str]:
        response = self.call("POST", "", json=bundle)
        assert response.status_code == 200, response.text
        return [
            "/".join(e["response"]["location"].split("/")[:2]) for e in response.json()["entry"]
        ]

    def search(self, path: str, **params: Any) -> list[dict[str, Any]]:
        response = self.call("GET", path, params=params)
        assert response.status_code == 200, response.text
        return [e["resource"] for e in response.json().get("entry", [])]

    def summary(self, plan: str) -> tuple[str, list[dict[str, Any]]]:
        response = self.call("GET", f"{plan}/$summary")
        assert response.status_code == 200, response.text
        parameters = response.json()
        assert parameters["resourceType"] == "Parameters"
        text = next(p["valueString"] for p in parameters["parameter"] if p["name"] == "summary")
        parts = [p["resource"] for p in parameters["parameter"] if p["name"] == "part"]
        return text, parts


def goal_kinds(resources: list[dict[str, Any]]) -> set[str]:
    return {
        c["code"]
        for r in resources
        if r["resourceType"] == "Goal"
        for cat in r.get("category", [])
        for c in cat.get("coding", [])
        if c["system"] == PLAN_SYSTEM
    }


def assert_no_health_data(resources: list[dict[str, Any]]) -> None:
    """What an employer may never get: a Condition, a diagnosis code, a health goal, a
    reason (the diagnosis), or anything not employment-relevant."""
    text = json.dumps(resources)
    assert all(system not in text for system in DIAGNOSIS_SYSTEMS)
    for resource in resources:
        kind = resource["resourceType"]
        assert kind != "Condition"
        assert not {"reasonCode", "reasonReference", "addresses"} & set(resource), kind
        if kind in ("Patient", "Organization", "Bundle"):
            continue
        labels = {s["code"] for s in resource.get("meta", {}).get("security", [])}
        assert "employment-relevant" in labels, (kind, labels)
    assert "health-goal" not in goal_kinds(resources)
    assert "rehab-progress" not in text and "medical-statement" not in text


def test_the_shared_plan_from_creation_to_the_citizens_own_goal(settings: Settings) -> None:
    with open_world(settings) as world:
        settings = world.gateway.settings
        jc = Party(world, world.token(JOBCENTRE, FOLLOW_UP))
        unit = Party(world, world.token(REHAB))
        gp = Party(world, world.token(GP))
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
        ole = patient.split("/")[1]
        world.record_consent(
            JOBCENTRE,
            ole,
            JOBCENTRE,
            FOLLOW_UP,
            labels=("rehab-progress", "medical-statement", "employment-relevant"),
        )

        # 1. The job centre creates the plan (first follow-up) and names the coordinator.
        members = [
            Member("coordinator", ORG[JOBCENTRE], JOBCENTRE, "Mette Holm", "+4589402000"),
            Member("caseworker", ORG[JOBCENTRE], JOBCENTRE, "Mette Holm", "+4589402000"),
            Member("therapist", ORG[REHAB], REHAB, "Fysioterapeut Jens Bak"),
            Member("gp", ORG[GP], GP, "Læge Hanne Dahl"),
        ]
        team, plan = jc.transaction(
            shared_plan_bundle(
                patient=patient, jobcentre=ORG[JOBCENTRE], members=members, start=date(2026, 10, 22)
            )
        )
        assert team.startswith("CareTeam/") and plan.startswith("CarePlan/")
        work_goal = jc.created(
            plan_goal(
                plan=plan,
                patient=patient,
                kind="work-goal",
                text="Tilbage som elektriker 30 timer om ugen",
                start=date(2026, 10, 22),
                due=date(2027, 2, 1),
                measure="timer arbejdet pr. uge",
                measured_by=ORG[JOBCENTRE],
                addressees=(REHAB, GP),
            )
        )

        # 2. The rehabilitation unit and the GP add their own activities (and the unit a
        # health goal); neither may touch the other's.
        unit_task = unit.created(
            plan_activity(
                plan=plan,
                patient=patient,
                owner=ORG[REHAB],
                coordinator=ORG[JOBCENTRE],
                text="Genoptræning af skulderen to gange om ugen",
                due=date(2027, 1, 25),
                authored=date(2026, 11, 2),
                labels=("rehab-progress",),
            )
        )
        health_goal = unit.created(
            plan_goal(
                plan=plan,
                patient=patient,
                kind="health-goal",
                text="Løfte 5 kg over skulderhøjde",
                start=date(2026, 11, 2),
                due=date(2027, 1, 25),
                measure="PSFS",
                addressees=(JOBCENTRE,),
            )
        )
        gp_task = gp.created(
            plan_activity(
                plan=plan,
                patient=patient,
                owner=ORG[GP],
                coordinator=ORG[JOBCENTRE],
                text="Statusattest (LÆ 125) om prognosen",
                due=date(2026, 12, 1),
                authored=date(2026, 11, 3),
                labels=("medical-statement",),
            )
        )
        # The coordinator's own activity refers to the case's week-12 deadline Task.
        [week12] = jc.search("Task", patient=ole, code=f"{DEADLINE}|broad-assessment")
        own_task = jc.created(
            plan_activity(
                plan=plan,
                patient=patient,
                owner=ORG[JOBCENTRE],
                coordinator=ORG[JOBCENTRE],
                text="Opfølgningssamtale i uge 12 med vurdering af arbejdsevnen",
                due=date(2026, 11, 23),
                authored=date(2026, 10, 22),
                labels=("sickness-benefit-case",),
                refers_to=(f"Task/{week12['id']}",),
            )
        )
        current = gp.call("GET", unit_task)
        assert current.status_code == 404  # health → health: not addressed to the GP
        meddling = unit.call("GET", gp_task)
        assert meddling.status_code == 404
        refused = gp.call(
            "POST",
            "Task",
            json=plan_activity(
                plan=plan,
                patient=patient,
                owner=ORG[REHAB],
                coordinator=ORG[JOBCENTRE],
                text="x",
                due=date(2027, 1, 1),
                authored=date(2026, 11, 3),
                labels=("rehab-progress",),
            ),
        )
        assert refused.status_code == 403, refused.text
        assert "its own activities of the plan" in refused.text

        # The coordinator sees the whole plan under Ole's consent; the parties their part.
        text, parts = jc.summary(plan)
        seen = {f"{p['resourceType']}/{p['id']}" for p in parts}
        assert {plan, team, work_goal, health_goal, unit_task, gp_task, own_task} <= seen
        [own] = [p for p in parts if f"Task/{p['id']}" == own_task]
        assert own["focus"] == {"reference": f"Task/{week12['id']}"}
        assert "Tovholder: Mette Holm" in text and "Statusattest" in text
        _, unit_parts = unit.summary(plan)
        unit_seen = {f"{p['resourceType']}/{p['id']}" for p in unit_parts}
        assert {plan, team, work_goal, health_goal, unit_task} <= unit_seen
        assert gp_task not in unit_seen

        # 3. Before Ole's consent the employer sees nothing of the plan, by any door.
        employer = Party(world, world.gateway.token(EMPLOYER, EMPLOYER_SCOPE, purpose=ROUND_TABLE))
        assert employer.call("GET", f"{plan}/$summary").status_code == 404
        assert employer.search("CarePlan", patient=ole) == []
        assert employer.search("Goal", patient=ole) == []
        hidden = employer.call(
            "POST",
            "CarePlan",
            json=gradual_return_proposal(
                plan=plan,
                patient=patient,
                employer=ORG[EMPLOYER],
                coordinator_participant=JOBCENTRE,
                steps=[Step(date(2026, 12, 7), date(2026, 12, 20), Decimal(12))],
                written=date(2026, 12, 1),
            ),
        )
        assert hidden.status_code in (403, 404, 422), hidden.text

        # 4. Ole consents to the round-table meeting; the job centre adds the employer contact.
        world.record_consent(JOBCENTRE, ole, EMPLOYER, ROUND_TABLE, labels=("employment-relevant",))
        care_team = jc.call("GET", team).json()
        care_team["participant"].append(
            {
                "role": [{"coding": [{"system": PLAN_SYSTEM, "code": "employer-contact"}]}],
                "member": {"reference": ORG[EMPLOYER], "display": "Værkfører Per Lund"},
            }
        )
        assert jc.call("PUT", team, json=care_team).status_code == 200

        proposal = gradual_return_proposal(
            plan=plan,
            patient=patient,
            employer=ORG[EMPLOYER],
            coordinator_participant=JOBCENTRE,
            steps=[
                Step(
                    date(2026, 12, 7),
                    date(2026, 12, 20),
                    Decimal(12),
                    ("mon", "wed", "fri"),
                    ("08:00-12:00",),
                    "lette el-opgaver i værkstedet",
                    "hæve-sænkebord",
                ),
                Step(
                    date(2026, 12, 21),
                    date(2027, 1, 31),
                    Decimal(20),
                    ("mon", "tue", "wed", "thu", "fri"),
                    ("08:00-12:00",),
                    "montage i gulvhøjde",
                    "lift",
                ),
            ],
            written=date(2026, 12, 1),
        )
        proposed = employer.created(proposal)
        offer = employer.created(
            plan_note(
                kind="employer-offer",
                plan=plan,
                patient=patient,
                sender=ORG[EMPLOYER],
                text="Vi tilbyder en lift og opgaver i værkstedet",
                sent=date(2026, 12, 1),
                addressees=(JOBCENTRE,),
            )
        )
        visit = employer.created(
            plan_note(
                kind="workplace-visit",
                plan=plan,
                patient=patient,
                sender=ORG[EMPLOYER],
                text="Besøg 3/12: værkstedet indrettet med hæve-sænkebord",
                sent=date(2026, 12, 3),
                addressees=(JOBCENTRE,),
            )
        )
        reported = employer.transaction(
            hours_report_bundle(
                gradual_return_plan=proposed,
                proposal=proposal,
                plan=plan,
                patient=patient,
                employer=ORG[EMPLOYER],
                coordinator=ORG[JOBCENTRE],
                coordinator_participant=JOBCENTRE,
                week="2026-W50",
                hours=Decimal(8),
                today=date(2026, 12, 15),
            )
        )
        assert [r.split("/")[0] for r in reported] == ["Observation", "Task"]
        [shortfall] = jc.search(
            "Task",
            owner=ORG[JOBCENTRE],
            code=f"{DEADLINE}|gradual-return-shortfall",
            **{"based-on": plan},
        )
        assert shortfall["restriction"]["period"]["end"] == "2026-12-20"
        [hours] = jc.search(
            "Observation",
            patient=ole,
            code="http://brobygger.dk/fhir/CodeSystem/observation-code|hours-worked",
            _sort="-date",
        )[:1]
        assert hours["valueQuantity"]["value"] == 8
        assert hours["interpretation"][0]["coding"][0]["code"] == "L"

        # 5. The round table records its outcome: a new work goal and an employer activity,
        # sent to every participant (pushed, each rendered under consent).
        new_goal, new_task, outcome = jc.transaction(
            {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [
                    {
                        "fullUrl": "urn:uuid:4a0c6a57-0d8b-4c39-8f55-6d4a1b9f0001",
                        "request": {"method": "POST", "url": "Goal"},
                        "resource": plan_goal(
                            plan=plan,
                            patient=patient,
                            kind="work-goal",
                            text="Fuld tid i uge 10",
                            start=date(2026, 12, 10),
                            due=date(2027, 3, 8),
                            measure="timer arbejdet pr. uge",
                            measured_by=ORG[EMPLOYER],
                            addressees=(REHAB, GP),
                        ),
                    },
                    {
                        "fullUrl": "urn:uuid:4a0c6a57-0d8b-4c39-8f55-6d4a1b9f0002",
                        "request": {"method": "POST", "url": "Task"},
                        "resource": plan_activity(
                            plan=plan,
                            patient=patient,
                            owner=ORG[EMPLOYER],
                            coordinator=ORG[JOBCENTRE],
                            text="Arbejdspladsbesøg med terapeuten",
                            due=date(2027, 1, 8),
                            authored=date(2026, 12, 10),
                            labels=("sickness-benefit-case", "employment-relevant"),
                        ),
                    },
                    {
                        "fullUrl": "urn:uuid:4a0c6a57-0d8b-4c39-8f55-6d4a1b9f0003",
                        "request": {"method": "POST", "url": "Communication"},
                        "resource": plan_note(
                            kind="round-table-outcome",
                            plan=plan,
                            patient=patient,
                            sender=ORG[JOBCENTRE],
                            text="Aftalt: optrapning efter forslaget; fuld tid i uge 10.",
                            sent=date(2026, 12, 10),
                            recipients=(ORG[REHAB], ORG[GP]),
                            changes=(
                                "urn:uuid:4a0c6a57-0d8b-4c39-8f55-6d4a1b9f0001",
                                "urn:uuid:4a0c6a57-0d8b-4c39-8f55-6d4a1b9f0002",
                            ),
                        ),
                    },
                ],
            }
        )
        report = push(settings)
        again = push(settings)
        assert again.notices == []  # each version is announced once
        told = {(part.split("@")[0], who) for part, who in report.notices}
        assert (outcome, EMPLOYER) in told and (outcome, REHAB) in told
        assert (health_goal, JOBCENTRE) in told
        assert all(who != REHAB for part, who in told if part == health_goal)  # its author

        # 6. What the employer sees, by every door: work goals and its own steps, no health.
        text, parts = employer.summary(plan)
        employer_seen = {f"{p['resourceType']}/{p['id']}" for p in parts}
        assert {
            plan,
            work_goal,
            new_goal,
            proposed,
            new_task,
            outcome,
            offer,
            visit,
        } <= employer_seen
        assert own_task not in employer_seen  # the job centre's own, not about work
        assert not {team, health_goal, unit_task, gp_task} & employer_seen
        assert_no_health_data(parts)
        assert "Genoptræning" not in text and "Statusattest" not in text and "PSFS" not in text
        reads: list[dict[str, Any]] = []
        reads += employer.search(
            "CarePlan", patient=ole, _include="CarePlan:care-team", _revinclude="Task:based-on"
        )
        reads += employer.search("Goal", patient=ole)
        reads += employer.search("CareTeam", patient=ole)
        reads += employer.search("Task", patient=ole, _include="Task:focus")
        reads += employer.search("Condition", patient=ole)
        reads += employer.search("Communication", **{"based-on": plan})
        reads += employer.search(f"Patient/{ole}/$everything")
        reads += employer.search("CarePlan/_history")
        reads += employer.search("Goal/_history")
        for ref in (health_goal, team, unit_task, gp_task):
            assert employer.call("GET", ref).status_code == 404, ref
            assert employer.call("GET", f"{ref}/_history").status_code == 404, ref
        assert {
            f"{r['resourceType']}/{r['id']}" for r in reads if r["resourceType"] != "Patient"
        } >= {plan, work_goal}
        assert_no_health_data(reads)
        for item in world.mailbox(EMPLOYER):
            assert_no_health_data(
                [
                    e["resource"]
                    for e in item.get("bundle", {}).get("entry", [])
                    if e["resource"]["resourceType"] not in ("MessageHeader", "Provenance")
                ]
            )

        # 7. The citizen portal reads the plan in plain Danish and adds a goal of its own.
        portal = Party(
            world,
            world.gateway.token(
                PORTAL,
                "patient/*.read patient/Goal.write",
                purpose="citizen-access",
                patient=patient,
            ),
        )
        text, parts = portal.summary(plan)
        for heading in (
            "Hvor er jeg?",
            "Hvad sker der nu?",
            "Hvad forventes af mig?",
            "Dine rettigheder og pligter",
            "Hvem har ændret hvad",
        ):
            assert heading in text
        assert "Tovholder: Mette Holm" in text and "Genoptræning af skulderen" in text
        assert "jobcenter-aarhus" in text and "aarhus-genoptraening" in text  # who changed
        own = portal.created(
            plan_goal(
                plan=plan,
                patient=patient,
                kind="citizen-goal",
                text="Kunne løfte mit barnebarn",
                start=date(2026, 12, 12),
                labels=("rehab-progress",),
            )
        )
        assert own in {f"{p['resourceType']}/{p['id']}" for p in portal.summary(plan)[1]}
        assert own in {f"{p['resourceType']}/{p['id']}" for p in jc.summary(plan)[1]}
        assert own not in {f"{p['resourceType']}/{p['id']}" for p in employer.summary(plan)[1]}
        # The portal writes about nobody else, and changes nobody else's goal.
        other = plan_goal(
            plan=plan,
            patient="Patient/someone-else",
            kind="citizen-goal",
            text="x",
            start=date(2026, 12, 12),
        )
        assert portal.call("POST", "Goal", json=other).status_code in (403, 404)
        goal = jc.call("GET", work_goal).json()
        assert portal.call("PUT", work_goal, json=goal).status_code == 403

        # 8. The CLI prints the same views through each participant's own guarded path.
        shown = brobygger(world, "plan", "show", "--as", EMPLOYER, "--cpr", OLE_CPR)
        assert shown.returncode == 0, shown.stderr
        assert "Fuld tid i uge 10" in shown.stdout and "Genoptræning" not in shown.stdout
        assert "Statusattest" not in shown.stdout and "Løfte 5 kg" not in shown.stdout
        shown = brobygger(world, "plan", "show", "--as", JOBCENTRE, "--cpr", OLE_CPR)
        assert "Genoptræning af skulderen" in shown.stdout and "Kunne løfte" in shown.stdout
        shown = brobygger(world, "plan", "show", "--as", "roskilde-traening", "--cpr", OLE_CPR)
        assert shown.returncode == 1 and "sees no shared plan" in shown.stdout


def test_the_employer_reports_hours_by_message(settings: Settings) -> None:
    """The same facts as the REST report, sent as a message to the job centre."""
    from tests.deadlines.test_loop_live import as_content
    from tests.messaging.test_flows import content_message

    with open_world(settings) as world:
        jc = Party(world, world.token(JOBCENTRE, FOLLOW_UP))
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
        ole = patient.split("/")[1]
        world.record_consent(JOBCENTRE, ole, EMPLOYER, ROUND_TABLE, labels=("employment-relevant",))
        members = [Member("coordinator", ORG[JOBCENTRE], JOBCENTRE, "Mette Holm")]
        _, plan = jc.transaction(
            shared_plan_bundle(
                patient=patient, jobcentre=ORG[JOBCENTRE], members=members, start=date(2026, 10, 22)
            )
        )
        employer = Party(world, world.gateway.token(EMPLOYER, EMPLOYER_SCOPE, purpose=ROUND_TABLE))
        proposal = gradual_return_proposal(
            plan=plan,
            patient=patient,
            employer=ORG[EMPLOYER],
            coordinator_participant=JOBCENTRE,
            steps=[Step(date(2026, 12, 7), date(2026, 12, 20), Decimal(12))],
            written=date(2026, 12, 1),
        )
        proposed = employer.created(proposal)
        report = hours_report_bundle(
            gradual_return_plan=proposed,
            proposal=proposal,
            plan=plan,
            patient=patient,
            employer=ORG[EMPLOYER],
            coordinator=ORG[JOBCENTRE],
            coordinator_participant=JOBCENTRE,
            week="2026-W50",
            hours=Decimal(6),
            today=date(2026, 12, 15),
        )
        content = as_content({"entry": report["entry"]})
        message = content_message(
            EMPLOYER, JOBCENTRE, content, event="sickness-benefit-case", focus=content[:1]
        )
        world.tokens[EMPLOYER, None] = world.gateway.token(
            EMPLOYER, f"{EMPLOYER_SCOPE} system/Organization.write", purpose=ROUND_TABLE
        )
        sent = world.send(EMPLOYER, message)
        assert sent.code == "ok", sent.diagnostics()
        [hours] = jc.search("Observation", patient=ole, focus=proposed)
        assert hours["valueQuantity"]["value"] == 6
        shortfalls = jc.search(
            "Task", code=f"{DEADLINE}|gradual-return-shortfall", **{"based-on": plan}
        )
        assert len(shortfalls) == 1
