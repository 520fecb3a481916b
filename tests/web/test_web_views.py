"""The web view in-process: sign-in, CSRF, cookies, worklist, timeline under consent, figures."""

from __future__ import annotations

from typing import Any

import httpx
from web_support import CASE, PLAN, consent, csrf_in, refs_in

from gateway.web.routes import TIMELINE_TYPES


async def sign_in(
    client: httpx.AsyncClient,
    participant: str = "jobcenter-aarhus",
    username: str = "sagsbehandler",
    password: str = "demo-jobcenter-1",  # noqa: S107 - the documented demo user
) -> httpx.Response:
    form = await client.get("/web/login")
    assert form.status_code == 200
    return await client.post(
        "/web/login",
        data={
            "participant": participant,
            "username": username,
            "password": password,
            "csrf": csrf_in(form.text),
        },
    )


async def load_ole(client: httpx.AsyncClient, as_: Any) -> tuple[Any, str]:
    # The web view acts for the job centre under its usual purpose (DEFAULT_PURPOSE): the
    # API token compared with it carries the same.
    hospital = await as_("auh-ortopaedi")
    jobcentre = await as_("jobcenter-aarhus", "sickness-benefit-follow-up")
    for api, path, kind in ((hospital, PLAN, "rehab-plan"), (jobcentre, CASE, "jobcentre-case")):
        response = await client.post(
            f"/ingest/{kind}",
            content=path.read_bytes(),
            headers={**api.headers, "Content-Type": "application/xml"},
        )
        assert response.status_code in (200, 201), response.text
    episode = next(
        e["resource"]
        for e in response.json()["entry"]
        if e.get("resource", {}).get("resourceType") == "EpisodeOfCare"
    )
    return jobcentre, str(episode["patient"]["reference"])


async def test_sign_in_sets_a_secure_session_and_needs_the_form_secret(
    client: httpx.AsyncClient,
) -> None:
    assert (await client.get("/web/arbejdsliste")).status_code == 303
    wrong = await sign_in(client, password="not-the-password")
    assert wrong.status_code == 401 and "Forkert" in wrong.text
    unknown = await sign_in(client, username="nobody")
    assert unknown.status_code == 401 and unknown.text.count("Forkert") == 1
    form = await client.get("/web/login")
    forged = await client.post(
        "/web/login",
        data={
            "participant": "jobcenter-aarhus",
            "username": "sagsbehandler",
            "password": "demo-jobcenter-1",
            "csrf": "forged",
        },
    )
    assert forged.status_code == 403 and "brobygger_web" not in forged.headers.get("set-cookie", "")
    del form
    ok = await sign_in(client)
    assert ok.status_code == 303 and ok.headers["location"] == "/web/arbejdsliste"
    cookie = next(c for c in ok.headers.get_list("set-cookie") if c.startswith("brobygger_web="))
    flags = {part.strip().lower() for part in cookie.split(";")}
    assert {"secure", "httponly", "samesite=strict"} <= flags
    page = await client.get("/web/arbejdsliste")
    assert page.status_code == 200 and "Arbejdsliste" in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    # The session is not an access token.
    session = client.cookies.get("brobygger_web")
    api = await client.get("/fhir/Task", headers={"Authorization": f"Bearer {session}"})
    assert api.status_code == 401
    # Logging out needs the session's own CSRF secret.
    assert (await client.post("/web/logout", data={"csrf": "forged"})).status_code == 403
    out = await client.post("/web/logout", data={"csrf": csrf_in(page.text)})
    assert out.status_code == 303


async def test_timeline_shows_the_plan_only_after_consent_and_says_why(
    client: httpx.AsyncClient, as_: Any
) -> None:
    jobcentre, ole = await load_ole(client, as_)
    await sign_in(client)
    worklist = await client.get("/web/arbejdsliste")
    assert f"/web/borger/{ole.split('/')[1]}" in worklist.text
    before = await client.get(f"/web/borger/{ole.split('/')[1]}")
    assert before.status_code == 200
    assert "Genoptræningsplan" not in before.text
    assert not any(r.startswith("ServiceRequest/") for r in refs_in(before.text))
    recorded = await jobcentre.post("Consent", consent(ole))
    assert recorded.status_code == 201, recorded.text
    after = await client.get(f"/web/borger/{ole.split('/')[1]}")
    assert "Genoptræningsplan" in after.text
    assert f"Consent/{recorded.json()['id']}" in after.text  # the basis is named
    assert "[consent]" in after.text and "[author]" in after.text
    # Everything shown is what the FHIR API returns the same participant.
    assert refs_in(after.text) and refs_in(after.text) <= await api_refs(jobcentre, ole)


async def api_refs(api: Any, patient: str) -> set[str]:
    """What the participant's own FHIR searches return about the citizen."""
    found = set()
    for rtype in TIMELINE_TYPES:
        response = await api.get(rtype, patient=patient, _count="500")
        assert response.status_code == 200, response.text
        for entry in response.json().get("entry", []):
            found.add(f"{entry['resource']['resourceType']}/{entry['resource']['id']}")
    return found


async def test_unknown_and_hidden_citizens_look_the_same(
    client: httpx.AsyncClient, as_: Any
) -> None:
    _, ole = await load_ole(client, as_)
    await client.post("/web/logout")
    form = await client.get("/web/login")
    await client.post(
        "/web/login",
        data={
            "participant": "aarhus-genoptraening",
            "username": "terapeut",
            "password": "demo-terapeut-1",
            "csrf": csrf_in(form.text),
        },
    )
    missing = await client.get("/web/borger/no-such-patient")
    hidden = await client.get(f"/web/borger/{ole.split('/')[1]}")
    assert missing.status_code == 200 or missing.status_code == 404
    if hidden.status_code == 404:
        assert hidden.text == missing.text


async def test_figures_page_has_a_chart_and_a_table(client: httpx.AsyncClient) -> None:
    await sign_in(client)
    page = await client.get("/web/noegletal", params={"maaned": "2026-11"})
    assert page.status_code == 200
    assert "<svg" in page.text and "Tilgang af sager" in page.text
    town = await client.get("/web/noegletal", params={"maaned": "2026-11", "kommune": "true"})
    assert "Kommune 0751" in town.text
    bad = await client.get("/web/noegletal", params={"maaned": "2026-13"})
    assert bad.status_code == 400


def test_add_user_cli_hashes_and_refuses_weak_or_duplicate(
    settings: Any, monkeypatch: Any, tmp_path: Any
) -> None:
    """``brobygger web add-user``: the user signs in; only an Argon2id hash is stored."""
    import asyncio

    from sqlalchemy import select
    from typer.testing import CliRunner

    from gateway.cli import app
    from gateway.participants.demo import ensure_demo_participants
    from gateway.store.database import Database
    from gateway.store.repository import Store
    from gateway.store.schema import staff_users
    from gateway.web import StaffDirectory

    monkeypatch.setenv("BROBYGGER_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("BROBYGGER_KEYS_DIR", str(settings.keys_dir))

    async def prepare() -> None:
        database = Database(settings.database_url)
        await database.migrate()
        await ensure_demo_participants(settings, database, Store(database, fhir_base="x"))
        await database.dispose()

    asyncio.run(prepare())
    runner = CliRunner()
    args = ["web", "add-user", "--as", "jobcenter-aarhus", "--username", "anna", "--name", "Anna"]
    added = runner.invoke(app, [*args, "--password-stdin"], input="en lang adgangskode\n")
    assert added.exit_code == 0, added.output
    again = runner.invoke(app, [*args, "--password-stdin"], input="en lang adgangskode\n")
    assert again.exit_code == 1 and "already" in again.output
    weak = runner.invoke(
        app,
        [
            "web",
            "add-user",
            "--as",
            "jobcenter-aarhus",
            "--username",
            "bo",
            "--name",
            "Bo",
            "--password-stdin",
        ],
        input="kort\n",
    )
    assert weak.exit_code == 1
    unknown = runner.invoke(
        app,
        [
            "web",
            "add-user",
            "--as",
            "nobody",
            "--username",
            "bo",
            "--name",
            "Bo",
            "--password-stdin",
        ],
        input="en lang adgangskode\n",
    )
    assert unknown.exit_code == 1

    async def check() -> tuple[Any, Any, str]:
        database = Database(settings.database_url)
        staff = StaffDirectory(database)
        good = await staff.authenticate("jobcenter-aarhus", "anna", "en lang adgangskode")
        bad = await staff.authenticate("aarhus-genoptraening", "anna", "en lang adgangskode")
        async with database.engine.connect() as conn:
            stored = (
                await conn.execute(
                    select(staff_users.c.password_hash).where(staff_users.c.username == "anna")
                )
            ).scalar_one()
        await database.dispose()
        return good, bad, stored

    good, bad, stored = asyncio.run(check())
    assert good is not None and good.display == "Anna" and bad is None
    assert stored.startswith("$argon2id$") and "adgangskode" not in stored


async def test_a_tampered_or_foreign_session_is_no_session(client: httpx.AsyncClient) -> None:
    await sign_in(client)
    good = client.cookies.get("brobygger_web")
    assert good is not None
    header, claims, signature = good.split(".")
    import base64
    import json as json_module

    decoded = json_module.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
    decoded["sub"] = "aarhus-genoptraening"
    forged = base64.urlsafe_b64encode(json_module.dumps(decoded).encode()).rstrip(b"=").decode()
    client.cookies.clear()
    client.cookies.set("brobygger_web", f"{header}.{forged}.{signature}", domain="testserver")
    assert (await client.get("/web/arbejdsliste")).status_code == 303
    client.cookies.set("brobygger_web", "not-a-session", domain="testserver")
    assert (await client.get("/web/noegletal")).status_code == 303


async def test_another_identity_provider_plugs_into_the_seam(
    app: Any, client: httpx.AsyncClient
) -> None:
    """A municipality's own IdP replaces ``app.state.web_identity``; the rest stays."""
    from gateway.web import StaffIdentity

    class MunicipalIdP:
        async def authenticate(
            self, participant: str, username: str, password: str
        ) -> StaffIdentity | None:
            # Stands in for an OIDC login: the IdP vouches for the person and the participant
            # comes from configuration, not from the browser's choice.
            if username == "oidc-user" and password == "checked-by-the-idp":
                return StaffIdentity("jobcenter-aarhus", username, "Kommunens bruger")
            return None

    app.state.web_identity = MunicipalIdP()
    signed = await sign_in(
        client, participant="ignored", username="oidc-user", password="checked-by-the-idp"
    )
    assert signed.status_code == 303
    page = await client.get("/web/arbejdsliste")
    assert "Kommunens bruger" in page.text and "Jobcenter Aarhus" in page.text
    assert (await sign_in(client)).status_code == 401  # the password directory is not asked
