"""A receiving system on a real socket: what a rehab unit's (or GP's, job centre's) system does.

One small FastAPI app plays several participants, each at ``POST /inbox/{name}`` (registered as
that participant's ``endpoint``). For every delivery it

    opens the JWE with the participant's own encryption key (its dev key in ``keys_dir``),
    verifies the JWS with the gateway's signing key from ``GET /.well-known/jwks.json``,
    checks the Bundle is a message addressed to it, records it deduplicated by MessageHeader.id
    and answers with its own signed Acknowledgement (a JWS by the participant's key, encrypted
    to the gateway's encryption key).

It uses joserfc directly, not ``gateway.messaging``: an independent implementation of the
receiving side, so the tests check what goes over the wire rather than the gateway agreeing
with itself. ``behaviour`` makes a participant answer ``fatal-error``/``transient-error``, fail
with HTTP 500 a few times, or lose its answer after storing (delivery retries, dedupe).
Acknowledgements the gateway routes back (``acknowledgement-message`` events, role ``reply``)
are recorded in ``routed_acks`` and answered 204 (an acknowledgement is not acknowledged in
turn).
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI, Request
from joserfc import jwe, jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, Key, RSAKey, import_key
from starlette.responses import JSONResponse, Response

from gateway.auth.keys import private_key_path, read_private_key

MEDCOM_EVENTS = "http://medcomfhir.dk/ig/terminology/CodeSystem/medcom-messaging-eventCodes"
ACTIVITY_SYSTEM = "http://medcomfhir.dk/ig/terminology/CodeSystem/medcom-messaging-activityCodes"
DESTINATION_USE_URL = (
    "http://medcomfhir.dk/ig/messaging/StructureDefinition/medcom-messaging-destinationUseExtension"
)
DESTINATION_USE_SYSTEM = (
    "http://medcomfhir.dk/ig/terminology/CodeSystem/medcom-messaging-destinationUse"
)
JOSE = "application/jose"
# The largest message we accept (the gateway's BROBYGGER_MAX_MESSAGE_BYTES default).
MAX_MESSAGE_BYTES = 8 * 1024 * 1024
START_TIMEOUT_SECONDS = 30.0


class Refused(Exception):
    """The delivery is not acceptable (cannot decrypt, bad signature, not for us)."""


@dataclass(slots=True)
class Received:
    """One message as the receiving system stored it (the first copy; later copies counted)."""

    receiver: str
    header_id: str
    event: str
    bundle: dict[str, Any]
    signed_by: str  # the kid of the gateway key that signed it
    copies: int = 1

    def resources(self, resource_type: str) -> list[dict[str, Any]]:
        return [
            e["resource"]
            for e in self.bundle.get("entry", [])
            if e.get("resource", {}).get("resourceType") == resource_type
        ]

    def types(self) -> set[str]:
        return {str(e["resource"]["resourceType"]) for e in self.bundle.get("entry", [])}

    def focus(self) -> list[dict[str, Any]]:
        """The MessageHeader's focus, resolved inside the Bundle (by fullUrl)."""
        by_url = {e.get("fullUrl"): e.get("resource") for e in self.bundle.get("entry", [])}
        header = self.bundle["entry"][0]["resource"]
        return [by_url[f["reference"]] for f in header.get("focus", [])]


@dataclass(slots=True)
class Behaviour:
    """How one participant's system answers.

    ``ack_code``: the code of its Acknowledgement. ``fail_first``: HTTP 500 for the first N
    deliveries, before looking at them (the system is down). ``lose_first``: the first N
    deliveries are stored, but the answer is lost (HTTP 500 after storing: the gateway must
    deliver again, and the copy is recognised by its MessageHeader.id).
    """

    ack_code: str = "ok"
    fail_first: int = 0
    lose_first: int = 0
    attempts: int = 0
    lost: int = 0


@dataclass(slots=True)
class ReceivingSystem:
    """The state of the receiving app (shared between its thread and the test)."""

    keys_dir: Path
    gateway_url: str
    names: frozenset[str]
    inbox: dict[str, dict[str, Received]] = field(default_factory=dict)
    routed_acks: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)
    behaviour: dict[str, Behaviour] = field(default_factory=dict)
    _gateway_keys: dict[str, dict[str, Key]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # --- reading (from the test) -----------------------------------------------------------

    def messages(self, receiver: str) -> list[Received]:
        with self._lock:
            return list(self.inbox.get(receiver, {}).values())

    def get(self, receiver: str, header_id: str) -> Received | None:
        with self._lock:
            return self.inbox.get(receiver, {}).get(header_id)

    def acks_for(self, participant: str) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.routed_acks.get(participant, []))

    def wait_for(self, receiver: str, header_id: str, timeout: float = 30.0) -> Received:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.get(receiver, header_id)
            if found is not None:
                return found
            time.sleep(0.05)
        raise AssertionError(f"{receiver} did not receive message {header_id}")

    # --- keys ------------------------------------------------------------------------------

    def own_key(self, name: str, use: str) -> Key:
        return read_private_key(private_key_path(self.keys_dir, name, use=use))

    async def gateway_keys(self, use: str, *, refresh: bool = False) -> dict[str, Key]:
        """kid → the gateway's public key for ``use`` (sig/enc), from its published JWKS."""
        if refresh or use not in self._gateway_keys:
            async with httpx.AsyncClient(timeout=10) as client:
                response = await client.get(f"{self.gateway_url}/.well-known/jwks.json")
            response.raise_for_status()
            found: dict[str, dict[str, Key]] = {"sig": {}, "enc": {}}
            for entry in response.json()["keys"]:
                found.setdefault(entry.get("use", "sig"), {})[entry["kid"]] = import_key(entry)
            self._gateway_keys.update(found)
        return self._gateway_keys.get(use, {})

    # --- the envelope ----------------------------------------------------------------------

    async def open(self, name: str, body: bytes) -> tuple[dict[str, Any], str]:
        """Decrypt with our key, verify with the gateway's: (the Bundle, the signer's kid)."""
        token = body.decode("ascii").strip()
        if token.count(".") != 4:
            raise Refused("we accept encrypted messages only (a JWE)")
        header = _segment_json(token)
        if header.get("enc") != "A256GCM":
            raise Refused(f"unexpected enc {header.get('enc')}")
        key = self.own_key(name, "enc")
        # joserfc refuses a ciphertext over 64 KiB and a JWS payload over 125 KB by default;
        # MedCom messages with attachments are larger: lift both to what we accept.
        registry = jwe.JWERegistry(algorithms=[str(header.get("alg")), "A256GCM"])
        registry.max_ciphertext_length = MAX_MESSAGE_BYTES
        try:
            plain = jwe.decrypt_compact(token, key, registry=registry).plaintext
        except (JoseError, ValueError) as exc:
            raise Refused(f"cannot decrypt with {name}'s key: {exc}") from exc
        signed = (plain or b"").decode("ascii")
        kid = str(_segment_json(signed).get("kid"))
        keys = await self.gateway_keys("sig")
        if kid not in keys:
            keys = await self.gateway_keys("sig", refresh=True)  # rotated?
        if kid not in keys:
            raise Refused(f"signed by {kid}, not a key the gateway publishes")
        alg = str(_segment_json(signed).get("alg"))
        signature_registry = jws.JWSRegistry(algorithms=[alg])
        signature_registry.max_payload_length = MAX_MESSAGE_BYTES
        try:
            payload = jws.deserialize_compact(
                signed, keys[kid], registry=signature_registry
            ).payload
        except (JoseError, ValueError) as exc:
            raise Refused(f"the gateway's signature does not verify: {exc}") from exc
        bundle = json.loads(payload)
        if bundle.get("resourceType") != "Bundle" or bundle.get("type") != "message":
            raise Refused("not a message Bundle")
        return bundle, kid

    async def seal(self, name: str, bundle: dict[str, Any]) -> str:
        """Our Acknowledgement: signed with our key, encrypted to the gateway's."""
        signing = self.own_key(name, "sig")
        payload = json.dumps(bundle, separators=(",", ":")).encode("utf-8")
        alg = "PS256" if isinstance(signing, RSAKey) else "ES256"
        signed = jws.serialize_compact(
            {"alg": alg, "kid": signing.kid, "cty": "application/fhir+json"},
            payload,
            signing,
            algorithms=[alg],
        )
        recipient = next(iter((await self.gateway_keys("enc")).values()))
        wrap = "ECDH-ES+A256KW" if isinstance(recipient, ECKey) else "RSA-OAEP-256"
        return jwe.encrypt_compact(
            {"alg": wrap, "enc": "A256GCM", "kid": recipient.kid, "cty": "JWT"},
            signed.encode("ascii"),
            recipient,
            algorithms=[wrap, "A256GCM"],
        )

    # --- one delivery ----------------------------------------------------------------------

    async def receive(self, name: str, body: bytes) -> Response:
        if name not in self.names:
            return JSONResponse({"error": f"no inbox {name}"}, status_code=404)
        behaviour = self.behaviour.setdefault(name, Behaviour())
        with self._lock:
            behaviour.attempts += 1
            failing = behaviour.attempts <= behaviour.fail_first
        if failing:
            return JSONResponse({"error": "temporarily unavailable"}, status_code=500)
        try:
            bundle, kid = await self.open(name, body)
            header = bundle["entry"][0]["resource"]
            if header.get("resourceType") != "MessageHeader":
                raise Refused("the first entry is not a MessageHeader")
        except (Refused, ValueError, KeyError, IndexError) as exc:
            with self._lock:
                self.refused.append(f"{name}: {exc}")
            return JSONResponse({"error": str(exc)}, status_code=400)
        event = str(header.get("eventCoding", {}).get("code"))
        if event == "acknowledgement-message":
            with self._lock:
                self.routed_acks.setdefault(name, []).append(bundle)
            return Response(status_code=204)
        if not _addressed_to(bundle, header, self.own_organization(name)):
            with self._lock:
                self.refused.append(f"{name}: not addressed to us")
            return JSONResponse({"error": "not addressed to us"}, status_code=400)
        header_id = str(header["id"])
        with self._lock:
            inbox = self.inbox.setdefault(name, {})
            if header_id in inbox:
                inbox[header_id].copies += 1  # at least once; we keep the first (dedupe)
            else:
                inbox[header_id] = Received(name, header_id, event, bundle, kid)
        with self._lock:
            losing = behaviour.lost < behaviour.lose_first
            behaviour.lost += 1 if losing else 0
        if losing:
            return JSONResponse({"error": "stored, but the answer got lost"}, status_code=500)
        ack = acknowledgement(
            header_id,
            behaviour.ack_code,
            own=self.own_organization(name),
            to=_sender_organization(bundle, header),
        )
        return Response(await self.seal(name, ack), media_type=JOSE)

    def own_organization(self, name: str) -> dict[str, Any]:
        """Our Organization as the gateway's demo directory registers it (by its identifiers)."""
        from gateway.participants.demo import DEMO_PARTICIPANTS

        participant = next(p for p in DEMO_PARTICIPANTS if p.name == name)
        return {
            "resourceType": "Organization",
            "id": str(uuid.uuid4()),
            "identifier": [dict(i) for i in participant.identifiers],
            "name": participant.display,
        }


def _segment_json(token: str) -> dict[str, Any]:
    head = token.split(".", 1)[0]
    data = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    if not isinstance(data, dict):
        raise Refused("the JOSE header is not an object")
    return data


def _resolve(bundle: dict[str, Any], reference: Any) -> dict[str, Any] | None:
    for entry in bundle.get("entry", []):
        if entry.get("fullUrl") == reference:
            resource = entry.get("resource")
            return resource if isinstance(resource, dict) else None
    return None


def _identifiers(org: dict[str, Any] | None) -> set[tuple[str, str]]:
    return {(i.get("system"), i.get("value")) for i in (org or {}).get("identifier", [])}


def _addressed_to(bundle: dict[str, Any], header: dict[str, Any], own: dict[str, Any]) -> bool:
    mine = _identifiers(own)
    return any(
        _identifiers(_resolve(bundle, d.get("receiver", {}).get("reference"))) & mine
        for d in header.get("destination", [])
    )


def _sender_organization(bundle: dict[str, Any], header: dict[str, Any]) -> dict[str, Any]:
    found = _resolve(bundle, header.get("sender", {}).get("reference"))
    return dict(found) if found else {"resourceType": "Organization", "name": "unknown"}


def acknowledgement(
    acknowledged: str, code: str, *, own: dict[str, Any], to: dict[str, Any]
) -> dict[str, Any]:
    """A MedCom Acknowledgement message (built here by hand, the receiver's own code)."""
    base = "https://receiver.example/fhir"
    moment = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    header_id = str(uuid.uuid4())
    own = {**own, "id": own.get("id") or str(uuid.uuid4())}
    to = {**to, "id": str(uuid.uuid4())}
    own_url, to_url = f"{base}/Organization/{own['id']}", f"{base}/Organization/{to['id']}"
    header_url = f"{base}/MessageHeader/{header_id}"
    response: dict[str, Any] = {"identifier": acknowledged, "code": code}
    extra: list[dict[str, Any]] = []
    if code != "ok":
        outcome_id = str(uuid.uuid4())
        outcome_url = f"{base}/OperationOutcome/{outcome_id}"
        response["details"] = {"reference": outcome_url}
        extra.append(
            {
                "fullUrl": outcome_url,
                "resource": {
                    "resourceType": "OperationOutcome",
                    "id": outcome_id,
                    "issue": [
                        {
                            "severity": "error" if code == "fatal-error" else "warning",
                            "code": "processing",
                            "diagnostics": f"the receiving system answers {code}",
                        }
                    ],
                },
            }
        )
    provenance_id = str(uuid.uuid4())
    header = {
        "resourceType": "MessageHeader",
        "id": header_id,
        "eventCoding": {"system": MEDCOM_EVENTS, "code": "acknowledgement-message"},
        "destination": [
            {
                "extension": [
                    {
                        "url": DESTINATION_USE_URL,
                        "valueCoding": {"system": DESTINATION_USE_SYSTEM, "code": "primary"},
                    }
                ],
                "endpoint": "https://brobygger.example/fhir/$process-message",
                "receiver": {"reference": to_url},
            }
        ],
        "sender": {"reference": own_url},
        "source": {"endpoint": base},
        "response": response,
    }
    provenance = {
        "resourceType": "Provenance",
        "id": provenance_id,
        "target": [{"reference": header_url}],
        "occurredDateTime": moment,
        "recorded": moment,
        "activity": {"coding": [{"system": ACTIVITY_SYSTEM, "code": "acknowledgement"}]},
        "agent": [{"who": {"reference": own_url}}],
        "entity": [{"role": "revision", "what": {"identifier": {"value": acknowledged}}}],
    }
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "type": "message",
        "timestamp": moment,
        "entry": [
            {"fullUrl": header_url, "resource": header},
            *extra,
            {"fullUrl": f"{base}/Provenance/{provenance_id}", "resource": provenance},
            {"fullUrl": own_url, "resource": own},
            {"fullUrl": to_url, "resource": to},
        ],
    }


def create_receiver_app(system: ReceivingSystem) -> FastAPI:
    app = FastAPI(title="A receiving system (test)")

    @app.post("/inbox/{name}")
    async def inbox(name: str, request: Request) -> Response:
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media != JOSE:
            return JSONResponse({"error": f"send {JOSE}"}, status_code=415)
        return await system.receive(name, await request.body())

    return app


@contextmanager
def serve_receiver(
    keys_dir: Path, gateway_url: str, names: Iterable[str]
) -> Iterator[tuple[ReceivingSystem, str]]:
    """Run the receiving app on a free loopback port: (its state, its base URL)."""
    system = ReceivingSystem(keys_dir, gateway_url, frozenset(names))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_receiver_app(system),
        host="127.0.0.1",
        port=port,
        log_config=None,
        lifespan="off",
        access_log=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"receiver:{port}", daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the receiving app stopped during start-up")
            if time.monotonic() > deadline:
                raise RuntimeError("the receiving app did not start")
            time.sleep(0.01)
        yield system, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
        assert not thread.is_alive(), "the receiving app's thread did not stop"
