"""Property: Bundles that write disclose and change exactly what the engine and the policy allow.

Random records (authors, labels, addressees) and Consents for fresh patients are stored; a
random participant then sends a random batch or transaction whose entries read, conditionally
create, update, conditionally update, delete, conditionally delete and conditionally reference
those records, with every entry-URL form. The answer is checked against a model built from
the pure engine (``consent.decide``) and the write policy (only the author changes a record):

- every entry's status (a hidden match is no match; a hidden target is unknown);
- nothing the caller may not see appears anywhere in the answer (each record carries a
  secret marker), and what it may see appears exactly in the engine's (redacted) form;
- no record changed except the caller's own ones it was asked to change, and every author
  survives;
- every disclosure of a stored record has its AuditEvent, and a hidden conditional match
  leaves none.

With the guard switched off (``enforce_consent=False``) the first conditional create of a
hidden record answers 200 with its content, and this property fails at once.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from consent import ADDRESSEE_SYSTEM, DATA_CATEGORY_SYSTEM, Requester, decide, stamp_author
from gateway.errors import Gone
from gateway.settings import Settings
from gateway.store import audit_log
from gateway.store.repository import Store
from tests.access.access_support import request_token, running_app
from tests.consent.consent_builders import actor_kind, actor_org, consent, provision

CPR = "urn:oid:1.2.208.176.1.2"
TEST_ID = "urn:test:record"
# Who sends the Bundle: (participant, kind, purpose, may write).
CALLERS = {
    "auh-ortopaedi": ("hospital", "TREAT", True),
    "aarhus-genoptraening": ("rehab-unit", "rehabilitation-planning", True),
    "jobcenter-aarhus": ("jobcentre", "sickness-benefit-follow-up", True),
    "jobcenter-roskilde": ("jobcentre", "sickness-benefit-follow-up", True),
    "lys-montage": ("employer", "round-table-meeting", False),
}
AUTHORS = ("auh-ortopaedi", "aarhus-genoptraening", "jobcenter-aarhus")
CATEGORIES = ("rehab-plan", "rehab-progress", "employment-relevant", "mental-health")
TYPES = ("Observation", "ServiceRequest", "CarePlan")
OPS = (
    "get",
    "post-if-none-exist",
    "put",
    "put-conditional",
    "delete",
    "delete-conditional",
    "post-conditional-reference",
    "bad-url",
)
BAD_URLS = ("{t}/{i}/", "{t}/{i}?a=b", "{t}/{i}/_history/1")
_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "GET": 3}


@st.composite
def scenario(draw: st.DrawFn) -> dict[str, Any]:
    records = draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "type": st.sampled_from(TYPES),
                    "patient": st.integers(0, 1),
                    "labels": st.lists(st.sampled_from(CATEGORIES), unique=True, max_size=2),
                    "author": st.sampled_from(AUTHORS),
                    "addressee": st.none() | st.sampled_from(tuple(CALLERS)),
                }
            ),
            min_size=1,
            max_size=4,
        )
    )
    consents = draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "patient": st.integers(0, 1),
                    "actor": st.sampled_from(
                        [("org", name) for name in CALLERS] + [("kind", "jobcentre")]
                    ),
                    "labels": st.lists(st.sampled_from(CATEGORIES), unique=True, max_size=2),
                }
            ),
            max_size=2,
        )
    )
    ops = draw(
        st.lists(
            st.tuples(
                st.sampled_from(OPS),
                st.integers(0, len(records) - 1),
                st.sampled_from(BAD_URLS),
            ),
            min_size=1,
            max_size=4,
            unique_by=lambda op: op[1],  # one entry per record: no two entries on one target
        )
    )
    return {
        "records": records,
        "consents": consents,
        "ops": ops,
        "who": draw(st.sampled_from(tuple(CALLERS))),
        "kind": draw(st.sampled_from(("batch", "transaction"))),
    }


@pytest.fixture
def world(settings: Settings) -> Iterator[tuple[Any, Store, dict[str, str]]]:
    """One app with a write (or read) token for each caller, for all examples."""
    with running_app(settings) as (loop, app, client):

        async def tokens_for_all() -> dict[str, str]:
            tokens: dict[str, str] = {}
            for name, (_, purpose, writes) in CALLERS.items():
                scope = "system/*.read system/*.write" if writes else "system/*.read"
                response = await request_token(client, settings, name, scope, purpose)
                assert response.status_code == 200, response.text
                tokens[name] = response.json()["access_token"]
            return tokens

        yield (loop, client), app.state.store, loop.run_until_complete(tokens_for_all())


@hsettings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=scenario())
def test_bundles_disclose_and_change_exactly_what_engine_and_policy_allow(
    world: tuple[Any, Store, dict[str, str]], case: dict[str, Any]
) -> None:
    (loop, client), store, tokens = world
    loop.run_until_complete(_check(client, store, tokens, case))


# --- the world of one example --------------------------------------------------------------


def _kind_of(name: str) -> str:
    return CALLERS[name][0]


def _record(spec: dict[str, Any], patient: str) -> dict[str, Any]:
    rid = str(uuid.uuid4())
    meta: dict[str, Any] = {}
    if spec["labels"]:
        meta["security"] = [{"system": DATA_CATEGORY_SYSTEM, "code": c} for c in spec["labels"]]
    if spec["addressee"]:
        meta["tag"] = [{"system": ADDRESSEE_SYSTEM, "code": spec["addressee"]}]
    body: dict[str, Any] = {
        "resourceType": spec["type"],
        "id": rid,
        "meta": meta,
        "identifier": [{"system": TEST_ID, "value": rid}],
        "subject": {"reference": patient},
    }
    marker = f"secret-{rid}"
    if spec["type"] == "Observation":
        body |= {"status": "final", "code": {"text": marker}, "effectiveDateTime": "2026-11-01"}
    elif spec["type"] == "ServiceRequest":
        body |= {"status": "active", "intent": "plan", "code": {"text": marker}}
        body["authoredOn"] = "2026-11-01"
    else:
        body |= {"status": "active", "intent": "plan", "description": marker}
        body["period"] = {"start": "2026-11-01"}
    return stamp_author(body, spec["author"], kind=_kind_of(spec["author"]))


def _consent(spec: dict[str, Any], patient: str) -> dict[str, Any]:
    kind, value = spec["actor"]
    actor = actor_org(value) if kind == "org" else actor_kind(value)
    body = consent(
        str(uuid.uuid4()),
        patient=patient,
        date_time="2026-10-01T09:00:00+02:00",
        top=provision(actors=[actor], labels=tuple(spec["labels"])),
    )
    return stamp_author(body, "jobcenter-aarhus", kind="jobcentre")


def _changed(resource: dict[str, Any]) -> dict[str, Any]:
    """What a caller would send to change a record: a copy with a new status, and its own
    text instead of the record's secret marker (the caller knows only what it sends)."""
    body = {k: v for k, v in resource.items() if k != "meta"}
    body["status"] = "revoked" if resource["resourceType"] != "Observation" else "amended"
    sent: dict[str, Any] = json.loads(json.dumps(body).replace("secret-", "sent-"))
    return sent


def _fresh(resource: dict[str, Any]) -> dict[str, Any]:
    body = _changed(resource)
    body.pop("id")
    return body


@dataclass
class Expected:
    status: str  # "200", "201", "204", "400", "403", "404", "412"
    method: str
    shown: dict[str, Any] | None = None  # the stored record the answer discloses
    changes: str | None = None  # the stored record this entry changes
    hidden_match: str | None = None  # a stored record matched but hidden: no trace


def _entry_and_model(
    op: tuple[str, int, str],
    record: dict[str, Any],
    cpr: str,
    *,
    visible: bool,
    shown: dict[str, Any] | None,
    own: bool,
    patient_visible: bool,
    transaction: bool,
) -> tuple[dict[str, Any], Expected]:
    name, _, bad = op
    rtype, rid = record["resourceType"], record["id"]
    by_identifier = f"identifier={TEST_ID}|{rid}"
    if name == "get":
        entry = {"request": {"method": "GET", "url": f"{rtype}/{rid}"}}
        return entry, Expected("200", "GET", shown=shown) if visible else Expected("404", "GET")
    if name == "post-if-none-exist":
        entry = {
            "resource": _fresh(record),
            "request": {"method": "POST", "url": rtype, "ifNoneExist": by_identifier},
        }
        if visible:
            return entry, Expected("200", "POST", shown=shown)
        return entry, Expected("201", "POST", hidden_match=rid)
    if name in ("put", "delete"):
        method = name.upper()
        entry = {"request": {"method": method, "url": f"{rtype}/{rid}"}}
        if method == "PUT":
            entry["resource"] = _changed(record)
        if not visible:
            return entry, Expected("404", method)
        if not own:
            return entry, Expected("403", method)
        return entry, Expected("200" if method == "PUT" else "204", method, changes=rid)
    if name in ("put-conditional", "delete-conditional"):
        method = name.split("-")[0].upper()
        entry = {"request": {"method": method, "url": f"{rtype}?{by_identifier}"}}
        if method == "PUT":
            entry["resource"] = _fresh(record)
        if not visible:
            status = "201" if method == "PUT" else "204"
            return entry, Expected(status, method, hidden_match=rid)
        if not own:
            return entry, Expected("403", method)
        return entry, Expected("200" if method == "PUT" else "204", method, changes=rid)
    if name == "post-conditional-reference":
        body = {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "probe"},
            "subject": {"reference": f"Patient?identifier={CPR}|{cpr}"},
        }
        entry = {"resource": body, "request": {"method": "POST", "url": "Observation"}}
        # Only transactions resolve conditional references (a batch stores what it was sent).
        ok = patient_visible or not transaction
        return entry, Expected("201" if ok else "412", "POST")
    url = bad.format(t=rtype, i=rid)
    entry = {"request": {"method": "PUT", "url": url}, "resource": _changed(record)}
    return entry, Expected("400", "PUT")


async def _check(
    client: httpx.AsyncClient, store: Store, tokens: dict[str, str], case: dict[str, Any]
) -> None:
    patient_ids = [str(uuid.uuid4()), str(uuid.uuid4())]
    patients = [f"Patient/{p}" for p in patient_ids]
    cprs = [str(uuid.uuid4().int)[:10] for _ in patient_ids]
    records = [_record(r, patients[r["patient"]]) for r in case["records"]]
    consents = [_consent(c, patients[c["patient"]]) for c in case["consents"]]
    async with store.write() as writer:
        for pid, cpr in zip(patient_ids, cprs, strict=True):
            body = {
                "resourceType": "Patient",
                "id": pid,
                "identifier": [{"system": CPR, "value": cpr}],
            }
            await writer.put(stamp_author(body, "auh-ortopaedi", kind="hospital"))
        for resource in [*records, *consents]:
            await writer.put(resource)
    stored = [await store.read(r["resourceType"], r["id"]) for r in records]

    who, kind = case["who"], case["kind"]
    requester = Requester(who, _kind_of(who), f"Organization/org-{who}", CALLERS[who][1])
    now = datetime.now(UTC)
    by_patient = {p: [c for c in consents if c["patient"]["reference"] == p] for p in patients}
    decisions = [
        decide(requester, r, by_patient[r["subject"]["reference"]], now=now) for r in stored
    ]
    supported = {
        r["subject"]["reference"]
        for r, d in zip(stored, decisions, strict=True)
        if d.permitted and d.rule != "author"
    }
    patient_visible = []
    for pid, patient in zip(patient_ids, patients, strict=True):
        resource = await store.read("Patient", pid)
        verdict = decide(
            requester,
            resource,
            by_patient[patient],
            now=now,
            has_visible_record=patient in supported,
        )
        patient_visible.append(verdict.permitted)

    entries: list[dict[str, Any]] = []
    model: list[Expected] = []
    for op in case["ops"]:
        index = op[1]
        record, decision = stored[index], decisions[index]
        entry, expected = _entry_and_model(
            op,
            record,
            cprs[case["records"][index]["patient"]],
            visible=decision.permitted,
            shown=dict(decision.resource) if decision.resource is not None else None,
            own=record["meta"]["source"].endswith(f":{who}"),
            patient_visible=patient_visible[case["records"][index]["patient"]],
            transaction=kind == "transaction",
        )
        entries.append(entry)
        model.append(expected)

    before_audit = await _audit_ids(store)
    response = await client.post(
        "/fhir",
        json={"resourceType": "Bundle", "type": kind, "entry": entries},
        headers={"Authorization": f"Bearer {tokens[who]}"},
    )
    text = response.text
    # The route refuses a write by a read-only token before anything runs; an entry whose URL
    # cannot be parsed names no type to check and is refused by itself (400).
    writes = any(e.method != "GET" and e.status != "400" for e in model)
    # 1. Statuses.
    errors = [(i, e) for i, e in enumerate(model) if int(e.status) >= 400]
    failed_whole = False
    if writes and not CALLERS[who][2]:
        assert response.status_code == 403, text  # an employer's token only reads
        failed_whole = True
    elif kind == "transaction" and errors:
        failed_whole = True
        parse = [e for _, e in errors if e.status == "400"]
        refs = [e for _, e in errors if e.status == "412"]
        if parse:
            want = "400"
        elif refs:
            want = "412"
        else:
            want = min(errors, key=lambda ie: (_ORDER[ie[1].method], ie[0]))[1].status
        assert str(response.status_code) == want, (want, text)
        assert response.json()["resourceType"] == "OperationOutcome"
    else:
        assert response.status_code == 200, text
        got = response.json()["entry"]
        assert len(got) == len(model)
        for answer, expected in zip(got, model, strict=True):
            assert answer["response"]["status"].split()[0] == expected.status, (expected, answer)
            if expected.shown is not None:
                assert answer["resource"] == expected.shown
    # 2. Nothing hidden appears anywhere in the answer.
    for record, decision in zip(stored, decisions, strict=True):
        marker = f"secret-{record['id']}"
        if decision.resource is None or marker not in json.dumps(decision.resource):
            assert marker not in text, (record["id"], text)
    # 3. Nothing changed but the caller's own records it was asked to change; authors stay.
    changed = set() if failed_whole else {e.changes for e in model if e.changes}
    for record in stored:
        try:
            after: dict[str, Any] | None = await store.read(record["resourceType"], record["id"])
        except Gone:
            after = None
        if record["id"] in changed:
            continue
        assert after == record, (record["id"], after)
    for consent_resource in consents:
        assert (await store.read("Consent", consent_resource["id"]))["meta"]["versionId"] == "1"
    # 4. Every disclosure audited; a hidden match leaves no trace.
    new_events = [e for e in await _audit_events(store) if e["id"] not in before_audit]
    named = {
        (x["what"].get("reference"), e["outcome"], e["agent"][0]["who"]["display"])
        for e in new_events
        for x in e["entity"]
    }
    if not failed_whole:
        for expected in model:
            if expected.shown is not None:
                ref = f"{expected.shown['resourceType']}/{expected.shown['id']}"
                assert (ref, "0", who) in named, (ref, named)
    for expected in model:
        if expected.hidden_match is not None:
            hidden = next(r for r in stored if r["id"] == expected.hidden_match)
            ref = f"{hidden['resourceType']}/{hidden['id']}"
            assert not any(n[0] == ref for n in named), (ref, named)


async def _audit_events(store: Store) -> list[dict[str, Any]]:
    async with store.read_connection() as conn:
        events, _ = await audit_log.search(conn, audit_log.AuditQuery(count=100_000))
    return events


async def _audit_ids(store: Store) -> set[str]:
    return {str(e["id"]) for e in await _audit_events(store)}
