"""Minimal valid resources per profile and, per constraint key, a change that breaks only it."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

BASE = "http://brobygger.dk/fhir"
SD = f"{BASE}/StructureDefinition/"
DC = f"{BASE}/CodeSystem/data-category"
PATIENT = {"reference": "Patient/p1", "type": "Patient"}
ORG = {"reference": "Organization/o1", "type": "Organization"}


def label(*codes: str) -> dict[str, Any]:
    return {"security": [{"system": DC, "code": c} for c in codes]}


def cs(name: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": f"{BASE}/CodeSystem/{name}", "code": code}]}


VALID: dict[str, dict[str, Any]] = {
    "rehab-plan": {
        "resourceType": "ServiceRequest",
        "meta": label("rehab-plan"),
        "extension": [{"url": f"{SD}consent-informed", "valueBoolean": True}],
        "identifier": [{"system": f"{BASE}/sid/ggop-letter", "value": "123/L1"}],
        "status": "active",
        "intent": "plan",
        "category": [cs("rehab-plan-type", "almen-basal")],
        "subject": PATIENT,
        "authoredOn": "2026-10-02",
        "requester": {"reference": "PractitionerRole/r1"},
        "performer": [ORG],
        "reasonReference": [{"reference": "Condition/c1", "type": "Condition"}],
    },
    "statement-request": {
        "resourceType": "ServiceRequest",
        "meta": label("medical-statement"),
        "identifier": [{"system": f"{BASE}/sid/statement-request", "value": "kommune:0751/A1"}],
        "status": "active",
        "intent": "order",
        "code": cs("statement-form", "LAE285"),
        "subject": PATIENT,
        "authoredOn": "2026-10-02",
        "requester": ORG,
        "performer": [ORG],
    },
    "sickness-benefit-case": {
        "resourceType": "EpisodeOfCare",
        "meta": label("sickness-benefit-case"),
        "identifier": [{"system": f"{BASE}/sid/sickness-benefit-case", "value": "0751/S1"}],
        "status": "active",
        "type": [cs("episode-type", "sickness-benefit-case")],
        "patient": PATIENT,
        "managingOrganization": ORG,
        "period": {"start": "2026-10-01"},
    },
    "gradual-return-plan": {
        "resourceType": "CarePlan",
        "meta": label("sickness-benefit-case", "employment-relevant"),
        "status": "active",
        "intent": "plan",
        "category": [cs("care-plan-category", "gradual-return-to-work")],
        "subject": PATIENT,
        "period": {"start": "2026-08-17"},
        "activity": [
            {
                "detail": {
                    "code": cs("observation-code", "hours-per-week"),
                    "status": "scheduled",
                    "scheduledTiming": {"repeat": {"boundsPeriod": {"start": "2026-08-17"}}},
                    "quantity": {
                        "value": 15,
                        "system": "http://unitsofmeasure.org",
                        "code": "h/wk",
                    },
                }
            }
        ],
    },
    "deadline-task": {
        "resourceType": "Task",
        "meta": label("medical-statement"),
        "status": "requested",
        "intent": "order",
        "code": cs("deadline", "statement-due"),
        "focus": {"reference": "ServiceRequest/s1"},
        "for": PATIENT,
        "authoredOn": "2026-10-02",
        "owner": ORG,
        "restriction": {"period": {"end": "2026-10-16"}},
    },
    "medical-statement-response": {
        "resourceType": "QuestionnaireResponse",
        "meta": label("medical-statement"),
        "identifier": {"system": f"{BASE}/sid/form", "value": "yder:1/F1"},
        "questionnaire": f"{BASE}/Questionnaire/LAE285|2024",
        "status": "completed",
        "subject": PATIENT,
        "authored": "2026-10-15T15:40:00+02:00",
        "author": {"reference": "PractitionerRole/r1"},
        "item": [
            {
                "linkId": "3",
                "item": [
                    {
                        "linkId": "3.1",
                        "answer": [
                            {
                                "valueCoding": {
                                    "system": f"{BASE}/CodeSystem/work-capacity",
                                    "code": "delvis",
                                }
                            }
                        ],
                    }
                ],
            }
        ],
    },
    "employment-relevant-observation": {
        "resourceType": "Observation",
        "meta": label("medical-statement", "employment-relevant"),
        "status": "final",
        "code": cs("observation-code", "hours-per-week"),
        "subject": PATIENT,
        "effectiveDateTime": "2026-10-15",
        "valueQuantity": {"value": 15, "system": "http://unitsofmeasure.org", "code": "h/wk"},
    },
    "privacy-consent": {
        "resourceType": "Consent",
        "status": "active",
        "scope": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                    "code": "patient-privacy",
                }
            ]
        },
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": "Patient/ole"},
        "dateTime": "2024-05-10T09:00:00+02:00",
        "policyRule": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}
            ]
        },
        "sourceAttachment": {"contentType": "application/pdf", "title": "signed consent"},
        "provision": {
            "type": "permit",
            "actor": [
                {
                    "role": {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                "code": "IRCP",
                            }
                        ]
                    },
                    "reference": {"reference": "Organization/org-jobcenter-aarhus"},
                }
            ],
            "purpose": [{"system": f"{BASE}/CodeSystem/purpose-of-use", "code": "citizen-access"}],
            "securityLabel": [{"system": DC, "code": "employment-relevant"}],
            "class": [{"system": "http://hl7.org/fhir/resource-types", "code": "Observation"}],
            "provision": [
                {"type": "deny", "securityLabel": [{"system": DC, "code": "mental-health"}]}
            ],
        },
    },
    # The shared plan (docs/shared-plan.md).
    "coordination-plan": {
        "resourceType": "CarePlan",
        "meta": label("sickness-benefit-case", "employment-relevant"),
        "status": "active",
        "intent": "plan",
        "category": [cs("care-plan-category", "coordinated-return-to-work")],
        "subject": PATIENT,
        "period": {"start": "2026-10-22"},
        "author": ORG,
        "careTeam": [{"reference": "CareTeam/t1", "type": "CareTeam"}],
        "supportingInfo": [{"reference": "EpisodeOfCare/e1", "type": "EpisodeOfCare"}],
    },
    "coordination-care-team": {
        "resourceType": "CareTeam",
        "meta": label("sickness-benefit-case"),
        "status": "active",
        "subject": PATIENT,
        "participant": [
            {"role": [cs("coordination-plan", "coordinator")], "member": ORG},
            {"role": [cs("coordination-plan", "therapist")], "member": ORG},
        ],
    },
    "plan-goal": {
        "resourceType": "Goal",
        "meta": label("sickness-benefit-case", "employment-relevant"),
        "extension": [{"url": f"{SD}goal-plan", "valueReference": {"reference": "CarePlan/c1"}}],
        "lifecycleStatus": "active",
        "category": [cs("coordination-plan", "work-goal")],
        "description": {"text": "30 timer om ugen"},
        "subject": PATIENT,
        "target": [{"measure": {"text": "timer pr. uge"}, "dueDate": "2027-02-01"}],
    },
    "plan-activity": {
        "resourceType": "Task",
        "meta": label("rehab-progress"),
        "basedOn": [{"reference": "CarePlan/c1"}],
        "status": "requested",
        "intent": "plan",
        "code": cs("coordination-plan", "plan-activity"),
        "description": "Genoptræning",
        "for": PATIENT,
        "owner": ORG,
        "restriction": {"period": {"end": "2027-01-25"}},
    },
}

Change = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Change:
    def change(resource: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = resource
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        if value is _DELETE:
            del target[last]
        elif last.isdigit():
            target[int(last)] = value
        else:
            target[last] = value

    return change


_DELETE = object()


def _delete(path: str) -> Change:
    return _set(path, _DELETE)


def _consent_actor(change: dict[str, Any]) -> Change:
    return lambda r: r["provision"]["actor"][0].update(change)


# key → (profile, change, expected issue expression)
BREAKS: dict[str, tuple[str, Change, str]] = {
    "bro-rp-1": ("rehab-plan", _set("intent", "proposal"), "ServiceRequest"),
    "bro-rp-2": ("rehab-plan", _set("identifier.0.system", "urn:x"), "ServiceRequest"),
    "bro-rp-3": ("rehab-plan", _set("category.0", {"text": "plan"}), "ServiceRequest"),
    "bro-rp-4": (
        "rehab-plan",
        lambda r: r["extension"].append(copy.deepcopy(r["extension"][0])),
        "ServiceRequest",
    ),
    "bro-rp-5": ("rehab-plan", _set("meta", label("medical-statement")), "ServiceRequest.meta"),
    "bro-rp-6": (
        "rehab-plan",
        _set("reasonReference.0.type", "Observation"),
        "ServiceRequest.reasonReference",
    ),
    "bro-sr-1": ("statement-request", _set("intent", "plan"), "ServiceRequest"),
    "bro-sr-2": ("statement-request", _set("identifier.0.system", "urn:x"), "ServiceRequest"),
    "bro-sr-3": ("statement-request", _set("code", {"text": "LÆ 285"}), "ServiceRequest"),
    "bro-sr-4": ("statement-request", _set("meta", label("rehab-plan")), "ServiceRequest.meta"),
    "bro-sbc-1": ("sickness-benefit-case", _set("identifier.0.value", "S1"), "EpisodeOfCare"),
    "bro-sbc-2": ("sickness-benefit-case", _set("type.0", {"text": "sag"}), "EpisodeOfCare"),
    "bro-sbc-3": ("sickness-benefit-case", _set("status", "finished"), "EpisodeOfCare"),
    "bro-sbc-4": (
        "sickness-benefit-case",
        _set(
            "extension",
            [
                {
                    "url": f"{SD}diagnosis-group",
                    "valueCoding": cs("diagnosis-group", "psykisk")["coding"][0],
                }
            ],
        ),
        "EpisodeOfCare",
    ),
    "bro-sbc-5": (
        "sickness-benefit-case",
        _set(
            "extension",
            [{"url": f"{SD}employer", "valueReference": ORG}] * 2,
        ),
        "EpisodeOfCare",
    ),
    "bro-sbc-6": (
        "sickness-benefit-case",
        _set("meta", label("employment-relevant")),
        "EpisodeOfCare.meta",
    ),
    "bro-grp-1": ("gradual-return-plan", _set("intent", "order"), "CarePlan"),
    "bro-grp-2": (
        "gradual-return-plan",
        _set("category.0", {"coding": [{"system": "urn:x", "code": "gradual-return-to-work"}]}),
        "CarePlan",
    ),
    "bro-grp-3": (
        "gradual-return-plan",
        _set("meta", label("sickness-benefit-case")),
        "CarePlan.meta",
    ),
    "bro-grp-4": (
        "gradual-return-plan",
        _delete("activity.0.detail.scheduledTiming"),
        "CarePlan.activity",
    ),
    "bro-grp-5": (
        "gradual-return-plan",
        _set("activity.0.detail.quantity.value", 38),
        "CarePlan.activity",
    ),
    "bro-dt-1": ("deadline-task", _delete("focus"), "Task"),
    "bro-dt-2": ("deadline-task", _set("status", "completed"), "Task"),
    "bro-dt-4": ("deadline-task", _set("code", cs("task-x", "fulfill")), "Task"),
    "bro-dt-3": ("deadline-task", _set("meta", {"tag": [{"code": "x"}]}), "Task.meta"),
    "bro-msr-1": (
        "medical-statement-response",
        _set("identifier.system", "urn:x"),
        "QuestionnaireResponse",
    ),
    "bro-msr-2": (
        "medical-statement-response",
        _set("questionnaire", f"{BASE}/Questionnaire/LAE285"),
        "QuestionnaireResponse",
    ),
    "bro-msr-3": (
        "medical-statement-response",
        _set("status", "in-progress"),
        "QuestionnaireResponse",
    ),
    "bro-msr-4": (
        "medical-statement-response",
        _set("subject", {"reference": "Group/g1"}),
        "QuestionnaireResponse",
    ),
    "bro-msr-5": (
        "medical-statement-response",
        lambda r: r["item"].insert(
            0,
            {
                "linkId": "2",
                "item": [
                    {
                        "linkId": "2.1",
                        "answer": [
                            {
                                "valueCoding": {
                                    "system": "urn:oid:1.2.208.176.2.4.12",
                                    "code": "DF432",
                                }
                            }
                        ],
                    }
                ],
            },
        ),
        "QuestionnaireResponse",
    ),
    "bro-msr-6": (
        "medical-statement-response",
        _set("meta", label("rehab-plan")),
        "QuestionnaireResponse.meta",
    ),
    "bro-ero-1": (
        "employment-relevant-observation",
        _set("code", {"coding": [{"system": "http://loinc.org", "code": "11341-5"}]}),
        "Observation",
    ),
    "bro-ero-2": (
        "employment-relevant-observation",
        lambda r: r["code"]["coding"].append(
            {"system": "urn:oid:1.2.208.176.2.4.12", "code": "DM751"}
        ),
        "Observation",
    ),
    "bro-ero-3": (
        "employment-relevant-observation",
        _set("valueQuantity.code", "h"),
        "Observation",
    ),
    "bro-ero-4": (
        "employment-relevant-observation",
        lambda r: (r.pop("valueQuantity"), r.update(code=cs("observation-code", "accommodations"))),
        "Observation",
    ),
    "bro-ero-5": (
        "employment-relevant-observation",
        _set("meta", label("medical-statement")),
        "Observation.meta",
    ),
    "bro-con-1": ("privacy-consent", _set("scope.coding.0.code", "research"), "Consent"),
    "bro-con-2": ("privacy-consent", _set("patient", {"reference": "Group/g1"}), "Consent"),
    "bro-con-3": ("privacy-consent", _set("status", "revoked"), "Consent"),
    "bro-con-4": (
        "privacy-consent",
        _set("provision.purpose.0", {"system": "urn:x", "code": "citizen-access"}),
        "Consent",
    ),
    "bro-con-5": (
        "privacy-consent",
        _set("provision.provision.0.securityLabel.0", {"system": "urn:x", "code": "mental-health"}),
        "Consent",
    ),
    "bro-con-6": ("privacy-consent", _set("provision.provision.0.type", "maybe"), "Consent"),
    "bro-con-7": ("privacy-consent", _consent_actor({"role": {"text": "reader"}}), "Consent"),
    "bro-con-8": (
        "privacy-consent",
        _consent_actor({"reference": {"reference": "Practitioner/x"}}),
        "Consent",
    ),
    "bro-con-9": (
        "privacy-consent",
        _set("provision.class.0", {"system": "urn:x", "code": "Observation"}),
        "Consent",
    ),
    "bro-con-10": (
        "privacy-consent",
        _set("provision.provision.0.code", [{"text": "x"}]),
        "Consent",
    ),
    "bro-con-11": ("privacy-consent", _set("provision.type", "deny"), "Consent.provision"),
    "bro-con-12": ("privacy-consent", _delete("provision.actor"), "Consent.provision"),
    "bro-cop-1": (
        "coordination-plan",
        _set("category.0", cs("care-plan-category", "gradual-return-to-work")),
        "CarePlan",
    ),
    "bro-cop-2": ("coordination-plan", _set("meta", label("employment-relevant")), "CarePlan"),
    "bro-cop-3": ("coordination-plan", _delete("careTeam"), "CarePlan"),
    "bro-cop-4": (
        "coordination-plan",
        _set("addresses", [{"reference": "Condition/c1"}]),
        "CarePlan",
    ),
    "bro-cct-1": (
        "coordination-care-team",
        _set("participant.1.role", [cs("coordination-plan", "coordinator")]),
        "CareTeam",
    ),
    "bro-cct-2": (
        "coordination-care-team",
        _set("participant.1.role", [{"text": "x"}]),
        "CareTeam",
    ),
    "bro-cct-3": ("coordination-care-team", _set("meta", label("rehab-plan")), "CareTeam"),
    "bro-gol-1": ("plan-goal", _delete("extension"), "Goal"),
    "bro-gol-2": ("plan-goal", _set("category.0", {"text": "mål"}), "Goal"),
    "bro-gol-3": ("plan-goal", _set("category.0", cs("coordination-plan", "health-goal")), "Goal"),
    "bro-gol-4": ("plan-goal", _delete("target"), "Goal"),
    "bro-pac-1": ("plan-activity", _set("code", {"text": "x"}), "Task"),
    "bro-pac-2": ("plan-activity", _delete("basedOn"), "Task"),
    "bro-pac-3": ("plan-activity", _delete("description"), "Task"),
}


def valid(profile: str) -> dict[str, Any]:
    return copy.deepcopy(VALID[profile])


def broken(key: str) -> tuple[str, dict[str, Any], str]:
    profile, change, expression = BREAKS[key]
    resource = valid(profile)
    change(resource)
    return profile, resource, expression
