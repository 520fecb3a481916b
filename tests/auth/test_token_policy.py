"""Tokens bound to the directory, through the real token endpoint (SQLite and PostgreSQL).

Each participant kind gets the scopes and purposes of gateway/auth/policy.py and is refused
anything else with an RFC 6749 §5.2 error naming what was refused. The citizen portal gets a
token for the citizen its signed assertion vouches for (claim ``cpr``), never for a Patient it
merely names.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from joserfc.jwk import Key

from gateway.auth.assertions import make_client_assertion
from gateway.auth.citizens import CPR_SYSTEM
from gateway.settings import Settings
from tests.consent.consent_builders import actor_org, consent, provision

RequestToken = Callable[..., Any]
PORTAL = "borger-portal"
OLE_CPR = "0101801234"
BIRGITTE_CPR = "2211853346"

# One demo participant per kind, with a purpose it may use and one it may not.
KINDS = [
    ("auh-ortopaedi", "hospital", "HOPERAT", "sickness-benefit-follow-up"),
    ("laegerne-soendergade", "gp", "medical-statement", "round-table-meeting"),
    ("aarhus-genoptraening", "rehab-unit", "round-table-meeting", "medical-statement"),
    ("jobcenter-aarhus", "jobcentre", "rehabilitation-planning", "TREAT"),
    ("lys-montage", "employer", "round-table-meeting", "TREAT"),
]
ORGANISATIONS = [k for k in KINDS if k[1] != "employer"]


def oauth_error(response: httpx.Response, error: str, *, status: int = 400) -> str:
    """The RFC 6749 §5.2 shape; returns error_description."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["error"] == error, body
    description: str = body["error_description"]
    assert description
    return description


@pytest.fixture
def portal_token(
    request_token: RequestToken, dev_key: Callable[[str], Key], demo_settings: Settings
) -> Callable[..., Any]:
    """``await portal_token(cpr, patient=..., scope=...)``: the portal vouching for ``cpr``."""

    async def call(cpr: str | None, **form: str) -> httpx.Response:
        assertion = make_client_assertion(dev_key(PORTAL), PORTAL, demo_settings.token_url, cpr=cpr)
        response: httpx.Response = await request_token(PORTAL, assertion=assertion, **form)
        return response

    return call


async def _bearer(request_token: RequestToken, name: str, **form: str) -> dict[str, str]:
    response = await request_token(name, **form)
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def _patient(client: httpx.AsyncClient, hospital: dict[str, str], cpr: str) -> str:
    body = {"resourceType": "Patient", "identifier": [{"system": CPR_SYSTEM, "value": cpr}]}
    response = await client.post("/fhir/Patient", json=body, headers=hospital)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


@pytest.fixture
async def hospital(request_token: RequestToken) -> dict[str, str]:
    return await _bearer(
        request_token, "auh-ortopaedi", scope="system/*.read system/*.write", purpose="TREAT"
    )


# --- organisations and employers -------------------------------------------------------------


@pytest.mark.parametrize(("name", "kind", "allowed", "refused"), ORGANISATIONS)
async def test_organisations_read_and_write_for_their_purposes(
    app: FastAPI, request_token: RequestToken, name: str, kind: str, allowed: str, refused: str
) -> None:
    response = await request_token(name, scope="system/*.read system/*.write", purpose=allowed)
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "system/*.read system/*.write"
    principal = app.state.tokens.verify_access_token(response.json()["access_token"])
    assert principal.kind == kind and principal.purpose == allowed and principal.patient is None

    description = oauth_error(await request_token(name, purpose=refused), "invalid_scope")
    assert repr(refused) in description and kind in description
    description = oauth_error(await request_token(name, scope="patient/*.read"), "invalid_scope")
    assert "'patient/*.read'" in description


@pytest.mark.parametrize(
    "scope", ["system/*.write", "system/*.*", "system/*.cruds", "system/Condition.cu"]
)
async def test_the_employer_is_refused_every_write_scope_but_its_part_of_the_plan(
    request_token: RequestToken, scope: str
) -> None:
    response = await request_token(
        "lys-montage", scope=f"system/*.read {scope}", purpose="round-table-meeting"
    )
    description = oauth_error(response, "invalid_scope")
    assert repr(scope) in description and "employer" in description


@pytest.mark.parametrize("purpose", ["TREAT", "sickness-benefit-follow-up", "citizen-access"])
async def test_the_employer_is_refused_every_other_purpose(
    request_token: RequestToken, purpose: str
) -> None:
    response = await request_token("roskilde-hjemmepleje", purpose=purpose)
    assert repr(purpose) in oauth_error(response, "invalid_scope")


async def test_the_employer_reads_for_the_meeting_and_uses_its_mailbox(
    app: FastAPI, client: httpx.AsyncClient, request_token: RequestToken
) -> None:
    response = await request_token("lys-montage", purpose="round-table-meeting")
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "system/*.read"  # the default
    headers = {"Authorization": f"Bearer {response.json()['access_token']}"}
    assert (await client.get("/fhir/Patient", headers=headers)).status_code == 200
    refused = await client.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=headers)
    assert refused.status_code == 403, refused.text
    # The mailbox and its acknowledgements need a token, no write scope.
    mailbox = await client.get("/messages", headers=headers)
    assert mailbox.status_code == 200, mailbox.text
    ack = await client.post("/messages/no-such-key/ack", headers=headers)
    assert ack.status_code == 404, ack.text  # not 403: no scope stands in the way


@pytest.mark.parametrize(("name", "kind", "allowed", "refused"), KINDS)
async def test_a_refused_request_does_not_spend_the_assertion(
    request_token: RequestToken,
    dev_key: Callable[[str], Key],
    demo_settings: Settings,
    name: str,
    kind: str,
    allowed: str,
    refused: str,
) -> None:
    assertion = make_client_assertion(dev_key(name), name, demo_settings.token_url)
    first = await request_token(name, assertion=assertion, purpose=refused)
    oauth_error(first, "invalid_scope")
    assert (await request_token(name, assertion=assertion, purpose=allowed)).status_code == 200


@pytest.mark.parametrize(("name", "kind", "allowed", "refused"), KINDS)
async def test_only_the_portal_vouches_for_a_citizen(
    request_token: RequestToken,
    dev_key: Callable[[str], Key],
    demo_settings: Settings,
    name: str,
    kind: str,
    allowed: str,
    refused: str,
) -> None:
    assertion = make_client_assertion(dev_key(name), name, demo_settings.token_url, cpr=OLE_CPR)
    assert "'cpr'" in oauth_error(await request_token(name, assertion=assertion), "invalid_request")
    response = await request_token(name, patient="Patient/x")
    assert "patient context" in oauth_error(response, "invalid_request")


# --- the citizen portal ----------------------------------------------------------------------


async def test_the_portal_gets_a_token_for_the_citizen_it_vouches_for(
    app: FastAPI,
    client: httpx.AsyncClient,
    hospital: dict[str, str],
    portal_token: Callable[..., Any],
) -> None:
    ole = await _patient(client, hospital, OLE_CPR)
    birgitte = await _patient(client, hospital, BIRGITTE_CPR)

    response = await portal_token(OLE_CPR)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["scope"] == "patient/*.read"  # the portal's default
    assert body["purpose"] == "citizen-access"  # its only purpose, also by default
    assert body["patient"] == ole  # SMART's launch-context parameter
    principal = app.state.tokens.verify_access_token(body["access_token"])
    assert principal.kind == "citizen-portal" and principal.patient == f"Patient/{ole}"

    headers = {"Authorization": f"Bearer {body['access_token']}"}
    assert (await client.get(f"/fhir/Patient/{ole}", headers=headers)).status_code == 200
    assert (await client.get(f"/fhir/Patient/{birgitte}", headers=headers)).status_code == 404

    # Naming the citizen's own record is fine; naming another citizen's is refused.
    named = await portal_token(OLE_CPR, patient=f"Patient/{ole}", purpose="citizen-access")
    assert named.status_code == 200, named.text
    assert named.json()["patient"] == ole
    other = await portal_token(OLE_CPR, patient=f"Patient/{birgitte}")
    assert "not a record of the citizen" in oauth_error(other, "invalid_request")


async def test_the_portal_cannot_name_a_patient_without_vouching_for_the_citizen(
    client: httpx.AsyncClient, hospital: dict[str, str], portal_token: Callable[..., Any]
) -> None:
    ole = await _patient(client, hospital, OLE_CPR)
    response = await portal_token(None, patient=f"Patient/{ole}")
    assert "'cpr' claim" in oauth_error(response, "invalid_request")
    assert "'cpr' claim" in oauth_error(await portal_token(None), "invalid_request")


@pytest.mark.parametrize("cpr", ["010180123", "01018012345", "010180-1234", "abcdefghij"])
async def test_a_malformed_cpr_claim_is_refused(portal_token: Callable[..., Any], cpr: str) -> None:
    assert "10 digits" in oauth_error(await portal_token(cpr), "invalid_request")


async def test_a_citizen_without_records_gets_no_token(
    client: httpx.AsyncClient, hospital: dict[str, str], portal_token: Callable[..., Any]
) -> None:
    await _patient(client, hospital, OLE_CPR)
    response = await portal_token(BIRGITTE_CPR)
    assert "no Patient record" in oauth_error(response, "invalid_request")


async def _legacy_duplicate(app: FastAPI, patient_id: str, cpr: str) -> None:
    """Make Patient ``patient_id`` carry ``cpr`` too, as two records of one citizen stored
    before migration 0004 could (since then the database refuses a second one)."""
    from sqlalchemy import update

    from gateway.store.schema import idx_token, resources

    store = app.state.store
    async with store.database.engine.begin() as conn:
        row = (
            await conn.execute(
                resources.select().where(
                    resources.c.type == "Patient", resources.c.id == patient_id
                )
            )
        ).first()
        content = json.loads(row.content)
        content["identifier"] = [{"system": CPR_SYSTEM, "value": cpr}]
        await conn.execute(
            update(resources)
            .where(resources.c.type == "Patient", resources.c.id == patient_id)
            .values(content=json.dumps(content))
        )
        await conn.execute(
            update(idx_token)
            .where(
                idx_token.c.type == "Patient",
                idx_token.c.id == patient_id,
                idx_token.c.param == "identifier",
            )
            .values(code=cpr)
        )


async def test_a_citizen_with_two_records_picks_one(
    app: FastAPI,
    client: httpx.AsyncClient,
    hospital: dict[str, str],
    portal_token: Callable[..., Any],
) -> None:
    first = await _patient(client, hospital, OLE_CPR)
    # A second record with the same CPR is refused now (patient_identities) ...
    body = {"resourceType": "Patient", "identifier": [{"system": CPR_SYSTEM, "value": OLE_CPR}]}
    refused = await client.post("/fhir/Patient", json=body, headers=hospital)
    assert refused.status_code == 409, refused.text
    # ... but one stored before that rule may exist: the portal then names the record.
    second = await _patient(client, hospital, BIRGITTE_CPR)
    await _legacy_duplicate(app, second, OLE_CPR)
    assert "several" in oauth_error(await portal_token(OLE_CPR), "invalid_request")
    for record in (first, second):
        response = await portal_token(OLE_CPR, patient=f"Patient/{record}")
        assert response.status_code == 200, response.text
        assert response.json()["patient"] == record


@pytest.mark.parametrize(
    "scope",
    ["system/*.read", "system/*.write", "patient/*.write", "patient/*.*", "patient/Patient.u"],
)
async def test_the_portal_is_refused_other_scopes(
    client: httpx.AsyncClient,
    hospital: dict[str, str],
    portal_token: Callable[..., Any],
    scope: str,
) -> None:
    await _patient(client, hospital, OLE_CPR)
    description = oauth_error(await portal_token(OLE_CPR, scope=scope), "invalid_scope")
    assert repr(scope) in description and "citizen-portal" in description


@pytest.mark.parametrize("purpose", ["TREAT", "round-table-meeting", "sickness-benefit-follow-up"])
async def test_the_portal_is_refused_other_purposes(
    client: httpx.AsyncClient,
    hospital: dict[str, str],
    portal_token: Callable[..., Any],
    purpose: str,
) -> None:
    await _patient(client, hospital, OLE_CPR)
    response = await portal_token(OLE_CPR, purpose=purpose)
    assert repr(purpose) in oauth_error(response, "invalid_scope")


async def test_the_portal_records_its_citizens_consent_with_the_consent_scope(
    client: httpx.AsyncClient, hospital: dict[str, str], portal_token: Callable[..., Any]
) -> None:
    ole = await _patient(client, hospital, OLE_CPR)
    birgitte = await _patient(client, hospital, BIRGITTE_CPR)

    def consent_for(patient: str) -> dict[str, Any]:
        body = consent(
            "x",
            patient=f"Patient/{patient}",
            date_time="2026-10-02T09:00:00+02:00",
            top=provision(
                actors=[actor_org("jobcenter-aarhus")], purposes=("sickness-benefit-follow-up",)
            ),
        )
        body.pop("id")
        return body

    read_only = await portal_token(OLE_CPR)
    headers = {"Authorization": f"Bearer {read_only.json()['access_token']}"}
    refused = await client.post("/fhir/Consent", json=consent_for(ole), headers=headers)
    assert refused.status_code == 403, refused.text

    writer = await portal_token(OLE_CPR, scope="patient/*.read patient/Consent.write")
    assert writer.status_code == 200, writer.text
    headers = {"Authorization": f"Bearer {writer.json()['access_token']}"}
    recorded = await client.post("/fhir/Consent", json=consent_for(ole), headers=headers)
    assert recorded.status_code == 201, recorded.text
    other = await client.post("/fhir/Consent", json=consent_for(birgitte), headers=headers)
    assert other.status_code in (403, 404), other.text
    patient_write = await client.put(
        f"/fhir/Patient/{ole}", json={"resourceType": "Patient", "id": ole}, headers=headers
    )
    assert patient_write.status_code == 403, patient_write.text
