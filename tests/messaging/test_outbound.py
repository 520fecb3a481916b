"""What each receiver gets (render_for / seal_for) and routed acknowledgements (route_ack).

Both stores. Messages are written as the inbound side writes them (resources, a ``messages``
row and one ``deliveries`` row per receiver, in one transaction); the demo participants and
their dev keys come from ``ensure_demo_participants``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from joserfc import jwe, jws
from joserfc.jwk import import_key
from sqlalchemy import func, select, update

from consent import EMPLOYER_REQUESTED_STATEMENT, LEGAL_BASIS_SYSTEM, stamp_author
from gateway.auth.keys import private_key_path, read_private_key
from gateway.errors import BadRequest, Issue
from gateway.messaging import acks, envelope, records
from gateway.messaging.keys import gateway_signing_key
from gateway.messaging.outbound import (
    NoEncryptionKey,
    principal_for,
    read_ack_header,
    render_for,
    route_ack,
    seal_for,
)
from gateway.messaging.records import MessageRecord
from gateway.participants.demo import ensure_demo_participants
from gateway.participants.directory import Participant, ParticipantDirectory
from gateway.search.dates import utc_now
from gateway.settings import Settings
from gateway.store.database import Database
from gateway.store.repository import Store
from gateway.store.schema import audit_events, deliveries, messages, participants
from tests.consent.consent_builders import actor_org, consent

ORIGIN = "https://sender.example/fhir"
ADDRESSEE = "http://brobygger.dk/fhir/CodeSystem/addressee"
CATEGORY = "http://brobygger.dk/fhir/CodeSystem/data-category"
SKS_D = "urn:oid:1.2.208.176.2.4.12"

HOSPITAL = "auh-ortopaedi"
REHAB = "aarhus-genoptraening"
JOBCENTRE = "jobcenter-aarhus"
EMPLOYER = "lys-montage"


# --- builders (also used by test_delivery.py) -------------------------------------------------


@dataclass
class Env:
    settings: Settings
    database: Database
    store: Store
    directory: ParticipantDirectory

    async def participant(self, name: str) -> Participant:
        return await self.directory.get(name)


async def make_env(settings: Settings) -> Env:
    database = Database(settings.database_url)
    await database.migrate()
    store = Store(database, fhir_base=settings.fhir_base)
    await ensure_demo_participants(settings, database, store)
    return Env(settings, database, store, ParticipantDirectory(database))


async def set_endpoint(env: Env, name: str, endpoint: str | None) -> None:
    async with env.database.engine.begin() as conn:
        await conn.execute(
            update(participants).where(participants.c.name == name).values(endpoint=endpoint)
        )


def patient(pid: str = "ole") -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": pid,
        "identifier": [{"system": "urn:oid:1.2.208.176.1.2", "value": "0101801234"}],
        "name": [{"family": "Hansen", "given": ["Ole"]}],
    }


def labelled(
    resource: dict[str, Any], *, author: str, addressees: tuple[str, ...], labels: tuple[str, ...]
) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    if addressees:
        meta["tag"] = [{"system": ADDRESSEE, "code": a} for a in addressees]
    if labels:
        meta["security"] = [{"system": CATEGORY, "code": c} for c in labels]
    return stamp_author({**resource, "meta": meta}, author)


def care_plan(
    rid: str = "plan-1",
    *,
    author: str = HOSPITAL,
    addressees: tuple[str, ...] = (REHAB,),
    labels: tuple[str, ...] = ("rehab-plan",),
    with_diagnosis: bool = False,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "CarePlan",
        "id": rid,
        "status": "active",
        "intent": "plan",
        "subject": {"reference": "Patient/ole"},
        "period": {"start": "2024-05-01"},
        "description": "Genoptræning efter skulderoperation",
    }
    if with_diagnosis:
        body["addresses"] = [{"reference": "Condition/cond-1"}]
    return labelled(body, author=author, addressees=addressees, labels=labels)


def condition(
    rid: str = "cond-1",
    *,
    author: str = HOSPITAL,
    addressees: tuple[str, ...] = (REHAB,),
    labels: tuple[str, ...] = ("rehab-plan",),
) -> dict[str, Any]:
    body = {
        "resourceType": "Condition",
        "id": rid,
        "subject": {"reference": "Patient/ole"},
        "code": {"coding": [{"system": SKS_D, "code": "DM751"}]},
        "recordedDate": "2024-04-20",
    }
    return labelled(body, author=author, addressees=addressees, labels=labels)


def _organization(name: str) -> dict[str, Any]:
    return {
        "resourceType": "Organization",
        "id": f"o-{name}",
        "identifier": [{"system": "urn:brobygger:test", "value": name}],
        "name": name,
    }


def message_bundle(
    *,
    sender: str,
    receivers: list[tuple[str, str]],
    content: list[dict[str, Any]],
    focus: list[str],
    header_id: str | None = None,
    event: str = "rehab-plan",
) -> dict[str, Any]:
    """A message Bundle as a sender would send it (MessageHeader, content, Provenance, orgs)."""
    header_id = header_id or str(uuid.uuid4())
    orgs = {name: _organization(name) for name in [sender, *(n for n, _ in receivers)]}
    header = {
        "resourceType": "MessageHeader",
        "id": header_id,
        "eventCoding": {
            "system": "http://brobygger.dk/fhir/CodeSystem/message-events",
            "code": event,
        },
        "destination": [
            {
                "extension": [
                    {
                        "url": "http://medcomfhir.dk/ig/messaging/StructureDefinition/"
                        "medcom-messaging-destinationUseExtension",
                        "valueCoding": {"code": role},
                    }
                ],
                "endpoint": f"{ORIGIN}/mailbox/{name}",
                "receiver": {"reference": f"{ORIGIN}/Organization/o-{name}"},
            }
            for name, role in receivers
        ],
        "sender": {"reference": f"{ORIGIN}/Organization/o-{sender}"},
        "source": {"endpoint": f"{ORIGIN}/$process-message"},
        "focus": [{"reference": f"{ORIGIN}/{ref}"} for ref in focus],
    }
    provenance = {
        "resourceType": "Provenance",
        "id": str(uuid.uuid4()),
        "target": [{"reference": f"{ORIGIN}/MessageHeader/{header_id}"}],
        "recorded": "2024-06-01T10:00:00+02:00",
        "activity": {"coding": [{"code": "new-message"}]},
        "agent": [{"who": {"reference": f"{ORIGIN}/Organization/o-{sender}"}}],
    }
    entries = [{"fullUrl": f"{ORIGIN}/MessageHeader/{header_id}", "resource": header}]
    entries += [
        {"fullUrl": f"{ORIGIN}/{r['resourceType']}/{r['id']}", "resource": r} for r in content
    ]
    entries.append({"fullUrl": f"{ORIGIN}/Provenance/{provenance['id']}", "resource": provenance})
    entries += [
        {"fullUrl": f"{ORIGIN}/Organization/{o['id']}", "resource": o} for o in orgs.values()
    ]
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "type": "message",
        "timestamp": "2024-06-01T10:00:00+02:00",
        "entry": entries,
    }


async def store_message(
    env: Env,
    *,
    sender: str,
    receivers: list[tuple[str, str]],
    stored: list[dict[str, Any]],
    bundle: dict[str, Any] | None = None,
    focus: list[str] | None = None,
    extra: Sequence[dict[str, Any]] = (),
) -> MessageRecord:
    """Write what inbound writes: the resources, the message row, one delivery per receiver."""
    if bundle is None:
        bundle = message_bundle(
            sender=sender,
            receivers=receivers,
            content=stored,
            focus=focus or [f"{stored[1]['resourceType']}/{stored[1]['id']}"],
        )
    header = bundle["entry"][0]["resource"]
    record = MessageRecord(
        key=str(uuid.uuid4()),
        sender=sender,
        message_id=header["id"],
        event=header["eventCoding"]["code"],
        received_at=utc_now(),
        content_sha256=uuid.uuid4().hex * 2,
        bundle=bundle,
        signed="header.payload.signature",
        ack_code="ok",
        ack={},
        resources=[f"{r['resourceType']}/{r['id']}" for r in stored],
        reply_to=None,
    )
    async with env.store.write("test message") as writer:
        for resource in [*stored, *extra]:
            await writer.put(resource)
        await records.insert_message(writer, record)
        for name, role in receivers:
            found = await env.directory.find(name)
            mode = "endpoint" if found is not None and found.endpoint else "mailbox"
            await records.insert_delivery(writer, record.key, name, role=role, mode=mode)
    return record


def ack_for(
    bundle: dict[str, Any], code: str = "ok", *, text: str = "not for us"
) -> dict[str, Any]:
    """The receiver's Acknowledgement of a (rendered) message Bundle."""
    header = bundle["entry"][0]["resource"]
    issues = [] if code == "ok" else [Issue("processing", text)]
    return acks.build_ack(acknowledged=header["id"], code=code, issues=issues)


def private_key(settings: Settings, name: str, use: str = "sig") -> Any:
    return read_private_key(private_key_path(settings.keys_dir, name, use=use))


def open_sealed(settings: Settings, token: str, receiver: str) -> dict[str, Any]:
    """Decrypt with the receiver's key and verify the gateway's signature; the Bundle."""
    plain = jwe.decrypt_compact(token, private_key(settings, receiver, "enc")).plaintext
    assert plain is not None
    gateway_key = gateway_signing_key(settings)
    public = import_key(gateway_key.as_dict(private=False))
    verified = jws.deserialize_compact(plain, public)
    assert verified.headers()["kid"] == envelope.kid_of(gateway_key)
    data: dict[str, Any] = json.loads(verified.payload)
    return data


async def audit_count(env: Env, participant: str) -> int:
    async with env.store.read_connection() as conn:
        query = select(func.count()).select_from(audit_events)
        query = query.where(audit_events.c.participant == participant)
        return int((await conn.execute(query)).scalar_one())


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
async def env(settings: Settings) -> AsyncIterator[Env]:
    made = await make_env(settings)
    yield made
    await made.database.dispose()


def _refs(bundle: dict[str, Any]) -> list[str]:
    return [f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle["entry"][1:]]


def _resource(bundle: dict[str, Any], ref: str) -> dict[str, Any]:
    rtype, rid = ref.split("/")
    return next(
        e["resource"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == rtype and e["resource"]["id"] == rid
    )


# --- render_for -------------------------------------------------------------------------------


async def test_primary_receiver_gets_header_focus_content_provenance_and_organizations(
    env: Env,
) -> None:
    record = await store_message(
        env,
        sender=HOSPITAL,
        receivers=[(REHAB, "primary"), (JOBCENTRE, "cc")],
        stored=[patient(), care_plan(), condition()],
    )
    bundle = await render_for(env.store, env.settings, record, await env.participant(REHAB))
    assert bundle is not None
    assert bundle["type"] == "message"
    assert bundle["id"] == record.bundle["id"]
    header = bundle["entry"][0]["resource"]
    assert header["resourceType"] == "MessageHeader"
    assert header["id"] == record.message_id  # the receiver dedupes by it
    base = env.settings.fhir_base
    assert header["focus"] == [{"reference": f"{base}/CarePlan/plan-1"}]
    refs = _refs(bundle)
    assert {"Patient/ole", "CarePlan/plan-1", "Condition/cond-1"} <= set(refs)
    assert sum(r.startswith("Provenance/") for r in refs) == 1
    assert sum(r.startswith("Organization/o-") for r in refs) == 3
    stored = next(e for e in bundle["entry"] if e["resource"]["id"] == "plan-1")
    assert stored["fullUrl"] == f"{base}/CarePlan/plan-1"
    assert stored["resource"]["meta"]["versionId"] == "1"  # the stored version
    # The disclosure is audited, in the receiver's name.
    assert await audit_count(env, REHAB) >= 1


async def test_cc_without_consent_is_withheld_and_the_denial_audited(env: Env) -> None:
    record = await store_message(
        env,
        sender=HOSPITAL,
        receivers=[(REHAB, "primary"), (JOBCENTRE, "cc")],
        stored=[patient(), care_plan(), condition()],
    )
    bundle = await render_for(env.store, env.settings, record, await env.participant(JOBCENTRE))
    assert bundle is None
    assert await audit_count(env, JOBCENTRE) >= 1


async def test_cc_with_consent_gets_what_the_consent_names(env: Env) -> None:
    record = await store_message(
        env,
        sender=HOSPITAL,
        receivers=[(REHAB, "primary"), (JOBCENTRE, "cc")],
        stored=[patient(), care_plan(), condition(labels=("mental-health",))],
        extra=[
            consent(
                "c-jobcentre",
                actors=[actor_org(JOBCENTRE)],
                purposes=("sickness-benefit-follow-up",),
                labels=("rehab-plan",),
            )
        ],
    )
    bundle = await render_for(env.store, env.settings, record, await env.participant(JOBCENTRE))
    assert bundle is not None
    refs = _refs(bundle)
    assert "CarePlan/plan-1" in refs
    assert "Patient/ole" in refs  # supporting: the patient of a record it sees
    assert "Condition/cond-1" not in refs  # mental health is not named by the consent


async def test_withdrawn_consent_withholds_later_renders(env: Env) -> None:
    granted = consent(
        "c-jobcentre",
        actors=[actor_org(JOBCENTRE)],
        purposes=("sickness-benefit-follow-up",),
        labels=("rehab-plan",),
    )
    record = await store_message(
        env,
        sender=HOSPITAL,
        receivers=[(REHAB, "primary"), (JOBCENTRE, "cc")],
        stored=[patient(), care_plan()],
        extra=[granted],
    )
    jobcentre = await env.participant(JOBCENTRE)
    assert await render_for(env.store, env.settings, record, jobcentre) is not None
    await env.store.update("Consent", "c-jobcentre", {**granted, "status": "inactive"})
    assert await render_for(env.store, env.settings, record, jobcentre) is None


def with_basis(resource: dict[str, Any], code: str) -> dict[str, Any]:
    """``resource`` with the legal-basis tag the gateway stamps (here: by hand)."""
    meta = dict(resource["meta"])
    meta["tag"] = [*meta.get("tag", []), {"system": LEGAL_BASIS_SYSTEM, "code": code}]
    return {**resource, "meta": meta}


async def test_employer_gets_a_copy_without_diagnoses(env: Env) -> None:
    # Health data reaches an employer only on a legal basis (here the Mulighedserklæring it
    # requested) or a consent; and never with a diagnosis.
    basis = EMPLOYER_REQUESTED_STATEMENT
    record = await store_message(
        env,
        sender=HOSPITAL,
        receivers=[(EMPLOYER, "primary")],
        stored=[
            patient(),
            with_basis(
                care_plan(
                    addressees=(EMPLOYER,), labels=("employment-relevant",), with_diagnosis=True
                ),
                basis,
            ),
            with_basis(condition(addressees=(EMPLOYER,), labels=("employment-relevant",)), basis),
        ],
    )
    bundle = await render_for(env.store, env.settings, record, await env.participant(EMPLOYER))
    assert bundle is not None
    refs = _refs(bundle)
    assert "Condition/cond-1" not in refs
    plan = _resource(bundle, "CarePlan/plan-1")
    assert "addresses" not in plan
    assert SKS_D not in json.dumps(bundle)


async def test_focus_found_by_type_when_the_store_gave_new_ids(env: Env) -> None:
    sent_plan = care_plan("sender-plan-id")
    bundle = message_bundle(
        sender=HOSPITAL,
        receivers=[(REHAB, "primary")],
        content=[patient("sender-patient"), sent_plan],
        focus=["CarePlan/sender-plan-id"],
    )
    record = await store_message(
        env,
        sender=HOSPITAL,
        receivers=[(REHAB, "primary")],
        stored=[patient(), care_plan("stored-plan"), condition()],
        bundle=bundle,
    )
    rendered = await render_for(env.store, env.settings, record, await env.participant(REHAB))
    assert rendered is not None
    header = rendered["entry"][0]["resource"]
    assert header["focus"] == [{"reference": f"{env.settings.fhir_base}/CarePlan/stored-plan"}]
    # The sender's own copies of the content do not travel; the stored ones do.
    assert "CarePlan/sender-plan-id" not in _refs(rendered)


async def test_focus_of_a_legacy_document_is_its_stored_content(env: Env) -> None:
    binary = {"resourceType": "Binary", "id": "doc", "contentType": "application/xml"}
    bundle = message_bundle(
        sender=HOSPITAL, receivers=[(REHAB, "primary")], content=[binary], focus=["Binary/doc"]
    )
    record = await store_message(
        env,
        sender=HOSPITAL,
        receivers=[(REHAB, "primary")],
        stored=[patient(), care_plan(), condition()],
        bundle=bundle,
    )
    rendered = await render_for(env.store, env.settings, record, await env.participant(REHAB))
    assert rendered is not None
    base = env.settings.fhir_base
    assert rendered["entry"][0]["resource"]["focus"] == [
        {"reference": f"{base}/CarePlan/plan-1"},
        {"reference": f"{base}/Condition/cond-1"},
    ]
    assert "Binary/doc" not in _refs(rendered)


async def test_deleted_content_is_not_sent(env: Env) -> None:
    record = await store_message(
        env,
        sender=HOSPITAL,
        receivers=[(REHAB, "primary")],
        stored=[patient(), care_plan(), condition()],
    )
    await env.store.delete("CarePlan", "plan-1")
    rehab = await env.participant(REHAB)
    assert await render_for(env.store, env.settings, record, rehab) is None


async def test_consent_off_shows_everything(env: Env) -> None:
    record = await store_message(
        env,
        sender=HOSPITAL,
        receivers=[(REHAB, "primary"), (JOBCENTRE, "cc")],
        stored=[patient(), care_plan(), condition()],
    )
    settings = env.settings.model_copy(update={"enforce_consent": False})
    bundle = await render_for(env.store, settings, record, await env.participant(JOBCENTRE))
    assert bundle is not None
    assert {"Patient/ole", "CarePlan/plan-1", "Condition/cond-1"} <= set(_refs(bundle))


async def test_a_routed_acknowledgement_travels_as_received(env: Env) -> None:
    ack = acks.build_ack(acknowledged=str(uuid.uuid4()), code="ok")
    reply = MessageRecord(
        key=str(uuid.uuid4()),
        sender=REHAB,
        message_id=ack["entry"][0]["resource"]["id"],
        event="acknowledgement-message",
        received_at=utc_now(),
        content_sha256="0" * 64,
        bundle=ack,
        signed="a.b.c",
        ack_code="ok",
        ack={},
        resources=[],
        reply_to=str(uuid.uuid4()),
    )
    assert await render_for(env.store, env.settings, reply, await env.participant(HOSPITAL)) == ack


def test_principal_for_each_kind_has_a_purpose() -> None:
    kinds = {"hospital": "TREAT", "gp": "medical-statement", "employer": "round-table-meeting"}
    for kind, purpose in kinds.items():
        found = principal_for(Participant("x", kind, "X", organization_id="org-x"))
        assert found.purpose == purpose
        assert found.allows("CarePlan", "read") and not found.allows("CarePlan", "write")
        assert found.organization_id == "org-x"


# --- seal_for ---------------------------------------------------------------------------------


async def test_sealed_for_the_receiver_and_signed_by_the_gateway(env: Env) -> None:
    record = await store_message(
        env,
        sender=HOSPITAL,
        receivers=[(REHAB, "primary")],
        stored=[patient(), care_plan()],
    )
    token = await seal_for(env.store, env.settings, record, await env.participant(REHAB))
    assert token is not None and token.count(".") == 4  # a compact JWE
    bundle = open_sealed(env.settings, token, REHAB)
    assert bundle["entry"][0]["resource"]["id"] == record.message_id
    # Nobody else can open it.
    with pytest.raises(Exception):  # noqa: B017 - joserfc's decryption error
        jwe.decrypt_compact(token, private_key(env.settings, JOBCENTRE, "enc"))


async def test_withheld_message_is_not_sealed(env: Env) -> None:
    record = await store_message(
        env,
        sender=HOSPITAL,
        receivers=[(REHAB, "primary"), (JOBCENTRE, "cc")],
        stored=[patient(), care_plan()],
    )
    assert await seal_for(env.store, env.settings, record, await env.participant(JOBCENTRE)) is None


async def test_no_encryption_key_refuses_unless_plain_jws_is_allowed(env: Env) -> None:
    record = await store_message(
        env, sender=HOSPITAL, receivers=[(REHAB, "primary")], stored=[patient(), care_plan()]
    )
    rehab = await env.participant(REHAB)
    signing_only = {"keys": [k for k in rehab.jwks["keys"] if k.get("use", "sig") == "sig"]}
    rehab = await env.directory.set_jwks(REHAB, signing_only)
    with pytest.raises(NoEncryptionKey, match="no registered encryption key"):
        await seal_for(env.store, env.settings, record, rehab)
    allowed = env.settings.model_copy(update={"delivery_allow_plain_jws": True})
    token = await seal_for(env.store, allowed, record, rehab)
    assert token is not None and token.count(".") == 2  # a plain compact JWS
    gateway_key = gateway_signing_key(env.settings)
    opened = envelope.read_signed(token, {envelope.kid_of(gateway_key): gateway_key})
    assert opened["entry"][0]["resource"]["id"] == record.message_id


# --- route_ack --------------------------------------------------------------------------------


async def _message_rows(env: Env) -> int:
    async with env.store.read_connection() as conn:
        return int((await conn.execute(select(func.count()).select_from(messages))).scalar_one())


async def _delivery_rows(env: Env) -> int:
    async with env.store.read_connection() as conn:
        query = select(func.count()).select_from(deliveries)
        return int((await conn.execute(query)).scalar_one())


async def _route(env: Env, record: MessageRecord, receiver: str, ack: dict[str, Any]) -> None:
    signed = envelope.sign(envelope.canonical_json(ack), private_key(env.settings, receiver))
    async with env.store.write("test ack") as writer:
        await route_ack(writer, record, receiver, ack, signed)


async def _delivery(env: Env, key: str, receiver: str) -> records.Delivery:
    async with env.store.read_connection() as conn:
        found = await records.get_delivery(conn, key, receiver)
    assert found is not None
    return found


async def test_ok_ack_acknowledges_and_is_routed_to_the_sender_once(env: Env) -> None:
    await set_endpoint(env, HOSPITAL, "https://hospital.example/fhir/messages")
    record = await store_message(
        env,
        sender=HOSPITAL,
        receivers=[(REHAB, "primary"), (JOBCENTRE, "cc")],
        stored=[patient(), care_plan()],
    )
    ack = ack_for(record.bundle)
    await _route(env, record, REHAB, ack)
    delivery = await _delivery(env, record.key, REHAB)
    assert (delivery.status, delivery.ack_code, delivery.ack) == ("acknowledged", "ok", ack)
    assert (await _delivery(env, record.key, JOBCENTRE)).status == "pending"
    ack_id = ack["entry"][0]["resource"]["id"]
    async with env.store.read_connection() as conn:
        reply = await records.find_message(conn, REHAB, ack_id)
        assert reply is not None
        routed = await records.deliveries_of(conn, reply.key)
    assert reply.reply_to == record.key
    assert reply.event == "acknowledgement-message"
    assert reply.bundle == ack and reply.resources == []
    assert jws.extract_compact(reply.signed.encode()).payload == envelope.canonical_json(ack)
    assert [(d.receiver, d.role, d.mode, d.status) for d in routed] == [
        (HOSPITAL, "reply", "endpoint", "pending")
    ]
    before = (await _message_rows(env), await _delivery_rows(env))
    await _route(env, record, REHAB, ack)  # the same acknowledgement again
    assert (await _message_rows(env), await _delivery_rows(env)) == before
    # A later, different ok changes nothing either: the first final answer stands.
    await _route(env, record, REHAB, ack_for(record.bundle))
    assert (await _message_rows(env), await _delivery_rows(env)) == before
    assert (await _delivery(env, record.key, REHAB)).ack == ack


async def test_fatal_ack_fails_the_delivery_and_reaches_the_sender_mailbox(env: Env) -> None:
    record = await store_message(
        env, sender=HOSPITAL, receivers=[(REHAB, "primary")], stored=[patient(), care_plan()]
    )
    ack = ack_for(record.bundle, "fatal-error", text="unknown patient")
    await _route(env, record, REHAB, ack)
    delivery = await _delivery(env, record.key, REHAB)
    assert delivery.status == "failed" and delivery.ack_code == "fatal-error"
    assert delivery.last_error is not None and "unknown patient" in delivery.last_error
    async with env.store.read_connection() as conn:
        reply = await records.find_message(conn, REHAB, ack["entry"][0]["resource"]["id"])
        assert reply is not None
        routed = await records.deliveries_of(conn, reply.key)
    assert [(d.receiver, d.role, d.mode) for d in routed] == [(HOSPITAL, "reply", "mailbox")]


async def test_transient_ack_keeps_the_delivery_pending_and_routes_nothing(env: Env) -> None:
    record = await store_message(
        env, sender=HOSPITAL, receivers=[(REHAB, "primary")], stored=[patient(), care_plan()]
    )
    before = await _message_rows(env)
    await _route(env, record, REHAB, ack_for(record.bundle, "transient-error", text="busy"))
    delivery = await _delivery(env, record.key, REHAB)
    assert delivery.status == "pending" and delivery.ack_code == "transient-error"
    assert await _message_rows(env) == before
    # The final answer still counts afterwards.
    await _route(env, record, REHAB, ack_for(record.bundle))
    assert (await _delivery(env, record.key, REHAB)).status == "acknowledged"
    assert await _message_rows(env) == before + 1


async def test_ack_of_another_message_or_by_a_stranger_is_refused(env: Env) -> None:
    record = await store_message(
        env, sender=HOSPITAL, receivers=[(REHAB, "primary")], stored=[patient(), care_plan()]
    )
    other = acks.build_ack(acknowledged=str(uuid.uuid4()), code="ok")
    with pytest.raises(BadRequest, match="answers"):
        await _route(env, record, REHAB, other)
    with pytest.raises(Exception, match="not sent to"):
        await _route(env, record, EMPLOYER, ack_for(record.bundle))
    assert (await _delivery(env, record.key, REHAB)).status == "pending"


def test_read_ack_header_refuses_what_is_not_an_acknowledgement() -> None:
    ack = acks.build_ack(acknowledged="m-1", code="transient-error")
    info = read_ack_header(ack)
    assert (info.acknowledged, info.code) == ("m-1", "transient-error")
    assert info.ack_id == ack["entry"][0]["resource"]["id"]
    not_ack = message_bundle(
        sender=HOSPITAL, receivers=[(REHAB, "primary")], content=[patient()], focus=[]
    )
    with pytest.raises(BadRequest):
        read_ack_header(not_ack)
    with pytest.raises(BadRequest):
        read_ack_header({"resourceType": "Bundle", "entry": []})
