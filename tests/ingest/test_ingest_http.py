"""``POST /ingest/{format}`` through the real app, with real tokens of demo participants."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from ingest_support import sample

from gateway.app import create_app
from gateway.auth.assertions import CLIENT_ASSERTION_TYPE, make_client_assertion
from gateway.auth.keys import private_key_path, read_private_key
from gateway.settings import Settings

CASE = "jobcentre-case/sag-ole-aarhus.xml"
XML = {"Content-Type": "application/xml"}


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, Settings]]:
    demo = settings.model_copy(update={"demo": True})
    app: FastAPI = create_app(demo)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c, demo


async def _token(client: httpx.AsyncClient, settings: Settings, name: str, scope: str) -> str:
    key = read_private_key(private_key_path(settings.keys_dir, name))
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": CLIENT_ASSERTION_TYPE,
        "client_assertion": make_client_assertion(key, name, settings.token_url),
        "scope": scope,
    }
    response = await client.post("/auth/token", data=form)
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


async def test_the_sender_stores_its_document_once(
    client: tuple[httpx.AsyncClient, Settings],
) -> None:
    c, settings = client
    token = await _token(c, settings, "jobcenter-aarhus", "system/*.write")
    headers = {**XML, "Authorization": f"Bearer {token}"}
    first = await c.post("/ingest/jobcentre-case", content=sample(CASE), headers=headers)
    assert first.status_code == 201, first.text
    assert first.headers["x-ingest-status"] == "accepted"
    body = first.json()
    assert body["resourceType"] == "Bundle" and body["type"] == "transaction-response"
    again = await c.post("/ingest/auto", content=sample(CASE), headers=headers)
    assert again.status_code == 200 and again.headers["x-ingest-status"] == "unchanged"


async def test_a_participant_that_is_not_the_sender_is_refused(
    client: tuple[httpx.AsyncClient, Settings],
) -> None:
    c, settings = client
    token = await _token(c, settings, "auh-ortopaedi", "system/*.write system/*.read")
    headers = {**XML, "Authorization": f"Bearer {token}"}
    response = await c.post("/ingest/jobcentre-case", content=sample(CASE), headers=headers)
    assert response.status_code == 403
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["expression"] == ["/Sygedagpengesag/Jobcenter"]
    search = await c.get("/fhir/EpisodeOfCare", headers={"Authorization": f"Bearer {token}"})
    assert search.json().get("total") == 0


async def test_errors_are_operation_outcomes(client: tuple[httpx.AsyncClient, Settings]) -> None:
    c, settings = client
    read_only = await _token(c, settings, "jobcenter-aarhus", "system/*.read")
    writer = await _token(c, settings, "jobcenter-aarhus", "system/*.write")
    cases = [
        ("/ingest/jobcentre-case", sample(CASE), {**XML}, 401),
        (
            "/ingest/jobcentre-case",
            sample(CASE),
            {**XML, "Authorization": f"Bearer {read_only}"},
            403,
        ),
        ("/ingest/nonsense", sample(CASE), {**XML, "Authorization": f"Bearer {writer}"}, 404),
        (
            "/ingest/jobcentre-case",
            sample(CASE),
            {"Content-Type": "application/json", "Authorization": f"Bearer {writer}"},
            415,
        ),
        ("/ingest/rehab-plan", sample(CASE), {**XML, "Authorization": f"Bearer {writer}"}, 400),
        (
            "/ingest/auto",
            sample(CASE).replace(b"<CPR>1507791235", b"<CPR>3307791235"),
            {**XML, "Authorization": f"Bearer {writer}"},
            422,
        ),
    ]
    for url, body, headers, status in cases:
        response = await c.post(url, content=body, headers=headers)
        assert response.status_code == status, (url, response.text)
        assert response.json()["resourceType"] == "OperationOutcome"
