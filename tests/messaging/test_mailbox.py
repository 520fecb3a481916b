"""``/messages``: a receiver polls its mailbox and acknowledges; the sender follows delivery.

Messages arrive through the real ``$process-message`` (TestClient, demo participants with
their dev keys); only the caller is fixed by overriding ``get_principal``. Runs on SQLite and
PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc.jwk import Key
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.auth.keys import private_key_path, read_private_key
from gateway.auth.principal import Principal
from gateway.deps import get_principal
from gateway.messaging import acks, envelope, message, records
from gateway.messaging.keys import keys_by_kid
from gateway.participants.directory import Participant, ParticipantDirectory
from gateway.settings import Settings
from gateway.store.database import Database
from gateway.store.repository import Store

DATA = Path(__file__).parents[1] / "data"
GGOP = DATA / "rehab-plan" / "sample-ggop-shoulder-electrician" / "input.xml"
HOSPITAL = "auh-ortopaedi"
REHAB = "aarhus-genoptraening"
JOBCENTRE = "jobcenter-aarhus"
OUTSIDER = "lys-montage"
READ_WRITE = frozenset({"system/*.read", "system/*.write"})


class Caller:
    """Who the app thinks is calling (switched between requests)."""

    def __init__(self) -> None:
        self.name = HOSPITAL
        self.kinds: dict[str, str] = {}

    def principal(self) -> Principal:
        kind = self.kinds.get(self.name, "hospital")
        return Principal(
            participant=self.name,
            kind=kind,
            client_id=self.name,
            scopes=READ_WRITE,
            organization_id=f"org-{self.name}",
        )


class Mail:
    """A TestClient on the gateway plus what a participant's system would do around it."""

    def __init__(self, client: TestClient, settings: Settings, caller: Caller) -> None:
        self.client = client
        self.settings = settings
        self.caller = caller
        self.participants: dict[str, Participant] = {}

    def as_(self, name: str) -> Mail:
        self.caller.name = name
        return self

    def key(self, name: str, use: str = "sig") -> Key:
        return read_private_key(private_key_path(self.settings.keys_dir, name, use=use))

    def gateway_keys(self) -> dict[str, Any]:
        jwks: dict[str, Any] = self.client.get("/.well-known/jwks.json").json()
        return jwks

    def send(self, sender: str, to: str, cc: list[str] | None = None) -> str:
        """Send the GGOP sample as ``sender``; returns its MessageHeader.id."""
        parties = self.participants
        bundle = message.build_message(
            event=message.REHAB_PLAN,
            sender=parties[sender],
            receivers=[(parties[to], "primary")] + [(parties[c], "cc") for c in cc or []],
            content=[message.binary_resource(GGOP.read_bytes())],
        )
        gateway_enc = next(iter(keys_by_kid(self.gateway_keys(), "enc").values()))
        body = envelope.seal(bundle, self.key(sender), gateway_enc)
        self.as_(sender)
        response = self.client.post(
            "/fhir/$process-message",
            content=body,
            headers={"Content-Type": "application/jose", "Accept": "application/fhir+json"},
        )
        assert response.status_code == 200, response.text
        assert acks.read_ack(response.json())[1] == acks.OK, response.text
        return str(bundle["entry"][0]["resource"]["id"])

    def mailbox(self, name: str, **params: str) -> list[dict[str, Any]]:
        response = self.as_(name).client.get("/messages", params=params)
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["messages"]
        return items

    def open(self, name: str, sealed: str) -> dict[str, Any]:
        """What the receiver's system does: decrypt, verify the gateway's signature."""
        opened = envelope.open_envelope(sealed.encode("ascii"), [self.key(name, "enc")])
        assert opened.encrypted
        envelope.verify(opened, keys_by_kid(self.gateway_keys(), "sig"), who="the gateway")
        bundle: dict[str, Any] = json.loads(opened.payload)
        return bundle

    def ack_body(
        self, name: str, header_id: str, code: str = acks.OK, *, signer: str | None = None
    ) -> str:
        ack = acks.build_ack(acknowledged=header_id, code=code)
        gateway_enc = next(iter(keys_by_kid(self.gateway_keys(), "enc").values()))
        return envelope.seal(ack, self.key(signer or name), gateway_enc)

    def post_ack(
        self, name: str, key: str, body: str | bytes, media: str = "application/jose"
    ) -> httpx.Response:
        return self.as_(name).client.post(
            f"/messages/{key}/ack", content=body, headers={"Content-Type": media}
        )


@pytest.fixture
def mail(settings: Settings) -> Iterator[Mail]:
    live = settings.model_copy(
        update={"demo": True, "delivery_in_process": False, "enforce_consent": False}
    )
    caller = Caller()
    app = create_app(live)
    app.dependency_overrides[get_principal] = caller.principal
    with TestClient(app, base_url="http://testserver") as client:
        box = Mail(client, live, caller)
        database: Database = app.state.database
        for p in asyncio.run(_participants(database)):
            box.participants[p.name] = p
            caller.kinds[p.name] = p.kind
        yield box


async def _participants(database: Database) -> list[Participant]:
    # A fresh engine: the app's engine belongs to the TestClient's event loop.
    fresh = Database(database.url)
    try:
        return await ParticipantDirectory(fresh).list()
    finally:
        await fresh.dispose()


def _deliveries(items: list[dict[str, Any]], message_id: str) -> dict[str, dict[str, Any]]:
    [item] = [i for i in items if i["message_id"] == message_id]
    return {d["receiver"]: d for d in item["deliveries"]}


def test_receiver_fetches_acknowledges_and_the_sender_follows(mail: Mail) -> None:
    header_id = mail.send(HOSPITAL, REHAB)

    [item] = mail.mailbox(REHAB)
    assert item["message_id"] == header_id and item["sender"] == HOSPITAL
    assert item["event"] == "rehab-plan"
    assert item["delivery"]["status"] == "delivered" and item["delivery"]["attempts"] == 1
    received = mail.open(REHAB, item["envelope"])
    assert received["entry"][0]["resource"]["id"] == header_id
    assert any(e["resource"]["resourceType"] == "ServiceRequest" for e in received["entry"])

    # Not acknowledged yet: handed out again (as delivered); the receiver dedupes by id.
    [again] = mail.mailbox(REHAB)
    assert again["key"] == item["key"] and again["delivery"]["status"] == "delivered"
    assert again["delivery"]["attempts"] == 1
    assert mail.open(REHAB, again["envelope"])["entry"][0]["resource"]["id"] == header_id
    assert [i["key"] for i in mail.mailbox(REHAB, status="delivered")] == [item["key"]]
    assert mail.mailbox(REHAB, status="acknowledged") == []
    # The sender's own mailbox holds nothing; its sent view shows the delivery.
    assert mail.mailbox(HOSPITAL) == []
    sent = mail.mailbox(HOSPITAL, role="sent")
    assert _deliveries(sent, header_id)[REHAB]["status"] == "delivered"
    assert sent[0]["ack_code"] == "ok"

    body = mail.ack_body(REHAB, header_id)
    response = mail.post_ack(REHAB, item["ack"].rsplit("/", 2)[-2], body)
    assert response.status_code == 200, response.text
    assert response.json()["delivery"]["status"] == "acknowledged"
    assert response.json()["delivery"]["ack_code"] == "ok"
    # The same acknowledgement again: nothing changes, no second reply.
    repeat = mail.post_ack(REHAB, item["key"], body)
    assert repeat.status_code == 200 and repeat.json()["delivery"]["status"] == "acknowledged"

    assert mail.mailbox(REHAB) == []
    [done] = mail.mailbox(REHAB, status="acknowledged")
    assert "envelope" not in done and done["delivery"]["ack_code"] == "ok"
    sent = mail.mailbox(HOSPITAL, role="sent")
    assert _deliveries(sent, header_id)[REHAB]["status"] == "acknowledged"
    assert _deliveries(mail.mailbox(HOSPITAL, role="sent", status="acknowledged"), header_id)

    # The receiver's acknowledgement is routed back to the sender's mailbox, exactly once.
    [reply] = mail.mailbox(HOSPITAL)
    assert reply["reply_to"] == item["key"] and reply["sender"] == REHAB
    assert reply["delivery"]["role"] == "reply"
    routed = mail.open(HOSPITAL, reply["envelope"])
    assert acks.read_ack(routed) == (header_id, "ok")
    # An acknowledgement is not acknowledged in turn: an empty POST closes it.
    closed = mail.post_ack(HOSPITAL, reply["key"], b"", media="")
    assert closed.status_code == 200 and closed.json()["delivery"]["status"] == "acknowledged"
    assert mail.mailbox(HOSPITAL) == []


def test_one_message_for_its_sender_and_receivers_only(mail: Mail) -> None:
    header_id = mail.send(HOSPITAL, REHAB, cc=[JOBCENTRE])
    [sent] = mail.mailbox(HOSPITAL, role="sent")
    key = sent["key"]
    assert set(_deliveries([sent], header_id)) == {REHAB, JOBCENTRE}

    as_sender = mail.as_(HOSPITAL).client.get(f"/messages/{key}").json()
    assert {d["receiver"]: d["role"] for d in as_sender["deliveries"]} == {
        REHAB: "primary",
        JOBCENTRE: "cc",
    }
    assert "envelope" not in as_sender

    as_cc = mail.as_(JOBCENTRE).client.get(f"/messages/{key}").json()
    assert as_cc["delivery"]["receiver"] == JOBCENTRE and "deliveries" not in as_cc
    assert as_cc["delivery"]["status"] == "delivered"
    assert mail.open(JOBCENTRE, as_cc["envelope"])["entry"][0]["resource"]["id"] == header_id
    # The cc's copy is sealed for the cc: the primary receiver cannot open it.
    with pytest.raises(envelope.EnvelopeRefused):
        mail.open(REHAB, as_cc["envelope"])

    for who, path in ((OUTSIDER, f"/messages/{key}"), (REHAB, "/messages/no-such-key")):
        response = mail.as_(who).client.get(path)
        assert response.status_code == 404
        assert response.json()["resourceType"] == "OperationOutcome"


def test_acknowledgements_that_are_refused_change_nothing(mail: Mail) -> None:
    header_id = mail.send(HOSPITAL, REHAB)
    [item] = mail.mailbox(REHAB)
    key = item["key"]

    cases = [
        # signed with someone else's key
        (REHAB, mail.ack_body(REHAB, header_id, signer=OUTSIDER), "application/jose", 403),
        # answers another message
        (REHAB, mail.ack_body(REHAB, "another-message-id"), "application/jose", 400),
        # not JOSE at all
        (REHAB, "this is not jose", "application/jose", 400),
        # not sent as application/jose
        (REHAB, mail.ack_body(REHAB, header_id), "application/json", 415),
        # the sender is no receiver of its own message
        (HOSPITAL, mail.ack_body(HOSPITAL, header_id), "application/jose", 403),
        # not a party to the message at all
        (OUTSIDER, mail.ack_body(OUTSIDER, header_id), "application/jose", 404),
        # a receiver must say what it acknowledges
        (REHAB, "", "application/jose", 415),
    ]
    for who, body, media, status in cases:
        response = mail.post_ack(who, key, body, media)
        assert response.status_code == status, (who, media, response.text)
        outcome = response.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert "Traceback" not in response.text
    [still] = mail.mailbox(REHAB)
    assert still["delivery"]["status"] == "delivered" and still["delivery"]["ack_code"] is None
    assert mail.mailbox(HOSPITAL) == []  # nothing routed back


def test_fatal_and_transient_acknowledgements(mail: Mail) -> None:
    header_id = mail.send(HOSPITAL, REHAB, cc=[JOBCENTRE])
    [item] = mail.mailbox(REHAB)
    key = item["key"]

    transient = mail.post_ack(REHAB, key, mail.ack_body(REHAB, header_id, acks.TRANSIENT))
    assert transient.status_code == 200, transient.text
    assert transient.json()["delivery"]["status"] == "delivered"  # still waiting for an answer
    assert [i["key"] for i in mail.mailbox(REHAB)] == [key]
    assert mail.mailbox(HOSPITAL) == []  # a transient error is not the sender's business yet

    fatal = mail.post_ack(REHAB, key, mail.ack_body(REHAB, header_id, acks.FATAL))
    assert fatal.json()["delivery"]["status"] == "failed"
    assert "fatal-error from aarhus-genoptraening" in fatal.json()["delivery"]["last_error"]
    # A final answer stands: a different one afterwards is a conflict.
    changed = mail.post_ack(REHAB, key, mail.ack_body(REHAB, header_id, acks.OK))
    assert changed.status_code == 409
    assert mail.mailbox(REHAB) == []
    assert [i["key"] for i in mail.mailbox(REHAB, status="failed")] == [key]

    failed = mail.mailbox(HOSPITAL, role="sent", status="failed")
    deliveries = _deliveries(failed, header_id)
    assert (
        deliveries[REHAB]["status"] == "failed" and deliveries[REHAB]["ack_code"] == "fatal-error"
    )
    assert deliveries[JOBCENTRE]["status"] == "pending"  # not fetched yet
    [reply] = mail.mailbox(HOSPITAL)
    assert acks.read_ack(mail.open(HOSPITAL, reply["envelope"])) == (header_id, "fatal-error")


def test_bad_queries_are_operation_outcomes(mail: Mail) -> None:
    for params in ({"status": "lost"}, {"role": "cc"}, {"limit": "0"}):
        response = mail.as_(REHAB).client.get("/messages", params=params)
        assert response.status_code == 400, params
        assert response.json()["resourceType"] == "OperationOutcome"


def test_a_copy_consent_withholds_fails_visibly(settings: Settings) -> None:
    """With consent enforced and no consent for the job centre, its copy is withheld."""
    live = settings.model_copy(update={"demo": True, "delivery_in_process": False})
    caller = Caller()
    app = create_app(live)
    app.dependency_overrides[get_principal] = caller.principal
    with TestClient(app, base_url="http://testserver") as client:
        box = Mail(client, live, caller)
        for p in asyncio.run(_participants(app.state.database)):
            box.participants[p.name] = p
            caller.kinds[p.name] = p.kind
        header_id = box.send(HOSPITAL, REHAB, cc=[JOBCENTRE])
        [copy] = box.mailbox(REHAB)  # the rehabilitation unit may see its referral
        assert box.open(REHAB, copy["envelope"])["entry"][0]["resource"]["id"] == header_id
        assert box.mailbox(JOBCENTRE) == []
        [failed] = box.mailbox(JOBCENTRE, status="failed")
        assert "envelope" not in failed
        assert failed["delivery"]["last_error"].startswith("withheld")
        sent = _deliveries(box.mailbox(HOSPITAL, role="sent", status="failed"), header_id)
        assert sent[JOBCENTRE]["status"] == "failed"


def test_records_inserted_directly_show_in_the_sent_view(settings: Settings) -> None:
    """The mailbox reads the tables, whoever wrote them (here: records.insert_*)."""
    asyncio.run(_insert_failed_delivery(settings))
    app = create_app(settings)
    app.dependency_overrides[get_principal] = lambda: Principal(
        participant=HOSPITAL, kind="hospital", client_id=HOSPITAL, scopes=READ_WRITE
    )
    with TestClient(app, base_url="http://testserver") as client:
        [item] = client.get("/messages", params={"role": "sent", "status": "failed"}).json()[
            "messages"
        ]
        assert item["key"] == "m-1"
        assert item["deliveries"] == [
            {
                **item["deliveries"][0],
                "receiver": REHAB,
                "status": "failed",
                "attempts": 12,
                "last_error": "HTTP 500",
            }
        ]
        assert client.get("/messages", params={"role": "sent", "status": "pending"}).json() == {
            "messages": []
        }


async def _insert_failed_delivery(settings: Settings) -> None:
    database = Database(settings.database_url)
    await database.migrate()
    store = Store(database, fhir_base=settings.fhir_base)
    record = records.MessageRecord(
        key="m-1",
        sender=HOSPITAL,
        message_id="11111111-1111-4111-8111-111111111111",
        event="rehab-plan",
        received_at=records.utc_now(),
        content_sha256="0" * 64,
        bundle={"resourceType": "Bundle", "type": "message", "entry": []},
        signed="a.b.c",
        ack_code="ok",
        ack={},
        resources=[],
        reply_to=None,
    )
    try:
        async with store.write() as writer:
            await records.insert_message(writer, record)
            await records.insert_delivery(writer, "m-1", REHAB, role="primary", mode="endpoint")
            await records.set_delivery(
                writer.conn, "m-1", REHAB, status="failed", attempts=12, last_error="HTTP 500"
            )
    finally:
        await database.dispose()


def test_a_receiver_without_an_encryption_key_gets_a_failed_delivery(mail: Mail) -> None:
    header_id = mail.send(HOSPITAL, REHAB, cc=[JOBCENTRE])
    asyncio.run(_drop_encryption_keys(mail.settings, JOBCENTRE))
    assert mail.mailbox(JOBCENTRE) == []
    [failed] = mail.mailbox(JOBCENTRE, status="failed")
    assert "no registered encryption key" in failed["delivery"]["last_error"]
    assert _deliveries(mail.mailbox(HOSPITAL, role="sent"), header_id)[REHAB]["status"] == (
        "pending"
    )


async def _drop_encryption_keys(settings: Settings, name: str) -> None:
    database = Database(settings.database_url)
    try:
        directory = ParticipantDirectory(database)
        jwks = (await directory.get(name)).jwks
        await directory.set_jwks(
            name, {"keys": [k for k in jwks["keys"] if k.get("use", "sig") == "sig"]}
        )
    finally:
        await database.dispose()
