"""Property: the web view never shows more than the FHIR API returns to the same participant.

For random consents of Ole's (labels, purpose, status) and a random viewer, every item the
timeline shows is among what that participant's own token (its usual purpose) finds with the
FHIR searches, and no id of anything else stored about Ole appears anywhere in the page.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from web_support import CASE, PLAN, consent, csrf_in, refs_in

from gateway.app import create_app
from gateway.data.path import DEFAULT_PURPOSE
from gateway.participants.directory import organization_id_for
from gateway.settings import Settings
from gateway.store.schema import resources
from gateway.web import StaffDirectory
from gateway.web.routes import TIMELINE_TYPES
from tests.access.access_support import request_token, scopes_for

VIEWERS = {
    "jobcenter-aarhus": ("jobcentre", "sagsbehandler", "demo-jobcenter-1"),
    "aarhus-genoptraening": ("rehab-unit", "terapeut", "demo-terapeut-1"),
    "laegerne-soendergade": ("gp", "laege", "laege-password-1"),
    "auh-ortopaedi": ("hospital", "kirurg", "kirurg-password-1"),
}
LABELS = ["rehab-plan", "rehab-progress", "sickness-benefit-case", "employment-relevant"]
PURPOSES = ["sickness-benefit-follow-up", "rehabilitation-planning", "round-table-meeting"]


class World:
    def __init__(self, loop: asyncio.AbstractEventLoop, app: Any, client: httpx.AsyncClient):
        self.loop, self.app, self.client = loop, app, client
        self.settings: Settings = app.state.settings
        self.tokens: dict[tuple[str, str | None], str] = {}

    def run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(coroutine)

    def token(self, name: str, purpose: str | None) -> str:
        if (name, purpose) not in self.tokens:
            response = self.run(
                request_token(self.client, self.settings, name, scopes_for(name), purpose)
            )
            assert response.status_code == 200, response.text
            self.tokens[(name, purpose)] = response.json()["access_token"]
        return self.tokens[(name, purpose)]

    def api(self, name: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        purpose = kwargs.pop("purpose", DEFAULT_PURPOSE.get(VIEWERS.get(name, ("",))[0]))
        headers = {"Authorization": f"Bearer {self.token(name, purpose)}"}
        return self.run(self.client.request(method, path, headers=headers, **kwargs))


@pytest.fixture
def world(settings: Settings) -> Iterator[World]:
    app = create_app(settings.model_copy(update={"demo": True, "deadline_in_process": False}))
    loop = asyncio.new_event_loop()
    lifespan = app.router.lifespan_context(app)
    loop.run_until_complete(lifespan.__aenter__())
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="https://testserver"
    )
    try:
        yield World(loop, app, client)
    finally:
        loop.run_until_complete(client.aclose())
        loop.run_until_complete(lifespan.__aexit__(None, None, None))
        loop.close()


def _ole(world: World) -> str:
    for name, path, kind in (
        ("auh-ortopaedi", PLAN, "rehab-plan"),
        ("jobcenter-aarhus", CASE, "jobcentre-case"),
    ):
        response = world.run(
            world.client.post(
                f"/ingest/{kind}",
                content=path.read_bytes(),
                headers={
                    "Authorization": f"Bearer {world.token(name, None)}",
                    "Content-Type": "application/xml",
                },
            )
        )
        assert response.status_code in (200, 201), response.text
    episode = next(
        e["resource"]
        for e in response.json()["entry"]
        if e.get("resource", {}).get("resourceType") == "EpisodeOfCare"
    )
    return str(episode["patient"]["reference"])


def _page(world: World, viewer: str, patient: str) -> str:
    _, username, password = VIEWERS[viewer]
    world.client.cookies.clear()
    form = world.run(world.client.get("/web/login"))
    signed = world.run(
        world.client.post(
            "/web/login",
            data={
                "participant": viewer,
                "username": username,
                "password": password,
                "csrf": csrf_in(form.text),
            },
        )
    )
    assert signed.status_code == 303, signed.text
    page = world.run(world.client.get(f"/web/borger/{patient.split('/')[1]}"))
    assert page.status_code in (200, 404)
    return page.text


def _api_refs(world: World, viewer: str, patient: str) -> set[str]:
    found = set()
    for rtype in TIMELINE_TYPES:
        response = world.api(
            viewer, "GET", f"/fhir/{rtype}", params={"patient": patient, "_count": "500"}
        )
        assert response.status_code == 200, response.text
        found |= {f"{rtype}/{e['resource']['id']}" for e in response.json().get("entry", [])}
    patient_read = world.api(viewer, "GET", f"/fhir/{patient}")
    if patient_read.status_code == 200:
        found.add(patient)
    return found


def _all_ids(world: World) -> set[str]:
    async def read() -> set[str]:
        async with world.app.state.store.read_connection() as conn:
            rows = (await conn.execute(select(resources.c.type, resources.c.id))).all()
        return {f"{t}/{i}" for t, i in rows}

    return world.run(read())


def test_web_view_never_shows_more_than_the_api(world: World) -> None:
    for viewer, (_, username, password) in VIEWERS.items():
        if viewer not in ("jobcenter-aarhus", "aarhus-genoptraening"):
            world.run(
                StaffDirectory(world.app.state.database).add(viewer, username, viewer, password)
            )
    ole = _ole(world)
    recorded = world.api("jobcenter-aarhus", "POST", "/fhir/Consent", json=consent(ole))
    assert recorded.status_code == 201, recorded.text
    consent_id = recorded.json()["id"]
    everything = _all_ids(world)
    sizes: list[int] = []

    @settings(
        max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(
        labels=st.lists(st.sampled_from(LABELS), min_size=1, max_size=4, unique=True),
        purpose=st.sampled_from(PURPOSES),
        status=st.sampled_from(["active", "inactive"]),
        viewer=st.sampled_from(sorted(VIEWERS)),
        recipient=st.sampled_from(sorted(VIEWERS)),
    )
    def check(labels: list[str], purpose: str, status: str, viewer: str, recipient: str) -> None:
        changed = consent(ole, tuple(labels))
        actor = changed["provision"]["actor"][0]["reference"]
        actor["reference"] = f"Organization/{organization_id_for(recipient)}"
        changed["status"] = status
        changed["provision"]["purpose"][0]["code"] = purpose
        updated = world.api(
            "jobcenter-aarhus",
            "PUT",
            f"/fhir/Consent/{consent_id}",
            json={**changed, "id": consent_id},
        )
        assert updated.status_code == 200, updated.text
        html = _page(world, viewer, ole)
        allowed = _api_refs(world, viewer, ole)
        shown = refs_in(html)
        sizes.append(len(shown))
        assert shown <= allowed, json.dumps(sorted(shown - allowed))
        for hidden in everything - allowed - {f"Consent/{consent_id}"}:
            assert hidden.split("/", 1)[1] not in html, (
                f"{viewer} page names hidden {hidden.split('/')[0]}"
            )

    check()
    assert max(sizes) > 0, "no page showed anything: the property held vacuously"
