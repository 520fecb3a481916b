"""Consent enforcement through the real API with real tokens, on SQLite and PostgreSQL.

Ole's rehabilitation plan is written by the hospital and addressed to the rehab unit. The job
centre sees nothing of it (read, search, totals, history, _has, $everything, the Patient)
until Ole's consent names it, and nothing again after the consent is withdrawn. Every read
leaves AuditEvents the citizen portal can list.
"""

from __future__ import annotations

from typing import Any

from consent import ADDRESSEE_SYSTEM, DATA_CATEGORY_SYSTEM
from tests.consent.consent_builders import actor_org, consent, provision

CPR = "urn:oid:1.2.208.176.1.2"
SKS_D = "urn:oid:1.2.208.176.2.4.12"
SCOPES = "system/*.read system/*.write"


def labels(*codes: str) -> list[dict[str, str]]:
    return [{"system": DATA_CATEGORY_SYSTEM, "code": c} for c in codes]


async def open_case(jobcentre: Any, patient: str) -> str:
    """The job centre's own sickness-benefit case: a consent is recorded only by a holder."""
    created: str = await jobcentre.created(
        {
            "resourceType": "EpisodeOfCare",
            "meta": {"security": labels("sickness-benefit-case")},
            "status": "active",
            "patient": {"reference": f"Patient/{patient}"},
        }
    )
    return created


async def test_job_centre_sees_the_plan_only_under_consent(as_: Any) -> None:
    hospital = await as_("auh-ortopaedi", "TREAT")
    rehab = await as_("aarhus-genoptraening", "rehabilitation-planning")
    jobcentre = await as_("jobcenter-aarhus", "sickness-benefit-follow-up")

    ole = await hospital.created(
        {"resourceType": "Patient", "identifier": [{"system": CPR, "value": "0101801234"}]}
    )
    plan = await hospital.created(
        {
            "resourceType": "ServiceRequest",
            "meta": {
                "security": labels("rehab-plan"),
                "tag": [{"system": ADDRESSEE_SYSTEM, "code": "aarhus-genoptraening"}],
            },
            "status": "active",
            "intent": "plan",
            "subject": {"reference": f"Patient/{ole}"},
            "authoredOn": "2026-11-01",
        }
    )

    # The author and the addressee see it.
    assert (await hospital.get(f"ServiceRequest/{plan}")).status_code == 200
    assert (await rehab.get(f"ServiceRequest/{plan}")).status_code == 200
    assert await rehab.ids("ServiceRequest", patient=ole) == [plan]

    async def job_centre_sees_nothing(*, patient_hidden: bool = True) -> None:
        read = await jobcentre.get(f"ServiceRequest/{plan}")
        assert read.status_code == 404
        assert read.json()["issue"][0]["code"] == "not-found"
        assert (await jobcentre.get(f"ServiceRequest/{plan}/_history/1")).status_code == 404
        assert (await jobcentre.get(f"ServiceRequest/{plan}/_history")).status_code == 404
        if patient_hidden:
            assert (await jobcentre.get(f"Patient/{ole}")).status_code == 404
        assert await jobcentre.ids("ServiceRequest", patient=ole) == []
        assert await jobcentre.total("ServiceRequest") == 0
        search = (await jobcentre.get("ServiceRequest")).json()
        assert search["total"] == 0 and "entry" not in search
        assert (
            await jobcentre.ids("Patient", **{"_has:ServiceRequest:patient:intent": "plan"}) == []
        )
        assert (
            await jobcentre.ids("ServiceRequest", **{"patient.identifier": f"{CPR}|0101801234"})
            == []
        )
        everything = await jobcentre.get(f"Patient/{ole}/$everything")
        if patient_hidden:
            assert everything.status_code == 404
        else:
            shown = {e["resource"]["resourceType"] for e in everything.json()["entry"]}
            assert "ServiceRequest" not in shown

    await job_centre_sees_nothing()

    permit = consent(
        "ignored",
        patient=f"Patient/{ole}",
        date_time="2026-11-02T09:00:00+01:00",
        actors=[actor_org("jobcenter-aarhus")],
        purposes=("sickness-benefit-follow-up",),
        labels=("rehab-plan", "rehab-progress"),
    )
    permit.pop("id")
    await open_case(jobcentre, ole)
    recorded = await jobcentre.post("Consent", permit)
    assert recorded.status_code == 201, recorded.text
    consent_id = recorded.json()["id"]

    assert (await jobcentre.get(f"ServiceRequest/{plan}")).status_code == 200
    assert await jobcentre.ids("ServiceRequest", patient=ole) == [plan]
    assert await jobcentre.total("ServiceRequest") == 1
    assert (await jobcentre.get(f"Patient/{ole}")).status_code == 200
    assert await jobcentre.ids("Patient", **{"_has:ServiceRequest:patient:intent": "plan"}) == [ole]
    everything = (await jobcentre.get(f"Patient/{ole}/$everything")).json()
    assert {e["resource"]["id"] for e in everything["entry"]} >= {ole, plan}

    # A purpose the consent does not name opens nothing.
    other_purpose = await as_("jobcenter-aarhus", "round-table-meeting")
    assert (await other_purpose.get(f"ServiceRequest/{plan}")).status_code == 404

    withdrawn = {**recorded.json(), "status": "inactive"}
    assert (await jobcentre.put(f"Consent/{consent_id}", withdrawn)).status_code == 200
    # Recording Ole's consent (or its own case) does not keep Ole's Patient visible to the
    # job centre: writing about a citizen never becomes a way to read what others recorded.
    await job_centre_sees_nothing()

    # Who looked: the citizen portal, acting for Ole, lists the AuditEvents about him.
    portal = await as_("borger-portal", "citizen-access", patient=f"Patient/{ole}")
    events = (await portal.get("AuditEvent", patient=ole, _count=500)).json()
    audited = [e["resource"] for e in events.get("entry", [])]
    jobcentre_events = [a for a in audited if a["agent"][0]["who"]["display"] == "jobcenter-aarhus"]
    outcomes = {a["outcome"] for a in jobcentre_events}
    assert outcomes == {"0", "4"}  # disclosures and denials
    permitted_by = {
        d["valueString"]
        for a in jobcentre_events
        if a["outcome"] == "0"
        for entity in a["entity"]
        for d in entity.get("detail", [])
        if d["type"] == "consent"
    }
    assert permitted_by == {f"Consent/{consent_id}"}
    # Recording and withdrawing the consent were audited in the same transactions.
    changes = [
        (a["subtype"][0]["code"], a["entity"][-1]["detail"][0]["valueString"])
        for a in audited
        if a["subtype"][0]["code"] in ("create", "update")
        and any(e["what"]["reference"] == f"Consent/{consent_id}" for e in a["entity"])
    ]
    assert sorted(changes) == [("create", "active"), ("update", "inactive")]
    # Nobody may write AuditEvents, not even the citizen portal (its token reads only),
    # and not a participant with write scopes either: the audit trail is append-only.
    assert (await portal.post("AuditEvent", audited[0])).status_code == 403
    assert (await jobcentre.post("AuditEvent", audited[0])).status_code == 405


async def test_mental_health_stays_hidden_unless_named(as_: Any) -> None:
    gp = await as_("laegerne-soendergade", "medical-statement")
    jobcentre = await as_("jobcenter-aarhus", "sickness-benefit-follow-up")
    birgitte = await gp.created({"resourceType": "Patient"})
    diagnosis = await gp.created(
        {
            "resourceType": "Condition",
            "meta": {"security": labels("medical-statement", "mental-health")},
            "code": {"coding": [{"system": SKS_D, "code": "DF432"}]},
            "subject": {"reference": f"Patient/{birgitte}"},
            "recordedDate": "2026-10-01",
        }
    )
    statement = await gp.created(
        {
            "resourceType": "Observation",
            "meta": {"security": labels("medical-statement")},
            "status": "final",
            "code": {"text": "work capacity"},
            "subject": {"reference": f"Patient/{birgitte}"},
            "effectiveDateTime": "2026-10-01",
        }
    )
    body = consent(
        "x",
        patient=f"Patient/{birgitte}",
        date_time="2026-10-02T09:00:00+02:00",
        actors=[actor_org("jobcenter-aarhus")],
        purposes=("sickness-benefit-follow-up",),
        labels=("medical-statement",),
    )
    body.pop("id")
    await open_case(jobcentre, birgitte)
    assert (await jobcentre.post("Consent", body)).status_code == 201
    assert (await jobcentre.get(f"Observation/{statement}")).status_code == 200
    assert (await jobcentre.get(f"Condition/{diagnosis}")).status_code == 404
    assert await jobcentre.ids("Condition", patient=birgitte) == []


async def test_employer_never_sees_a_diagnosis(as_: Any) -> None:
    gp = await as_("laegerne-soendergade", "medical-statement")
    jobcentre = await as_("jobcenter-aarhus", "sickness-benefit-follow-up")
    employer = await as_("lys-montage", "round-table-meeting")
    patient = await gp.created({"resourceType": "Patient"})
    subject = {"reference": f"Patient/{patient}"}
    condition = await gp.created(
        {
            "resourceType": "Condition",
            "meta": {"security": labels("medical-statement", "employment-relevant")},
            "code": {"coding": [{"system": SKS_D, "code": "DM545"}]},
            "subject": subject,
        }
    )
    hours = await gp.created(
        {
            "resourceType": "Observation",
            "meta": {"security": labels("medical-statement", "employment-relevant")},
            "status": "final",
            "code": {"text": "hours per week"},
            "valueQuantity": {"value": 20, "unit": "h/wk"},
            "focus": [{"reference": f"Condition/{condition}"}],
            "subject": subject,
            "effectiveDateTime": "2026-10-01",
        }
    )
    body = consent(
        "x",
        patient=f"Patient/{patient}",
        date_time="2026-10-02T09:00:00+02:00",
        top=provision(
            actors=[actor_org("lys-montage")],
            purposes=("round-table-meeting",),
            labels=("employment-relevant",),
        ),
    )
    body.pop("id")
    await open_case(jobcentre, patient)
    assert (await jobcentre.post("Consent", body)).status_code == 201
    seen = await employer.get(f"Observation/{hours}")
    assert seen.status_code == 200
    assert seen.json()["valueQuantity"]["value"] == 20
    assert f"Condition/{condition}" not in seen.text  # the link to the diagnosis is redacted
    assert (await employer.get(f"Condition/{condition}")).status_code == 404
    everything = (await employer.get(f"Patient/{patient}/$everything")).json()
    shown = str(everything)
    assert "DM545" not in shown and "Condition" not in {
        e["resource"]["resourceType"] for e in everything["entry"]
    }
    # An employer may not record consents.
    assert (await employer.post("Consent", body)).status_code == 403


async def test_consents_travel_alone_and_only_from_those_allowed(as_: Any) -> None:
    hospital = await as_("auh-ortopaedi", "TREAT")
    jobcentre = await as_("jobcenter-aarhus", "sickness-benefit-follow-up")
    patient = await hospital.created({"resourceType": "Patient"})
    body = consent(
        "x",
        patient=f"Patient/{patient}",
        actors=[actor_org("jobcenter-aarhus")],
        purposes=("sickness-benefit-follow-up",),
        labels=("rehab-plan",),
    )
    body.pop("id")
    assert (await hospital.post("Consent", body)).status_code == 403
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": body, "request": {"method": "POST", "url": "Consent"}}],
    }
    assert (await jobcentre.post("", bundle)).status_code == 400
    broken = {**body, "scope": {"text": "something else"}}
    refused = await jobcentre.post("Consent", broken)
    assert refused.status_code == 422 and refused.json()["resourceType"] == "OperationOutcome"
    assert await jobcentre.total("Consent") == 0


async def test_nobody_changes_what_it_may_not_see(as_: Any) -> None:
    hospital = await as_("auh-ortopaedi", "TREAT")
    jobcentre = await as_("jobcenter-aarhus", "sickness-benefit-follow-up")
    patient = await hospital.created({"resourceType": "Patient"})
    plan_body = {
        "resourceType": "ServiceRequest",
        "meta": {"security": labels("rehab-plan")},
        "status": "active",
        "intent": "plan",
        "subject": {"reference": f"Patient/{patient}"},
    }
    plan = await hospital.created(plan_body)
    overwrite = await jobcentre.put(
        f"ServiceRequest/{plan}", {**plan_body, "id": plan, "status": "revoked"}
    )
    assert overwrite.status_code == 404
    deleted = await jobcentre.client.delete(
        f"/fhir/ServiceRequest/{plan}", headers=jobcentre.headers
    )
    assert deleted.status_code == 404
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"request": {"method": "DELETE", "url": f"ServiceRequest/{plan}"}}],
    }
    assert (await jobcentre.post("", bundle)).status_code == 404
    kept = (await hospital.get(f"ServiceRequest/{plan}")).json()
    assert kept["status"] == "active" and kept["meta"]["versionId"] == "1"
