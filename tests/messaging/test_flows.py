"""The five flows of ``formats/messaging.md`` end to end, over real sockets, on both stores.

The gateway runs under uvicorn on a free loopback port (``live.harness.serve``: demo
participants, real tokens from ``/auth/token``, the in-process delivery worker). A receiving
system (``receiver_app``: an independent JOSE implementation) runs on another loopback port and
is registered as the ``endpoint`` of the hospital, the rehab unit, the GP clinics and the job
centre; the employers have no endpoint and poll their mailbox (``GET /messages``). Senders
seal messages with their dev keys to the gateway's published encryption key and read the
gateway's signed Acknowledgement; delivery state is read through ``GET /messages?role=sent``
as the sender, and what each receiver got is read from the receiving system (or the mailbox).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwe, jws
from joserfc.jwk import Key, import_key
from sqlalchemy import func, select

from gateway.auth.keys import private_key_path, read_private_key
from gateway.messaging.message import MEETING_INVITATION, binary_resource, build_message
from gateway.participants.demo import DEMO_PARTICIPANTS
from gateway.participants.directory import Participant, ParticipantDirectory
from gateway.settings import Settings
from gateway.store.database import Database
from gateway.store.schema import deliveries, messages, resources
from tests.consent.consent_builders import actor_org, consent, provision
from tests.live.harness import LiveGateway, serve
from tests.messaging.messaging_support import sample
from tests.messaging.receiver_app import Behaviour, ReceivingSystem, serve_receiver

HOSPITAL = "auh-ortopaedi"
REHAB = "aarhus-genoptraening"
JOBCENTRE = "jobcenter-aarhus"
GP = "laegerne-soendergade"
EMPLOYER = "lys-montage"
GP_ROSKILDE = "laegehuset-roskilde"
EMPLOYER_ROSKILDE = "roskilde-hjemmepleje"
# Participants whose system is the receiving app; the employers use their mailbox.
WITH_ENDPOINT = (HOSPITAL, REHAB, JOBCENTRE, GP, GP_ROSKILDE)

CPR = "urn:oid:1.2.208.176.1.2"
OLE_CPR = "1507791235"
BIRGITTE_CPR = "2211853346"
SKS_D = "urn:oid:1.2.208.176.2.4.12"
DIAGNOSIS_SYSTEMS = (SKS_D, "urn:oid:1.2.208.176.2.4", "http://hl7.org/fhir/sid/icd-10")
CARE_COMMUNICATION_CATEGORY = (
    "http://medcomfhir.dk/ig/terminology/CodeSystem/medcom-careCommunication-categoryCodes"
)
OBSERVATION_CODE = "http://brobygger.dk/fhir/CodeSystem/observation-code"
DATA_CATEGORY = "http://brobygger.dk/fhir/CodeSystem/data-category"
JOSE = "application/jose"
SCOPES = "system/*.read system/*.write"
TERMINAL = ("acknowledged", "failed")
WAIT_SECONDS = 30.0


def demo(name: str) -> Participant:
    return next(p for p in DEMO_PARTICIPANTS if p.name == name)


def diagnosis_codes(node: Any) -> list[str]:
    """Every code of a diagnosis system anywhere in ``node``."""
    found: list[str] = []
    if isinstance(node, dict):
        if node.get("system") in DIAGNOSIS_SYSTEMS:
            found.append(str(node.get("code")))
        for value in node.values():
            found += diagnosis_codes(value)
    elif isinstance(node, list):
        for value in node:
            found += diagnosis_codes(value)
    return found


def until(check: Any) -> Any:
    """Poll ``check`` until it returns something truthy (WAIT_SECONDS at most)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


def _jose_header(token: str) -> dict[str, Any]:
    head = token.split(".", 1)[0]
    data: dict[str, Any] = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    return data


@dataclass
class Sent:
    """What the gateway answered to one message."""

    header_id: str
    status: int
    ack: dict[str, Any]
    message_key: str | None

    @property
    def code(self) -> str:
        return str(self.ack["entry"][0]["resource"]["response"]["code"])

    @property
    def acknowledged(self) -> str:
        return str(self.ack["entry"][0]["resource"]["response"]["identifier"])

    def diagnostics(self) -> str:
        return json.dumps(
            [
                e["resource"]
                for e in self.ack["entry"]
                if e["resource"]["resourceType"] == "OperationOutcome"
            ],
            ensure_ascii=False,
        )


@dataclass
class World:
    """The gateway, the receiving system and the participants' view of both."""

    gateway: LiveGateway
    receiving: ReceivingSystem
    database_url: str
    tokens: dict[tuple[str, str | None], str] = field(default_factory=dict)
    _jwks: dict[str, Any] | None = None

    @property
    def base(self) -> str:
        return self.gateway.base_url

    # --- tokens and REST -------------------------------------------------------------------

    def token(self, name: str, purpose: str | None = None) -> str:
        if (name, purpose) not in self.tokens:
            scope = "system/*.read" if name in (EMPLOYER, EMPLOYER_ROSKILDE) else SCOPES
            self.tokens[name, purpose] = self.gateway.token(name, scope, purpose=purpose)
        return self.tokens[name, purpose]

    def auth(self, name: str, purpose: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(name, purpose)}"}

    def fhir(
        self, method: str, name: str, path: str, *, purpose: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        return httpx.request(
            method,
            f"{self.gateway.fhir_base}/{path}",
            headers={**self.auth(name, purpose), "Accept": "application/fhir+json"},
            timeout=30,
            **kwargs,
        )

    # --- the gateway's keys ----------------------------------------------------------------

    def jwks(self) -> dict[str, Any]:
        if self._jwks is None:
            response = httpx.get(f"{self.base}/.well-known/jwks.json", timeout=30)
            assert response.status_code == 200, response.text
            self._jwks = response.json()
        return self._jwks

    def gateway_key(self, use: str) -> Key:
        entry = next(k for k in self.jwks()["keys"] if k.get("use", "sig") == use)
        return import_key(entry)

    def own_key(self, name: str, use: str = "sig") -> Key:
        return read_private_key(private_key_path(self.gateway.settings.keys_dir, name, use=use))

    def read_signed(self, token: str) -> dict[str, Any]:
        """Verify a JWS of the gateway (its published signing key) and return the payload."""
        header = _jose_header(token)
        key = next(import_key(k) for k in self.jwks()["keys"] if k["kid"] == header["kid"])
        data: dict[str, Any] = json.loads(
            jws.deserialize_compact(token, key, algorithms=[header["alg"]]).payload
        )
        return data

    def seal(self, name: str, bundle: dict[str, Any]) -> bytes:
        """Sign with ``name``'s dev key, encrypt to the gateway's published encryption key."""
        signing = self.own_key(name)
        signed = jws.serialize_compact(
            {"alg": "ES256", "kid": signing.kid, "cty": "application/fhir+json"},
            json.dumps(bundle, separators=(",", ":")).encode("utf-8"),
            signing,
            algorithms=["ES256"],
        )
        recipient = self.gateway_key("enc")
        token = jwe.encrypt_compact(
            {"alg": "ECDH-ES+A256KW", "enc": "A256GCM", "kid": recipient.kid, "cty": "JWT"},
            signed.encode("ascii"),
            recipient,
            algorithms=["ECDH-ES+A256KW", "A256GCM"],
        )
        return token.encode("ascii")

    # --- messages --------------------------------------------------------------------------

    def send(self, name: str, bundle: dict[str, Any]) -> Sent:
        """``POST /fhir/$process-message`` as ``name``; the gateway's verified answer."""
        response = httpx.post(
            f"{self.gateway.fhir_base}/$process-message",
            content=self.seal(name, bundle),
            headers={**self.auth(name), "Content-Type": JOSE, "Accept": JOSE},
            timeout=60,
        )
        assert response.headers["content-type"].startswith(JOSE), response.text
        ack = self.read_signed(response.text)
        header_id = str(bundle["entry"][0]["resource"]["id"])
        return Sent(header_id, response.status_code, ack, response.headers.get("X-Message-Key"))

    def sent(self, name: str) -> list[dict[str, Any]]:
        response = httpx.get(
            f"{self.base}/messages",
            params={"role": "sent", "limit": 100},
            headers=self.auth(name),
            timeout=30,
        )
        assert response.status_code == 200, response.text
        found: list[dict[str, Any]] = response.json()["messages"]
        return found

    def deliveries(self, name: str, header_id: str) -> dict[str, dict[str, Any]]:
        """receiver → its delivery of ``name``'s message ``header_id`` (as the sender sees it)."""
        for message in self.sent(name):
            if message["message_id"] == header_id:
                return {d["receiver"]: d for d in message["deliveries"]}
        raise AssertionError(f"{name} has no sent message {header_id}")

    def settled(
        self, name: str, header_id: str, receivers: tuple[str, ...]
    ) -> dict[str, dict[str, Any]]:
        """Wait until each of ``receivers``' deliveries is acknowledged or failed."""
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            state = self.deliveries(name, header_id)
            if all(state.get(r, {}).get("status") in TERMINAL for r in receivers):
                return state
            if time.monotonic() > deadline:
                raise AssertionError(f"deliveries of {header_id} did not settle: {state}")
            time.sleep(0.05)

    def mailbox(self, name: str) -> list[dict[str, Any]]:
        """``GET /messages?status=pending`` as ``name``: each with its opened Bundle."""
        response = httpx.get(
            f"{self.base}/messages",
            params={"status": "pending"},
            headers=self.auth(name),
            timeout=30,
        )
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["messages"]
        for item in items:
            if "envelope" in item:
                item["bundle"] = self.open_for(name, item["envelope"])
        return items

    def open_for(self, name: str, envelope: str) -> dict[str, Any]:
        """Decrypt with ``name``'s encryption key and verify the gateway's signature."""
        header = _jose_header(envelope)
        signed = jwe.decrypt_compact(
            envelope, self.own_key(name, "enc"), algorithms=[header["alg"], header["enc"]]
        ).plaintext
        assert signed is not None
        return self.read_signed(signed.decode("ascii"))

    def acknowledge(self, name: str, item: dict[str, Any], code: str = "ok") -> httpx.Response:
        """``POST /messages/{key}/ack`` with ``name``'s signed Acknowledgement."""
        from tests.messaging.receiver_app import acknowledgement

        header = item["bundle"]["entry"][0]["resource"]
        sender = next(
            e["resource"]
            for e in item["bundle"]["entry"]
            if e.get("fullUrl") == header["sender"]["reference"]
        )
        own = self.receiving.own_organization(name)
        ack = acknowledgement(header["id"], code, own=own, to=sender)
        signing = self.own_key(name)
        token = jws.serialize_compact(
            {"alg": "ES256", "kid": signing.kid},
            json.dumps(ack).encode("utf-8"),
            signing,
            algorithms=["ES256"],
        )
        return httpx.post(
            f"{self.base}{item['ack']}",
            content=token.encode("ascii"),
            headers={**self.auth(name), "Content-Type": JOSE},
            timeout=30,
        )

    # --- the store, directly (counts only) -------------------------------------------------

    def counts(self) -> tuple[int, int, int]:
        async def count() -> tuple[int, int, int]:
            database = Database(self.database_url)
            try:
                async with database.engine.connect() as conn:
                    found = []
                    for table in (resources, messages, deliveries):
                        value = (
                            await conn.execute(select(func.count()).select_from(table))
                        ).scalar()
                        found.append(int(value or 0))
            finally:
                await database.dispose()
            return found[0], found[1], found[2]

        return asyncio.run(count())

    # --- consent ---------------------------------------------------------------------------

    def patient_id(self, name: str, cpr: str, purpose: str | None = None) -> str:
        response = self.fhir(
            "GET", name, "Patient", purpose=purpose, params={"identifier": f"{CPR}|{cpr}"}
        )
        assert response.status_code == 200, response.text
        ids = [e["resource"]["id"] for e in response.json().get("entry", [])]
        assert len(ids) == 1, response.text
        return str(ids[0])

    def ensure_patient(self, name: str, cpr: str, given: str, family: str) -> str:
        """The citizen's Patient, created by ``name`` (the job centre knows its citizens)."""
        body = {
            "resourceType": "Patient",
            "identifier": [{"system": CPR, "value": cpr}],
            "name": [{"family": family, "given": [given]}],
        }
        response = self.fhir("POST", name, "Patient", json=body)
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    def record_consent(
        self,
        name: str,
        patient: str,
        who: str,
        purpose: str,
        labels: tuple[str, ...] = (),
    ) -> str:
        body = consent(
            "x",
            patient=f"Patient/{patient}",
            date_time="2026-10-01T09:00:00+02:00",
            top=provision(actors=[actor_org(who)], purposes=(purpose,), labels=labels),
        )
        body.pop("id")
        response = self.fhir("POST", name, "Consent", json=body)
        assert response.status_code == 201, response.text
        return str(response.json()["id"])


def register_endpoints(database_url: str, endpoints: dict[str, str]) -> None:
    """Point participants' deliveries at the receiving app (what an operator registers)."""

    async def run() -> None:
        database = Database(database_url)
        try:
            directory = ParticipantDirectory(database)
            for name, url in endpoints.items():
                await directory.set_endpoint(name, url)
        finally:
            await database.dispose()

    asyncio.run(run())


def live_settings(settings: Settings) -> Settings:
    """Fast delivery for tests: poll often, short back-off, few attempts."""
    return settings.model_copy(
        update={
            "delivery_in_process": True,
            "delivery_poll_seconds": 0.05,
            "delivery_backoff_base_seconds": 0.05,
            "delivery_backoff_max_seconds": 0.5,
            "delivery_max_attempts": 4,
            "delivery_timeout_seconds": 10.0,
            "delivery_connect_timeout_seconds": 2.0,
            "delivery_lease_seconds": 30,
        }
    )


@contextmanager
def open_world(settings: Settings) -> Iterator[World]:
    """The gateway and the receiving app on loopback, the endpoints registered."""
    with serve(live_settings(settings)) as gateway:
        with serve_receiver(gateway.settings.keys_dir, gateway.base_url, WITH_ENDPOINT) as (
            receiving,
            url,
        ):
            register_endpoints(
                settings.database_url, {name: f"{url}/inbox/{name}" for name in WITH_ENDPOINT}
            )
            yield World(gateway, receiving, settings.database_url)


@pytest.fixture
def world(settings: Settings) -> Iterator[World]:
    with open_world(settings) as opened:
        yield opened


# --- building messages ---------------------------------------------------------------------


def document_message(
    sender: str,
    to: str,
    document: bytes,
    *,
    event: str,
    cc: tuple[str, ...] = (),
    activity: str = "new-message",
) -> dict[str, Any]:
    receivers = [(demo(to), "primary"), *[(demo(c), "cc") for c in cc]]
    return build_message(
        event=event,
        sender=demo(sender),
        receivers=receivers,
        content=[binary_resource(document)],
        activity=activity,
    )


def content_message(
    sender: str,
    to: str,
    content: list[dict[str, Any]],
    *,
    event: str,
    cc: tuple[str, ...] = (),
    focus: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    receivers = [(demo(to), "primary"), *[(demo(c), "cc") for c in cc]]
    return build_message(
        event=event,
        sender=demo(sender),
        receivers=receivers,
        content=content,
        focus=focus,
    )


def org_ref(bundle: dict[str, Any], name: str) -> dict[str, str]:
    """A reference to ``name``'s Organization entry in ``bundle`` (sender or receiver)."""
    wanted = {(i["system"], i["value"]) for i in demo(name).identifiers}
    for entry in bundle["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] == "Organization" and wanted & {
            (i["system"], i["value"]) for i in resource.get("identifier", [])
        }:
            return {"reference": entry["fullUrl"]}
    raise AssertionError(f"no Organization of {name} in the message")


def add_content(bundle: dict[str, Any], resource: dict[str, Any]) -> str:
    """Add an entry after the MessageHeader (fullUrl in the message's base); its fullUrl."""
    rid = resource.setdefault("id", str(uuid.uuid4()))
    full_url = f"https://brobygger.dk/message/{resource['resourceType']}/{rid}"
    bundle["entry"].insert(1, {"fullUrl": full_url, "resource": resource})
    return full_url


def resource_in(bundle: dict[str, Any], resource: dict[str, Any]) -> dict[str, Any]:
    """The entry's own copy of ``resource`` (``build_message`` copies what it is given)."""
    return next(
        e["resource"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == resource["resourceType"]
        and e["resource"].get("id") == resource["id"]
    )


def patient_resource(cpr: str, given: str, family: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": str(uuid.uuid4()),
        "identifier": [{"system": CPR, "value": cpr}],
        "name": [{"family": family, "given": [given]}],
    }


# --- flow 1: rehabilitation plan, copy to the job centre only under consent ----------------


REHAB_PLAN = "rehab-plan/ggop-shoulder-electrician.xml"


def test_flow1_rehab_plan_without_consent_the_job_centres_copy_is_withheld(
    world: World,
) -> None:
    message = document_message(
        HOSPITAL, REHAB, sample(REHAB_PLAN), event="rehab-plan", cc=(JOBCENTRE,)
    )
    sent = world.send(HOSPITAL, message)
    assert (sent.status, sent.code) == (200, "ok"), sent.diagnostics()
    assert sent.acknowledged == sent.header_id

    state = world.settled(HOSPITAL, sent.header_id, (REHAB, JOBCENTRE))
    assert state[REHAB]["status"] == "acknowledged"
    assert state[REHAB]["ack_code"] == "ok"
    assert state[REHAB]["role"] == "primary"
    assert state[JOBCENTRE]["role"] == "cc"
    assert state[JOBCENTRE]["status"] == "failed"
    assert state[JOBCENTRE]["last_error"].startswith("withheld")

    got = world.receiving.get(REHAB, sent.header_id)
    assert got is not None and got.event == "rehab-plan" and got.copies >= 1
    assert got.signed_by == world.gateway_key("sig").kid
    # The plan, adapted to FHIR from the GGOP document: its diagnoses reach the rehab unit.
    assert got.focus(), "the forwarded message names its focus"
    assert {"Patient", "Condition"} <= got.types()
    assert "DM751" in diagnosis_codes(got.resources("Condition"))
    assert world.receiving.get(JOBCENTRE, sent.header_id) is None
    assert not world.receiving.refused

    # The rehab unit's acknowledgement is routed back to the hospital.
    routed = until(lambda: world.receiving.acks_for(HOSPITAL))
    assert [a["entry"][0]["resource"]["response"]["identifier"] for a in routed] == [sent.header_id]


def test_flow1_rehab_plan_with_consent_the_job_centre_gets_its_copy(world: World) -> None:
    ole = world.ensure_patient(JOBCENTRE, OLE_CPR, "Ole", "Kristensen")
    world.record_consent(
        JOBCENTRE, ole, JOBCENTRE, "sickness-benefit-follow-up", labels=("rehab-plan",)
    )
    # The job centre's system stores the copy but its answer is lost: the gateway delivers
    # again, the system recognises the MessageHeader.id and keeps one copy.
    world.receiving.behaviour[JOBCENTRE] = Behaviour(lose_first=1)
    message = document_message(
        HOSPITAL, REHAB, sample(REHAB_PLAN), event="rehab-plan", cc=(JOBCENTRE,)
    )
    sent = world.send(HOSPITAL, message)
    assert sent.code == "ok", sent.diagnostics()

    state = world.settled(HOSPITAL, sent.header_id, (REHAB, JOBCENTRE))
    assert state[REHAB]["status"] == "acknowledged"
    assert state[JOBCENTRE]["status"] == "acknowledged", state[JOBCENTRE]
    assert state[JOBCENTRE]["attempts"] == 2
    copy_ = world.receiving.get(JOBCENTRE, sent.header_id)
    primary = world.receiving.get(REHAB, sent.header_id)
    assert copy_ is not None and primary is not None
    assert copy_.copies == 2 and len(world.receiving.messages(JOBCENTRE)) == 1
    # Consented: the plan and its diagnoses (labelled rehab-plan), as the rehab unit got them.
    assert "DM751" in diagnosis_codes(copy_.resources("Condition"))
    assert {r["id"] for r in copy_.resources("ServiceRequest")} == {
        r["id"] for r in primary.resources("ServiceRequest")
    }
    # The same message (same MessageHeader.id) for both, each sealed for its receiver.
    assert copy_.header_id == primary.header_id == sent.header_id
    patients = copy_.resources("Patient")
    assert [p["id"] for p in patients] == [ole]


def test_a_receivers_fatal_error_fails_its_delivery_and_goes_back_to_the_sender(
    world: World,
) -> None:
    world.receiving.behaviour[REHAB] = Behaviour(ack_code="fatal-error")
    sent = world.send(
        HOSPITAL, document_message(HOSPITAL, REHAB, sample(REHAB_PLAN), event="rehab-plan")
    )
    assert sent.code == "ok", sent.diagnostics()
    state = world.settled(HOSPITAL, sent.header_id, (REHAB,))
    assert state[REHAB]["status"] == "failed"
    assert state[REHAB]["ack_code"] == "fatal-error"
    assert state[REHAB]["last_error"].startswith(f"fatal-error from {REHAB}")
    assert world.receiving.get(REHAB, sent.header_id) is not None  # it arrived, once
    [routed] = until(lambda: world.receiving.acks_for(HOSPITAL))
    response = routed["entry"][0]["resource"]["response"]
    assert (response["identifier"], response["code"]) == (sent.header_id, "fatal-error")


# --- flow 2: LÆ 285 request job centre → GP, the statement back closes the Task --------------


def test_flow2_lae285_request_and_the_statement_that_closes_its_task(world: World) -> None:
    request = document_message(
        JOBCENTRE,
        GP,
        sample("gp-statement/lae285-request-ole.xml"),
        event="medical-statement-request",
    )
    asked = world.send(JOBCENTRE, request)
    assert asked.code == "ok", asked.diagnostics()
    state = world.settled(JOBCENTRE, asked.header_id, (GP,))
    assert state[GP]["status"] == "acknowledged"

    got = world.receiving.wait_for(GP, asked.header_id)
    assert got.event == "medical-statement-request"
    tasks = got.resources("Task")
    assert len(tasks) == 1 and tasks[0]["status"] == "requested"
    assert got.resources("ServiceRequest")
    task_id = tasks[0]["id"]
    # The job centre follows its request through the REST API.
    task = world.fhir("GET", JOBCENTRE, f"Task/{task_id}")
    assert task.status_code == 200, task.text
    assert task.json()["status"] == "requested"

    statement = document_message(
        GP,
        JOBCENTRE,
        sample("gp-statement/lae285-statement-ole.xml"),
        event="medical-statement",
        activity="reply-message",
    )
    # A reply's Provenance names the message it answers.
    provenance = next(
        e["resource"] for e in statement["entry"] if e["resource"]["resourceType"] == "Provenance"
    )
    provenance["entity"] = [
        {"role": "revision", "what": {"identifier": {"value": asked.header_id}}}
    ]
    answered = world.send(GP, statement)
    assert answered.code == "ok", answered.diagnostics()
    state = world.settled(GP, answered.header_id, (JOBCENTRE,))
    assert state[JOBCENTRE]["status"] == "acknowledged"

    task = world.fhir("GET", JOBCENTRE, f"Task/{task_id}")
    assert task.status_code == 200, task.text
    assert task.json()["status"] == "completed"
    outputs = [o["valueReference"]["reference"] for o in task.json().get("output", [])]
    assert any(o.startswith("QuestionnaireResponse/") for o in outputs), task.json()

    reply = world.receiving.wait_for(JOBCENTRE, answered.header_id)
    responses = reply.resources("QuestionnaireResponse")
    assert len(responses) == 1
    assert f"QuestionnaireResponse/{responses[0]['id']}" in outputs
    # The job centre may see the GP's diagnosis (it is no employer).
    assert "DM751" in diagnosis_codes(reply.bundle)


# --- flow 3: rehab unit → caseworker: status and final note as CareCommunication -------------


SCORES: dict[str, tuple[str, dict[str, Any]]] = {
    # code → (display, value) for the status note; the final note improves on each
    "psfs": ("PSFS", {"valueQuantity": {"value": 4.3, "unit": "score"}}),
    "oswestry-odi": (
        "Oswestry ODI",
        {
            "valueQuantity": {
                "value": 38,
                "unit": "%",
                "system": "http://unitsofmeasure.org",
                "code": "%",
            }
        },
    ),
    "rtw-self-efficacy": ("RTW self-efficacy", {"valueQuantity": {"value": 5.5, "unit": "score"}}),
    "fear-avoidance": (
        "Fear-avoidance (FABQ work)",
        {"valueQuantity": {"value": 29, "unit": "score"}},
    ),
    "astrand-fitness": (
        "Åstrand",
        {
            "valueQuantity": {
                "value": 31,
                "unit": "mL/kg/min",
                "system": "http://unitsofmeasure.org",
                "code": "mL/kg/min",
            }
        },
    ),
}
ODI_LOINC = {
    "system": "http://loinc.org",
    "code": "97909-6",
    "display": "Oswestry disability index score ODI",
}


def score_observation(code: str, patient_url: str, when: str, factor: float) -> dict[str, Any]:
    display, value = SCORES[code]
    value = copy.deepcopy(value)
    value["valueQuantity"]["value"] = round(value["valueQuantity"]["value"] * factor, 1)
    codings = [{"system": OBSERVATION_CODE, "code": code, "display": display}]
    if code == "oswestry-odi":
        codings.append(ODI_LOINC)
    return {
        "resourceType": "Observation",
        "id": str(uuid.uuid4()),
        "meta": {"security": [{"system": DATA_CATEGORY, "code": "rehab-progress"}]},
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "survey" if code != "astrand-fitness" else "exam",
                    }
                ]
            }
        ],
        "code": {"coding": codings, "text": display},
        "subject": {"reference": patient_url},
        "effectiveDateTime": when,
        **value,
    }


def care_communication(topic: str, note: str, when: str, factor: float) -> dict[str, Any]:
    """A CareCommunication message (category ``training``) with the scores as Observations."""
    communication: dict[str, Any] = {
        "resourceType": "Communication",
        "id": str(uuid.uuid4()),
        "meta": {"security": [{"system": DATA_CATEGORY, "code": "rehab-progress"}]},
        "identifier": [{"value": f"urn:uuid:{uuid.uuid4()}"}],
        "status": "unknown",
        "category": [{"coding": [{"system": CARE_COMMUNICATION_CATEGORY, "code": "training"}]}],
        "topic": {"text": topic},
        "sent": when,
    }
    message = content_message(REHAB, JOBCENTRE, [communication], event="care-communication-message")
    communication = resource_in(message, communication)
    patient_url = add_content(message, patient_resource(OLE_CPR, "Ole", "Kristensen"))
    observation_urls = [
        add_content(message, score_observation(code, patient_url, when, factor)) for code in SCORES
    ]
    communication["subject"] = {"reference": patient_url}
    communication["sender"] = org_ref(message, REHAB)
    communication["recipient"] = [org_ref(message, JOBCENTRE)]
    communication["payload"] = [
        {"contentString": note},
        *[{"contentReference": {"reference": url}} for url in observation_urls],
    ]
    return message


def test_flow3_status_and_final_notes_reach_the_caseworker_with_their_scores(
    world: World,
) -> None:
    # Health data reaches the job centre under Ole's consent (he signed it at the referral).
    ole = world.ensure_patient(JOBCENTRE, OLE_CPR, "Ole", "Kristensen")
    world.record_consent(
        JOBCENTRE, ole, JOBCENTRE, "sickness-benefit-follow-up", labels=("rehab-progress",)
    )
    # The caseworker's system is down for the first two attempts: retried, received once.
    world.receiving.behaviour[JOBCENTRE] = Behaviour(fail_first=2)
    notes = [
        ("Statusnotat efter 6 ugers genoptræning", "Ole træner 2 gange ugentligt; bedre.", 1.0),
        ("Afslutningsnotat ved udskrivelse", "Forløbet afsluttet; klar til optrapning.", 0.5),
    ]
    for index, (topic, note, factor) in enumerate(notes):
        when = (datetime(2026, 11, 13, 10, tzinfo=UTC) + timedelta(weeks=6 * index)).isoformat()
        message = care_communication(topic, note, when, factor)
        sent = world.send(REHAB, message)
        assert sent.code == "ok", sent.diagnostics()
        state = world.settled(REHAB, sent.header_id, (JOBCENTRE,))
        assert state[JOBCENTRE]["status"] == "acknowledged", state
        if index == 0:
            assert state[JOBCENTRE]["attempts"] == 3  # two HTTP 500, then the answer

        got = world.receiving.wait_for(JOBCENTRE, sent.header_id)
        assert got.event == "care-communication-message"
        assert got.copies == 1
        [focus] = got.focus()
        assert focus["resourceType"] == "Communication"
        assert focus["category"][0]["coding"][0] == {
            "system": CARE_COMMUNICATION_CATEGORY,
            "code": "training",
        }
        assert focus["topic"]["text"] == topic
        assert focus["payload"][0]["contentString"] == note
        scores = {
            c["code"]: o["valueQuantity"]["value"]
            for o in got.resources("Observation")
            for c in o["code"]["coding"]
            if c["system"] == OBSERVATION_CODE
        }
        assert scores == {
            code: round(value["valueQuantity"]["value"] * factor, 1)
            for code, (_, value) in SCORES.items()
        }
        # The payload's references resolve inside the forwarded message (relative references
        # against the base of the entries' fullUrls, as FHIR resolves them in a Bundle).
        urls = {e["fullUrl"] for e in got.bundle["entry"]}
        refs = [p["contentReference"]["reference"] for p in focus["payload"][1:]]
        assert len(refs) == 5
        assert {f"{world.gateway.fhir_base}/{ref}" for ref in refs} <= urls

    # Stored and readable by the caseworker through REST as well (for the purpose Ole's
    # consent names).
    search = world.fhir(
        "GET",
        JOBCENTRE,
        "Communication",
        purpose="sickness-benefit-follow-up",
        params={"category": f"{CARE_COMMUNICATION_CATEGORY}|training"},
    )
    assert search.status_code == 200, search.text
    assert len([e for e in search.json().get("entry", []) if e["search"]["mode"] == "match"]) == 2


# --- flow 4: round-table invitation to rehab unit, GP and employer ---------------------------


def test_flow4_round_table_invitation_each_receiver_sees_what_consent_allows(
    world: World,
) -> None:
    ole = world.ensure_patient(JOBCENTRE, OLE_CPR, "Ole", "Kristensen")
    # Ole lets his employer see employment-relevant information for the meeting, nothing more.
    world.record_consent(
        JOBCENTRE, ole, EMPLOYER, "round-table-meeting", labels=("employment-relevant",)
    )
    appointment: dict[str, Any] = {
        "resourceType": "Appointment",
        "id": str(uuid.uuid4()),
        "status": "booked",
        "description": "Rundbordssamtale om Oles tilbagevenden til arbejdet",
        "reasonCode": [{"text": "Rotator cuff syndrom, opereret 30.09.2026"}],
        "start": "2026-12-10T09:00:00+01:00",
        "end": "2026-12-10T10:00:00+01:00",
    }
    hours = {
        "resourceType": "Observation",
        "id": str(uuid.uuid4()),
        "meta": {"security": [{"system": DATA_CATEGORY, "code": "employment-relevant"}]},
        "status": "final",
        "code": {"coding": [{"system": OBSERVATION_CODE, "code": "hours-per-week"}]},
        "effectiveDateTime": "2026-11-30",
        "valueQuantity": {
            "value": 15,
            "unit": "h/wk",
            "system": "http://unitsofmeasure.org",
            "code": "h/wk",
        },
    }
    psfs = score_observation("psfs", "", "2026-11-27T10:00:00+01:00", 1.0)
    message = content_message(
        JOBCENTRE,
        REHAB,
        [appointment],
        event=MEETING_INVITATION,
        cc=(GP, EMPLOYER),
    )
    appointment = resource_in(message, appointment)
    patient_url = add_content(message, patient_resource(OLE_CPR, "Ole", "Kristensen"))
    hours["subject"] = psfs["subject"] = {"reference": patient_url}
    add_content(message, hours)
    add_content(message, psfs)
    appointment["participant"] = [
        {"actor": {"reference": patient_url}, "status": "needs-action"},
        *[
            {"actor": org_ref(message, name), "status": "needs-action"}
            for name in (JOBCENTRE, REHAB, GP, EMPLOYER)
        ],
    ]
    sent = world.send(JOBCENTRE, message)
    assert sent.code == "ok", sent.diagnostics()

    # The employer has no endpoint: it polls its mailbox and acknowledges.
    items = until(lambda: [i for i in world.mailbox(EMPLOYER) if i["message_id"] == sent.header_id])
    assert len(items) == 1, items
    employer_copy = items[0]["bundle"]
    assert world.acknowledge(EMPLOYER, items[0]).status_code == 200

    state = world.settled(JOBCENTRE, sent.header_id, (REHAB, GP, EMPLOYER))
    assert {r: d["status"] for r, d in state.items()} == {
        REHAB: "acknowledged",
        GP: "acknowledged",
        EMPLOYER: "acknowledged",
    }
    assert state[EMPLOYER]["mode"] == "mailbox" and state[REHAB]["mode"] == "endpoint"

    def seen(bundle: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
        found: dict[str, list[dict[str, Any]]] = {}
        for entry in bundle["entry"]:
            found.setdefault(entry["resource"]["resourceType"], []).append(entry["resource"])
        return found

    def observation_codes(resources: dict[str, list[dict[str, Any]]]) -> set[str]:
        return {c["code"] for o in resources.get("Observation", []) for c in o["code"]["coding"]}

    rehab = seen(world.receiving.wait_for(REHAB, sent.header_id).bundle)
    gp = seen(world.receiving.wait_for(GP, sent.header_id).bundle)
    employer = seen(employer_copy)
    # Everyone gets the invitation itself.
    for copy_ in (rehab, gp, employer):
        [invitation] = copy_["Appointment"]
        assert invitation["description"] == appointment["description"]
        assert len(invitation["participant"]) == 5
    # The primary receiver gets all of it; the GP (no consent) only the invitation; the
    # employer the invitation without its reason (the diagnosis) and the employment-relevant
    # Observation only.
    assert observation_codes(rehab) == {"hours-per-week", "psfs"}
    assert observation_codes(gp) == set()
    assert observation_codes(employer) == {"hours-per-week"}
    assert rehab["Appointment"][0]["reasonCode"] == appointment["reasonCode"]
    assert gp["Appointment"][0]["reasonCode"] == appointment["reasonCode"]
    assert "reasonCode" not in employer["Appointment"][0]
    assert "Rotator" not in json.dumps(employer_copy, ensure_ascii=False)
    assert not diagnosis_codes(employer_copy)

    # The employer's acknowledgement went back to the job centre (its endpoint).
    routed = until(
        lambda: (
            len(world.receiving.acks_for(JOBCENTRE)) == 3 and world.receiving.acks_for(JOBCENTRE)
        )
    )
    senders = {
        next(
            e["resource"]["identifier"][0]["value"]
            for e in ack["entry"]
            if e.get("fullUrl") == ack["entry"][0]["resource"]["sender"]["reference"]
        )
        for ack in routed
    }
    assert {a["entry"][0]["resource"]["response"]["identifier"] for a in routed} == {sent.header_id}
    assert len(senders) == 3  # the rehab unit, the GP and the employer each answered


# --- flow 5: Mulighedserklæring GP → employer, never with a diagnosis ------------------------


MULIGHED = "gp-statement/mulighed-birgitte.xml"


def test_flow5_mulighedserklaering_reaches_the_employer_without_a_diagnosis(
    world: World,
) -> None:
    message = document_message(
        GP_ROSKILDE, EMPLOYER_ROSKILDE, sample(MULIGHED), event="medical-statement"
    )
    sent = world.send(GP_ROSKILDE, message)
    assert sent.code == "ok", sent.diagnostics()

    items = until(
        lambda: [i for i in world.mailbox(EMPLOYER_ROSKILDE) if i["message_id"] == sent.header_id]
    )
    assert len(items) == 1, items
    bundle = items[0]["bundle"]
    assert bundle["entry"][0]["resource"]["id"] == sent.header_id
    [response] = [
        e["resource"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "QuestionnaireResponse"
    ]
    assert response["questionnaire"].split("/")[-1].startswith("MULIGHED")
    assert not diagnosis_codes(bundle)
    assert "Condition" not in {e["resource"]["resourceType"] for e in bundle["entry"]}
    before = world.deliveries(GP_ROSKILDE, sent.header_id)[EMPLOYER_ROSKILDE]
    assert before["status"] == "delivered"  # fetched, not yet acknowledged
    assert world.acknowledge(EMPLOYER_ROSKILDE, items[0]).status_code == 200
    after = world.settled(GP_ROSKILDE, sent.header_id, (EMPLOYER_ROSKILDE,))
    assert after[EMPLOYER_ROSKILDE]["status"] == "acknowledged"
    assert world.mailbox(EMPLOYER_ROSKILDE) == []


def test_flow5_a_message_to_the_employer_with_a_diagnosis_is_refused_and_nothing_stored(
    world: World,
) -> None:
    condition = {
        "resourceType": "Condition",
        "id": str(uuid.uuid4()),
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": "active",
                }
            ]
        },
        "code": {"coding": [{"system": SKS_D, "code": "DM545", "display": "Lændesmerter"}]},
    }
    limits = {
        "resourceType": "Observation",
        "id": str(uuid.uuid4()),
        "meta": {"security": [{"system": DATA_CATEGORY, "code": "employment-relevant"}]},
        "status": "final",
        "code": {"coding": [{"system": OBSERVATION_CODE, "code": "functional-limitations"}]},
        "effectiveDateTime": "2026-11-05",
        "valueString": "Kan ikke løfte over 10 kg.",
    }
    message = content_message(
        GP_ROSKILDE, EMPLOYER_ROSKILDE, [limits, condition], event="medical-statement"
    )
    condition, limits = resource_in(message, condition), resource_in(message, limits)
    patient_url = add_content(message, patient_resource(BIRGITTE_CPR, "Birgitte", "Nielsen"))
    condition["subject"] = limits["subject"] = {"reference": patient_url}
    before = world.counts()
    sent = world.send(GP_ROSKILDE, message)
    assert (sent.status, sent.code) == (200, "fatal-error")
    assert sent.acknowledged == sent.header_id
    assert "diagnosis" in sent.diagnostics()
    assert world.counts() == before

    # The same as a form: a Mulighedserklæring whose field carries a diagnosis code.
    original = sample(MULIGHED)
    field = re.search(rb'<Felt id="2\.1" type="text">[^<]*</Felt>', original)
    assert field is not None
    document = original.replace(
        field.group(0),
        b'<Felt id="2.1" type="code" system="urn:oid:1.2.208.176.2.4.12">DM545</Felt>',
    )
    assert b"DM545" in document
    form = document_message(GP_ROSKILDE, EMPLOYER_ROSKILDE, document, event="medical-statement")
    refused = world.send(GP_ROSKILDE, form)
    assert (refused.status, refused.code) == (200, "fatal-error"), refused.diagnostics()
    assert world.counts() == before
    assert all(
        m["message_id"] not in (sent.header_id, refused.header_id) for m in world.sent(GP_ROSKILDE)
    )
    assert world.mailbox(EMPLOYER_ROSKILDE) == []


# --- the flows from the command line (``brobygger send``, a separate process) ---------------


def brobygger(world: World, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the ``brobygger`` console script against the live gateway and its database."""
    env = {
        **os.environ,
        "BROBYGGER_BASE_URL": world.base,
        "BROBYGGER_KEYS_DIR": str(world.gateway.settings.keys_dir),
        "BROBYGGER_DATABASE_URL": world.database_url,
        "BROBYGGER_ENVIRONMENT": "test",
        "COLUMNS": "250",
    }
    return subprocess.run(
        [str(Path(sys.executable).parent / "brobygger"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def send_file(world: World, sender: str, path: Path, *receivers: str) -> tuple[int, dict[str, Any]]:
    """``brobygger send --as SENDER --to FIRST [--cc …] FILE --json``: (exit code, ack)."""
    to, *cc = receivers
    args = ["send", "--as", sender, "--to", to]
    for name in cc:
        args += ["--cc", name]
    done = brobygger(world, *args, "--json", str(path))
    assert done.stdout.strip(), done.stderr
    ack: dict[str, Any] = json.loads(done.stdout)
    return done.returncode, ack


def ack_response(ack: dict[str, Any]) -> tuple[str, str]:
    response = ack["entry"][0]["resource"]["response"]
    return str(response["identifier"]), str(response["code"])


def collection(*resources: dict[str, Any]) -> dict[str, Any]:
    """A collection Bundle with urn:uuid fullUrls (what a system exports for ``send``)."""
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"fullUrl": f"urn:uuid:{r.pop('id')}", "resource": r} for r in resources],
    }


def test_the_five_flows_from_the_cli(world: World, tmp_path: Path) -> None:
    samples = tmp_path / "samples"
    samples.mkdir()

    def saved(name: str, data: bytes | dict[str, Any]) -> Path:
        path = samples / name
        path.write_bytes(data if isinstance(data, bytes) else json.dumps(data).encode())
        return path

    # 1. The rehabilitation plan, copy to the job centre (no consent: withheld).
    code, ack = send_file(world, HOSPITAL, saved("plan.xml", sample(REHAB_PLAN)), REHAB, JOBCENTRE)
    plan_id, ack_code = ack_response(ack)
    assert (code, ack_code) == (0, "ok")
    state = world.settled(HOSPITAL, plan_id, (REHAB, JOBCENTRE))
    assert state[REHAB]["status"] == "acknowledged"
    assert state[JOBCENTRE]["last_error"].startswith("withheld")
    assert world.receiving.wait_for(REHAB, plan_id).event == "rehab-plan"

    # 2. LÆ 285: the request and the statement that answers it (the CLI tells the events).
    code, ack = send_file(
        world, JOBCENTRE, saved("request.xml", sample("gp-statement/lae285-request-ole.xml")), GP
    )
    request_id, ack_code = ack_response(ack)
    assert (code, ack_code) == (0, "ok")
    got = world.receiving.wait_for(GP, request_id)
    assert got.event == "medical-statement-request"
    [task] = got.resources("Task")
    code, ack = send_file(
        world,
        GP,
        saved("statement.xml", sample("gp-statement/lae285-statement-ole.xml")),
        JOBCENTRE,
    )
    statement_id, ack_code = ack_response(ack)
    assert (code, ack_code) == (0, "ok")
    assert world.receiving.wait_for(JOBCENTRE, statement_id).event == "medical-statement"
    assert world.fhir("GET", JOBCENTRE, f"Task/{task['id']}").json()["status"] == "completed"

    # 3. The status note: a collection of a Communication and its scores; it reaches the
    # caseworker under Ole's consent (health data crossing to the employment side).
    world.record_consent(
        JOBCENTRE,
        world.patient_id(JOBCENTRE, OLE_CPR),
        JOBCENTRE,
        "sickness-benefit-follow-up",
        labels=("rehab-progress",),
    )
    patient = patient_resource(OLE_CPR, "Ole", "Kristensen")
    scores = [
        score_observation(c, f"urn:uuid:{patient['id']}", "2026-11-13T10:00:00+01:00", 1.0)
        for c in SCORES
    ]
    note = {
        "resourceType": "Communication",
        "id": str(uuid.uuid4()),
        "meta": {"security": [{"system": DATA_CATEGORY, "code": "rehab-progress"}]},
        "status": "unknown",
        "category": [{"coding": [{"system": CARE_COMMUNICATION_CATEGORY, "code": "training"}]}],
        "subject": {"reference": f"urn:uuid:{patient['id']}"},
        "topic": {"text": "Statusnotat efter 6 ugers genoptræning"},
        "recipient": [{"reference": f"Organization/org-{JOBCENTRE}"}],
        "payload": [
            {"contentString": "Ole træner 2 gange ugentligt."},
            *[{"contentReference": {"reference": f"urn:uuid:{s['id']}"}} for s in scores],
        ],
    }
    code, ack = send_file(
        world, REHAB, saved("status-note.json", collection(note, patient, *scores)), JOBCENTRE
    )
    note_id, ack_code = ack_response(ack)
    assert (code, ack_code) == (0, "ok"), ack
    got = world.receiving.wait_for(JOBCENTRE, note_id)
    assert got.event == "care-communication-message"
    assert len(got.resources("Observation")) == 5

    # 4. The round-table invitation to the rehab unit, the GP and the employer.
    ole = world.patient_id(JOBCENTRE, OLE_CPR)
    invitation = {  # one resource without an id: the message gives it one (and its focus)
        "resourceType": "Appointment",
        "status": "booked",
        "description": "Rundbordssamtale",
        "reasonCode": [{"text": "Rotator cuff syndrom"}],
        "start": "2026-12-10T09:00:00+01:00",
        "end": "2026-12-10T10:00:00+01:00",
        "participant": [
            {"actor": {"reference": f"Patient/{ole}"}, "status": "needs-action"},
            *[
                {"actor": {"reference": f"Organization/org-{n}"}, "status": "needs-action"}
                for n in (JOBCENTRE, REHAB, GP, EMPLOYER)
            ],
        ],
    }
    code, ack = send_file(
        world, JOBCENTRE, saved("invitation.json", invitation), REHAB, GP, EMPLOYER
    )
    invitation_id, ack_code = ack_response(ack)
    assert (code, ack_code) == (0, "ok"), ack
    for name in (REHAB, GP):
        [seen] = world.receiving.wait_for(name, invitation_id).resources("Appointment")
        assert seen["reasonCode"] == invitation["reasonCode"]
    items = until(lambda: [i for i in world.mailbox(EMPLOYER) if i["message_id"] == invitation_id])
    [employer_copy] = [i["bundle"] for i in items]
    [seen] = [
        e["resource"]
        for e in employer_copy["entry"]
        if e["resource"]["resourceType"] == "Appointment"
    ]
    assert "reasonCode" not in seen

    # 5. The Mulighedserklæring: accepted; with a diagnosis: fatal-error, exit code 1.
    code, ack = send_file(
        world, GP_ROSKILDE, saved("mulighed.xml", sample(MULIGHED)), EMPLOYER_ROSKILDE
    )
    assert (code, ack_response(ack)[1]) == (0, "ok")
    birgitte = patient_resource(BIRGITTE_CPR, "Birgitte", "Nielsen")
    diagnosis = {
        "resourceType": "Condition",
        "id": str(uuid.uuid4()),
        "subject": {"reference": f"urn:uuid:{birgitte['id']}"},
        "code": {"coding": [{"system": SKS_D, "code": "DM545"}]},
    }
    limits = {
        "resourceType": "QuestionnaireResponse",
        "id": str(uuid.uuid4()),
        "status": "completed",
        "subject": {"reference": f"urn:uuid:{birgitte['id']}"},
    }
    before = world.counts()
    code, ack = send_file(
        world,
        GP_ROSKILDE,
        saved("with-diagnosis.json", collection(limits, birgitte, diagnosis)),
        EMPLOYER_ROSKILDE,
    )
    assert (code, ack_response(ack)[1]) == (1, "fatal-error")
    assert "must not carry a diagnosis" in json.dumps(ack, ensure_ascii=False)
    assert world.counts() == before

    # The operator's view: every message with its deliveries.
    done = brobygger(world, "messages", "--as", HOSPITAL, "--json")
    assert done.returncode == 0, done.stderr
    [listed] = [m for m in json.loads(done.stdout)["messages"] if m["message_id"] == plan_id]
    assert {d["receiver"]: d["status"] for d in listed["deliveries"]} == {
        REHAB: "acknowledged",
        JOBCENTRE: "failed",
    }
