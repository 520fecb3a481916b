"""Shared by the access tests: one participant's view of the gateway, with a real token."""

from __future__ import annotations

from typing import Any

import httpx

from gateway.auth.assertions import CLIENT_ASSERTION_TYPE, make_client_assertion
from gateway.auth.keys import private_key_path, read_private_key
from gateway.settings import Settings

SCOPES = "system/*.read system/*.write"


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
    """``await login(name, purpose, patient)`` → an Api with a token from /auth/token."""

    async def login(name: str, purpose: str | None = None, patient: str | None = None) -> Api:
        key = read_private_key(private_key_path(settings.keys_dir, name))
        form = {
            "grant_type": "client_credentials",
            "client_assertion_type": CLIENT_ASSERTION_TYPE,
            "client_assertion": make_client_assertion(key, name, settings.token_url),
            "scope": SCOPES,
        }
        if purpose:
            form["purpose"] = purpose
        if patient:
            form["patient"] = patient
        response = await client.post("/auth/token", data=form)
        assert response.status_code == 200, response.text
        return Api(client, response.json()["access_token"])

    return login
