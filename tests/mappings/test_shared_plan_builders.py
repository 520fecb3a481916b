"""The shared plan's pure builders and its plain-Danish summary (mappings.coordination)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from mappings.coordination import (
    GOAL_PLAN_URL,
    Member,
    PlanView,
    Step,
    gradual_return_proposal,
    hours_report_bundle,
    plan_activity,
    plan_goal,
    plan_note,
    plan_summary,
    planned_hours,
    shared_plan_bundle,
)
from profiles import validate

OLE, PLAN = "Patient/ole", "CarePlan/plan"
JC, EMP = "Organization/org-jobcenter-aarhus", "Organization/org-lys-montage"
MEMBERS = [
    Member("coordinator", JC, "jobcenter-aarhus", "Mette Holm", "+4589402000"),
    Member("therapist", "Organization/org-aarhus-genoptraening", "aarhus-genoptraening"),
    Member("employer-contact", EMP, "lys-montage", "Per Lund"),
]
STEPS = [
    Step(date(2026, 12, 7), date(2026, 12, 20), Decimal(12), ("mon", "wed"), ("08:00-12:00",)),
    Step(date(2026, 12, 21), date(2027, 1, 31), Decimal(20), ("mon", "tue"), (), "montage", "lift"),
]


def labels(resource: dict[str, Any]) -> set[str]:
    return {s["code"] for s in resource["meta"]["security"]}


def tags(resource: dict[str, Any]) -> set[str]:
    return {t["code"] for t in resource["meta"].get("tag", [])}


def test_the_plan_and_its_team_pass_their_profiles_and_hold_nothing_health_related() -> None:
    bundle = shared_plan_bundle(
        patient=OLE, jobcentre=JC, members=MEMBERS, start=date(2026, 10, 22)
    )
    team, plan = (e["resource"] for e in bundle["entry"])
    assert plan["careTeam"] == [{"reference": bundle["entry"][0]["fullUrl"]}]
    for resource in (team, plan):
        report = validate(resource)
        assert report.ok, report.issues
    assert labels(plan) == {"sickness-benefit-case", "employment-relevant"}
    assert labels(team) == {"sickness-benefit-case"}  # names the therapist: not for the employer
    assert "lys-montage" not in tags(plan) | tags(team)  # the employer reads under consent only
    assert {"addresses", "activity", "reasonCode"}.isdisjoint(plan)
    # The same input gives the same Bundle.
    assert bundle == shared_plan_bundle(
        patient=OLE, jobcentre=JC, members=MEMBERS, start=date(2026, 10, 22)
    )


def test_exactly_one_coordinator() -> None:
    with pytest.raises(ValueError, match="exactly one coordinator"):
        shared_plan_bundle(patient=OLE, jobcentre=JC, members=MEMBERS[1:], start=date(2026, 1, 1))
    with pytest.raises(ValueError, match="exactly one coordinator"):
        shared_plan_bundle(
            patient=OLE, jobcentre=JC, members=[MEMBERS[0], MEMBERS[0]], start=date(2026, 1, 1)
        )


def test_goals_by_kind() -> None:
    work = plan_goal(
        plan=PLAN,
        patient=OLE,
        kind="work-goal",
        text="30 timer",
        start=date(2026, 10, 22),
        due=date(2027, 2, 1),
        measure="timer pr. uge",
        measured_by=EMP,
    )
    health = plan_goal(
        plan=PLAN, patient=OLE, kind="health-goal", text="Løfte 5 kg", start=date(2026, 11, 2)
    )
    for goal in (work, health):
        assert validate(goal).ok, validate(goal).issues
        assert goal["extension"] == [{"url": GOAL_PLAN_URL, "valueReference": {"reference": PLAN}}]
    assert "employment-relevant" in labels(work)
    assert labels(health) == {"rehab-progress"}
    assert work["note"][0]["authorReference"] == {"reference": EMP}
    with pytest.raises(ValueError, match="never employment-relevant"):
        plan_goal(
            plan=PLAN,
            patient=OLE,
            kind="health-goal",
            text="x",
            start=date(2026, 1, 1),
            labels=("employment-relevant",),
        )
    with pytest.raises(ValueError, match="target date and a measure"):
        plan_goal(plan=PLAN, patient=OLE, kind="work-goal", text="x", start=date(2026, 1, 1))


def test_an_activity_says_who_does_what_by_when_and_what_it_refers_to() -> None:
    task = plan_activity(
        plan=PLAN,
        patient=OLE,
        owner="Organization/org-laegerne-soendergade",
        coordinator=JC,
        text="Statusattest",
        due=date(2026, 12, 1),
        authored=date(2026, 11, 3),
        labels=("medical-statement",),
        refers_to=("ServiceRequest/sr1", "Task/deadline1"),
    )
    assert validate(task).ok, validate(task).issues
    assert task["basedOn"] == [{"reference": PLAN}]
    assert task["restriction"] == {
        "period": {"end": "2026-12-01"},
        "recipient": [{"reference": JC}],  # the coordinator reads it (under consent)
    }
    assert task["focus"] == {"reference": "ServiceRequest/sr1"}
    assert [i["valueReference"]["reference"] for i in task["input"]] == [
        "ServiceRequest/sr1",
        "Task/deadline1",
    ]


def test_the_employers_proposal_and_hours_below_it_make_a_task_for_the_coordinator() -> None:
    proposal = gradual_return_proposal(
        plan=PLAN,
        patient=OLE,
        employer=EMP,
        coordinator_participant="jobcenter-aarhus",
        steps=STEPS,
        written=date(2026, 12, 1),
    )
    assert validate(proposal).ok, validate(proposal).issues
    repeat = proposal["activity"][0]["detail"]["scheduledTiming"]["repeat"]
    assert repeat["dayOfWeek"] == ["mon", "wed"] and repeat["timeOfDay"] == ["08:00:00"]
    assert (
        proposal["activity"][1]["detail"]["description"] == "Opgaver: montage; Hjælpemidler: lift"
    )
    assert planned_hours(proposal, date(2026, 12, 7)) == Decimal(12)
    assert planned_hours(proposal, date(2027, 1, 4)) == Decimal(20)
    assert planned_hours(proposal, date(2027, 3, 1)) is None

    def report(week: str, hours: str) -> list[dict[str, Any]]:
        bundle = hours_report_bundle(
            gradual_return_plan="CarePlan/steps",
            proposal=proposal,
            plan=PLAN,
            patient=OLE,
            employer=EMP,
            coordinator=JC,
            coordinator_participant="jobcenter-aarhus",
            week=week,
            hours=Decimal(hours),
            today=date(2026, 12, 15),
        )
        return [e["resource"] for e in bundle["entry"]]

    short = report("2026-W50", "7.5")
    assert [r["resourceType"] for r in short] == ["Observation", "Task"]
    observation, task = short
    assert observation["interpretation"][0]["coding"][0]["code"] == "L"
    assert observation["referenceRange"][0]["low"]["value"] == 12
    assert observation["performer"] == [{"reference": EMP, "type": "Organization"}]
    assert task["owner"]["reference"] == JC and task["basedOn"] == [{"reference": PLAN}]
    assert task["restriction"]["period"]["end"] == "2026-12-20"
    assert [r["resourceType"] for r in report("2026-W50", "12")] == ["Observation"]
    assert [r["resourceType"] for r in report("2027-W10", "1")] == ["Observation"]  # no plan
    with pytest.raises(ValueError):
        Step(date(2026, 12, 7), date(2026, 12, 1), Decimal(1))
    with pytest.raises(ValueError):
        Step(date(2026, 12, 7), date(2026, 12, 8), Decimal(38))


def test_the_summary_says_only_what_the_view_holds() -> None:
    bundle = shared_plan_bundle(
        patient=OLE, jobcentre=JC, members=MEMBERS, start=date(2026, 10, 22)
    )
    team, plan = (dict(e["resource"], id=str(i)) for i, e in enumerate(bundle["entry"]))
    activity = dict(
        plan_activity(
            plan=PLAN,
            patient=OLE,
            owner=OLE,
            coordinator=JC,
            text="Møde op til rundbordssamtalen",
            due=date(2026, 12, 10),
            authored=date(2026, 12, 1),
            labels=("sickness-benefit-case",),
        ),
        id="a",
    )
    note = dict(
        plan_note(
            kind="round-table-outcome",
            plan=PLAN,
            patient=OLE,
            sender=JC,
            text="Aftalt: optrapning",
            sent=date(2026, 12, 10),
        ),
        id="n",
    )
    full = plan_summary(
        PlanView(
            plan=plan,
            team=[team],
            activities=[activity],
            notes=[note],
            names={JC: "Jobcenter Aarhus"},
            changes=[("2026-12-10T10:00:00", "jobcenter-aarhus", "planen")],
        )
    )
    assert "Din tovholder er Mette Holm (Jobcenter Aarhus)." in full
    assert "- Senest 2026-12-10: Møde op til rundbordssamtalen" in full  # asked of the citizen
    assert "Aftalt: optrapning" in full and "2026-12-10 10:00 jobcenter-aarhus: planen" in full
    assert "Dine rettigheder og pligter" in full
    bare = plan_summary(PlanView(plan=plan))
    assert "Terapeut" not in bare and "tovholder er" not in bare and "Aftalt" not in bare
    assert "Der er ingen åbne aktiviteter." in bare
