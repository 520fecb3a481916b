"""The shared plan in process, on both stores: versions, history and audit; the plan CLI's
view; the push of changes; every new resource kind through ``fhir-validate``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from gateway.coordination.plan import plan_view, plans_of, push_plan_changes
from gateway.data.path import DataPath, principal_for
from gateway.messaging import outbound, records
from gateway.participants.directory import ParticipantDirectory
from gateway.settings import Settings
from gateway.store.repository import Store
from gateway.store.schema import messages
from mappings.coordination import (
    Member,
    Step,
    gradual_return_proposal,
    hours_report_bundle,
    plan_activity,
    plan_goal,
    plan_note,
    plan_summary,
    shared_plan_bundle,
)
from tests.access.access_support import Api, request_token
from tests.consent.consent_builders import actor_org, consent, provision
from tests.deadlines.test_referral_loop import OLE
from tests.validate.conftest import Validation

JOBCENTRE, REHAB, GP, EMPLOYER = (
    "jobcenter-aarhus",
    "aarhus-genoptraening",
    "laegerne-soendergade",
    "lys-montage",
)
ORG = {name: f"Organization/org-{name}" for name in (JOBCENTRE, REHAB, GP, EMPLOYER)}
EMPLOYER_SCOPE = "system/*.read system/CarePlan.write system/Observation.write system/Task.write"


async def _login(client: Any, settings: Settings, name: str, scope: str, **kw: Any) -> Api:
    response = await request_token(client, settings, name, scope, **kw)
    assert response.status_code == 200, response.text
    return Api(client, response.json()["access_token"])


async def _consent(jc: Api, patient: str, who: str, purpose: str, labels: tuple[str, ...]) -> None:
    body = consent(
        "x",
        patient=patient,
        date_time="2026-10-01T09:00:00+02:00",
        top=provision(actors=[actor_org(who)], purposes=(purpose,), labels=labels),
    )
    body.pop("id")
    await jc.created(body)


async def _transaction(api: Api, bundle: dict[str, Any]) -> list[str]:
    response = await api.client.post("/fhir", json=bundle, headers=api.headers)
    assert response.status_code == 200, response.text
    return ["/".join(e["response"]["location"].split("/")[:2]) for e in response.json()["entry"]]


async def _world(client: Any, settings: Settings) -> dict[str, Any]:
    """Ole's case, his consents, the plan and one part of each kind; the parties' Apis."""
    jc = await _login(
        client,
        settings,
        JOBCENTRE,
        "system/*.read system/*.write",
        purpose="sickness-benefit-follow-up",
    )
    loaded = await client.post(
        "/ingest/jobcentre-case",
        content=OLE,
        headers={**jc.headers, "Content-Type": "application/xml"},
    )
    assert loaded.status_code == 201, loaded.text
    patient = next(
        e["resource"]["patient"]["reference"]
        for e in loaded.json()["entry"]
        if e.get("resource", {}).get("resourceType") == "EpisodeOfCare"
    )
    await _consent(
        jc,
        patient,
        JOBCENTRE,
        "sickness-benefit-follow-up",
        ("rehab-progress", "employment-relevant"),
    )
    await _consent(jc, patient, EMPLOYER, "round-table-meeting", ("employment-relevant",))
    members = [
        Member("coordinator", ORG[JOBCENTRE], JOBCENTRE, "Mette Holm", "+4589402000"),
        Member("therapist", ORG[REHAB], REHAB),
        Member("gp", ORG[GP], GP),
        Member("employer-contact", ORG[EMPLOYER], EMPLOYER, "Per Lund"),
    ]
    team, plan = await _transaction(
        jc,
        shared_plan_bundle(
            patient=patient, jobcentre=ORG[JOBCENTRE], members=members, start=date(2026, 10, 22)
        ),
    )
    w: dict[str, Any] = {"jc": jc, "patient": patient, "team": team, "plan": plan}
    w["work_goal"] = "Goal/" + await jc.created(
        plan_goal(
            plan=plan,
            patient=patient,
            kind="work-goal",
            text="30 timer om ugen",
            start=date(2026, 10, 22),
            due=date(2027, 2, 1),
            measure="timer pr. uge",
            measured_by=ORG[EMPLOYER],
            addressees=(REHAB, GP),
        )
    )
    w["gp_task"] = "Task/" + await jc.created(
        plan_activity(
            plan=plan,
            patient=patient,
            owner=ORG[GP],
            coordinator=ORG[JOBCENTRE],
            text="Statusattest",
            due=date(2026, 12, 1),
            authored=date(2026, 11, 1),
            labels=("medical-statement",),
        )
    )
    unit = await _login(client, settings, REHAB, "system/*.read system/*.write")
    w["unit"] = unit
    w["health_goal"] = "Goal/" + await unit.created(
        plan_goal(
            plan=plan,
            patient=patient,
            kind="health-goal",
            text="Løfte 5 kg",
            start=date(2026, 11, 2),
            addressees=(JOBCENTRE,),
        )
    )
    employer = await _login(
        client, settings, EMPLOYER, EMPLOYER_SCOPE, purpose="round-table-meeting"
    )
    w["employer"] = employer
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
                ("mon", "wed"),
                ("08:00-12:00",),
                "værksted",
                "lift",
            )
        ],
        written=date(2026, 12, 1),
    )
    w["proposal"] = "CarePlan/" + await employer.created(proposal)
    w["hours"], w["shortfall"] = await _transaction(
        employer,
        hours_report_bundle(
            gradual_return_plan=w["proposal"],
            proposal=proposal,
            plan=plan,
            patient=patient,
            employer=ORG[EMPLOYER],
            coordinator=ORG[JOBCENTRE],
            coordinator_participant=JOBCENTRE,
            week="2026-W50",
            hours=Decimal("7.5"),
            today=date(2026, 12, 15),
        ),
    )
    w["outcome"] = "Communication/" + await jc.created(
        plan_note(
            kind="round-table-outcome",
            plan=plan,
            patient=patient,
            sender=ORG[JOBCENTRE],
            text="Aftalt: optrapning som foreslået.",
            sent=date(2026, 12, 10),
            recipients=(ORG[REHAB], ORG[GP]),
            changes=(w["work_goal"],),
        )
    )
    portal = await _login(
        client,
        settings,
        "borger-portal",
        "patient/*.read patient/Goal.write patient/Communication.write",
        purpose="citizen-access",
        patient=patient,
        cpr="1507791235",
    )
    w["portal"] = portal
    w["own_goal"] = "Goal/" + await portal.created(
        plan_goal(
            plan=plan,
            patient=patient,
            kind="citizen-goal",
            text="Cykle til arbejde",
            start=date(2026, 12, 12),
        )
    )
    w["comment"] = "Communication/" + await portal.created(
        plan_note(
            kind="citizen-comment",
            plan=plan,
            patient=patient,
            sender=patient,
            text="Jeg er glad for planen.",
            sent=date(2026, 12, 12),
        )
    )
    return w


async def test_versions_history_and_the_citizens_audit_trail(
    client: Any, settings: Settings, store: Store
) -> None:
    w = await _world(client, settings)
    jc, plan = w["jc"], w["plan"]
    current = (await jc.get(plan)).json()
    current["description"] = "Tilbage til arbejdet i uge 10"
    assert (await jc.put(plan, current)).status_code == 200
    history = (await jc.get(f"{plan}/_history")).json()
    assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["2", "1"]
    # The GP records the fulfilment of its assigned activity: a new version, the author stays.
    gp = await _login(client, settings, GP, "system/*.read system/*.write")
    task = (await gp.get(w["gp_task"])).json()
    task["status"] = "completed"
    done = await gp.put(w["gp_task"], task)
    assert done.status_code == 200, done.text
    assert done.json()["meta"]["source"].endswith(JOBCENTRE)
    assert (await gp.get(f"{w['gp_task']}/_history")).json()["total"] == 2
    # The employer sees the plan's history but never the health goal's.
    employer = w["employer"]
    assert (await employer.get(f"{plan}/_history")).json()["total"] == 2
    assert (await employer.get(f"{w['health_goal']}/_history")).status_code == 404
    # The citizen's summary names who changed what, and the trail shows who read the plan.
    summary = await client.get(
        f"/fhir/{plan}/$summary", headers={**w["portal"].headers, "Accept": "text/plain"}
    )
    assert summary.status_code == 200 and summary.headers["content-type"].startswith("text/plain")
    assert "Hvem har ændret hvad" in summary.text and f"{plan} version 2" in summary.text
    assert "Cykle til arbejde" in summary.text and "Jeg er glad for planen." in summary.text
    trail: list[dict[str, Any]] = []
    for _ in range(50):  # the audit writer flushes in the background: bounded by count
        trail = (
            (await w["portal"].get("AuditEvent", patient=w["patient"].split("/")[1], _count="200"))
            .json()
            .get("entry", [])
        )
        if any(
            plan.split("/")[1] in json.dumps(e) and "lys-montage" in json.dumps(e) for e in trail
        ):
            break
        await asyncio.sleep(0.05)
    assert any(plan.split("/")[1] in json.dumps(e) for e in trail)


async def test_each_partys_view_and_the_push_of_changes(
    client: Any, settings: Settings, store: Store
) -> None:
    w = await _world(client, settings)
    directory = ParticipantDirectory(store.database)

    async def view_of(name: str) -> set[str]:
        data = DataPath(store, principal_for(await directory.get(name)))
        [plan] = await plans_of(data, w["patient"])
        view = await plan_view(data, str(plan["id"]))
        assert plan_summary(view).startswith("# ")
        return {f"{r['resourceType']}/{r['id']}" for r in view.resources()}

    employer = await view_of(EMPLOYER)
    assert {w["plan"], w["work_goal"], w["proposal"], w["outcome"], w["own_goal"]} <= employer
    assert not {w["team"], w["health_goal"], w["gp_task"], w["comment"]} & employer
    gp = await view_of(GP)
    assert {w["plan"], w["team"], w["work_goal"], w["gp_task"]} <= gp
    assert w["health_goal"] not in gp
    coordinator = await view_of(JOBCENTRE)
    assert {w["health_goal"], w["proposal"], w["shortfall"], w["own_goal"]} <= coordinator

    report = await push_plan_changes(store, settings)
    assert report.plans == 1 and report.notices
    assert (await push_plan_changes(store, settings)).notices == []
    # Each receiver's copy is rendered under consent: the employer's notices never carry a
    # health goal, and the one about the health goal is withheld from it entirely.
    async with store.read_connection() as conn:
        query = select(messages.c.key).where(messages.c.sender == "gateway")
        keys = list((await conn.execute(query)).scalars())
        rendered = []
        for key in keys:
            record = await records.get_message(conn, key)
            assert record is not None
            bundle = await outbound.render_for(
                store, settings, record, await directory.get(EMPLOYER)
            )
            if bundle is not None:
                rendered.append(bundle)
    text = json.dumps(rendered)
    assert w["work_goal"].split("/")[1] in text
    assert w["health_goal"].split("/")[1] not in text
    assert "health-goal" not in text and "Løfte 5 kg" not in text


async def test_every_new_kind_passes_fhir_validate(
    client: Any,
    settings: Settings,
    store: Store,
    tmp_path: Path,
    fhir_validate: Callable[[list[Path]], Validation],
) -> None:
    w = await _world(client, settings)
    jc = w["jc"]
    kept: dict[str, Any] = {}
    for name in (
        "plan",
        "team",
        "work_goal",
        "health_goal",
        "gp_task",
        "proposal",
        "hours",
        "shortfall",
        "outcome",
        "own_goal",
        "comment",
    ):
        response = await jc.get(w[name])
        if name == "comment":
            response = await w["portal"].get(w[name])
        assert response.status_code == 200, (name, response.text)
        kept[name] = response.json()
    summary = await jc.get(f"{w['plan']}/$summary")
    assert summary.status_code == 200
    kept["summary"] = summary.json()
    kept["employer-summary"] = (await w["employer"].get(f"{w['plan']}/$summary")).json()
    files = []
    for name, resource in kept.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(resource, ensure_ascii=False), encoding="utf-8")
        files.append(path)
    result = fhir_validate(files)
    assert result.returncode == 0, result.output


@pytest.mark.xfail(
    strict=True,
    reason="not built: 'who changed what' names each version's author; a Task's owner "
    "recording its fulfilment is kept in a Provenance that the summary does not read yet",
)
async def test_the_summary_names_the_owner_who_fulfilled_an_assigned_activity(
    client: Any, settings: Settings, store: Store
) -> None:
    w = await _world(client, settings)
    gp = await _login(client, settings, GP, "system/*.read system/*.write")
    task = (await gp.get(w["gp_task"])).json()
    task["status"] = "completed"
    assert (await gp.put(w["gp_task"], task)).status_code == 200
    summary = await client.get(
        f"/fhir/{w['plan']}/$summary", headers={**w["jc"].headers, "Accept": "text/plain"}
    )
    assert f"{GP}: en aktivitet {w['gp_task']} version 2" in summary.text
