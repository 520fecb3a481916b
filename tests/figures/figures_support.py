"""A generated population in the store (plain resources) for the key-figure tests."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from gateway.store.repository import Store

JC = "Organization/org-jobcenter-aarhus"
RU = "Organization/org-aarhus-genoptraening"


def episode(patient: str, start: date, end: date | None = None, org: str = JC) -> dict[str, Any]:
    period = {"start": start.isoformat(), **({"end": end.isoformat()} if end else {})}
    return {
        "resourceType": "EpisodeOfCare",
        "status": "finished" if end else "active",
        "type": [
            {
                "coding": [
                    {
                        "system": "http://brobygger.dk/fhir/CodeSystem/episode-type",
                        "code": "sickness-benefit-case",
                    }
                ]
            }
        ],
        "patient": {"reference": patient},
        "managingOrganization": {"reference": org},
        "period": period,
    }


def plan(patient: str, authored: date, unit: str = RU) -> dict[str, Any]:
    return {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "plan",
        "subject": {"reference": patient},
        "authoredOn": authored.isoformat(),
        "performer": [{"reference": unit}],
    }


async def seed(store: Store, *, jobcentre_cases: int, unit_plans: int) -> list[str]:
    """``jobcentre_cases`` citizens whose case starts in November 2026 (the job centre's),
    ``unit_plans`` citizens with a plan received by the unit in November (a waiting time of
    7 * i days for the i-th, training started through the unit's own Task)."""
    patients = []
    for _ in range(max(jobcentre_cases, unit_plans)):
        created = await store.create({"resourceType": "Patient", "active": True})
        patients.append(f"Patient/{created.resource['id']}")
    for i in range(jobcentre_cases):
        await store.create(episode(patients[i], date(2026, 11, 2) + timedelta(days=i)))
    for i in range(unit_plans):
        received = date(2026, 11, 1)
        stored = await store.create(plan(patients[i], received))
        ref = f"ServiceRequest/{stored.resource['id']}"
        await store.create(
            {
                "resourceType": "Task",
                "status": "in-progress",
                "intent": "order",
                "focus": {"reference": ref},
                "for": {"reference": patients[i]},
                "owner": {"reference": RU},
                "executionPeriod": {"start": (received + timedelta(days=7 * i)).isoformat()},
            }
        )
    return patients
