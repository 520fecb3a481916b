"""A referral from the job centre to the rehabilitation unit, as FHIR (pure).

DOMAIN.md, "Coordination": a referral is a request with a reason, the citizen's job
situation and a wanted start, answered with accept/decline and a start date. It is a
ServiceRequest (category ``rehab-referral``; ``supportingInfo`` names the citizen's Consent)
and a Task for the unit (``owner``), due by the ``referral-answer`` rule. The unit answers on
the Task (``consent`` rule task-owner): ``accepted`` with the planned start in ``output``,
``rejected`` with a coded ``statusReason``; ``in-progress`` with ``executionPeriod.start``
when training starts; ``completed`` with ``executionPeriod.end`` at discharge.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from mappings._codes import (
    REHAB_PLAN,
    SICKNESS_BENEFIT_CASE,
    TASK_CODE_SYSTEM,
    code_system,
    extension_url,
    security,
)
from mappings.deadlines import DEADLINE_SYSTEM, display, due_after

REFERRAL_CATEGORY_SYSTEM = code_system("referral-category")
REHAB_REFERRAL = "rehab-referral"
REFERRAL_ANSWER = "referral-answer"
JOB_SITUATION_URL = extension_url("job-situation")
TASK_OUTPUT_SYSTEM = code_system("task-output")
PLANNED_START = "planned-start"
TRAINING_START = "training-start"
DISCHARGE = "discharge"
NOTE = "note"
TASK_OUTPUTS = {
    PLANNED_START: "Planlagt opstart",
    TRAINING_START: "Træningen startede",
    DISCHARGE: "Afsluttet",
    NOTE: "Notat",
}
DECLINE_REASON_SYSTEM = code_system("referral-decline-reason")
DECLINE_REASONS = {
    "no-capacity": "Ingen kapacitet inden for den ønskede start",
    "not-indicated": "Genoptræning er ikke relevant for borgeren",
    "citizen-declined": "Borgeren har takket nej",
    "other-offer": "Et andet tilbud er bedre egnet",
}


def referral_bundle(
    *,
    patient: str,
    jobcentre: str,
    rehab_unit: str,
    reason: str,
    job_situation: str,
    wanted_start: date,
    consent: str,
    authored: date,
) -> dict[str, Any]:
    """A transaction Bundle: the referral (ServiceRequest) and the unit's Task."""
    request_url = "urn:uuid:5d3c2a10-0000-4000-8000-000000000001"
    task_url = "urn:uuid:5d3c2a10-0000-4000-8000-000000000002"
    labels = security(SICKNESS_BENEFIT_CASE)
    request = {
        "resourceType": "ServiceRequest",
        "meta": {"security": labels},
        "extension": [{"url": JOB_SITUATION_URL, "valueString": job_situation}],
        "status": "active",
        "intent": "order",
        "category": [
            {
                "coding": [
                    {
                        "system": REFERRAL_CATEGORY_SYSTEM,
                        "code": REHAB_REFERRAL,
                        "display": "Henvisning til genoptræning fra jobcentret",
                    }
                ]
            }
        ],
        "subject": {"reference": patient},
        "occurrencePeriod": {"start": wanted_start.isoformat()},
        "authoredOn": authored.isoformat(),
        "requester": {"reference": jobcentre},
        "performer": [{"reference": rehab_unit}],
        "reasonCode": [{"text": reason}],
        "supportingInfo": [{"reference": consent}],
    }
    task = {
        "resourceType": "Task",
        "meta": {"security": labels},
        "status": "requested",
        "intent": "order",
        "code": {
            "coding": [
                {
                    "system": DEADLINE_SYSTEM,
                    "code": REFERRAL_ANSWER,
                    "display": display(REFERRAL_ANSWER),
                }
            ]
        },
        "description": display(REFERRAL_ANSWER),
        "focus": {"reference": request_url},
        "basedOn": [{"reference": request_url}],
        "for": {"reference": patient},
        "authoredOn": authored.isoformat(),
        "requester": {"reference": jobcentre},
        "owner": {"reference": rehab_unit},
        "restriction": {
            "period": {
                "start": authored.isoformat(),
                "end": due_after(REFERRAL_ANSWER, authored).isoformat(),
            }
        },
    }
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": request_url,
                "resource": request,
                "request": {"method": "POST", "url": "ServiceRequest"},
            },
            {"fullUrl": task_url, "resource": task, "request": {"method": "POST", "url": "Task"}},
        ],
    }


def output(kind: str, value: date | str) -> dict[str, Any]:
    """A Task.output the unit records: a date (planned start, …) or a reference (its note)."""
    entry: dict[str, Any] = {
        "type": {
            "coding": [{"system": TASK_OUTPUT_SYSTEM, "code": kind, "display": TASK_OUTPUTS[kind]}]
        }
    }
    if isinstance(value, date):
        entry["valueDate"] = value.isoformat()
    else:
        entry["valueReference"] = {"reference": value}
    return entry


def accepted(task: dict[str, Any], start: date) -> dict[str, Any]:
    return {**task, "status": "accepted", "output": [output(PLANNED_START, start)]}


def declined(task: dict[str, Any], reason: str) -> dict[str, Any]:
    coding = {"system": DECLINE_REASON_SYSTEM, "code": reason, "display": DECLINE_REASONS[reason]}
    return {**task, "status": "rejected", "statusReason": {"coding": [coding]}}


def training_started(task: dict[str, Any], day: date) -> dict[str, Any]:
    period = {**(task.get("executionPeriod") or {}), "start": day.isoformat()}
    return {**task, "status": "in-progress", "executionPeriod": period}


def discharged(task: dict[str, Any], day: date) -> dict[str, Any]:
    period = {**(task.get("executionPeriod") or {}), "end": day.isoformat()}
    outputs = [*(task.get("output") or []), output(DISCHARGE, day)]
    return {**task, "status": "completed", "executionPeriod": period, "output": outputs}


def waiting_days(received: date, started: date) -> int:
    """Waiting time, plan or referral received → training started (a manager's key figure)."""
    return (started - received).days


def training_course(*, plan: str, patient: str, unit: str, started: date) -> dict[str, Any]:
    """The unit's own record that training on a hospital's plan started (its waiting time).

    A referral records this on its Task; a hospital plan (ServiceRequest, intent plan) has no
    Task for the unit, so the unit writes one: ``fulfill`` the plan, started on ``started``.
    """
    return {
        "resourceType": "Task",
        "meta": {"security": security(REHAB_PLAN)},
        "status": "in-progress",
        "intent": "order",
        "code": {"coding": [{"system": TASK_CODE_SYSTEM, "code": "fulfill"}]},
        "description": "Genoptræning efter genoptræningsplanen",
        "focus": {"reference": plan},
        "basedOn": [{"reference": plan}],
        "for": {"reference": patient},
        "authoredOn": started.isoformat(),
        "owner": {"reference": unit},
        "executionPeriod": {"start": started.isoformat()},
        "output": [output(TRAINING_START, started)],
    }


def waiting_time(request: dict[str, Any], task: dict[str, Any]) -> int | None:
    """Days from the plan or referral (``authoredOn``) to the training start on its Task."""
    received = str(request.get("authoredOn") or "")[:10]
    started = str((task.get("executionPeriod") or {}).get("start") or "")[:10]
    if not received or not started:
        return None
    return waiting_days(date.fromisoformat(received), date.fromisoformat(started))
