"""The participant directory: who may connect, with which keys, as which Organization.

A participant is at once an OAuth client (SMART Backend Services, its name is the client_id
and its public JWKS verifies its client assertions), a messaging party and an Organization in
the FHIR store (id ``org-<name>``), written in the same transaction as the directory row.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from gateway.auth.keys import validate_public_jwks
from gateway.errors import BadRequest, Conflict, Gone, NotFound, StoreUnavailable
from gateway.participants.identifiers import UNIQUE_SYSTEMS, normalise_identifier
from gateway.search.dates import utc_now
from gateway.store.database import Database
from gateway.store.repository import Store
from gateway.store.schema import participants

KIND_SYSTEM = "http://brobygger.dk/fhir/CodeSystem/participant-kind"
KINDS: dict[str, str] = {
    "hospital": "Hospital",
    "gp": "General practice",
    "rehab-unit": "Municipal rehabilitation unit",
    "jobcentre": "Job centre",
    "employer": "Employer",
    "citizen-portal": "Citizen portal",
}
# How a participant sends messages (gateway/messaging/inbound.py): the signed and encrypted
# JOSE envelope, or (MedCom systems) a plain FHIR message Bundle over its authenticated TLS
# connection, with its SMART token.
JOSE = "jose"
PLAIN = "plain"
TRANSPORTS = (JOSE, PLAIN)
# Lower-case letters, digits and hyphens; it is a client_id, a file name and part of an id.
_NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,58}[a-z0-9])?$")


class InvalidParticipant(BadRequest):
    """A registration that breaks the directory's rules."""


@dataclass(frozen=True, slots=True)
class Participant:
    """One registered party (hospital, GP, rehab unit, job centre, employer, citizen portal)."""

    name: str
    kind: str
    display: str
    identifiers: list[dict[str, str]] = field(default_factory=list)
    organization_id: str | None = None
    jwks: dict[str, Any] = field(default_factory=lambda: {"keys": []})
    endpoint: str | None = None
    mailbox: bool = True
    # How it sends to $process-message: "jose" (JWE ⟨JWS⟩, the default) or "plain".
    transport: str = "jose"

    def identifier(self, system: str) -> str | None:
        """The first value of ``system`` among the identifiers, if any."""
        return next((i["value"] for i in self.identifiers if i["system"] == system), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "display": self.display,
            "identifiers": self.identifiers,
            "organization_id": self.organization_id,
            "jwks": self.jwks,
            "endpoint": self.endpoint,
            "mailbox": self.mailbox,
            "transport": self.transport,
        }


def organization_id_for(name: str) -> str:
    return f"org-{name}"


def validate_participant(participant: Participant) -> Participant:
    """Check name, kind, identifiers and endpoint; return the normalised participant."""
    if not _NAME_RE.match(participant.name):
        raise InvalidParticipant(
            "participant names are 1-60 lower-case letters, digits and inner hyphens",
            expression="name",
        )
    if participant.kind not in KINDS:
        raise InvalidParticipant(f"kind must be one of {', '.join(KINDS)}", expression="kind")
    if participant.transport not in TRANSPORTS:
        raise InvalidParticipant(
            f"transport must be one of {', '.join(TRANSPORTS)}", expression="transport"
        )
    display = participant.display.strip()
    if not display or len(display) > 255:
        raise InvalidParticipant("display must be 1-255 characters", expression="display")
    identifiers: list[dict[str, str]] = []
    for ident in participant.identifiers:
        normalised = normalise_identifier(ident.get("system", ""), ident.get("value", ""))
        if normalised not in identifiers:
            identifiers.append(normalised)
    endpoint = participant.endpoint
    if endpoint is not None:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("https", "http") or not parts.netloc or len(endpoint) > 1024:
            raise InvalidParticipant("endpoint must be an http(s) URL", expression="endpoint")
    return replace(
        participant,
        display=display,
        identifiers=identifiers,
        organization_id=participant.organization_id or organization_id_for(participant.name),
    )


def organization_resource(participant: Participant) -> dict[str, Any]:
    """The participant's FHIR R4 Organization (what the store keeps as ``org-<name>``)."""
    resource: dict[str, Any] = {
        "resourceType": "Organization",
        "id": participant.organization_id or organization_id_for(participant.name),
        "active": True,
        "type": [
            {
                "coding": [
                    {
                        "system": KIND_SYSTEM,
                        "code": participant.kind,
                        "display": KINDS[participant.kind],
                    }
                ]
            }
        ],
        "name": participant.display,
    }
    if participant.identifiers:
        resource["identifier"] = [dict(i) for i in participant.identifiers]
    return resource


def _same_organization(stored: dict[str, Any], wanted: dict[str, Any]) -> bool:
    keys = ("active", "type", "name", "identifier")
    return all(stored.get(k) == wanted.get(k) for k in keys)


def _from_row(row: Row[Any]) -> Participant:
    return Participant(
        name=row.name,
        kind=row.kind,
        display=row.display,
        identifiers=json.loads(row.identifiers),
        organization_id=row.organization_id,
        jwks=json.loads(row.jwks),
        endpoint=row.endpoint,
        mailbox=bool(row.mailbox),
        transport=row.transport or JOSE,
    )


class ParticipantDirectory:
    """Async access to the ``participants`` table (stateless; share one per process)."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def find(self, name: str) -> Participant | None:
        try:
            async with self.database.engine.connect() as conn:
                row = (
                    await conn.execute(select(participants).where(participants.c.name == name))
                ).first()
        except (DBAPIError, PoolTimeout) as exc:
            raise StoreUnavailable("the participant directory is unavailable") from exc
        return None if row is None else _from_row(row)

    async def get(self, name: str) -> Participant:
        found = await self.find(name)
        if found is None:
            raise NotFound(f"participant {name!r} is not registered")
        return found

    async def list(self) -> list[Participant]:
        try:
            async with self.database.engine.connect() as conn:
                rows = await conn.execute(select(participants).order_by(participants.c.name))
                return [_from_row(r) for r in rows]
        except (DBAPIError, PoolTimeout) as exc:
            raise StoreUnavailable("the participant directory is unavailable") from exc

    async def find_by_identifier(self, system: str, value: str) -> Participant | None:
        """The participant carrying this identifier (SOR, EAN, YDER, CVR), if any."""
        wanted = normalise_identifier(system, value)
        for participant in await self.list():
            if wanted in participant.identifiers:
                return participant
        return None

    async def add(self, participant: Participant, *, store: Store) -> Participant:
        """Register a participant and write its Organization, in one transaction.

        Refuses an existing name, an invalid kind or identifier, and an SOR/EAN/YDER/CVR
        already registered to someone else (messages are routed by them).
        """
        participant = validate_participant(participant)
        jwks = validate_public_jwks(participant.jwks)
        participant = replace(participant, jwks=jwks)
        existing = await self.list()
        if any(p.name == participant.name for p in existing):
            raise Conflict(f"participant {participant.name!r} is already registered")
        for ident in participant.identifiers:
            if ident["system"] not in UNIQUE_SYSTEMS:
                continue
            holder = next((p for p in existing if ident in p.identifiers), None)
            if holder is not None:
                raise Conflict(
                    f"identifier {ident['system']}|{ident['value']} is already registered "
                    f"to {holder.name!r}",
                    expression="identifier",
                )
        now = utc_now()
        async with store.write("participant registration") as writer:
            taken = (
                await writer.conn.execute(
                    select(participants.c.name).where(participants.c.name == participant.name)
                )
            ).first()
            if taken is not None:
                raise Conflict(f"participant {participant.name!r} is already registered")
            await writer.put(organization_resource(participant))
            await writer.conn.execute(
                insert(participants).values(
                    name=participant.name,
                    kind=participant.kind,
                    display=participant.display,
                    identifiers=json.dumps(participant.identifiers),
                    organization_id=participant.organization_id,
                    jwks=json.dumps(participant.jwks),
                    endpoint=participant.endpoint,
                    mailbox=participant.mailbox,
                    transport=participant.transport,
                    created_at=now,
                    updated_at=now,
                )
            )
        return participant

    async def set_jwks(self, name: str, jwks: dict[str, Any]) -> Participant:
        """Replace the participant's public key set (validated first)."""
        normalised = validate_public_jwks(jwks)
        try:
            async with self.database.engine.begin() as conn:
                result = await conn.execute(
                    update(participants)
                    .where(participants.c.name == name)
                    .values(jwks=json.dumps(normalised), updated_at=utc_now())
                )
        except (DBAPIError, PoolTimeout) as exc:
            raise StoreUnavailable("the participant directory is unavailable") from exc
        if result.rowcount == 0:
            raise NotFound(f"participant {name!r} is not registered")
        return await self.get(name)

    async def set_endpoint(self, name: str, endpoint: str | None) -> Participant:
        """Where messages to the participant go: an http(s) endpoint, or None for the mailbox.

        Deliveries already in the mailbox stay there; new deliveries follow the new setting,
        and pending endpoint deliveries of a participant now without one fall back to the
        mailbox (gateway.messaging.delivery).
        """
        current = await self.get(name)
        checked = validate_participant(replace(current, endpoint=endpoint))
        try:
            async with self.database.engine.begin() as conn:
                await conn.execute(
                    update(participants)
                    .where(participants.c.name == name)
                    .values(
                        endpoint=checked.endpoint,
                        mailbox=checked.endpoint is None,
                        updated_at=utc_now(),
                    )
                )
        except (DBAPIError, PoolTimeout) as exc:
            raise StoreUnavailable("the participant directory is unavailable") from exc
        return await self.get(name)

    async def set_transport(self, name: str, transport: str) -> Participant:
        """How the participant sends messages: ``jose`` (the default) or ``plain``."""
        if transport not in TRANSPORTS:
            raise InvalidParticipant(
                f"transport must be one of {', '.join(TRANSPORTS)}", expression="transport"
            )
        await self.get(name)
        try:
            async with self.database.engine.begin() as conn:
                await conn.execute(
                    update(participants)
                    .where(participants.c.name == name)
                    .values(transport=transport, updated_at=utc_now())
                )
        except (DBAPIError, PoolTimeout) as exc:
            raise StoreUnavailable("the participant directory is unavailable") from exc
        return await self.get(name)

    async def add_signing_key(
        self, name: str, public_key: dict[str, Any], *, keep_previous: int = 2
    ) -> Participant:
        """Rotate: put ``public_key`` first and keep up to ``keep_previous`` older signing keys.

        Older keys stay so that assertions signed just before the rotation still verify for
        their (at most five-minute) lifetime; encryption keys are kept as they are.
        """
        participant = await self.get(name)
        keys = participant.jwks.get("keys", [])
        signing = [k for k in keys if k.get("use", "sig") == "sig" and k != public_key]
        others = [k for k in keys if k.get("use", "sig") != "sig"]
        kept = signing[: max(0, keep_previous)]
        return await self.set_jwks(name, {"keys": [public_key, *kept, *others]})

    async def sync_organization(self, participant: Participant, *, store: Store) -> bool:
        """Write the participant's Organization if it is missing or differs; True if written."""
        wanted = organization_resource(participant)
        try:
            stored = await store.read("Organization", wanted["id"])
        except (NotFound, Gone):  # missing, or deleted by hand: write it again
            stored = None
        if stored is not None and _same_organization(stored, wanted):
            return False
        await store.update("Organization", wanted["id"], wanted)
        return True
