"""Write rule 9 (plan-activity) and the citizen's own goals and comments (rule 3), pure."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from consent import Requester, decide_write

PLAN_SYSTEM = "http://brobygger.dk/fhir/CodeSystem/coordination-plan"
JC, REHAB, GP = (
    "Organization/org-jobcenter-aarhus",
    "Organization/org-aarhus-genoptraening",
    "Organization/org-laegerne-soendergade",
)
EMP = "Organization/org-lys-montage"
JOBCENTRE = Requester("jobcenter-aarhus", "jobcentre", JC, "sickness-benefit-follow-up")
UNIT = Requester("aarhus-genoptraening", "rehab-unit", REHAB, "rehabilitation-planning")
DOCTOR = Requester("laegerne-soendergade", "gp", GP, "medical-statement")
EMPLOYER = Requester("lys-montage", "employer", EMP, "round-table-meeting")
OLE = Requester("borger-portal", "citizen-portal", None, "citizen-access", "Patient/ole")


def activity(owner: str, author: str | None = None, **changes: Any) -> dict[str, Any]:
    task: dict[str, Any] = {
        "resourceType": "Task",
        "id": "a1",
        "status": "requested",
        "intent": "plan",
        "code": {"coding": [{"system": PLAN_SYSTEM, "code": "plan-activity"}]},
        "basedOn": [{"reference": "CarePlan/plan"}],
        "for": {"reference": "Patient/ole"},
        "owner": {"reference": owner},
        "restriction": {"period": {"end": "2027-01-15"}},
        "description": "Genoptræning to gange om ugen",
    }
    if author is not None:
        task["meta"] = {"source": f"urn:brobygger:participant:{author}"}
    task.update(changes)
    return task


@pytest.mark.parametrize(
    ("requester", "owner"),
    [(UNIT, REHAB), (DOCTOR, GP), (EMPLOYER, EMP), (JOBCENTRE, JC), (JOBCENTRE, GP)],
)
def test_a_party_adds_its_own_activity_and_the_job_centre_assigns_any(
    requester: Requester, owner: str
) -> None:
    decision = decide_write(requester, "create", None, activity(owner))
    assert decision.allowed and decision.rule == "plan-activity"


@pytest.mark.parametrize(
    ("requester", "owner"), [(UNIT, GP), (DOCTOR, REHAB), (EMPLOYER, JC), (EMPLOYER, REHAB)]
)
def test_nobody_but_the_job_centre_assigns_work_to_another_party(
    requester: Requester, owner: str
) -> None:
    decision = decide_write(requester, "create", None, activity(owner))
    assert not decision.allowed and decision.rule == "plan-activity"


def test_each_party_updates_only_its_own_activities() -> None:
    units = activity(REHAB, "aarhus-genoptraening")
    changed = activity(REHAB, status="in-progress")
    assert decide_write(UNIT, "update", units, changed).allowed
    # The GP may not touch it, not even by making itself the owner.
    for incoming in (changed, activity(GP)):
        decision = decide_write(DOCTOR, "update", units, incoming)
        assert not decision.allowed and decision.rule == "plan-activity"
    assert not decide_write(DOCTOR, "delete", units, None).allowed
    # Its author cannot hand it to another party either.
    decision = decide_write(UNIT, "update", units, activity(GP))
    assert not decision.allowed and decision.rule == "plan-activity"


def test_an_assigned_activity_is_fulfilled_by_its_owner_and_changed_by_its_author() -> None:
    assigned = activity(GP, "jobcenter-aarhus")
    done = copy.deepcopy(assigned)
    done.pop("meta")
    done["status"] = "completed"
    decision = decide_write(DOCTOR, "update", assigned, done)
    assert decision.allowed and decision.rule == "task-owner"
    # The owner records its fulfilment only: not the due date, nor the text.
    moved = activity(GP, restriction={"period": {"end": "2027-03-01"}})
    assert not decide_write(DOCTOR, "update", assigned, moved).allowed
    assert decide_write(JOBCENTRE, "update", assigned, moved).allowed
    # Another job centre's plan is not this one's to change (authorship, rule 7).
    other = Requester("jobcenter-roskilde", "jobcentre", "Organization/org-jobcenter-roskilde")
    assert not decide_write(other, "update", assigned, moved).allowed


def test_a_task_that_is_no_plan_activity_is_not_affected() -> None:
    task = activity(GP)
    task["code"] = {"coding": [{"system": "http://example.org", "code": "x"}]}
    assert decide_write(EMPLOYER, "create", None, task).rule == "new-resource"


def goal(patient: str = "Patient/ole", author: str | None = None) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Goal",
        "lifecycleStatus": "proposed",
        "description": {"text": "Tilbage på fuld tid til marts"},
        "subject": {"reference": patient},
    }
    if author is not None:
        resource["meta"] = {"source": f"urn:brobygger:participant:{author}"}
    return resource


def test_the_citizen_adds_and_changes_own_goals_and_comments_only() -> None:
    assert decide_write(OLE, "create", None, goal()).rule == "citizen-own"
    assert decide_write(OLE, "create", None, goal()).allowed
    comment = {
        "resourceType": "Communication",
        "status": "completed",
        "subject": {"reference": "Patient/ole"},
    }
    assert decide_write(OLE, "create", None, comment).allowed
    assert decide_write(OLE, "update", goal(author="borger-portal"), goal()).allowed
    assert decide_write(OLE, "delete", goal(author="borger-portal"), None).allowed
    # Not about someone else, and not the job centre's goal.
    assert not decide_write(OLE, "create", None, goal("Patient/anna")).allowed
    assert not decide_write(OLE, "update", goal(author="jobcenter-aarhus"), goal()).allowed
    assert not decide_write(
        OLE, "update", goal(author="borger-portal"), goal("Patient/anna")
    ).allowed
    # Still nothing else: no Task, no Observation.
    for kind in ("Task", "Observation", "CarePlan"):
        resource = {"resourceType": kind, "subject": {"reference": "Patient/ole"}}
        assert not decide_write(OLE, "create", None, resource).allowed, kind


def test_only_a_job_centre_creates_and_keeps_the_plan_and_its_team() -> None:
    category = [{"coding": [{"system": "x", "code": "coordinated-return-to-work"}]}]
    plan = {
        "resourceType": "CarePlan",
        "category": category,
        "subject": {"reference": "Patient/ole"},
    }
    team = {
        "resourceType": "CareTeam",
        "category": category,
        "subject": {"reference": "Patient/ole"},
    }
    for resource in (plan, team):
        assert decide_write(JOBCENTRE, "create", None, resource).allowed
        for other in (UNIT, DOCTOR, EMPLOYER):
            decision = decide_write(other, "create", None, resource)
            assert not decision.allowed and decision.rule == "plan-activity"
        kept = {**resource, "meta": {"source": "urn:brobygger:participant:jobcenter-aarhus"}}
        assert decide_write(JOBCENTRE, "update", kept, resource).allowed
        assert not decide_write(EMPLOYER, "update", kept, resource).allowed
    # The employer's own gradual-return proposal is another category: its own to write.
    proposal = {**plan, "category": [{"coding": [{"code": "gradual-return-to-work"}]}]}
    assert decide_write(EMPLOYER, "create", None, proposal).allowed
