"""Property: what the API returns is exactly what the pure consent engine permits.

Random resources (labels, authors, addressees) and random Consents for fresh patients are
stored; a random participant with a random purpose then reads each resource, searches by
patient (with and without paging), counts and asks for $everything. Every answer must
equal what ``consent.decide`` says for the same data: no leak, nothing missing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from consent import (
    ADDRESSEE_SYSTEM,
    DATA_CATEGORY_SYSTEM,
    Requester,
    decide,
    stamp_author,
    supports_patient,
)
from gateway.settings import Settings
from gateway.store import audit_log
from gateway.store.repository import Store
from tests.access.access_support import request_token, running_app
from tests.consent.consent_builders import actor_kind, actor_org, consent, provision

PARTICIPANTS = {
    "auh-ortopaedi": "hospital",
    "aarhus-genoptraening": "rehab-unit",
    "jobcenter-aarhus": "jobcentre",
    "lys-montage": "employer",
}
PURPOSES = ("sickness-benefit-follow-up", "rehabilitation-planning", "round-table-meeting")
CATEGORIES = (
    "rehab-plan",
    "medical-statement",
    "rehab-progress",
    "sickness-benefit-case",
    "employment-relevant",
    "mental-health",
)
TYPES = ("Observation", "ServiceRequest", "Condition")


@st.composite
def scenario(draw: st.DrawFn) -> dict[str, Any]:
    records = draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "type": st.sampled_from(TYPES),
                    "patient": st.integers(0, 1),
                    "labels": st.lists(st.sampled_from(CATEGORIES), max_size=3, unique=True),
                    "author": st.sampled_from(sorted(PARTICIPANTS)),
                    "addressee": st.none() | st.sampled_from(sorted(PARTICIPANTS)),
                }
            ),
            min_size=1,
            max_size=6,
        )
    )
    consents = draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "patient": st.integers(0, 1),
                    "status": st.sampled_from(["active", "active", "inactive"]),
                    "actor": st.sampled_from(
                        [("org", p) for p in sorted(PARTICIPANTS)]
                        + [("kind", k) for k in sorted(set(PARTICIPANTS.values()))]
                    ),
                    "purposes": st.lists(st.sampled_from(PURPOSES), max_size=2, unique=True),
                    "labels": st.lists(st.sampled_from(CATEGORIES), max_size=3, unique=True),
                }
            ),
            max_size=3,
        )
    )
    who = draw(st.sampled_from(sorted(PARTICIPANTS)))
    purpose = draw(st.sampled_from(PURPOSES))
    return {"records": records, "consents": consents, "who": who, "purpose": purpose}


def _record(spec: dict[str, Any], patient: str) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    if spec["labels"]:
        meta["security"] = [{"system": DATA_CATEGORY_SYSTEM, "code": c} for c in spec["labels"]]
    if spec["addressee"]:
        meta["tag"] = [{"system": ADDRESSEE_SYSTEM, "code": spec["addressee"]}]
    subject = {"reference": patient}
    body: dict[str, Any] = {"resourceType": spec["type"], "id": str(uuid.uuid4()), "meta": meta}
    if spec["type"] == "Observation":
        body |= {"status": "final", "code": {"text": "x"}, "subject": subject}
        body["effectiveDateTime"] = "2026-10-01"
    elif spec["type"] == "ServiceRequest":
        body |= {"status": "active", "intent": "plan", "subject": subject}
    else:
        body |= {"code": {"text": "x"}, "subject": subject, "recordedDate": "2026-10-01"}
    return stamp_author(body, spec["author"])


def _consent(spec: dict[str, Any], patient: str) -> dict[str, Any]:
    kind, value = spec["actor"]
    actor = actor_org(value) if kind == "org" else actor_kind(value)
    body = consent(
        str(uuid.uuid4()),
        patient=patient,
        status=spec["status"],
        date_time="2026-09-01T09:00:00+02:00",
        top=provision(
            actors=[actor], purposes=tuple(spec["purposes"]), labels=tuple(spec["labels"])
        ),
    )
    return stamp_author(body, "jobcenter-aarhus")


@pytest.fixture
def world(settings: Settings) -> Iterator[tuple[Any, Store, dict[tuple[str, str], str]]]:
    """One app (real tokens for every participant and purpose) for all examples."""
    with running_app(settings) as (loop, app, client):

        async def tokens_for_all() -> dict[tuple[str, str], str]:
            tokens: dict[tuple[str, str], str] = {}
            for name in PARTICIPANTS:
                for purpose in PURPOSES:
                    response = await request_token(client, settings, name, "system/*.read", purpose)
                    if response.status_code == 400 and response.json()["error"] == "invalid_scope":
                        # A purpose this kind may not ask for (gateway/auth/policy.py): the API
                        # must still agree with the engine for it, so the gateway signs one.
                        tokens[(name, purpose)] = app.state.tokens.issue(
                            participant=name,
                            kind=PARTICIPANTS[name],
                            organization_id=f"org-{name}",
                            scopes=["system/*.read"],
                            purpose=purpose,
                        ).access_token
                        continue
                    assert response.status_code == 200, response.text
                    tokens[(name, purpose)] = response.json()["access_token"]
            return tokens

        yield (loop, client), app.state.store, loop.run_until_complete(tokens_for_all())


@hsettings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=scenario())
def test_api_returns_exactly_what_the_engine_permits(
    world: tuple[Any, Store, dict[tuple[str, str], str]], case: dict[str, Any]
) -> None:
    (loop, client), store, tokens = world
    loop.run_until_complete(_check(client, store, tokens, case))


async def _check(
    client: httpx.AsyncClient,
    store: Store,
    tokens: dict[tuple[str, str], str],
    case: dict[str, Any],
) -> None:
    patient_ids = [str(uuid.uuid4()), str(uuid.uuid4())]
    patients = [f"Patient/{p}" for p in patient_ids]
    records = [_record(r, patients[r["patient"]]) for r in case["records"]]
    consents = [_consent(c, patients[c["patient"]]) for c in case["consents"]]
    async with store.write() as writer:
        for pid in patient_ids:
            await writer.put(stamp_author({"resourceType": "Patient", "id": pid}, "auh-ortopaedi"))
        for resource in [*records, *consents]:
            await writer.put(resource)

    who, purpose = case["who"], case["purpose"]
    requester = Requester(who, PARTICIPANTS[who], f"Organization/org-{who}", purpose)
    now = datetime.now(UTC)
    stored = {r["id"]: await store.read(r["resourceType"], r["id"]) for r in records}
    by_patient = {p: [c for c in consents if c["patient"]["reference"] == p] for p in patients}
    expected: dict[str, Any] = {}
    # Records that make their Patient visible: seen by a rule other than authorship.
    supporting: set[str] = set()
    for rid, resource in stored.items():
        decision = decide(
            requester, resource, by_patient[resource["subject"]["reference"]], now=now
        )
        if decision.resource is not None:
            expected[rid] = dict(decision.resource)
            if supports_patient(decision):
                supporting.add(rid)

    async def patient_shown(index: int, supported_by: set[str]) -> bool:
        """The engine's word on the Patient, given the records that support it."""
        resource = await store.read("Patient", patient_ids[index])
        decision = decide(
            requester,
            resource,
            by_patient[patients[index]],
            now=now,
            has_visible_record=bool(supported_by),
        )
        return decision.permitted

    headers = {"Authorization": f"Bearer {tokens[(who, purpose)]}"}
    for rid, resource in stored.items():
        target = f"{resource['resourceType']}/{rid}"
        before = await _audits(store, target)
        response = await client.get(f"/fhir/{target}", headers=headers)
        if rid in expected:
            assert response.status_code == 200, (rid, response.text)
            assert response.json() == expected[rid]
        else:
            assert response.status_code == 404, (rid, response.text)
        # Exactly one AuditEvent more names this resource, with the right outcome and agent.
        after = await _audits(store, target)
        new = [a for a in after if a["id"] not in {b["id"] for b in before}]
        assert len(new) == 1, new
        assert new[0]["outcome"] == ("0" if rid in expected else "4")
        assert new[0]["agent"][0]["who"]["display"] == who

    for rtype in TYPES:
        for index, patient in enumerate(patient_ids):
            want = {
                rid
                for rid, r in stored.items()
                if rid in expected
                and r["resourceType"] == rtype
                and case["records"][_position(records, rid)]["patient"] == index
            }
            params = {"patient": patient, "_count": "2"}
            got: set[str] = set()
            url: str | None = f"/fhir/{rtype}"
            first = True
            while url is not None:
                response = await client.get(url, params=params if first else None, headers=headers)
                assert response.status_code == 200, response.text
                body = response.json()
                if first:
                    assert body["total"] == len(want)
                    first = False
                page = {e["resource"]["id"] for e in body.get("entry", [])}
                assert page or not want or got == want  # no empty pages before the end
                got |= page
                nxt = [link["url"] for link in body["link"] if link["relation"] == "next"]
                url = nxt[0].replace("http://testserver", "") if nxt else None
            assert got == want
            count = await client.get(
                f"/fhir/{rtype}", params={"patient": patient, "_summary": "count"}, headers=headers
            )
            assert count.json()["total"] == len(want)
            # _include brings the Patient along exactly when a visible match refers to it.
            included = await client.get(
                f"/fhir/{rtype}",
                params={"patient": patient, "_include": f"{rtype}:subject"},
                headers=headers,
            )
            modes = {
                (e["search"]["mode"], e["resource"]["id"]) for e in included.json().get("entry", [])
            }
            assert {i for m, i in modes if m == "match"} == want
            # The Patient comes along when the caller wrote it, or a match it did not write
            # itself is visible (writing about a citizen does not open the citizen's record).
            shows_patient = bool(want) and await patient_shown(index, want & supporting)
            assert {i for m, i in modes if m == "include"} == (
                {patient} if shows_patient else set()
            )

    # History: a record's versions are there exactly when the record is visible.
    for rid, resource in stored.items():
        history = await client.get(
            f"/fhir/{resource['resourceType']}/{rid}/_history", headers=headers
        )
        assert history.status_code == (200 if rid in expected else 404), history.text

    # $everything: the patient and what refers to it, as the engine decides (consents too).
    consent_decisions = {
        c["id"]: decide(
            requester,
            await store.read("Consent", c["id"]),
            by_patient[c["patient"]["reference"]],
            now=now,
        )
        for c in consents
    }
    consent_visible = {cid for cid, d in consent_decisions.items() if d.permitted}
    supporting |= {cid for cid, d in consent_decisions.items() if supports_patient(d)}
    for index, patient in enumerate(patient_ids):
        visible_records = {
            rid for rid in expected if case["records"][_position(records, rid)]["patient"] == index
        } | {
            c["id"]
            for c in consents
            if c["id"] in consent_visible and c["patient"]["reference"] == patients[index]
        }
        patient_visible = await patient_shown(index, visible_records & supporting)
        everything = await client.get(f"/fhir/Patient/{patient}/$everything", headers=headers)
        if not patient_visible:
            assert everything.status_code == 404, everything.text
            continue
        assert everything.status_code == 200, everything.text
        returned = {e["resource"]["id"] for e in everything.json().get("entry", [])}
        assert returned == {patient} | visible_records


async def _audits(store: Store, target: str) -> list[dict[str, Any]]:
    """The AuditEvents that name ``target`` (read straight from the trail)."""
    async with store.read_connection() as conn:
        events, _ = await audit_log.search(conn, audit_log.AuditQuery(count=100_000))
    return [e for e in events if any(x["what"].get("reference") == target for x in e["entity"])]


def _position(records: list[dict[str, Any]], rid: str) -> int:
    return next(i for i, r in enumerate(records) if r["id"] == rid)
