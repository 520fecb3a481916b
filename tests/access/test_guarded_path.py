"""The guarded data path: the attacks of issue 9, each against the real API, on both stores.

The hospital writes Ole's records (a mental-health Condition, an Observation, the original
document); other participants, with write scopes but no consent, try every door that reads
stored rows on the way to a write: conditional creates, conditional PUT/DELETE, conditional
references, every entry-URL form, directory writes, writing as someone else. Hidden means
absent: each attack must get exactly what it would get if the record did not exist, change
nothing, and leave no trace that differs.
"""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from consent import ADDRESSEE_SYSTEM, DATA_CATEGORY_SYSTEM
from gateway.store import audit_log
from gateway.store.repository import Store
from tests.access.access_support import Api

CPR = "urn:oid:1.2.208.176.1.2"
SKS_D = "urn:oid:1.2.208.176.2.4.12"
SOR = "urn:oid:1.2.208.176.1.1"
OLE_CPR = "0101801234"
NOBODY_CPR = "0202802345"


@pytest.fixture
def store(app: FastAPI) -> Store:
    found: Store = app.state.store
    return found


def labels(*codes: str) -> list[dict[str, str]]:
    return [{"system": DATA_CATEGORY_SYSTEM, "code": c} for c in codes]


class World:
    """Ole's hospital records, and the ids of what was written."""

    def __init__(self, hospital: Api) -> None:
        self.hospital = hospital
        self.ole = ""
        self.condition = ""
        self.observation = ""
        self.document = ""

    async def build(self) -> World:
        h = self.hospital
        self.ole = await h.created(
            {
                "resourceType": "Patient",
                "identifier": [{"system": CPR, "value": OLE_CPR}],
                "name": [{"family": "Hansen", "given": ["Ole"]}],
            }
        )
        subject = {"reference": f"Patient/{self.ole}"}
        self.condition = await h.created(
            {
                "resourceType": "Condition",
                "meta": {"security": labels("rehab-plan", "mental-health")},
                "code": {"coding": [{"system": SKS_D, "code": "DF432"}]},
                "subject": subject,
                "recordedDate": "2026-11-01",
            }
        )
        self.observation = await h.created(
            {
                "resourceType": "Observation",
                "meta": {"security": labels("rehab-progress")},
                "status": "final",
                "code": {"text": "hours per week"},
                "subject": subject,
                "effectiveDateTime": "2026-11-02",
                "valueQuantity": {"value": 12},
            }
        )
        self.document = await h.created(
            {
                "resourceType": "DocumentReference",
                "meta": {"security": labels("medical-statement")},
                "status": "current",
                "subject": subject,
                "content": [
                    {
                        "attachment": {
                            "contentType": "application/xml",
                            "data": base64.b64encode(b"<LAE125>secret</LAE125>").decode(),
                        }
                    }
                ],
            }
        )
        return self

    async def versions(self) -> dict[str, str]:
        """The hospital's view of its own records: type/id → version."""
        out = {}
        for ref in (
            f"Patient/{self.ole}",
            f"Condition/{self.condition}",
            f"Observation/{self.observation}",
            f"DocumentReference/{self.document}",
        ):
            response = await self.hospital.get(ref)
            out[ref] = (
                response.json()["meta"]["versionId"] if response.status_code == 200 else "gone"
            )
        return out


@pytest.fixture
async def world(as_: Any) -> World:
    return await World(await as_("auh-ortopaedi", "TREAT")).build()


async def audit_count(store: Store) -> int:
    async with store.read_connection() as conn:
        _, total = await audit_log.search(conn, audit_log.AuditQuery(count=0))
    return total


def batch(kind: str, *entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def post_entry(resource: dict[str, Any], if_none_exist: str) -> dict[str, Any]:
    return {
        "resource": resource,
        "request": {
            "method": "POST",
            "url": resource["resourceType"],
            "ifNoneExist": if_none_exist,
        },
    }


def condition_body(patient: str) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "code": {"coding": [{"system": SKS_D, "code": "DF432"}]},
        "subject": {"reference": f"Patient/{patient}"},
    }


def shape(response: httpx.Response) -> Any:
    """What a caller can compare between two answers: statuses and entry statuses/kinds."""
    body = response.json()
    if body.get("resourceType") == "Bundle":
        return [
            (
                e["response"]["status"],
                sorted(e.get("resource", {}).keys()),
                e["response"].get("location", "").split("/")[0],
            )
            for e in body.get("entry", [])
        ]
    return (response.status_code, body.get("resourceType"), body.get("issue"))


# --- 1. conditional creates ---------------------------------------------------------------


@pytest.mark.parametrize("kind", ["batch", "transaction"])
async def test_conditional_create_never_answers_with_a_hidden_match(
    world: World, as_: Any, store: Store, kind: str
) -> None:
    attacker = await as_("jobcenter-roskilde", "sickness-benefit-follow-up")
    before = await world.versions()
    criteria = [
        f"subject:Patient.identifier={CPR}|{OLE_CPR}&code={SKS_D}|DF432",
        f"_id={world.condition}",
        "_lastUpdated=gt2000-01-01",
        f"subject=Patient/{world.ole}",
    ]
    control_criteria = [
        f"subject:Patient.identifier={CPR}|{NOBODY_CPR}&code={SKS_D}|DF432",
        "_id=no-such-condition",
        "_lastUpdated=gt2999-01-01",
        "subject=Patient/no-such-patient",
    ]
    for probe, control in zip(criteria, control_criteria, strict=True):
        audits = await audit_count(store)
        hit = await attacker.post("", batch(kind, post_entry(condition_body(world.ole), probe)))
        after_hit = await audit_count(store)
        miss = await attacker.post("", batch(kind, post_entry(condition_body(world.ole), control)))
        after_miss = await audit_count(store)
        assert hit.status_code == miss.status_code == 200, (probe, hit.text)
        assert shape(hit) == shape(miss), probe
        entry = hit.json()["entry"][0]
        assert entry["response"]["status"] == "201 Created", (probe, entry)
        # The attacker got its own new Condition, never the hospital's.
        assert entry["resource"]["id"] != world.condition
        assert world.condition not in hit.text and world.document not in hit.text
        assert "secret" not in hit.text
        # The same trace as a miss: no AuditEvent either way.
        assert after_hit - audits == after_miss - after_hit == 0
        # The attacker removes what it created, so the next probe starts from the same state.
        for created in (hit, miss):
            own = created.json()["entry"][0]["resource"]["id"]
            gone = await attacker.client.delete(f"/fhir/Condition/{own}", headers=attacker.headers)
            assert gone.status_code == 204
    assert await world.versions() == before


async def test_rest_if_none_exist_is_no_existence_oracle(world: World, as_: Any) -> None:
    attacker = await as_("jobcenter-roskilde", "sickness-benefit-follow-up")
    body = condition_body(world.ole)

    async def create(criteria: str) -> httpx.Response:
        return await attacker.client.post(
            "/fhir/Condition",
            json=body,
            headers={**attacker.headers, "If-None-Exist": criteria},
        )

    hit = await create(f"_id={world.condition}")
    miss = await create("_id=nothing-here")
    assert hit.status_code == miss.status_code == 201
    assert hit.json()["id"] != world.condition
    assert set(hit.headers) - {"content-length", "etag", "last-modified", "location", "date"} == (
        set(miss.headers) - {"content-length", "etag", "last-modified", "location", "date"}
    )
    assert hit.headers["etag"] == miss.headers["etag"] == 'W/"1"'
    # The author's own match is still found (and returned, audited as a disclosure).
    again = await world.hospital.client.post(
        "/fhir/Condition",
        json=condition_body(world.ole),
        headers={**world.hospital.headers, "If-None-Exist": f"_id={world.condition}"},
    )
    assert again.status_code == 200 and again.json()["id"] == world.condition


# --- 2. Bundle PUT/DELETE entry URLs -------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "Observation/{id}/",
        "Observation/{id}?a=b",
        "Observation/{id}/_history/1",
        "Observation/{id}/$validate",
        "/Observation/{id}",
        "http://elsewhere.example/fhir/Observation/{id}",
        "observation/{id}",
    ],
)
@pytest.mark.parametrize("method", ["PUT", "DELETE"])
async def test_entry_urls_other_than_the_three_forms_are_refused(
    world: World, as_: Any, url: str, method: str
) -> None:
    attacker = await as_("sjaellands-uh-ryg", "TREAT")
    before = await world.versions()
    target = url.format(id=world.observation)
    entry: dict[str, Any] = {"request": {"method": method, "url": target}}
    if method == "PUT":
        entry["resource"] = {
            "resourceType": "Observation",
            "id": world.observation,
            "status": "final",
            "code": {"text": "overwritten"},
        }
    for kind in ("batch", "transaction"):
        response = await attacker.post("", batch(kind, entry))
        outcome = response.json() if kind == "transaction" else response.json()["entry"][0]
        if kind == "transaction":
            assert response.status_code == 400, response.text
            issue = outcome["issue"][0]
        else:
            assert outcome["response"]["status"].startswith("400"), outcome
            issue = outcome["response"]["outcome"]["issue"][0]
        assert issue["expression"] == ["Bundle.entry[0].request.url"], issue
    assert await world.versions() == before


@pytest.mark.parametrize("kind", ["batch", "transaction"])
async def test_bundle_put_and_delete_of_hidden_resources_change_nothing(
    world: World, as_: Any, kind: str
) -> None:
    attacker = await as_("sjaellands-uh-ryg", "TREAT")
    before = await world.versions()
    overwrite = {
        "resourceType": "Observation",
        "id": world.observation,
        "status": "final",
        "code": {"text": "overwritten"},
    }
    plain_put = {
        "resource": overwrite,
        "request": {"method": "PUT", "url": f"Observation/{world.observation}"},
    }
    response = await attacker.post("", batch(kind, plain_put))
    if kind == "transaction":
        assert response.status_code == 404, response.text
    else:
        assert response.json()["entry"][0]["response"]["status"].startswith("404")
    plain_delete = {"request": {"method": "DELETE", "url": f"Condition/{world.condition}"}}
    response = await attacker.post("", batch(kind, plain_delete))
    if kind == "transaction":
        assert response.status_code == 404, response.text
    else:
        assert response.json()["entry"][0]["response"]["status"].startswith("404")
    # Conditional forms: a hidden match is no match. PUT creates anew, DELETE deletes nothing.
    conditional_put = {
        "resource": {k: v for k, v in overwrite.items() if k != "id"},
        "request": {"method": "PUT", "url": f"Observation?_id={world.observation}"},
    }
    response = await attacker.post("", batch(kind, conditional_put))
    assert response.status_code == 200, response.text
    created = response.json()["entry"][0]
    assert created["response"]["status"] == "201 Created"
    assert created["resource"]["id"] != world.observation
    conditional_delete = {
        "request": {"method": "DELETE", "url": f"Condition?_id={world.condition}"}
    }
    response = await attacker.post("", batch(kind, conditional_delete))
    assert response.status_code == 200, response.text
    assert response.json()["entry"][0]["response"]["status"] == "204 No Content"
    assert await world.versions() == before


# --- 3. conditional references ------------------------------------------------------------


async def test_conditional_references_do_not_resolve_hidden_resources(
    world: World, as_: Any
) -> None:
    attacker = await as_("jobcenter-roskilde", "sickness-benefit-follow-up")

    def observation(**refs: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "probe"},
        }
        for element, reference in refs.items():
            body[element] = (
                [{"reference": reference}] if element == "focus" else {"reference": reference}
            )
        return body

    def transaction(resource: dict[str, Any]) -> dict[str, Any]:
        return batch(
            "transaction",
            {"resource": resource, "request": {"method": "POST", "url": "Observation"}},
        )

    for element, hit, miss in (
        (
            "subject",
            f"Patient?identifier={CPR}|{OLE_CPR}",
            f"Patient?identifier={CPR}|{NOBODY_CPR}",
        ),
        (
            "focus",
            f"Condition?subject:Patient.identifier={CPR}|{OLE_CPR}&code={SKS_D}|DF432",
            f"Condition?subject:Patient.identifier={CPR}|{NOBODY_CPR}&code={SKS_D}|DF432",
        ),
    ):
        found = await attacker.post("", transaction(observation(**{element: hit})))
        absent = await attacker.post("", transaction(observation(**{element: miss})))
        assert found.status_code == absent.status_code == 412, found.text
        assert found.json()["issue"][0]["diagnostics"] == absent.json()["issue"][0]["diagnostics"]
    # Nothing about Ole became visible to the attacker on the way.
    assert (await attacker.get(f"Patient/{world.ole}")).status_code == 404


async def test_writing_about_a_citizen_does_not_make_others_records_readable(
    world: World, as_: Any
) -> None:
    """The supporting rule is not reachable by writing: a record the caller wrote about a
    citizen never shows it the Patient (name, CPR) or $everything."""
    attacker = await as_("jobcenter-roskilde", "sickness-benefit-follow-up")
    mine = await attacker.created(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "mine"},
            "subject": {"reference": f"Patient/{world.ole}"},
        }
    )
    assert (await attacker.get(f"Observation/{mine}")).status_code == 200
    assert (await attacker.get(f"Patient/{world.ole}")).status_code == 404
    assert (await attacker.get(f"Patient/{world.ole}/$everything")).status_code == 404
    assert await attacker.ids("Patient", identifier=f"{CPR}|{OLE_CPR}") == []
    included = await attacker.get("Observation", _id=mine, _include="Observation:subject")
    assert [e["search"]["mode"] for e in included.json()["entry"]] == ["match"]
    # Nor can a chain into the hidden Patient read its name through the caller's own record.
    assert await attacker.ids("Observation", **{"subject:Patient.name": "Hansen"}) == []
    assert await attacker.ids("Observation", **{"subject:Patient.name": "Nobody"}) == []


# --- 4. directory resources ---------------------------------------------------------------


async def test_directory_resources_are_changed_only_by_the_participant_they_describe(
    world: World, as_: Any
) -> None:
    attacker = await as_("jobcenter-roskilde", "sickness-benefit-follow-up")
    hospital_org = (await attacker.get("Organization/org-sjaellands-uh-ryg")).json()
    stripped = {k: v for k, v in hospital_org.items() if k not in ("identifier", "meta")}
    response = await attacker.put("Organization/org-sjaellands-uh-ryg", stripped)
    assert response.status_code == 403, response.text
    assert (await attacker.get("Organization/org-sjaellands-uh-ryg")).json() == hospital_org

    own = (await attacker.get("Organization/org-jobcenter-roskilde")).json()
    stolen = {
        **{k: v for k, v in own.items() if k != "meta"},
        "identifier": [*own["identifier"], *hospital_org["identifier"]],
    }
    assert (await attacker.put("Organization/org-jobcenter-roskilde", stolen)).status_code == 403
    without = {**{k: v for k, v in own.items() if k != "meta"}, "identifier": []}
    without.pop("identifier")
    assert (await attacker.put("Organization/org-jobcenter-roskilde", without)).status_code == 403
    fake = {
        "resourceType": "Organization",
        "name": "Not a hospital",
        "identifier": [i for i in hospital_org["identifier"] if i["system"] == SOR],
    }
    assert (await attacker.post("Organization", fake)).status_code == 403
    renamed = {**{k: v for k, v in own.items() if k != "meta"}, "name": "Jobcenter Roskilde"}
    assert (await attacker.put("Organization/org-jobcenter-roskilde", renamed)).status_code == 200
    assert (await attacker.get("Organization/org-jobcenter-roskilde")).json()["identifier"] == (
        own["identifier"]
    )


# --- 5. authorship ------------------------------------------------------------------------


async def test_only_the_author_changes_a_record_and_authorship_survives(
    world: World, as_: Any
) -> None:
    rehab = await as_("aarhus-genoptraening", "rehabilitation-planning")
    plan = await world.hospital.created(
        {
            "resourceType": "ServiceRequest",
            "meta": {
                "security": labels("rehab-plan"),
                "tag": [{"system": ADDRESSEE_SYSTEM, "code": "aarhus-genoptraening"}],
            },
            "status": "active",
            "intent": "plan",
            "subject": {"reference": f"Patient/{world.ole}"},
        }
    )
    seen = await rehab.get(f"ServiceRequest/{plan}")
    assert seen.status_code == 200
    body = seen.json()
    source = body["meta"]["source"]
    assert (await rehab.put(f"ServiceRequest/{plan}", body)).status_code == 403
    changed = {**body, "status": "revoked"}
    response = await rehab.put(f"ServiceRequest/{plan}", changed)
    assert response.status_code == 403
    assert "wrote" in response.json()["issue"][0]["diagnostics"]
    delete = await rehab.client.delete(f"/fhir/ServiceRequest/{plan}", headers=rehab.headers)
    assert delete.status_code == 403
    # A forged meta.source is replaced by the writer; the author's own update keeps it.
    forged = await rehab.created(
        {
            "resourceType": "Observation",
            "meta": {"source": "urn:brobygger:participant:auh-ortopaedi"},
            "status": "final",
            "code": {"text": "forged"},
            "subject": {"reference": f"Patient/{world.ole}"},
        }
    )
    assert (await world.hospital.get(f"Observation/{forged}")).status_code == 404
    mine = (await rehab.get(f"Observation/{forged}")).json()
    assert mine["meta"]["source"] == "urn:brobygger:participant:aarhus-genoptraening"
    update = await world.hospital.put(f"ServiceRequest/{plan}", {**body, "status": "completed"})
    assert update.status_code == 200
    assert update.json()["meta"]["source"] == source


# --- 6. absolute rules --------------------------------------------------------------------


async def test_addressing_never_overrides_the_employer_and_mental_health_rules(
    world: World, as_: Any
) -> None:
    employer = await as_("lys-montage", "round-table-meeting")
    jobcentre = await as_("jobcenter-aarhus", "sickness-benefit-follow-up")
    subject = {"reference": f"Patient/{world.ole}"}
    to_employer = await world.hospital.created(
        {
            "resourceType": "Observation",
            "meta": {
                "security": labels("rehab-progress", "mental-health", "employment-relevant"),
                "tag": [{"system": ADDRESSEE_SYSTEM, "code": "lys-montage"}],
            },
            "status": "final",
            "code": {"text": "mood"},
            "subject": subject,
        }
    )
    assert (await employer.get(f"Observation/{to_employer}")).status_code == 404
    rehab = await as_("aarhus-genoptraening", "rehabilitation-planning")
    scores = await rehab.created(
        {
            "resourceType": "Observation",
            "meta": {
                "security": labels("rehab-progress"),
                "tag": [{"system": ADDRESSEE_SYSTEM, "code": "jobcenter-aarhus"}],
            },
            "status": "final",
            "code": {"text": "ODI"},
            "subject": subject,
            "valueQuantity": {"value": 30},
        }
    )
    # Health → employment needs a consent or a legal basis, not only an address.
    assert (await jobcentre.get(f"Observation/{scores}")).status_code == 404


# --- 7. other doors -----------------------------------------------------------------------


async def test_consents_need_a_record_of_the_citizen_and_travel_in_no_bundle(
    world: World, as_: Any
) -> None:
    from tests.consent.consent_builders import actor_org, consent, provision

    stranger = await as_("jobcenter-roskilde", "sickness-benefit-follow-up")
    body = consent(
        "ignored",
        patient=f"Patient/{world.ole}",
        date_time="2026-11-02T09:00:00+01:00",
        top=provision(
            actors=[actor_org("jobcenter-roskilde")],
            purposes=("sickness-benefit-follow-up",),
            labels=("rehab-plan", "rehab-progress", "mental-health"),
        ),
    )
    body.pop("id")
    refused = await stranger.post("Consent", body)
    assert refused.status_code == 403, refused.text
    assert refused.json()["issue"][0]["expression"] == ["Consent.patient"]
    assert (await stranger.get(f"Condition/{world.condition}")).status_code == 404
    # Once it holds a record of Ole (its own sickness-benefit case), it may record one.
    await stranger.created(
        {
            "resourceType": "EpisodeOfCare",
            "meta": {"security": labels("sickness-benefit-case")},
            "status": "active",
            "patient": {"reference": f"Patient/{world.ole}"},
        }
    )
    recorded = await stranger.post("Consent", body)
    assert recorded.status_code == 201
    inside = batch("batch", {"resource": body, "request": {"method": "POST", "url": "Consent"}})
    assert (await stranger.post("", inside)).status_code == 400
    # The citizen sees every consent about him, and who recorded it.
    portal = await as_("borger-portal", "citizen-access", patient=f"Patient/{world.ole}")
    listed = (await portal.get("Consent", patient=world.ole)).json()
    sources = {e["resource"]["id"]: e["resource"]["meta"]["source"] for e in listed["entry"]}
    assert sources[recorded.json()["id"]] == "urn:brobygger:participant:jobcenter-roskilde"


# --- 9. small oracles ---------------------------------------------------------------------


async def test_a_hidden_deleted_resource_is_unknown_not_gone(world: World, as_: Any) -> None:
    attacker = await as_("jobcenter-roskilde", "sickness-benefit-follow-up")
    deleted = await world.hospital.client.delete(
        f"/fhir/Observation/{world.observation}", headers=world.hospital.headers
    )
    assert deleted.status_code == 204
    assert (await world.hospital.get(f"Observation/{world.observation}")).status_code == 410
    assert (await attacker.get(f"Observation/{world.observation}")).status_code == 404
    assert (await attacker.get(f"Observation/{world.observation}/_history/2")).status_code == 404
    assert (await attacker.get("Observation/never-existed")).status_code == 404
