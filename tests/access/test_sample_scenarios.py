"""Consent with the real sample documents, as users would meet it.

All samples are imported through the ingest pipeline (as `brobygger import` does); then each
participant looks through the API with its own token.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from gateway.app import create_app
from gateway.ingest.pipeline import ingest
from gateway.settings import Settings
from gateway.store.repository import Store
from tests.access.access_support import make_login
from tests.consent.consent_builders import actor_org, consent, provision
from tests.ingest.ingest_support import all_samples

OLE_CPR = "1507791235"
BIRGITTE_CPR = "2211853346"
CPR = "urn:oid:1.2.208.176.1.2"
DIAGNOSIS_SYSTEMS = ("urn:oid:1.2.208.176.2.4.12", "http://hl7.org/fhir/sid/icd-10")


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings.model_copy(update={"demo": True}))
    async with application.router.lifespan_context(application):
        store: Store = application.state.store
        now = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
        for path in all_samples():
            await ingest(store, path.read_bytes(), sender_participant=None, now=now)
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@pytest.fixture
def as_(client: httpx.AsyncClient, settings: Settings) -> Any:
    return make_login(client, settings)


async def patient_id(store: Store, cpr: str) -> str:
    found = await store.search(store.parse("Patient", [("identifier", f"{CPR}|{cpr}")]))
    assert len(found.matches) == 1
    return str(found.matches[0]["id"])


async def rehab_plan_of(store: Store, patient: str) -> str:
    found = await store.search(
        store.parse("ServiceRequest", [("patient", patient), ("intent", "plan")])
    )
    assert len(found.matches) == 1
    return str(found.matches[0]["id"])


def diagnosis_codes(node: Any) -> list[str]:
    """Every code in a diagnosis system anywhere in ``node``."""
    found: list[str] = []
    if isinstance(node, dict):
        if node.get("system") in DIAGNOSIS_SYSTEMS and "code" in node:
            found.append(str(node["code"]))
        if node.get("system") in DIAGNOSIS_SYSTEMS and "valueCoding" in node:
            found.append(str(node["valueCoding"].get("code")))
        for value in node.values():
            found += diagnosis_codes(value)
    elif isinstance(node, list):
        for value in node:
            found += diagnosis_codes(value)
    return found


def record_consent(patient: str, who: str, purpose: str, labels: tuple[str, ...]) -> dict[str, Any]:
    body = consent(
        "x",
        patient=f"Patient/{patient}",
        date_time="2026-11-01T09:00:00+01:00",
        top=provision(actors=[actor_org(who)], purposes=(purpose,), labels=labels),
    )
    body.pop("id")
    return body


async def test_ole_rehab_plan_reaches_the_job_centre_only_under_consent(
    app: FastAPI, as_: Any
) -> None:
    store: Store = app.state.store
    ole = await patient_id(store, OLE_CPR)
    plan = await rehab_plan_of(store, ole)
    rehab = await as_("aarhus-genoptraening", "rehabilitation-planning")
    jobcentre = await as_("jobcenter-aarhus", "sickness-benefit-follow-up")

    # The hospital addressed the plan (and its diagnoses) to the municipal rehab unit.
    assert (await rehab.get(f"ServiceRequest/{plan}")).status_code == 200
    assert plan in await rehab.ids("ServiceRequest", patient=ole)
    assert await rehab.ids("Condition", patient=ole)

    assert (await jobcentre.get(f"ServiceRequest/{plan}")).status_code == 404
    assert plan not in await jobcentre.ids("ServiceRequest", patient=ole)
    before = await jobcentre.total("ServiceRequest", patient=ole)

    recorded = await jobcentre.post(
        "Consent",
        record_consent(
            ole, "jobcenter-aarhus", "sickness-benefit-follow-up", ("rehab-plan", "rehab-progress")
        ),
    )
    assert recorded.status_code == 201, recorded.text
    assert (await jobcentre.get(f"ServiceRequest/{plan}")).status_code == 200
    assert await jobcentre.total("ServiceRequest", patient=ole) == before + 1

    withdrawn = {**recorded.json(), "status": "inactive"}
    assert (await jobcentre.put(f"Consent/{withdrawn['id']}", withdrawn)).status_code == 200
    assert (await jobcentre.get(f"ServiceRequest/{plan}")).status_code == 404
    assert await jobcentre.total("ServiceRequest", patient=ole) == before


async def test_birgitte_mental_health_diagnosis_needs_a_consent_that_names_it(
    app: FastAPI, as_: Any
) -> None:
    store: Store = app.state.store
    birgitte = await patient_id(store, BIRGITTE_CPR)
    conditions = await store.search(store.parse("Condition", [("patient", birgitte)]))
    mental = [
        c["id"]
        for c in conditions.matches
        if any(s.get("code") == "mental-health" for s in c.get("meta", {}).get("security", []))
    ]
    assert mental, "the LÆ 125 sample carries a chapter F diagnosis"
    jobcentre = await as_("jobcenter-roskilde", "sickness-benefit-follow-up")
    rehab = await as_("roskilde-traening", "rehabilitation-planning")
    # The job centre asked for the statement: it reaches the job centre on that legal basis,
    # but not mental-health data (the LÆ 125's F diagnosis): that needs a consent naming it.
    assert (await jobcentre.get(f"Condition/{mental[0]}")).status_code == 404
    named = await jobcentre.post(
        "Consent",
        record_consent(
            birgitte,
            "jobcenter-roskilde",
            "sickness-benefit-follow-up",
            ("medical-statement", "mental-health"),
        ),
    )
    assert named.status_code == 201, named.text
    assert (await jobcentre.get(f"Condition/{mental[0]}")).status_code == 200
    # The rehab unit gets medical statements by consent, but the consent does not name
    # mental-health: the statement's diagnosis stays hidden.
    recorded = await jobcentre.post(
        "Consent",
        record_consent(
            birgitte, "roskilde-traening", "rehabilitation-planning", ("medical-statement",)
        ),
    )
    assert recorded.status_code == 201, recorded.text
    for condition in mental:
        assert (await rehab.get(f"Condition/{condition}")).status_code == 404
    assert not set(mental) & set(await rehab.ids("Condition", patient=birgitte))
    everything = (await rehab.get(f"Patient/{birgitte}/$everything", _count=500)).json()
    assert not set(mental) & {e["resource"]["id"] for e in everything.get("entry", [])}


async def test_employer_sees_work_facts_and_never_a_diagnosis(app: FastAPI, as_: Any) -> None:
    store: Store = app.state.store
    birgitte = await patient_id(store, BIRGITTE_CPR)
    employer = await as_("roskilde-hjemmepleje", "round-table-meeting")
    jobcentre = await as_("jobcenter-roskilde", "sickness-benefit-follow-up")
    recorded = await jobcentre.post(
        "Consent",
        record_consent(
            birgitte, "roskilde-hjemmepleje", "round-table-meeting", ("employment-relevant",)
        ),
    )
    assert recorded.status_code == 201, recorded.text

    seen: list[dict[str, Any]] = []
    for rtype in ("Observation", "CarePlan", "QuestionnaireResponse", "Condition", "Task"):
        response = await employer.get(rtype, patient=birgitte, _count=500)
        assert response.status_code == 200
        seen += [e["resource"] for e in response.json().get("entry", [])]
    everything = (await employer.get(f"Patient/{birgitte}/$everything", _count=500)).json()
    seen += [e["resource"] for e in everything.get("entry", [])]

    kinds = {r["resourceType"] for r in seen}
    assert "CarePlan" in kinds, "the gradual-return plan"
    assert "Observation" in kinds, "hours and accommodations from the Mulighedserklæring"
    assert "Condition" not in kinds
    assert diagnosis_codes(seen) == []
    assert "DF432" not in json.dumps(seen)
