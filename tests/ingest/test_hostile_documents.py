"""Hostile documents at ``POST /ingest/{format}``: refused by name, cheaply, nothing stored.

Both stores; real tokens of demo participants; the document work runs in the worker pool.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from ingest_support import row_counts, sample

from gateway.app import create_app
from gateway.auth.assertions import CLIENT_ASSERTION_TYPE, make_client_assertion
from gateway.auth.keys import private_key_path, read_private_key
from gateway.jobs import Offload
from gateway.settings import Settings

CASE = "jobcentre-case/sag-ole-aarhus.xml"
XML = {"Content-Type": "application/xml"}


def with_attributes(document: bytes, count: int) -> bytes:
    attributes = " ".join(f'a{i}="x"' for i in range(count))
    return document.replace(b"<Borger>", f"<Borger {attributes}>".encode(), 1)


@asynccontextmanager
async def _client(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI]]:
    app: FastAPI = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c, app


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI]]:
    async with _client(settings.model_copy(update={"demo": True})) as pair:
        yield pair


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
    return str(response.json()["access_token"])


def _limit(response: httpx.Response, setting: str) -> dict[str, Any]:
    outcome: dict[str, Any] = response.json()
    assert outcome["resourceType"] == "OperationOutcome", outcome
    assert outcome["issue"][0]["code"] == "too-costly", outcome
    assert f"BROBYGGER_{setting.upper()}" in outcome["issue"][0]["diagnostics"], outcome
    return outcome


async def test_30000_attributes_are_refused_by_the_attribute_limit(
    client: tuple[httpx.AsyncClient, FastAPI], settings: Settings
) -> None:
    c, app = client
    token = await _token(c, settings, "jobcenter-aarhus", "system/*.write")
    before = await row_counts(app.state.store)
    response = await c.post(
        "/ingest/jobcentre-case",
        content=with_attributes(sample(CASE), 30_000),
        headers={**XML, "Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 400, response.text
    outcome = _limit(response, "xml_max_attributes")
    # Where, by position only (no names or values from the document).
    assert outcome["issue"][0]["expression"] == ["/*/*[6]"]
    assert await row_counts(app.state.store) == before


async def test_many_unknown_attributes_within_the_limit_are_counted_not_listed(
    settings: Settings,
) -> None:
    update = {"demo": True, "xml_max_attributes": 40_000}
    async with _client(settings.model_copy(update=update)) as (c, _app):
        token = await _token(c, settings, "jobcenter-aarhus", "system/*.write")
        response = await c.post(
            "/ingest/jobcentre-case",
            content=with_attributes(sample(CASE), 30_000),
            headers={**XML, "Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 201, response.text
        document = next(
            e
            for e in response.json()["entry"]
            if e.get("resource", {}).get("resourceType") == "DocumentReference"
        )
        issues = document["response"]["outcome"]["issue"]
        assert 100 < len(issues) <= 102
        assert any("the rest untold" in i["diagnostics"] for i in issues)


@pytest.mark.parametrize(
    ("setting", "value", "document"),
    [
        ("xml_max_depth", 2, sample(CASE)),
        ("xml_max_text_chars", 40, sample(CASE).replace(b"<Navn>", b"<Navn>" + b"y" * 41, 1)),
        ("xml_max_elements", 5, sample(CASE)),
    ],
)
async def test_each_xml_limit_is_refused_by_name(
    settings: Settings, setting: str, value: int, document: bytes
) -> None:
    async with _client(settings.model_copy(update={"demo": True, setting: value})) as (c, app):
        token = await _token(c, settings, "jobcenter-aarhus", "system/*.write")
        before = await row_counts(app.state.store)
        response = await c.post(
            "/ingest/jobcentre-case",
            content=document,
            headers={**XML, "Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 400, response.text
        _limit(response, setting)
        assert await row_counts(app.state.store) == before


async def test_the_cpu_budget_ends_in_a_422(settings: Settings) -> None:
    update = {"demo": True, "document_cpu_budget_seconds": 0.001}
    async with _client(settings.model_copy(update=update)) as (c, app):
        token = await _token(c, settings, "jobcenter-aarhus", "system/*.write")
        before = await row_counts(app.state.store)
        response = await c.post(
            "/ingest/jobcentre-case",
            content=sample(CASE),
            headers={**XML, "Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 422, response.text
        _limit(response, "document_cpu_budget_seconds")
        assert await row_counts(app.state.store) == before


async def test_scope_and_sender_are_checked_before_the_document_is_read(
    client: tuple[httpx.AsyncClient, FastAPI],
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    c, _app = client
    reads: list[str] = []
    original = Offload.always

    async def counted(self: Offload, fn: Any, *args: Any) -> Any:
        reads.append(fn.__name__)
        return await original(self, fn, *args)

    monkeypatch.setattr(Offload, "always", counted)
    document = with_attributes(sample(CASE), 20_000)
    # An employer with read scope only: 403 before any work on the body.
    employer = await _token(c, settings, "lys-montage", "system/Organization.read")
    response = await c.post(
        "/ingest/auto", content=document, headers={**XML, "Authorization": f"Bearer {employer}"}
    )
    assert response.status_code == 403, response.text
    # A job centre with read scope only: the same.
    reader = await _token(c, settings, "jobcenter-aarhus", "system/*.read")
    response = await c.post(
        "/ingest/auto", content=document, headers={**XML, "Authorization": f"Bearer {reader}"}
    )
    assert response.status_code == 403, response.text
    assert reads == []
    # A writer gets its document read (and the limit refuses it).
    writer = await _token(c, settings, "jobcenter-aarhus", "system/*.write")
    response = await c.post(
        "/ingest/auto", content=document, headers={**XML, "Authorization": f"Bearer {writer}"}
    )
    assert response.status_code == 400, response.text
    assert reads == ["map_and_validate"]
