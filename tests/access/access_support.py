"""Shared by the access tests: one participant's view of the gateway, with a real token."""

from __future__ import annotations

from typing import Any

import httpx

from gateway.auth.assertions import CLIENT_ASSERTION_TYPE, make_client_assertion
from gateway.auth.citizens import cpr_of_patient
from gateway.auth.keys import private_key_path, read_private_key
from gateway.participants.demo import DEMO_PARTICIPANTS
from gateway.settings import Settings
from gateway.store.database import Database

# Everything each kind may hold (gateway/auth/policy.py): departments read and write, the
# employer reads, the citizen portal reads its citizen's data and records their consents.
SCOPES = "system/*.read system/*.write"
SCOPES_BY_KIND = {
    "employer": "system/*.read",
    "citizen-portal": "patient/*.read patient/Consent.write",
}
KIND_OF = {p.name: p.kind for p in DEMO_PARTICIPANTS}


def scopes_for(name: str) -> str:
    """The scopes a demo participant asks for: all its kind may have."""
    return SCOPES_BY_KIND.get(KIND_OF.get(name, ""), SCOPES)


async def citizen_of(settings: Settings, patient: str) -> str:
    """The CPR number of ``patient`` (the operator side, acting as the demo portal)."""
    database = Database(settings.database_url)
    try:
        return await cpr_of_patient(database, patient)
    finally:
        await database.dispose()


class Api:
    """One participant's view of the gateway (a real token on the real app)."""

    def __init__(self, client: httpx.AsyncClient, token: str) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {token}"}

    async def get(self, path: str, **params: Any) -> httpx.Response:
        return await self.client.get(f"/fhir/{path}", params=params, headers=self.headers)

    async def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return await self.client.post(f"/fhir/{path}", json=body, headers=self.headers)

    async def put(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return await self.client.put(f"/fhir/{path}", json=body, headers=self.headers)

    async def created(self, body: dict[str, Any]) -> str:
        response = await self.post(body["resourceType"], body)
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    async def ids(self, path: str, **params: Any) -> list[str]:
        response = await self.get(path, **params)
        assert response.status_code == 200, response.text
        return [
            e["resource"]["id"]
            for e in response.json().get("entry", [])
            if e["search"]["mode"] == "match"
        ]

    async def total(self, path: str, **params: Any) -> int:
        response = await self.get(path, _summary="count", **params)
        assert response.status_code == 200, response.text
        return int(response.json()["total"])


def make_login(client: httpx.AsyncClient, settings: Settings) -> Any:
    """``await login(name, purpose, patient)`` → an Api with a token from /auth/token.

    With ``patient`` (the citizen portal), the assertion vouches for that Patient's citizen:
    ``cpr``, or the CPR number the stored Patient carries.
    """

    async def login(
        name: str,
        purpose: str | None = None,
        patient: str | None = None,
        *,
        cpr: str | None = None,
    ) -> Api:
        key = read_private_key(private_key_path(settings.keys_dir, name))
        if patient is not None and cpr is None:
            cpr = await citizen_of(settings, patient)
        form = {
            "grant_type": "client_credentials",
            "client_assertion_type": CLIENT_ASSERTION_TYPE,
            "client_assertion": make_client_assertion(key, name, settings.token_url, cpr=cpr),
            "scope": scopes_for(name),
        }
        if purpose:
            form["purpose"] = purpose
        if patient:
            form["patient"] = patient
        response = await client.post("/auth/token", data=form)
        assert response.status_code == 200, response.text
        return Api(client, response.json()["access_token"])

    return login
