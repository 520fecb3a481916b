"""The shared plan per sick-listed citizen as FHIR (pure): docs/shared-plan.md.

One CarePlan (category ``coordinated-return-to-work``) per citizen and sickness-benefit case,
written by the job centre that coordinates it, with a CareTeam naming the coordinator
(tovholder). Everything else points *to* the plan and is its own resource with its own labels,
so that the consent engine decides on each part for each reader — nothing health-related sits
inside the plan itself (profile rule bro-cop-4):

- goals (Goal, category work-goal / health-goal / citizen-goal, extension ``goal-plan``);
- activities (Task, code ``plan-activity``, ``basedOn`` the plan): who (``owner``) does what
  (``description``) by when (``restriction.period.end``), linked to what it refers to
  (``focus`` / ``input``); a health party's activity is addressed to the coordinator
  (``restriction.recipient``) and so reaches it only under the citizen's consent;
- the employer's proposed gradual-return plan (CarePlan ``gradual-return-to-work``, draft,
  ``basedOn`` the plan) and its hours reports (the ``ArbejdetTimer`` Observation and, below the
  plan, the caseworker's shortfall Task — the same builders the case adapter uses);
- notes (Communication ``basedOn`` the plan): the round table's outcome, the employer's offers
  and workplace visit, the citizen's comments.

Builders return FHIR JSON; ``*_bundle`` functions return transaction Bundles to POST.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any, Literal

from mappings._bundle import Ref, stable_uuid
from mappings._codes import (
    EMPLOYMENT_RELEVANT,
    OBSERVATION_CODE_SYSTEM,
    REHAB_PROGRESS,
    SICKNESS_BENEFIT_CASE,
    UCUM_SYSTEM,
    code_system,
    coding,
    concept,
    extension_url,
    security,
)
from mappings._parties import Party
from mappings._values import fhir_decimal

PLAN_SYSTEM = code_system("coordination-plan")
# The case adapter imports this package (the early warning), so its tables and builders are
# imported where they are used; the category system is the same CodeSystem as its own.
CAREPLAN_CATEGORY_SYSTEM = code_system("care-plan-category")
ADDRESSEE_SYSTEM = code_system("addressee")
COORDINATED_RETURN = "coordinated-return-to-work"
PLAN_ACTIVITY = "plan-activity"
GOAL_PLAN_URL = extension_url("goal-plan")
_PROFILE = "http://brobygger.dk/fhir/StructureDefinition/{}|0.1.0"

GoalKind = Literal["work-goal", "health-goal", "citizen-goal"]
NoteKind = Literal["round-table-outcome", "employer-offer", "workplace-visit", "citizen-comment"]
ROLES = {
    "coordinator": "Tovholder",
    "caseworker": "Sagsbehandler med direkte kontakt",
    "therapist": "Terapeut",
    "gp": "Praktiserende læge",
    "employer-contact": "Kontaktperson hos arbejdsgiveren",
    "citizen": "Borger",
}
# The labels of each kind of goal: a work goal is for the employer too (under consent); a
# health goal never (profile rule bro-gol-3); the citizen's own goal is about work unless the
# citizen says otherwise.
GOAL_LABELS: Mapping[str, tuple[str, ...]] = {
    "work-goal": (SICKNESS_BENEFIT_CASE, EMPLOYMENT_RELEVANT),
    "health-goal": (REHAB_PROGRESS,),
    "citizen-goal": (SICKNESS_BENEFIT_CASE, EMPLOYMENT_RELEVANT),
}
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True, slots=True)
class Member:
    """One party of the plan: its role, its Organization, its participant name (for the
    addressee tag), and the person with direct contact."""

    role: str
    organization: str
    participant: str
    person: str | None = None
    telephone: str | None = None


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a gradual return: from, to, hours a week, on which days and times of day,
    the tasks and the aids."""

    start: date
    end: date
    hours: Decimal
    days: tuple[str, ...] = ()
    times: tuple[str, ...] = ()  # "08:00-11:00"
    tasks: str = ""
    aids: str = ""

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError("a step ends on or after its start")
        if not Decimal(0) <= self.hours <= Decimal(37):
            raise ValueError("hours per week are between 0 and 37")
        if any(day not in _DAYS for day in self.days):
            raise ValueError(f"days are {', '.join(_DAYS)}")


def _tags(addressees: Sequence[str]) -> list[dict[str, str]]:
    return [{"system": ADDRESSEE_SYSTEM, "code": name} for name in dict.fromkeys(addressees)]


def _meta(profile: str | None, labels: Sequence[str], addressees: Sequence[str]) -> dict[str, Any]:
    meta: dict[str, Any] = {"security": security(*labels)}
    if profile is not None:
        meta["profile"] = [_PROFILE.format(profile)]
    if addressees:
        meta["tag"] = _tags(addressees)
    return meta


def _ref(reference: str, display: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"reference": reference}
    if display:
        out["display"] = display
    return out


def _transaction(key: str, resources: Sequence[dict[str, Any]]) -> dict[str, Any]:
    entries = []
    for index, resource in enumerate(resources):
        full_url = resource.pop("_fullUrl", None) or f"urn:uuid:{stable_uuid(key, str(index))}"
        entries.append(
            {
                "fullUrl": full_url,
                "resource": resource,
                "request": {"method": "POST", "url": resource["resourceType"]},
            }
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def shared_plan_bundle(
    *,
    patient: str,
    jobcentre: str,
    members: Sequence[Member],
    start: date,
    title: str = "Fælles plan for tilbagevenden til arbejde",
    description: str | None = None,
    case: str | None = None,
) -> dict[str, Any]:
    """The job centre's plan at the first follow-up: a CareTeam and the CarePlan naming it.

    Exactly one member is the coordinator. The health-side parties (and any other party but an
    employer) get an addressee tag and so read the plan and its team; an employer reads the
    plan only under the citizen's consent, and never the team (it names the therapist and the
    GP, which is health information).
    """
    coordinators = [m for m in members if m.role == "coordinator"]
    if len(coordinators) != 1:
        raise ValueError("a shared plan names exactly one coordinator")
    if any(m.role not in ROLES for m in members):
        raise ValueError(f"roles are {', '.join(ROLES)}")
    key = f"shared-plan|{patient}|{case or ''}|{start.isoformat()}"
    team_url = f"urn:uuid:{stable_uuid(key, 'team')}"
    readers = [m.participant for m in members if m.role != "employer-contact"]
    team: dict[str, Any] = {
        "resourceType": "CareTeam",
        "_fullUrl": team_url,
        "meta": _meta("coordination-care-team", (SICKNESS_BENEFIT_CASE,), readers),
        "status": "active",
        "category": [concept(PLAN_SYSTEM, COORDINATED_RETURN, "Fælles plan")],
        "name": title,
        "subject": _ref(patient),
        "period": {"start": start.isoformat()},
        "participant": [
            {
                "role": [
                    {"coding": [coding(PLAN_SYSTEM, m.role, ROLES[m.role])], "text": ROLES[m.role]}
                ],
                "member": _ref(m.organization, m.person),
            }
            for m in members
        ],
        "managingOrganization": [_ref(jobcentre)],
    }
    contacts = [
        {"system": "phone", "value": m.telephone}
        for m in members
        if m.telephone and m.role in ("coordinator", "caseworker")
    ]
    if contacts:
        team["telecom"] = contacts[:1]
    plan: dict[str, Any] = {
        "resourceType": "CarePlan",
        "meta": _meta("coordination-plan", (SICKNESS_BENEFIT_CASE, EMPLOYMENT_RELEVANT), readers),
        "status": "active",
        "intent": "plan",
        "category": [
            concept(CAREPLAN_CATEGORY_SYSTEM, COORDINATED_RETURN, "Fælles plan for tilbagevenden")
        ],
        "title": title,
        "subject": _ref(patient),
        "period": {"start": start.isoformat()},
        "created": start.isoformat(),
        "author": _ref(jobcentre),
        "careTeam": [{"reference": team_url}],
    }
    if description:
        plan["description"] = description
    if case:
        plan["supportingInfo"] = [_ref(case)]  # the job centre's sickness-benefit case
    return _transaction(key, [team, plan])


def plan_goal(
    *,
    plan: str,
    patient: str,
    kind: GoalKind,
    text: str,
    start: date,
    due: date | None = None,
    measure: str | None = None,
    measured_by: str | None = None,
    addressees: Sequence[str] = (),
    labels: Sequence[str] | None = None,
) -> dict[str, Any]:
    """A goal of the plan. A work goal is tied to the job, has a target date and says what is
    measured and by whom (``note`` authored by the measuring party)."""
    if kind == "work-goal" and (due is None or not measure):
        raise ValueError("a work goal has a target date and a measure")
    chosen = tuple(labels) if labels is not None else GOAL_LABELS[kind]
    if kind == "health-goal" and EMPLOYMENT_RELEVANT in chosen:
        raise ValueError("a health goal is never employment-relevant")
    goal: dict[str, Any] = {
        "resourceType": "Goal",
        "meta": _meta("plan-goal", chosen, addressees),
        "extension": [{"url": GOAL_PLAN_URL, "valueReference": _ref(plan)}],
        "lifecycleStatus": "active",
        "category": [concept(PLAN_SYSTEM, kind)],
        "description": {"text": text},
        "subject": _ref(patient),
        "startDate": start.isoformat(),
    }
    if due is not None or measure:
        target: dict[str, Any] = {}
        if measure:
            target["measure"] = {"text": measure}
            target["detailString"] = measure
        if due is not None:
            target["dueDate"] = due.isoformat()
        goal["target"] = [target]
    if measured_by:
        goal["note"] = [{"authorReference": _ref(measured_by), "text": f"Måles af: {measure}"}]
    return goal


def plan_activity(
    *,
    plan: str,
    patient: str,
    owner: str,
    coordinator: str,
    text: str,
    due: date,
    authored: date,
    labels: Sequence[str],
    refers_to: Sequence[str] = (),
    status: str = "requested",
    addressees: Sequence[str] = (),
) -> dict[str, Any]:
    """One party's activity: ``owner`` does ``text`` by ``due``; addressed to the coordinator."""
    task: dict[str, Any] = {
        "resourceType": "Task",
        "meta": _meta("plan-activity", labels, addressees),
        "basedOn": [_ref(plan)],
        "status": status,
        "intent": "plan",
        "code": concept(PLAN_SYSTEM, PLAN_ACTIVITY, "Aktivitet i den fælles plan"),
        "description": text,
        "for": _ref(patient),
        "authoredOn": authored.isoformat(),
        "requester": _ref(coordinator if owner == coordinator else owner),
        "owner": _ref(owner),
        "restriction": {"period": {"end": due.isoformat()}},
    }
    if owner != coordinator:
        task["restriction"]["recipient"] = [_ref(coordinator)]
    if refers_to:
        task["focus"] = _ref(refers_to[0])
        task["input"] = [
            {"type": {"text": "henviser til"}, "valueReference": _ref(r)} for r in refers_to
        ]
    return task


def _timing(step: Step) -> dict[str, Any]:
    repeat: dict[str, Any] = {
        "boundsPeriod": {"start": step.start.isoformat(), "end": step.end.isoformat()},
    }
    if step.days:
        repeat["dayOfWeek"] = list(step.days)
    if step.times:
        repeat["timeOfDay"] = [f"{t[:5]}:00" for t in step.times]
    return {"repeat": repeat}


def gradual_return_proposal(
    *,
    plan: str,
    patient: str,
    employer: str,
    coordinator_participant: str,
    steps: Sequence[Step],
    written: date,
) -> dict[str, Any]:
    """The employer's proposed steps (a draft gradual-return plan based on the shared plan):
    days and times of day, hours a week, the tasks and the aids. Addressed to the coordinator;
    employment-relevant, so the employer and the job centre read it, the health side under
    consent."""
    from mappings.jobcentre_case._tables import GRADUAL_RETURN

    if not steps:
        raise ValueError("a proposal has at least one step")
    hours_code = concept(OBSERVATION_CODE_SYSTEM, "hours-per-week", "Timer pr. uge")
    activities = []
    for step in steps:
        words = [
            w
            for w in (
                f"Opgaver: {step.tasks}" if step.tasks else "",
                f"Hjælpemidler: {step.aids}" if step.aids else "",
            )
            if w
        ]
        detail: dict[str, Any] = {
            "code": hours_code,
            "status": "not-started",
            "scheduledTiming": _timing(step),
            "quantity": {
                "value": fhir_decimal(step.hours),
                "unit": "timer pr. uge",
                "system": UCUM_SYSTEM,
                "code": "h/wk",
            },
            "performer": [_ref(employer)],
        }
        if words:
            detail["description"] = "; ".join(words)
        activities.append({"detail": detail})
    return {
        "resourceType": "CarePlan",
        "meta": _meta(
            "gradual-return-plan",
            (SICKNESS_BENEFIT_CASE, EMPLOYMENT_RELEVANT),
            (coordinator_participant,),
        ),
        "status": "draft",
        "intent": "plan",
        "category": [concept(CAREPLAN_CATEGORY_SYSTEM, GRADUAL_RETURN, "Optrapningsplan")],
        "title": "Arbejdsgiverens forslag til optrapning",
        "basedOn": [_ref(plan)],
        "subject": _ref(patient),
        "period": {"start": steps[0].start.isoformat(), "end": steps[-1].end.isoformat()},
        "created": written.isoformat(),
        "author": _ref(employer),
        "activity": activities,
    }


def planned_hours(proposal: Mapping[str, Any], monday: date) -> Decimal | None:
    """The hours a week a gradual-return plan sets for the ISO week starting ``monday``."""
    for activity in proposal.get("activity") or []:
        detail = activity.get("detail") or {}
        bounds = ((detail.get("scheduledTiming") or {}).get("repeat") or {}).get(
            "boundsPeriod"
        ) or {}
        start, end = bounds.get("start"), bounds.get("end")
        if not isinstance(start, str):
            continue
        if date.fromisoformat(start[:10]) <= monday and (
            not isinstance(end, str) or monday <= date.fromisoformat(end[:10])
        ):
            value = (detail.get("quantity") or {}).get("value")
            return Decimal(str(value)) if value is not None else None
    return None


def hours_report_bundle(
    *,
    gradual_return_plan: str,
    proposal: Mapping[str, Any],
    plan: str,
    patient: str,
    employer: str,
    coordinator: str,
    coordinator_participant: str,
    week: str,
    hours: Decimal,
    today: date,
) -> dict[str, Any]:
    """The employer's report of hours worked in ISO ``week`` (``YYYY-Www``), as the case
    export's ``ArbejdetTimer``: an Observation beside the plan's hours, flagged L below them,
    and then a shortfall Task for the coordinator (the case adapter's own builders)."""
    from mappings.jobcentre_case._model import WorkedWeek
    from mappings.jobcentre_case._to_fhir import _shortfall_task, _worked_week

    monday = date.fromisocalendar(int(week[:4]), int(week[6:]), 1)
    worked = WorkedWeek(week=week, monday=monday, hours=hours)
    planned = planned_hours(proposal, monday)
    key = f"hours|{gradual_return_plan}|{week}"
    observation_url = f"urn:uuid:{stable_uuid(key, 'observation')}"
    patient_party = Party(Ref(patient, "Patient"), None)
    observation = _worked_week(
        worked,
        planned,
        patient_party,
        Ref(gradual_return_plan, "CarePlan"),
        Party(Ref(employer, "Organization"), None),
    )
    observation["meta"]["tag"] = _tags((coordinator_participant,))
    observation["_fullUrl"] = observation_url
    resources = [observation]
    if planned is not None and hours < planned:
        task = _shortfall_task(
            worked,
            Ref(observation_url, "Observation"),
            patient_party,
            Ref(plan, "CarePlan"),
            Party(Ref(coordinator, "Organization"), None),
            today,
        )
        task["basedOn"] = [_ref(plan)]
        resources.append(task)
    return _transaction(key, resources)


def plan_note(
    *,
    kind: NoteKind,
    plan: str,
    patient: str,
    sender: str,
    text: str,
    sent: date,
    recipients: Sequence[str] = (),
    about: Sequence[str] = (),
    changes: Sequence[str] = (),
    labels: Sequence[str] | None = None,
    addressees: Sequence[str] = (),
) -> dict[str, Any]:
    """A note on the plan: the round table's outcome (what was agreed, with references to the
    goals, activities and steps it added), an employer's offer or workplace visit, or the
    citizen's comment. Labels: about work (the employer may read it under consent), except a
    citizen's comment, which stays with the case unless the citizen labels it otherwise."""
    if labels is None:
        labels = (
            (SICKNESS_BENEFIT_CASE,)
            if kind == "citizen-comment"
            else (SICKNESS_BENEFIT_CASE, EMPLOYMENT_RELEVANT)
        )
    note: dict[str, Any] = {
        "resourceType": "Communication",
        "meta": _meta(None, labels, addressees),
        "basedOn": [_ref(plan)],
        "status": "completed",
        "category": [concept(PLAN_SYSTEM, kind)],
        "subject": _ref(patient),
        "sent": sent.isoformat(),
        "payload": [{"contentString": text}, *({"contentReference": _ref(c)} for c in changes)],
    }
    if sender.startswith(("Organization/", "Patient/")):
        note["sender"] = _ref(sender)
    if recipients:
        note["recipient"] = [_ref(r) for r in recipients]
    if about:
        note["about"] = [_ref(a) for a in about]
    return note


@dataclass(slots=True)
class PlanView:
    """What one reader sees of a plan (the gateway fills it through the reader's data path)."""

    plan: dict[str, Any]
    team: list[dict[str, Any]] = field(default_factory=list)
    goals: list[dict[str, Any]] = field(default_factory=list)
    activities: list[dict[str, Any]] = field(default_factory=list)
    gradual_return: list[dict[str, Any]] = field(default_factory=list)
    notes: list[dict[str, Any]] = field(default_factory=list)
    changes: list[tuple[str, str, str]] = field(default_factory=list)  # when, who, what
    names: dict[str, str] = field(default_factory=dict)  # Organization ref → display

    def resources(self) -> list[dict[str, Any]]:
        return [
            self.plan,
            *self.team,
            *self.goals,
            *self.activities,
            *self.gradual_return,
            *self.notes,
        ]
