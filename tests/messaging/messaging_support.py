"""Helpers for messaging tests: principals, demo participants, sealed messages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from joserfc.jwk import Key, import_key

from gateway.auth.keys import private_key_path, read_private_key
from gateway.auth.principal import Principal
from gateway.messaging import envelope
from gateway.messaging.keys import gateway_encryption_keys, gateway_signing_key
from gateway.messaging.message import binary_resource, build_message
from gateway.participants.demo import DEMO_PARTICIPANTS
from gateway.participants.directory import Participant, organization_id_for
from gateway.settings import Settings

SAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "formats" / "samples"
READ_WRITE = frozenset({"system/*.read", "system/*.write"})


def demo(name: str) -> Participant:
    return next(p for p in DEMO_PARTICIPANTS if p.name == name)


def principal(name: str) -> Principal:
    participant = demo(name)
    return Principal(
        participant=name,
        kind=participant.kind,
        client_id=name,
        scopes=READ_WRITE,
        organization_id=organization_id_for(name),
    )


def sample(relative: str) -> bytes:
    return (SAMPLES / relative).read_bytes()


def signing_key(settings: Settings, name: str) -> Key:
    return read_private_key(private_key_path(settings.keys_dir, name))


def gateway_public_encryption_key(settings: Settings) -> Key:
    private = gateway_encryption_keys(settings)[0]
    return import_key(private.as_dict(private=False))


def gateway_public_signing_keys(settings: Settings) -> dict[str, Key]:
    key = gateway_signing_key(settings)
    return {envelope.kid_of(key): import_key(key.as_dict(private=False))}


def document_message(
    sender: str, to: str, document: bytes, *, cc: tuple[str, ...] = (), event: str
) -> dict[str, Any]:
    receivers = [(demo(to), "primary"), *[(demo(c), "cc") for c in cc]]
    return build_message(
        event=event, sender=demo(sender), receivers=receivers, content=[binary_resource(document)]
    )


def seal(
    settings: Settings,
    sender: str,
    bundle: dict[str, Any] | bytes,
    *,
    encrypt: bool = True,
    key: Key | None = None,
) -> bytes:
    recipient = gateway_public_encryption_key(settings) if encrypt else None
    signer = key or signing_key(settings, sender)
    return envelope.seal(bundle, signer, recipient).encode("ascii")


def read_answer(settings: Settings, body: bytes) -> dict[str, Any]:
    """The gateway's Acknowledgement, its signature verified with the gateway's key."""
    return envelope.read_signed(body.decode("ascii"), gateway_public_signing_keys(settings))


def ack_code(ack: dict[str, Any]) -> str:
    return str(ack["entry"][0]["resource"]["response"]["code"])


def dumps(bundle: dict[str, Any]) -> bytes:
    return json.dumps(bundle).encode()
