"""Shared by the access tests: one participant's view of the gateway, with a real token."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from fastapi import FastAPI

from gateway.app import create_app
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
        if patient is not None and cpr is None:
            cpr = await citizen_of(settings, patient)
        response = await request_token(
            client, settings, name, scopes_for(name), purpose, patient=patient, cpr=cpr
        )
        assert response.status_code == 200, response.text
        return Api(client, response.json()["access_token"])

    return login


async def request_token(
    client: httpx.AsyncClient,
    settings: Settings,
    name: str,
    scope: str,
    purpose: str | None = None,
    *,
    patient: str | None = None,
    cpr: str | None = None,
) -> httpx.Response:
    """``POST /auth/token`` with a real signed client assertion of demo participant ``name``."""
    key = read_private_key(private_key_path(settings.keys_dir, name))
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": CLIENT_ASSERTION_TYPE,
        "client_assertion": make_client_assertion(key, name, settings.token_url, cpr=cpr),
        "scope": scope,
    }
    if purpose:
        form["purpose"] = purpose
    if patient:
        form["patient"] = patient
    return await client.post("/auth/token", data=form)


@contextmanager
def running_app(
    settings: Settings,
) -> Iterator[tuple[asyncio.AbstractEventLoop, FastAPI, httpx.AsyncClient]]:
    """The real app with demo participants on an event loop of its own: one app for all the
    examples of a hypothesis test (which runs each example with ``loop.run_until_complete``)."""
    app = create_app(settings.model_copy(update={"demo": True}))
    loop = asyncio.new_event_loop()
    lifespan = app.router.lifespan_context(app)
    loop.run_until_complete(lifespan.__aenter__())
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")
    try:
        yield loop, app, client
    finally:
        loop.run_until_complete(client.aclose())
        loop.run_until_complete(lifespan.__aexit__(None, None, None))
        loop.close()
