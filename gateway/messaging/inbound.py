"""``$process-message``: open the envelope, check who sent it, store it, acknowledge it.

    size, media type → open the JWE (the gateway's key) → verify the JWS with the
    authenticated client's registered keys → the Bundle's MessageHeader.sender is that client
    → seen before? (same content: the first acknowledgement again; different: fatal-error)
    → MedCom rules, timestamp window, receivers registered, profiles → one transaction:
    the content (FHIR resources, or a legacy document through the ingest pipeline), the
    message record and one delivery per receiver → commit → ``ok``.

Envelope failures (not JOSE, cannot decrypt, bad signature, a key or sender that is not the
client's, plain JWS where encryption is required, too large) are 4xx OperationOutcomes: the
gateway cannot know whom to acknowledge. Once the message is authentic, every answer is an
Acknowledgement: ``fatal-error`` for a message that will never be accepted, ``transient-error``
when the store is unavailable. Nothing is stored unless the answer is ``ok``.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from sqlalchemy import text

from consent import (
    ADDRESSEE_SYSTEM,
    DIRECTORY_TYPES,
    LEGAL_BASIS_SYSTEM,
    ROUND_TABLE_INVITATION,
    strip_gateway_tags,
)
from gateway.auth.principal import Principal
from gateway.data import DataPath, GuardedWriter, rewrite_references, run_transaction_in
from gateway.errors import (
    BadRequest,
    Forbidden,
    GatewayError,
    Issue,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from gateway.ingest import pipeline
from gateway.jobs import offload_for
from gateway.limits import JsonLimits, json_limits, load_json, xml_limits
from gateway.messaging import acks, records
from gateway.messaging.envelope import MEDIA_TYPE, WrongSigner, open_envelope, verify
from gateway.messaging.keys import gateway_encryption_keys, signing_keys
from gateway.messaging.message import (
    ACKNOWLEDGEMENT,
    HOSPITAL_NOTIFICATION,
    MEDCOM_STANDARD_EVENTS,
    MEETING_INVITATION,
    MessageInvalid,
    ParsedMessage,
    Party,
    normalised_identifiers,
    parse_message,
    resolver,
)
from gateway.participants.directory import PLAIN, Participant, ParticipantDirectory
from gateway.participants.identifiers import CVR, EAN, MUNICIPALITY, SOR, UNIQUE_SYSTEMS, YDER
from gateway.search.dates import utc_now
from gateway.settings import Settings
from gateway.store.identities import IdentityTaken, cpr_identifiers, system_name
from gateway.store.repository import ConcurrentWrite, Store
from mappings import MAX_DOCUMENT_BYTES
from mappings._codes import DIAGNOSIS_SYSTEMS
from profiles import fhir_json
from profiles.fhir_release import (
    ResourceInvalid,
    message_identity_from_xml,
    resource_from_xml,
)

log = logging.getLogger(__name__)

# Shared parties are matched by identifier, not addressed to anyone.
_SHARED = frozenset(DIRECTORY_TYPES) | {"Patient"}
_MESSAGE_TYPES = frozenset({"MessageHeader", "Provenance"})
CPR = "urn:oid:1.2.208.176.1.2"


@dataclass(frozen=True, slots=True)
class Answer:
    """What ``$process-message`` returns: the Acknowledgement and its HTTP status."""

    code: str
    ack: dict[str, Any]
    status: int
    message_key: str | None = None
    repeated: bool = False


# What a resend may change (MedCom reliable messaging: a resent message keeps its
# MessageHeader.id and gets a new Bundle.id and timestamp): not part of the content.
_ENVELOPE_FIELDS = frozenset({"id", "timestamp", "meta"})


def content_hash(bundle: dict[str, Any]) -> str:
    """Equal for the same message content, however it was serialised and whatever the
    Bundle's own id and timestamp (a resend is the same message)."""
    content = {k: v for k, v in bundle.items() if k not in _ENVELOPE_FIELDS}
    canonical = fhir_json.dumps(content, sort_keys=True)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _status(code: str) -> int:
    return 503 if code == acks.TRANSIENT else 200


def _org_of(bundle: dict[str, Any], party: Party | None) -> dict[str, Any] | None:
    if party is None:
        return None
    found = resolver(bundle).get(party.reference)
    return dict(found[1]) if found else None


class Inbound:
    """One ``$process-message`` call (stateless apart from what it has read)."""

    def __init__(self, store: Store, settings: Settings, principal: Principal) -> None:
        self.store = store
        self.settings = settings
        self.principal = principal
        self.directory = ParticipantDirectory(store.database)
        self._participants: list[Participant] | None = None

    # --- the answer ------------------------------------------------------------------------

    def _answer(
        self,
        code: str,
        acknowledged: str,
        bundle: dict[str, Any],
        sender: Party | None,
        issues: list[Issue] | None = None,
    ) -> Answer:
        ack = self._ack(acknowledged or "unknown", code, bundle, sender, issues)
        return Answer(code, ack, _status(code))

    def _ack(
        self,
        acknowledged: str,
        code: str,
        bundle: dict[str, Any],
        sender: Party | None,
        issues: list[Issue] | None = None,
    ) -> dict[str, Any]:
        """The gateway's own acknowledgement (its receipt), from the gateway Organization."""
        return acks.build_ack(
            acknowledged=acknowledged,
            code=code,
            issues=issues,
            sender_org=acks.gateway_organization(
                self.settings.gateway_sor, self.settings.gateway_ean
            ),
            receiver_org=_org_of(bundle, sender),
            base=self.settings.fhir_base,
            original_provenance=acks.acknowledged_provenance(bundle, acknowledged),
            receipt=True,
        )

    # --- the steps -------------------------------------------------------------------------

    async def process(self, body: bytes, media_type: str, *, now: datetime) -> Answer:
        limit = min(self.settings.max_message_bytes, self.settings.max_body_bytes)
        if len(body) > limit:
            raise PayloadTooLarge(f"the message is larger than {limit} bytes")
        if media_type in PLAIN_MEDIA_TYPES:
            client = await self._client()
            if client.transport != PLAIN:
                raise UnsupportedMediaType(
                    f"{client.name} is registered for the JOSE envelope: send the message as "
                    f"{MEDIA_TYPE} (a JWE holding a JWS). An operator registers a MedCom system "
                    "for plain FHIR: brobygger participants set-transport NAME plain",
                    expression="Content-Type",
                )
            try:
                bundle = _plain_bundle(
                    body, PLAIN_MEDIA_TYPES[media_type], json_limits(self.settings)
                )
            except NotFhirXml as exc:
                # Readable XML that the R4 models refuse: an authentic message that will never
                # be accepted, acknowledged by its MessageHeader.id like a JSON one.
                readable = {"entry": [{}, {"resource": exc.provenance}]} if exc.provenance else {}
                return self._answer(acks.FATAL, exc.header_id, readable, None, exc.issues)
            # Kept as received (the authenticated TLS connection and token vouch for it).
            signed = body.decode("utf-8", errors="replace")
        elif media_type == MEDIA_TYPE:
            # The sender before the envelope: decrypting is work an unknown client gets none of.
            client = await self._client()
            opened = open_envelope(body, gateway_encryption_keys(self.settings), max_bytes=limit)
            if not opened.encrypted and self.settings.message_encryption == "required":
                raise BadRequest(
                    "this gateway accepts encrypted messages only (a JWE holding the JWS)",
                    expression="body",
                )
            await self._check_signer(opened.header.get("kid"), client)
            verify(opened, signing_keys(client), who=client.name)
            signed = opened.signed
            bundle = load_json(
                opened.payload, json_limits(self.settings), what="the signed payload"
            )
        else:
            raise UnsupportedMediaType(
                f"send the message as {MEDIA_TYPE} (a JWE holding a JWS); a participant "
                "registered for plain transport sends application/fhir+json or "
                "application/fhir+xml",
                expression="Content-Type",
            )
        if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
            raise BadRequest("the message is not a FHIR Bundle", expression="body")
        header_id = _header_id(bundle)
        digest = content_hash(bundle)
        # Seen before? (before the window: a late retry of an acknowledged message is fine)
        if header_id:
            async with self.store.read_connection() as conn:
                seen = await records.find_message(conn, client.name, header_id)
            if seen is not None:
                return self._repeat(seen, digest, bundle)
        try:
            parsed = parse_message(bundle)
        except MessageInvalid as exc:
            # Name everything that is missing at once: MedCom's rules and base FHIR R4.
            issues = [*exc.issues, *_structure_issues(bundle, exc.issues)]
            return self._answer(acks.FATAL, header_id, bundle, _sender_party(bundle), issues)
        try:
            sender = await self._party_participant(
                parsed.sender, parsed.event, "Bundle.entry[0].resource.sender"
            )
        except MessageInvalid as exc:
            return self._answer(acks.FATAL, header_id, bundle, parsed.sender, exc.issues)
        if sender is None or sender.name != client.name:
            raise WrongSigner(
                "MessageHeader.sender is not the authenticated client that signed the message",
                expression="Bundle.entry[0].resource.sender",
            )
        try:
            return await self._accept(parsed, client, signed, digest, now)
        except GatewayError as exc:
            if exc.status == 503 or isinstance(exc, ConcurrentWrite | IdentityTaken):
                # A concurrent writer won (e.g. the same new citizen from another message):
                # sent again, the message links to what it wrote.
                return self._answer(acks.TRANSIENT, header_id, bundle, parsed.sender, exc.issues)
            if 400 <= exc.status < 500:
                return self._answer(acks.FATAL, header_id, bundle, parsed.sender, exc.issues)
            raise

    async def _client(self) -> Participant:
        client = await self.directory.find(self.principal.participant)
        if client is None:
            raise Forbidden("the authenticated client is not a registered participant")
        return client

    async def _check_signer(self, kid: Any, client: Participant) -> None:
        """A kid registered to someone else is refused by name (sender ≠ signer)."""
        if kid is None or str(kid) in signing_keys(client):
            return
        if self._participants is None:
            self._participants = await self.directory.list()
        for other in self._participants:
            if other.name != client.name and str(kid) in signing_keys(other):
                raise WrongSigner(
                    f"the message is signed with a key of {other.name!r}, "
                    f"not of the authenticated client {client.name!r}",
                    expression="kid",
                )

    def _repeat(self, seen: records.MessageRecord, digest: str, bundle: dict[str, Any]) -> Answer:
        if seen.content_sha256 == digest:
            # A resend (maybe with a new Bundle.id): the original acknowledgement again.
            return Answer(
                seen.ack_code,
                acks.reissued(seen.ack),
                _status(seen.ack_code),
                seen.key,
                repeated=True,
            )
        return self._answer(
            acks.FATAL,
            seen.message_id,
            bundle,
            _sender_party(bundle),
            [
                Issue(
                    "duplicate",
                    "this MessageHeader.id was already received from this sender with "
                    "different content; send a new message with a new id",
                    "Bundle.entry[0].resource.id",
                )
            ],
        )

    async def _party_participant(self, party: Party, event: str, where: str) -> Participant | None:
        """The participant a sender or receiver names, checked against the directory.

        Every SOR, EAN, YDER and CVR the Organization carries must be the one participant's
        (a SOR of one organisation with the EAN of another is a contradiction, named); in
        MedCom's own standards (CareCommunication, HospitalNotification) a party registered
        with both a SOR and an EAN must carry both (medcom-messaging-organization).
        """
        found = await self._agreeing_holder(party.identifiers, where)
        if found is not None and event in MEDCOM_STANDARD_EVENTS:
            carried = {i["system"] for i in party.identifiers}
            registered = {i["system"] for i in found.identifiers}
            missing = [
                name
                for system, name in ((SOR, "SOR"), (EAN, "EAN"))
                if system in registered and system not in carried
            ]
            if missing:
                raise MessageInvalid(
                    f"a MedCom {event} names each party by SOR and EAN; this Organization "
                    f"lacks its {' and '.join(missing)} ({found.name} is registered with both)",
                    expression=f"{where} → Organization.identifier",
                )
        return found

    async def _agreeing_holder(
        self, identifiers: list[dict[str, str]], where: str
    ) -> Participant | None:
        """The one participant these identifiers name; MessageInvalid when they disagree."""
        if self._participants is None:
            self._participants = await self.directory.list()
        unique = [i for i in identifiers if i["system"] in UNIQUE_SYSTEMS]
        holders: list[tuple[dict[str, str], Participant | None]] = [
            (i, next((p for p in self._participants if i in p.identifiers), None)) for i in unique
        ]
        found = next((p for _, p in holders if p is not None), None)
        if found is None:
            return None
        anchor = next(i for i, p in holders if p is found)
        for ident, holder in holders:
            registered = found.identifier(ident["system"])
            if holder is not None and holder.name != found.name:
                conflict = f"{holder.name!r}"
            elif holder is None and registered is not None and registered != ident["value"]:
                conflict = f"no participant ({found.name!r} is registered with another)"
            else:
                continue
            raise MessageInvalid(
                f"the Organization's identifiers contradict the participant directory: "
                f"{_named(anchor)} is {found.name!r}, but {_named(ident)} is {conflict}",
                expression=f"{where} → Organization.identifier",
            )
        return found

    async def _accept(
        self,
        parsed: ParsedMessage,
        client: Participant,
        signed: str,
        digest: str,
        now: datetime,
    ) -> Answer:
        window = timedelta(seconds=self.settings.message_window_seconds)
        skew = timedelta(seconds=self.settings.clock_skew_seconds)
        if parsed.timestamp < now - window or parsed.timestamp > now + skew:
            raise MessageInvalid(
                "the message's timestamp is outside the accepted window (replay or clock)",
                expression="Bundle.timestamp",
            )
        receivers: list[tuple[Participant, str]] = []
        for index, party in enumerate(parsed.receivers):
            participant = await self._party_participant(
                party,
                parsed.event,
                f"Bundle.entry[0].resource.destination[{index}].receiver",
            )
            if participant is None:
                raise MessageInvalid(
                    "the receiver is not a registered participant",
                    expression=f"Bundle.entry[0].resource.destination[{index}].receiver",
                )
            if participant.name == client.name:
                raise MessageInvalid(
                    "a participant cannot send a message to itself",
                    expression=f"Bundle.entry[0].resource.destination[{index}].receiver",
                )
            if (
                parsed.event == HOSPITAL_NOTIFICATION
                and party.role == "primary"
                and participant.identifier(MUNICIPALITY) is None
            ):
                raise MessageInvalid(
                    "a HospitalNotification goes to the citizen's municipality: the primary "
                    f"receiver ({participant.name!r}) is not registered with a municipality code",
                    expression=f"Bundle.entry[0].resource.destination[{index}].receiver",
                )
            if all(p.name != participant.name for p, _ in receivers):
                receivers.append((participant, party.role))
        if parsed.event == ACKNOWLEDGEMENT:
            return await self._acknowledgement(parsed, client, signed)
        prepared: pipeline.Prepared | None = None
        if parsed.binary is not None:
            prepared = await pipeline.prepare(
                self.store,
                parsed.binary,
                sender_participant=client.name,
                now=now,
                max_bytes=MAX_DOCUMENT_BYTES,
                authorize=self._authorize,
                limits=xml_limits(self.settings, MAX_DOCUMENT_BYTES),
                offload=offload_for(self.settings),
            )
            content = [e["resource"] for e in prepared.bundle.get("entry", [])]
        else:
            content = list(_content(parsed.bundle))
            self._authorize({r["resourceType"] for r in content})
            # Scopes first; validating is the costly part (a large Bundle: in a worker).
            await offload_for(self.settings).run(
                len(signed),
                functools.partial(pipeline.validate_bundle, channel="messaging"),
                parsed.bundle,
            )
        for resource in content:
            if resource.get("resourceType") in ("Consent", "AuditEvent"):
                raise MessageInvalid(
                    "a Consent is recorded at /fhir/Consent and AuditEvents by the gateway; "
                    "neither travels in a message",
                    expression=f"Bundle.entry.resource.ofType({resource.get('resourceType')})",
                )
        if any(p.kind == "employer" for p, _ in receivers):
            _refuse_diagnoses(content)
        key = str(uuid.uuid4())
        primary = next(p for p, role in receivers if role == "primary")
        ack = self._ack(parsed.header_id, acks.OK, parsed.bundle, parsed.sender)
        # Everything that reads the directory happens before the write transaction: a
        # transaction must never wait for a second pool connection (under load they all
        # would, and the pool would stall).
        transaction: dict[str, Any] | None = None
        names: dict[str, list[str]] = {}
        if prepared is None:
            transaction, names = await self._transaction(
                parsed.bundle,
                primary,
                # A job centre's round-table invitation reaches every invitee, the employer
                # too, on that legal basis (the Appointment; the rest under consent).
                invitation=parsed.event == MEETING_INVITATION and client.kind == "jobcentre",
            )
        data = DataPath(self.store, self.principal, enforce=self.settings.enforce_consent)
        origins: dict[str, str] | None = None
        async with data.write("message", link_identities=True, interaction="create") as writer:
            await self._lock(writer, client.name, parsed.header_id)
            seen = await records.find_message(writer.conn, client.name, parsed.header_id)
            if seen is not None:  # a concurrent copy committed first
                return self._repeat(seen, digest, parsed.bundle)
            if transaction is None:
                assert prepared is not None  # noqa: S101 - one of the two is set
                result = await pipeline.store_prepared(writer, prepared, now=now)
                stored = _locations(result.response)
            else:
                await _link_patients(writer, transaction, record_facts=client.kind in _FACT_KINDS)
                response = await run_transaction_in(writer, transaction)
                stored = _locations(response)
                origins = _origins(transaction, response, names)
            await records.insert_message(
                writer,
                records.MessageRecord(
                    key=key,
                    sender=client.name,
                    message_id=parsed.header_id,
                    event=parsed.event,
                    received_at=utc_now(),
                    content_sha256=digest,
                    bundle=parsed.bundle,
                    signed=signed,
                    ack_code=acks.OK,
                    ack=ack,
                    resources=stored,
                    reply_to=None,
                    origins=origins,
                ),
            )
            for participant, role in receivers:
                await records.insert_delivery(
                    writer,
                    key,
                    participant.name,
                    role=role,
                    mode="endpoint" if participant.endpoint else "mailbox",
                )
        return Answer(acks.OK, ack, 200, key)

    async def _acknowledgement(
        self, parsed: ParsedMessage, client: Participant, signed: str
    ) -> Answer:
        """A receiver's Acknowledgement sent as a message: routed back to the sender."""
        from gateway.messaging import outbound  # the delivery side; imported when needed

        responds_to = parsed.responds_to or ""
        async with self.store.write("acknowledgement") as writer:
            originals = await records.find_by_message_id(writer.conn, responds_to)
            for original in originals:
                delivery = await records.get_delivery(writer.conn, original.key, client.name)
                if delivery is not None:
                    await outbound.route_ack(writer, original, client.name, parsed.bundle, signed)
                    break
            else:
                raise MessageInvalid(
                    "the acknowledgement answers no message delivered to this participant",
                    expression="Bundle.entry[0].resource.response.identifier",
                )
        ack = self._ack(parsed.header_id, acks.OK, parsed.bundle, parsed.sender)
        return Answer(acks.OK, ack, 200)

    def _authorize(self, types: set[str]) -> None:
        missing = sorted(t for t in types if not self.principal.allows(t, "write"))
        if missing:
            raise Forbidden(f"the access token has no scope to write {', '.join(missing)}")

    async def _lock(self, writer: records.Transaction, sender: str, header_id: str) -> None:
        """Serialise two copies of one message on PostgreSQL (SQLite has one writer)."""
        if self.store.database.is_sqlite:
            return
        digest = hashlib.blake2b(f"message:{sender}:{header_id}".encode(), digest_size=8)
        await writer.conn.execute(
            text("SELECT pg_advisory_xact_lock(:key)"),
            {"key": int.from_bytes(digest.digest(), "big", signed=True)},
        )

    async def _transaction(
        self, bundle: dict[str, Any], primary: Participant, *, invitation: bool = False
    ) -> tuple[dict[str, Any], dict[str, list[str]]]:
        """The message's content as a transaction Bundle.

        Organizations of registered participants become references to their Organization;
        other shared resources (Patient, Practitioner, unregistered Organizations) are
        conditional creates on their first identifier; the rest are created, stamped with
        the sender as author and tagged for the primary receiver. A Patient matches on any of
        its CPR-system identifiers (CPR, replacement CPRs). Also returns, per entry (its
        ``urn:uuid:``), the names it had in the message (fullUrl, ``Type/id``).
        """
        targets: dict[str, str] = {}
        entries: list[tuple[str, dict[str, Any]]] = []
        named: dict[str, list[str]] = {}
        for entry in bundle.get("entry", []):
            resource = entry.get("resource")
            if not isinstance(resource, dict) or resource.get("resourceType") in _MESSAGE_TYPES:
                continue
            rtype = str(resource["resourceType"])
            names = [n for n in (entry.get("fullUrl"), _type_id(resource)) if n]
            if rtype == "Organization":
                participant = await self._registered_org(resource)
                if participant is not None:
                    for name in names:
                        targets[name] = f"Organization/{participant.organization_id}"
                    continue
            urn = f"urn:uuid:{uuid.uuid4()}"
            for name in names:
                targets[name] = urn
            entries.append((urn, resource))
            named[urn] = names
        out = []
        for urn, resource in entries:
            rtype = str(resource["resourceType"])
            # No forged author, author kind or legal basis: the gateway stamps its own.
            body = strip_gateway_tags(rewrite_references(_fresh(resource), targets))
            request: dict[str, Any] = {"method": "POST", "url": rtype}
            if rtype in _SHARED:
                citizen = cpr_identifiers(body) if rtype == "Patient" else []
                ident = _first_identifier(body)
                if citizen:
                    request["ifNoneExist"] = _any_identifier(citizen)
                elif ident is not None:
                    request["ifNoneExist"] = f"identifier={ident['system']}|{ident['value']}"
            else:
                body = _tag(body, primary.name)
                if invitation and rtype == "Appointment":
                    body = _with_legal_basis(body, ROUND_TABLE_INVITATION)
            out.append({"fullUrl": urn, "resource": body, "request": request})
        return {"resourceType": "Bundle", "type": "transaction", "entry": out}, named

    async def _registered_org(self, org: dict[str, Any]) -> Participant | None:
        return await self._agreeing_holder(
            normalised_identifiers(org), f"Organization/{org.get('id', '?')}"
        )


# --- helpers ---------------------------------------------------------------------------------


def _header_id(bundle: dict[str, Any]) -> str:
    entries = bundle.get("entry")
    first = entries[0] if isinstance(entries, list) and entries else None
    header = first.get("resource") if isinstance(first, dict) else None
    hid = header.get("id") if isinstance(header, dict) else None
    return hid if isinstance(hid, str) else ""


# Plain transport (a participant registered for it): a FHIR message Bundle as JSON or XML.
PLAIN_MEDIA_TYPES = {
    "application/fhir+json": "json",
    "application/json": "json",
    "application/fhir+xml": "xml",
    "application/xml": "xml",
}


class NotFhirXml(Exception):
    """A well-formed FHIR XML message the R4 models refuse (answered with a fatal-error)."""

    def __init__(
        self, header_id: str, provenance: dict[str, Any] | None, issues: list[Issue]
    ) -> None:
        super().__init__("not valid FHIR R4")
        self.header_id = header_id
        self.provenance = provenance
        self.issues = issues


def _plain_bundle(body: bytes, syntax: str, limits: JsonLimits) -> Any:
    """The message Bundle of a plain request: JSON, or FHIR XML read by the FHIR models'
    own XML reader through a hardened lxml parser (profiles.fhir_release)."""
    if syntax == "xml":
        try:
            return resource_from_xml(body)
        except ResourceInvalid as exc:
            issues = [Issue("structure", i.message, i.expression) for i in exc.issues]
            header_id, provenance = message_identity_from_xml(body)
            if header_id and all(i.expression != "/" for i in exc.issues):
                raise NotFhirXml(header_id, provenance, issues) from exc
            raise BadRequest("the body is not a FHIR resource in XML", issues=issues) from exc
    return load_json(body, limits, what="the message")


_SYSTEM_NAMES = {SOR: "SOR", EAN: "EAN", YDER: "YDER", CVR: "CVR"}


def _named(ident: dict[str, str]) -> str:
    """``SOR 265161000016000`` (organisation identifiers are directory data, not health data)."""
    return f"{_SYSTEM_NAMES.get(ident['system'], ident['system'])} {ident['value']}"


def _structure_issues(bundle: dict[str, Any], known: list[Issue]) -> list[Issue]:
    """Base-R4 problems of a message that broke MedCom's rules (not those already named)."""
    try:
        pipeline.validate_bundle(bundle)
    except GatewayError as exc:
        named = {(i.expression or "") for i in known}
        return [i for i in exc.issues if (i.expression or "") not in named]
    return []


def _sender_party(bundle: dict[str, Any]) -> Party | None:
    entries = bundle.get("entry")
    first = entries[0] if isinstance(entries, list) and entries else None
    header = first.get("resource") if isinstance(first, dict) else None
    sender = header.get("sender") if isinstance(header, dict) else None
    reference = sender.get("reference") if isinstance(sender, dict) else None
    return Party(reference, []) if isinstance(reference, str) else None


def _content(bundle: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for entry in bundle.get("entry", []):
        resource = entry.get("resource")
        if isinstance(resource, dict) and resource.get("resourceType") not in _MESSAGE_TYPES:
            yield resource


def _type_id(resource: dict[str, Any]) -> str | None:
    rid = resource.get("id")
    return f"{resource['resourceType']}/{rid}" if isinstance(rid, str) else None


def _fresh(resource: dict[str, Any]) -> dict[str, Any]:
    """The resource without the sender's id and version (the store assigns its own)."""
    body = {k: v for k, v in resource.items() if k != "id"}
    meta = dict(body.get("meta") or {})
    meta.pop("versionId", None)
    meta.pop("lastUpdated", None)
    if meta:
        body["meta"] = meta
    else:
        body.pop("meta", None)
    return body


# Who states facts about a citizen that update the stored Patient (deceased, address, name):
# the health side. Others' messages link to the Patient and change nothing of it.
_FACT_KINDS = frozenset({"hospital", "gp", "rehab-unit"})
# What a later message may say about a citizen; the rest of the stored Patient stays.
_FACTS = ("name", "telecom", "gender", "birthDate", "address", "maritalStatus")
_DECEASED = ("deceasedBoolean", "deceasedDateTime")


def _any_identifier(pairs: list[tuple[str, str]]) -> str:
    """A conditional criterion matching any of ``pairs`` (token search, comma = or)."""
    return "identifier=" + ",".join(quote(f"{s}|{v}", safe="") for s, v in pairs)


def _merged_into(incoming: dict[str, Any], stored: dict[str, Any]) -> dict[str, Any]:
    return merged_patient(stored, incoming)


def merged_patient(stored: dict[str, Any], incoming: dict[str, Any]) -> dict[str, Any]:
    """The stored Patient with what a later message states: its identifiers added, its
    name, address, telecom, … and deceased[x] taking the place of the stored ones."""
    out = {k: v for k, v in stored.items() if k not in _DECEASED}
    identifiers = list(stored.get("identifier") or [])
    for ident in incoming.get("identifier") or []:
        if isinstance(ident, dict) and all(
            (i.get("system"), i.get("value")) != (ident.get("system"), ident.get("value"))
            for i in identifiers
        ):
            identifiers.append(ident)
    if identifiers:
        out["identifier"] = identifiers
    for key in _FACTS:
        if key in incoming:
            out[key] = incoming[key]
    said = [k for k in _DECEASED if k in incoming]
    if said:
        out[said[0]] = incoming[said[0]]
    else:
        out.update({k: stored[k] for k in _DECEASED if k in stored})
    return out


async def _link_patients(
    writer: GuardedWriter, transaction: dict[str, Any], *, record_facts: bool
) -> None:
    """Each Patient of the message: the one stored Patient holding any of its CPR-system
    identifiers (its newer facts recorded as a new version when ``record_facts``), else
    new. Identifiers of two stored Patients in one message are refused, named by system."""
    for entry in transaction["entry"]:
        resource = entry["resource"]
        if resource.get("resourceType") != "Patient":
            continue
        citizen = cpr_identifiers(resource)
        if not citizen:
            continue
        ids = await writer.citizen_ids(_any_identifier(citizen))
        if len(ids) > 1:
            raise MessageInvalid(
                "the Patient's identifiers ("
                + ", ".join(system_name(s) for s, _ in citizen)
                + ") belong to two stored Patients; an operator merges them "
                "(brobygger patients duplicates / merge) before the message can be accepted",
                expression="Patient.identifier",
            )
        if not ids:
            continue
        entry["request"]["ifNoneExist"] = f"_id={ids[0]}"
        if record_facts:
            await writer.record_identity_facts(ids[0], functools.partial(_merged_into, resource))


def _origins(
    transaction: dict[str, Any], response: dict[str, Any], names: dict[str, list[str]]
) -> dict[str, str]:
    """Each name an entry had in the message → the ``Type/id`` it was stored as."""
    found: dict[str, str] = {}
    for entry, answer in zip(transaction["entry"], response.get("entry", []), strict=False):
        location = str((answer.get("response") or {}).get("location", "")).split("/")
        if len(location) < 2:
            continue
        for name in names.get(entry["fullUrl"], []):
            found[name] = f"{location[0]}/{location[1]}"
    return found


def _first_identifier(resource: dict[str, Any]) -> dict[str, str] | None:
    for ident in resource.get("identifier") or []:
        if isinstance(ident, dict) and ident.get("system") and ident.get("value"):
            return {"system": str(ident["system"]), "value": str(ident["value"])}
    return None


def _with_legal_basis(resource: dict[str, Any], code: str) -> dict[str, Any]:
    meta = dict(resource.get("meta") or {})
    tags = [t for t in meta.get("tag", []) if t.get("system") != LEGAL_BASIS_SYSTEM]
    meta["tag"] = [*tags, {"system": LEGAL_BASIS_SYSTEM, "code": code}]
    return {**resource, "meta": meta}


def _tag(resource: dict[str, Any], addressee: str) -> dict[str, Any]:
    meta = dict(resource.get("meta") or {})
    tags = [t for t in meta.get("tag", []) if t.get("system") != ADDRESSEE_SYSTEM]
    meta["tag"] = [*tags, {"system": ADDRESSEE_SYSTEM, "code": addressee}]
    return {**resource, "meta": meta}


def _locations(response: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for entry in response.get("entry", []):
        location = str((entry.get("response") or {}).get("location", ""))
        parts = location.split("/")
        if len(parts) >= 2:
            ref = f"{parts[0]}/{parts[1]}"
            if ref not in out:
                out.append(ref)
    return out


def _codings(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if isinstance(node.get("system"), str) and "code" in node:
            yield node
        for value in node.values():
            yield from _codings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _codings(value)


def _refuse_diagnoses(content: list[dict[str, Any]]) -> None:
    """An employer never receives a diagnosis (Mulighedserklæring part 2 carries none)."""
    for resource in content:
        rtype = resource.get("resourceType")
        if rtype == "Condition" or any(
            c["system"] in DIAGNOSIS_SYSTEMS for c in _codings(resource)
        ):
            raise MessageInvalid(
                "a message to an employer must not carry a diagnosis",
                expression=f"{rtype}",
                issues=[
                    Issue(
                        "business-rule",
                        "a message to an employer must not carry a diagnosis "
                        f"({rtype} with a diagnosis code); send the Mulighedserklæring "
                        "without diagnoses",
                        str(rtype),
                    )
                ],
            )


async def process_message(
    store: Store,
    settings: Settings,
    principal: Principal,
    body: bytes,
    media_type: str,
    *,
    now: datetime | None = None,
) -> Answer:
    """Process one ``$process-message`` request body; see the module docstring."""
    inbound = Inbound(store, settings, principal)
    return await inbound.process(body, media_type, now=now or datetime.now(UTC))
