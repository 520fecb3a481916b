"""``SicknessBenefitCase`` → transaction Bundle, as the table in jobcentre-case.md "Output" says."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from mappings._bundle import BundleBuilder, Ref
from mappings._codes import (
    ACT_CODE_SYSTEM,
    EMPLOYMENT_RELEVANT,
    MENTAL_HEALTH,
    OBSERVATION_CODE_SYSTEM,
    SICKNESS_BENEFIT_CASE,
    UCUM_SYSTEM,
    coding,
    concept,
    extension_url,
    security,
)
from mappings._document import add_original, add_provenance, sha256_hex
from mappings._parties import (
    Party,
    PersonInfo,
    add_organization,
    add_patient,
    add_practitioner,
)
from mappings._result import MappingResult, SourceDocument
from mappings._values import fhir_decimal, fhir_instant
from mappings.coordination import (
    NOT_A_DECISION,
    PROBABILITY_SYSTEM,
    REASON_SYSTEM,
    REASONS,
    RISK_SYSTEM,
    early_warning_reasons,
    probability,
)
from mappings.deadlines import due_after
from mappings.jobcentre_case._deadlines import (
    DEADLINE_STATUS_SYSTEM,
    DEADLINE_STATUSES,
    DEADLINE_SYSTEM,
    DEADLINES,
    ESTIMATE_NOTE,
    Deadline,
    case_deadlines,
)
from mappings.jobcentre_case._model import (
    FollowUp,
    PartialReturn,
    Period,
    SicknessBenefitCase,
    WorkedWeek,
)
from mappings.jobcentre_case._read import NAMESPACE
from mappings.jobcentre_case._tables import (
    AGREED_ACTION_URL,
    ASSESSMENT_SYSTEM,
    ASSESSMENTS,
    CAREPLAN_CATEGORY_SYSTEM,
    CASE_SYSTEM,
    CASEWORKER_SYSTEM,
    CATEGORIES,
    CATEGORY_SYSTEM,
    CATEGORY_URL,
    CLOSING_REASON_SYSTEM,
    CLOSING_REASON_URL,
    CONTACT_FORM_SYSTEM,
    DIAGNOSIS_GROUP_SYSTEM,
    DIAGNOSIS_GROUP_URL,
    DIAGNOSIS_GROUPS,
    EMPLOYER_URL,
    ENCOUNTER_NOTE_URL,
    EPISODE_TYPE,
    EPISODE_TYPE_SYSTEM,
    EXTENSION_GROUND_SYSTEM,
    EXTENSION_GROUNDS,
    FOLLOW_UP_CLASS,
    FOLLOW_UP_TYPE_SYSTEM,
    FOLLOW_UP_TYPES,
    GRADUAL_RETURN,
    MENTAL_HEALTH_GROUPS,
    PARTICIPANT_ROLE_SYSTEM,
    REASSESSMENT_OUTCOME_SYSTEM,
    REASSESSMENT_OUTCOMES,
    SHORTFALL_INTERPRETATION_SYSTEM,
    SICK_LISTED_FROM,
    SICK_LISTED_FROM_SYSTEM,
    SICK_LISTED_FROM_URL,
)

FORMAT = "jobcentre-case"
WARNING_LEVEL_URL = extension_url("early-warning-level")
WORK_ABILITY_ASSESSMENT = "work-ability-assessment"
REASSESSMENT = "reassessment"
LEGAL_GROUND = "legal-ground"
HOURS = {"unit": "timer pr. uge", "system": UCUM_SYSTEM, "code": "h/wk"}
HOURS_WORKED = "hours-worked"
EXTENSION_GROUND = "extension-ground"
# The caseworker's Task when a week's hours fall short of the plan (jobcentre-case.md
# "ArbejdetTimer": "a shortfall is flagged"; DOMAIN.md: "a missed step prompts a talk").
SHORTFALL_TASK = "gradual-return-shortfall"
_WHEN = {"formiddag": "MORN", "eftermiddag": "AFT"}


def _activity_status(start: date, end: date | None, today: date, closed: bool) -> str:
    if closed or (end is not None and end < today):
        return "completed"
    return "not-started" if start > today else "in-progress"


def _times(repeat: dict[str, Any], period: Period) -> None:
    """(1.1) Tider: clock spans become times of day (and a duration when they agree); the
    words ``formiddag``/``eftermiddag`` become ``when`` (R4 allows one or the other, tim-10)."""
    spans = [t for t in period.times if t not in _WHEN]
    if spans:
        repeat["timeOfDay"] = [f"{t[:5]}:00" for t in spans]
        lengths = {_minutes(t) for t in spans}
        minutes = lengths.pop() if len(lengths) == 1 else 0
        if minutes > 0:
            repeat["duration"] = fhir_decimal(Decimal(minutes) / Decimal(60))
            repeat["durationUnit"] = "h"
    elif period.times:
        repeat["when"] = [_WHEN[t] for t in period.times]


def _minutes(span: str) -> int:
    start, end = span.split("-")
    return (int(end[:2]) * 60 + int(end[3:])) - (int(start[:2]) * 60 + int(start[3:]))


def _planned_hours(partial: PartialReturn, monday: date) -> Decimal | None:
    """The plan's hours per week for the ISO week starting ``monday`` (a Periode covering it)."""
    sunday = monday + timedelta(days=6)
    for period in partial.periods:
        if period.start <= sunday and period.end >= monday:
            return period.hours_per_week
    return None


def _reassessment_components(case: SicknessBenefitCase) -> list[dict[str, Any]]:
    assert case.reassessment is not None  # noqa: S101 - only called with one
    components: list[dict[str, Any]] = [
        {
            "code": concept(OBSERVATION_CODE_SYSTEM, LEGAL_GROUND),
            "valueString": case.reassessment.legal_ground,
        }
    ]
    if (ground := case.reassessment.extension) is not None:
        # (1.1) the coded §27 ground; its limit is the extension-limit deadline Task.
        components.append(
            {
                "code": concept(OBSERVATION_CODE_SYSTEM, EXTENSION_GROUND),
                "valueCodeableConcept": {
                    "coding": [coding(EXTENSION_GROUND_SYSTEM, ground, EXTENSION_GROUNDS[ground])]
                },
            }
        )
    return components


def _episode_extensions(case: SicknessBenefitCase, employer: Party | None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if case.category is not None:
        parts: list[dict[str, Any]] = [
            {
                "url": "category",
                "valueCoding": coding(CATEGORY_SYSTEM, case.category, CATEGORIES[case.category]),
            }
        ]
        if case.category_set is not None:
            parts.append({"url": "set", "valueDate": case.category_set.isoformat()})
        out.append({"url": CATEGORY_URL, "extension": parts})
    out.append(
        {
            "url": SICK_LISTED_FROM_URL,
            "valueCoding": coding(
                SICK_LISTED_FROM_SYSTEM,
                case.sick_listed_from,
                SICK_LISTED_FROM[case.sick_listed_from],
            ),
        }
    )
    if employer is not None:
        out.append({"url": EMPLOYER_URL, "valueReference": employer.ref()})
    if case.diagnosis_group is not None:
        group = case.diagnosis_group
        out.append(
            {
                "url": DIAGNOSIS_GROUP_URL,
                "valueCoding": coding(DIAGNOSIS_GROUP_SYSTEM, group, DIAGNOSIS_GROUPS[group]),
            }
        )
    if case.closing is not None:
        out.append(
            {
                "url": CLOSING_REASON_URL,
                "valueCoding": coding(CLOSING_REASON_SYSTEM, case.closing.reason),
            }
        )
    return out


def _encounter(
    follow_up: FollowUp,
    categories: list[str],
    patient: Party,
    episode: Ref,
    jobcentre: Party,
    today: date,
) -> dict[str, Any]:
    class_code, class_display = FOLLOW_UP_CLASS[follow_up.form]
    participants = []
    for participant in follow_up.participants:
        entry: dict[str, Any] = {"type": [concept(PARTICIPANT_ROLE_SYSTEM, participant.role)]}
        if participant.name:
            entry["individual"] = {"display": participant.name}
        participants.append(entry)
    extensions: list[dict[str, Any]] = [
        {"url": AGREED_ACTION_URL, "valueString": action} for action in follow_up.actions
    ]
    if follow_up.note:
        extensions.append({"url": ENCOUNTER_NOTE_URL, "valueAnnotation": {"text": follow_up.note}})
    resource: dict[str, Any] = {
        "resourceType": "Encounter",
        "meta": {"security": security(*categories)},
        "status": "finished" if follow_up.day <= today else "planned",
        "class": coding(ACT_CODE_SYSTEM, class_code, class_display),
        "type": [
            {
                "coding": [
                    coding(FOLLOW_UP_TYPE_SYSTEM, follow_up.type, FOLLOW_UP_TYPES[follow_up.type])
                ]
            },
            concept(CONTACT_FORM_SYSTEM, follow_up.form),
        ],
        "subject": patient.ref(),
        "episodeOfCare": [episode()],
        "period": {"start": follow_up.day.isoformat(), "end": follow_up.day.isoformat()},
        "serviceProvider": jobcentre.ref(),
    }
    if extensions:
        resource["extension"] = extensions
    if participants:
        resource["participant"] = participants
    return resource


def _care_plan(
    partial: PartialReturn,
    patient: Party,
    episode: Ref,
    jobcentre: Party,
    today: date,
    closed: bool,
) -> dict[str, Any]:
    activities = []
    for period in partial.periods:
        repeat: dict[str, Any] = {
            "boundsPeriod": {"start": period.start.isoformat(), "end": period.end.isoformat()}
        }
        if period.days:
            repeat["dayOfWeek"] = list(period.days)
        _times(repeat, period)
        activities.append(
            {
                "detail": {
                    "code": concept(OBSERVATION_CODE_SYSTEM, "hours-per-week"),
                    "status": _activity_status(period.start, period.end, today, closed),
                    "scheduledTiming": {"repeat": repeat},
                    "quantity": {"value": fhir_decimal(period.hours_per_week), **HOURS},
                }
            }
        )
    period_out = {"start": partial.start.isoformat()}
    if partial.end is not None:
        period_out["end"] = partial.end.isoformat()
    ended = closed or (partial.end is not None and partial.end < today)
    resource: dict[str, Any] = {
        "resourceType": "CarePlan",
        "meta": {"security": security(SICKNESS_BENEFIT_CASE, EMPLOYMENT_RELEVANT)},
        "status": "completed" if ended else "active",
        "intent": "plan",
        "category": [concept(CAREPLAN_CATEGORY_SYSTEM, GRADUAL_RETURN)],
        "title": "Delvis raskmelding med optrapningsplan",
        "subject": patient.ref(),
        "period": period_out,
        "author": jobcentre.ref(),
        "supportingInfo": [episode()],
    }
    if activities:
        resource["activity"] = activities
    return resource


def _deadline_task(
    deadline: Deadline,
    patient: Party,
    episode: Ref,
    jobcentre: Party,
    encounters: list[Ref],
    reassessment: Ref | None,
) -> dict[str, Any]:
    """A Task per legal deadline (``_deadlines``); ``output`` names what fulfilled it."""
    display, _ = DEADLINES[deadline.code]
    task: dict[str, Any] = {
        "resourceType": "Task",
        "meta": {"security": security(SICKNESS_BENEFIT_CASE)},
        "status": deadline.status,
        "intent": "plan",
        "code": {"coding": [coding(DEADLINE_SYSTEM, deadline.code, display)]},
        "description": display,
        "focus": episode(),
        "for": patient.ref(),
        "authoredOn": deadline.start.isoformat(),
        "owner": jobcentre.ref(),
        "restriction": {
            "period": {"start": deadline.start.isoformat(), "end": deadline.due.isoformat()}
        },
    }
    if deadline.business_status is not None:
        code = deadline.business_status
        task["businessStatus"] = {
            "coding": [coding(DEADLINE_STATUS_SYSTEM, code, DEADLINE_STATUSES[code])]
        }
    outputs = [
        {"type": concept(DEADLINE_SYSTEM, deadline.code), "valueReference": encounters[i]()}
        for i in deadline.follow_ups
    ]
    if deadline.reassessment and reassessment is not None:
        outputs.append(
            {"type": concept(DEADLINE_SYSTEM, deadline.code), "valueReference": reassessment()}
        )
    if deadline.closing:
        outputs.append(
            {"type": concept(DEADLINE_SYSTEM, deadline.code), "valueReference": episode()}
        )
    if outputs:
        task["output"] = outputs
    if deadline.estimated:
        task["note"] = [{"text": ESTIMATE_NOTE}]
    return task


def _early_warning(
    case: SicknessBenefitCase,
    categories: list[str],
    first: int,
    patient: Party,
    episode: Ref,
    encounter: Ref,
    caseworker: Party | None,
) -> dict[str, Any]:
    """At the first follow-up: the risk of a long absence with its reasons, for the caseworker
    (``mappings.coordination._warning``); a signal, never a decision (status preliminary)."""
    reasons = early_warning_reasons(
        first_day=case.first_day_of_absence,
        payments=case.payments,
        category=case.category,
        mental_health=case.diagnosis_group in MENTAL_HEALTH_GROUPS,
    )
    level = probability(reasons)
    resource: dict[str, Any] = {
        "resourceType": "RiskAssessment",
        "meta": {"security": security(*categories)},
        "status": "preliminary",
        "code": {
            "coding": [coding(RISK_SYSTEM, "long-term-absence", "Risiko for langvarigt sygefravær")]
        },
        "subject": patient.ref(),
        "encounter": encounter(),
        "occurrenceDateTime": case.follow_ups[first].day.isoformat(),
        "basis": [episode(), encounter()],
        "mitigation": NOT_A_DECISION,
    }
    # The level as an extension, not prediction.qualitativeRisk: R4's ras-2 is evaluated as
    # broken by validators whenever a prediction has no numeric probability, and a number
    # would claim a precision the flag does not have.
    resource["extension"] = [
        {
            "url": WARNING_LEVEL_URL,
            "valueCodeableConcept": {"coding": [coding(PROBABILITY_SYSTEM, level)]},
        }
    ]
    if caseworker is not None:
        resource["performer"] = caseworker.ref()
    if reasons:
        resource["reasonCode"] = [
            {"coding": [coding(REASON_SYSTEM, r.code, REASONS[r.code])], "text": r.detail}
            for r in reasons
        ]
    return resource


def _worked_week(
    worked: WorkedWeek,
    planned: Decimal | None,
    patient: Party,
    plan: Ref,
    jobcentre: Party,
) -> dict[str, Any]:
    """(1.1) ArbejdetTimer: hours worked that ISO week, beside the plan's, a shortfall flagged."""
    sunday = worked.monday + timedelta(days=6)
    observation: dict[str, Any] = {
        "resourceType": "Observation",
        "meta": {"security": security(SICKNESS_BENEFIT_CASE, EMPLOYMENT_RELEVANT)},
        "status": "final",
        "code": concept(OBSERVATION_CODE_SYSTEM, HOURS_WORKED),
        "subject": patient.ref(),
        "focus": [plan()],
        "effectivePeriod": {"start": worked.monday.isoformat(), "end": sunday.isoformat()},
        "performer": [jobcentre.ref()],
        "valueQuantity": {"value": fhir_decimal(worked.hours), **HOURS},
    }
    if planned is not None:
        observation["referenceRange"] = [
            {"low": {"value": fhir_decimal(planned), **HOURS}, "text": "optrapningsplanens timer"}
        ]
        if worked.hours < planned:
            observation["interpretation"] = [
                {"coding": [coding(SHORTFALL_INTERPRETATION_SYSTEM, "L", "Low")]}
            ]
    return observation


def _shortfall_task(
    worked: WorkedWeek,
    observation: Ref,
    patient: Party,
    episode: Ref,
    jobcentre: Party,
    today: date,
) -> dict[str, Any]:
    """A talk with the citizen about the missed step, for the caseworker, due a week after."""
    sunday = worked.monday + timedelta(days=6)
    due = due_after(SHORTFALL_TASK, sunday)
    display, _ = DEADLINES[SHORTFALL_TASK]
    task: dict[str, Any] = {
        "resourceType": "Task",
        "meta": {"security": security(SICKNESS_BENEFIT_CASE, EMPLOYMENT_RELEVANT)},
        "status": "requested",
        "intent": "plan",
        "code": {"coding": [coding(DEADLINE_SYSTEM, SHORTFALL_TASK, display)]},
        "description": f"{display} ({worked.week})",
        "focus": episode(),
        "for": patient.ref(),
        "authoredOn": sunday.isoformat(),
        "owner": jobcentre.ref(),
        "reasonReference": observation(),
        "restriction": {"period": {"start": sunday.isoformat(), "end": due.isoformat()}},
    }
    if due < today:
        task["businessStatus"] = {
            "coding": [coding(DEADLINE_STATUS_SYSTEM, "overdue", DEADLINE_STATUSES["overdue"])]
        }
    return task


def to_fhir_bundle(
    case: SicknessBenefitCase, xml_bytes: bytes, *, now: datetime, sender: str | None
) -> MappingResult:
    """The whole case as of ``Opdateret`` as one transaction Bundle."""
    value = f"{case.municipality}/{case.case_id}"
    key = f"{FORMAT}|{CASE_SYSTEM}|{value}"
    builder = BundleBuilder(key)
    today = now.date()
    # "psykisk" reveals a mental-health condition: the case and its notes are labelled.
    mental = case.diagnosis_group in MENTAL_HEALTH_GROUPS
    categories = [SICKNESS_BENEFIT_CASE, MENTAL_HEALTH] if mental else [SICKNESS_BENEFIT_CASE]
    employment = [SICKNESS_BENEFIT_CASE, EMPLOYMENT_RELEVANT]

    patient = add_patient(builder, cpr=case.cpr, name=PersonInfo(text=case.citizen_name))
    jobcentre = add_organization(builder, case.jobcentre, "jobcentre")
    employer = (
        add_organization(builder, case.employer, "employer") if case.employer is not None else None
    )
    caseworker = None
    if case.caseworker_name is not None:
        match = None
        if case.caseworker_initials:
            match = (CASEWORKER_SYSTEM, f"{case.municipality}/{case.caseworker_initials}")
        caseworker = add_practitioner(
            builder,
            name=PersonInfo(text=case.caseworker_name),
            authorisation=None,
            local_key="caseworker",
            match=match,
        )

    episode_resource: dict[str, Any] = {
        "resourceType": "EpisodeOfCare",
        "meta": {"security": security(*categories)},
        "extension": _episode_extensions(case, employer),
        "identifier": [{"system": CASE_SYSTEM, "value": value, "assigner": jobcentre.ref()}],
        "status": "finished" if case.closing is not None else "active",
        "type": [concept(EPISODE_TYPE_SYSTEM, EPISODE_TYPE, "Sygedagpengesag")],
        "patient": patient.ref(),
        "managingOrganization": jobcentre.ref(),
        "period": {"start": case.first_day_of_absence.isoformat()},
    }
    if case.closing is not None:
        episode_resource["period"]["end"] = case.closing.day.isoformat()
    if caseworker is not None:
        episode_resource["careManager"] = caseworker.ref()
    episode = builder.owned(episode_resource, identifier=(CASE_SYSTEM, value))

    seen: dict[str, int] = {}
    encounters: list[Ref] = []
    for follow_up in case.follow_ups:
        day = follow_up.day.isoformat()
        seen[day] = seen.get(day, 0) + 1
        local_key = f"follow-up|{day}|{seen[day]}"
        encounter = builder.owned(
            _encounter(follow_up, categories, patient, episode, jobcentre, today),
            local_key=local_key,
        )
        encounters.append(encounter)
        if follow_up.assessment is not None:
            builder.owned(
                {
                    "resourceType": "Observation",
                    "meta": {"security": security(*employment)},
                    "status": "final",
                    "code": concept(OBSERVATION_CODE_SYSTEM, WORK_ABILITY_ASSESSMENT),
                    "subject": patient.ref(),
                    "encounter": encounter(),
                    "effectiveDateTime": day,
                    "performer": [jobcentre.ref()],
                    "valueCodeableConcept": {
                        "coding": [
                            coding(
                                ASSESSMENT_SYSTEM,
                                follow_up.assessment,
                                ASSESSMENTS[follow_up.assessment],
                            )
                        ]
                    },
                },
                local_key=f"{local_key}|assessment",
            )
    held = [i for i, f in enumerate(case.follow_ups) if f.day >= case.first_day_of_absence]
    if held:
        first = min(held, key=lambda i: (case.follow_ups[i].day, i))
        builder.owned(
            _early_warning(
                case, categories, first, patient, episode, encounters[first], caseworker
            ),
            local_key="early-warning",
        )
    closed = case.closing is not None
    plan_seen: dict[str, int] = {}
    for partial in case.partial_returns:
        start = partial.start.isoformat()
        plan_seen[start] = plan_seen.get(start, 0) + 1
        plan_key = f"gradual-return|{start}|{plan_seen[start]}"
        plan = builder.owned(
            _care_plan(partial, patient, episode, jobcentre, today, closed), local_key=plan_key
        )
        for worked in partial.worked:
            planned = _planned_hours(partial, worked.monday)
            observation = builder.owned(
                _worked_week(worked, planned, patient, plan, jobcentre),
                local_key=f"{plan_key}|worked|{worked.week}",
            )
            if planned is not None and worked.hours < planned:
                builder.owned(
                    _shortfall_task(worked, observation, patient, episode, jobcentre, today),
                    local_key=f"{plan_key}|shortfall|{worked.week}",
                )
    reassessment: Ref | None = None
    if case.reassessment is not None:
        outcome = case.reassessment.outcome
        reassessment = builder.owned(
            {
                "resourceType": "Observation",
                "meta": {"security": security(SICKNESS_BENEFIT_CASE)},
                "status": "final",
                "code": concept(OBSERVATION_CODE_SYSTEM, REASSESSMENT),
                "subject": patient.ref(),
                "effectiveDateTime": case.reassessment.day.isoformat(),
                "performer": [jobcentre.ref()],
                "valueCodeableConcept": {
                    "coding": [
                        coding(REASSESSMENT_OUTCOME_SYSTEM, outcome, REASSESSMENT_OUTCOMES[outcome])
                    ]
                },
                "component": _reassessment_components(case),
            },
            local_key="reassessment",
        )
    for deadline in case_deadlines(case, today):
        builder.owned(
            _deadline_task(deadline, patient, episode, jobcentre, encounters, reassessment),
            local_key=f"deadline|{deadline.code}",
        )

    document = add_original(
        builder,
        xml_bytes=xml_bytes,
        namespace=NAMESPACE,
        document_type=FORMAT,
        subject=patient.ref,
        author=jobcentre.ref,
        identifiers=[{"system": CASE_SYSTEM, "value": value}],
        categories=categories,
        now=now,
    )
    add_provenance(
        builder,
        document=document,
        authors=[jobcentre.ref],
        occurred=case.updated,
        categories=categories,
        now=now,
        sender=sender,
    )
    return MappingResult(
        format=FORMAT,
        bundle=builder.build(fhir_instant(now)),
        warnings=[],
        source=SourceDocument(
            format=FORMAT,
            system=CASE_SYSTEM,
            value=value,
            issued=case.updated,
            sha256=sha256_hex(xml_bytes),
            key=key,
        ),
    )
