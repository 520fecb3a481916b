"""What each receiver gets: the message re-rendered through consent, re-signed, re-encrypted.

``render_for`` builds the Bundle (type ``message``) one receiver may see: the original
MessageHeader (same id, so receivers dedupe by it) with ``focus`` pointing at the stored
resources the receiver may see, the original Provenance and directory entries
(Organization, Practitioner, …), and the stored resources of the message as the consent module
lets this receiver see them (redacted where it says so). These disclosures are audited like any
read. ``seal_for`` signs that Bundle with the gateway's key and encrypts it to the receiver.

``route_ack`` records a receiver's Acknowledgement on its delivery and routes it back to the
original sender as a message of its own (a ``reply`` delivery).
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from consent._codes import DIRECTORY_TYPES
from consent._resources import local_reference
from gateway.data import DataPath, principal_for, rewrite_references
from gateway.errors import BadRequest, Conflict, NotFound
from gateway.messaging import acks, envelope, records
from gateway.messaging.keys import encryption_key, gateway_signing_key
from gateway.messaging.message import ACKNOWLEDGEMENT
from gateway.messaging.records import MessageRecord
from gateway.participants.directory import PLAIN, Participant
from gateway.search.dates import format_instant, utc_now
from gateway.settings import Settings
from gateway.store.repository import Store
from gateway.store.schema import participants

ACK_EVENT = ACKNOWLEDGEMENT
ACK_OK = acks.OK
ACK_TRANSIENT = acks.TRANSIENT
ACK_FATAL = acks.FATAL
# Acknowledgements after which the receiver will not answer again for this message.
FINAL_ACK_CODES = (ACK_OK, ACK_FATAL)

# Entries of the original Bundle that travel as they are: the message's Provenance and
# directory data (not health data; MessageHeader.sender/receiver and Provenance name them).
_ENVELOPE_TYPES = frozenset({"Provenance"}) | DIRECTORY_TYPES
# Travel as the message carried them (under their stored ids): the citizen and the directory.
_AS_SENT_TYPES = frozenset({"Patient"}) | DIRECTORY_TYPES
# Stored resources that are never a message's focus by themselves.
_NOT_FOCUS_TYPES = frozenset({"Patient", "Provenance", "MessageHeader"}) | DIRECTORY_TYPES


class NoEncryptionKey(Conflict):
    """The receiver has no encryption key and this deployment does not send plain JWS."""


@dataclass(frozen=True, slots=True)
class AckInfo:
    """What an Acknowledgement message says: its own id, the message it answers, the code."""

    ack_id: str
    acknowledged: str
    code: str
    diagnostics: str


def message_header(bundle: dict[str, Any]) -> dict[str, Any]:
    """The MessageHeader: the first entry of a message Bundle."""
    entries = bundle.get("entry")
    if isinstance(entries, list) and entries and isinstance(entries[0], dict):
        resource = entries[0].get("resource")
        if isinstance(resource, dict) and resource.get("resourceType") == "MessageHeader":
            return resource
    raise BadRequest("a message Bundle starts with its MessageHeader", expression="Bundle.entry[0]")


def read_ack_header(bundle: dict[str, Any]) -> AckInfo:
    """Read an Acknowledgement message: its MessageHeader.id, response.identifier and code.

    Raises ``BadRequest`` when the Bundle is not an Acknowledgement (``acks.read_ack``).
    """
    try:
        acknowledged, code = acks.read_ack(bundle)
    except ValueError as exc:
        raise BadRequest(f"not an acknowledgement: {exc}", expression="MessageHeader") from exc
    ack_id = message_header(bundle).get("id")
    if not isinstance(ack_id, str) or not ack_id:
        raise BadRequest("the acknowledgement's MessageHeader has no id", expression="id")
    return AckInfo(ack_id, acknowledged, code, _diagnostics(bundle))


def _diagnostics(bundle: dict[str, Any]) -> str:
    texts: list[str] = []
    for entry in bundle.get("entry", []):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(resource, dict) and resource.get("resourceType") == "OperationOutcome":
            for issue in resource.get("issue", []):
                if isinstance(issue, dict):
                    text = issue.get("diagnostics") or (issue.get("details") or {}).get("text")
                    if isinstance(text, str) and text:
                        texts.append(text)
    return "; ".join(texts)


# --- rendering -------------------------------------------------------------------------------


def _focus_refs(bundle: dict[str, Any], header: dict[str, Any]) -> set[str]:
    """``Type/id`` of the original focus (references resolved against the entries' fullUrls)."""
    by_full_url: dict[str, str] = {}
    for entry in bundle.get("entry", []):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        full_url = entry.get("fullUrl") if isinstance(entry, dict) else None
        if isinstance(resource, dict) and isinstance(full_url, str):
            if resource.get("resourceType") and resource.get("id"):
                by_full_url[full_url] = f"{resource['resourceType']}/{resource['id']}"
    found: set[str] = set()
    for focus in header.get("focus", []) or []:
        reference = focus.get("reference") if isinstance(focus, dict) else None
        if not isinstance(reference, str):
            continue
        resolved = by_full_url.get(reference) or local_reference(reference)
        if resolved is not None:
            found.add(resolved)
    return found


def _stored_focus(record: MessageRecord, original_focus: set[str]) -> list[str]:
    """Which stored resources are the message's focus.

    The stored resources the original focus names; else (ids given by the gateway) those of
    the focus' types; else (a legacy document in a Binary, turned into FHIR by an adapter)
    every stored resource that is content rather than context (not Patient/directory data).
    """
    named = [r for r in record.resources if r in original_focus]
    if named:
        return named
    types = {r.split("/", 1)[0] for r in original_focus} - {"Binary"}
    same_type = [r for r in record.resources if r.split("/", 1)[0] in types]
    if same_type:
        return same_type
    return [r for r in record.resources if r.split("/", 1)[0] not in _NOT_FOCUS_TYPES]


async def render_for(
    store: Store, settings: Settings, record: MessageRecord, receiver: Participant
) -> dict[str, Any] | None:
    """The message Bundle ``receiver`` may get, or None when consent withholds its focus.

    A routed acknowledgement (``record.reply_to`` set) travels as it was received.
    """
    if record.reply_to is not None:
        return record.bundle
    original = record.bundle
    header = dict(message_header(original))
    focus = _stored_focus(record, _focus_refs(original, header))
    # The receiver reads its copy through the guarded data path, like any read of its own.
    data = DataPath(store, principal_for(receiver), enforce=settings.enforce_consent)
    stored = await data.read_many(record.resources, interaction="operation")
    stored_refs = [f"{r['resourceType']}/{r['id']}" for r in stored]
    visible_focus = [ref for ref in stored_refs if ref in focus]
    if not visible_focus:
        return None
    base = settings.fhir_base
    header["focus"] = [{"reference": f"{base}/{ref}"} for ref in visible_focus]
    entries: list[dict[str, Any]] = [
        {
            "fullUrl": original["entry"][0].get("fullUrl") or f"urn:uuid:{header['id']}",
            "resource": header,
        }
    ]
    visible = dict(zip(stored_refs, stored, strict=True))
    if record.origins is not None:
        entries += _as_sent(original, record.origins, visible, base)
    else:
        entries += _stored_and_envelope(original, visible, base)
    bundle = {k: v for k, v in original.items() if k not in ("entry", "timestamp")}
    bundle["type"] = "message"
    # The moment the gateway forwards it (a receiver's replay window measures from here).
    bundle["timestamp"] = format_instant(utc_now())
    bundle["entry"] = entries
    return bundle


def _stored_and_envelope(
    original: dict[str, Any], visible: dict[str, dict[str, Any]], base: str
) -> list[dict[str, Any]]:
    """Messages stored before origins were recorded: the stored resources, then the
    original's Provenance and directory entries."""
    entries = [{"fullUrl": f"{base}/{ref}", "resource": r} for ref, r in visible.items()]
    full_urls = {f"{base}/{ref}" for ref in visible}
    for entry in original.get("entry", [])[1:]:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict) or resource.get("resourceType") not in _ENVELOPE_TYPES:
            continue
        if entry.get("fullUrl") in full_urls:
            continue
        entries.append(dict(entry))
    return entries


def _as_sent(
    original: dict[str, Any],
    origins: dict[str, str],
    visible: dict[str, dict[str, Any]],
    base: str,
) -> list[dict[str, Any]]:
    """The message's entries in its order, each once: what it stored as the stored resource
    this receiver may see; its citizen and directory entries (Patient, Practitioner, …) as
    the message carried them (a fact it stated reaches the receiver even where the stored
    record says otherwise), under their stored ids; Provenance and the participants'
    Organizations as they were. Derived resources (an adapter's) follow."""
    targets = dict(origins)
    entries: list[dict[str, Any]] = []
    used: set[str] = set()
    for entry in original.get("entry", [])[1:]:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict):
            continue
        rtype = resource.get("resourceType")
        names = [entry.get("fullUrl"), f"{rtype}/{resource.get('id')}"]
        ref = next((origins[n] for n in names if isinstance(n, str) and n in origins), None)
        if ref is None:
            if rtype in _ENVELOPE_TYPES:
                entries.append(dict(entry))
            continue
        if ref in used or ref not in visible:
            continue  # once each; hidden from this receiver: left out
        used.add(ref)
        if rtype in _AS_SENT_TYPES:
            sent = rewrite_references({**resource, "id": ref.split("/", 1)[1]}, targets)
            entries.append({"fullUrl": f"{base}/{ref}", "resource": sent})
        else:
            entries.append({"fullUrl": f"{base}/{ref}", "resource": visible[ref]})
    entries += [
        {"fullUrl": f"{base}/{ref}", "resource": r}
        for ref, r in visible.items()
        if ref not in used and ref not in origins.values()
    ]
    return entries


async def seal_for(
    store: Store, settings: Settings, record: MessageRecord, receiver: Participant
) -> str | None:
    """``render_for``, signed by the gateway and encrypted to the receiver (None: withheld).

    Raises ``NoEncryptionKey`` when the receiver has no encryption key registered and
    ``delivery_allow_plain_jws`` is off.
    """
    bundle = await render_for(store, settings, record, receiver)
    if bundle is None:
        return None
    recipient = encryption_key(receiver)
    if recipient is None and not settings.delivery_allow_plain_jws:
        raise NoEncryptionKey(
            f"{receiver.name} has no registered encryption key and plain JWS delivery is "
            "not allowed (BROBYGGER_DELIVERY_ALLOW_PLAIN_JWS)"
        )
    return envelope.seal(bundle, gateway_signing_key(settings), recipient)


async def copy_for(
    store: Store, settings: Settings, record: MessageRecord, receiver: Participant
) -> str | dict[str, Any] | None:
    """What ``receiver`` gets: a participant registered for the ``plain`` transport (a MedCom
    system) the message Bundle itself, every other one the sealed envelope (``seal_for``)."""
    if receiver.transport == PLAIN:
        return await render_for(store, settings, record, receiver)
    return await seal_for(store, settings, record, receiver)


# --- acknowledgements ------------------------------------------------------------------------


async def _mode_of(writer: records.Transaction, name: str) -> str:
    row = (
        await writer.conn.execute(
            select(participants.c.endpoint).where(participants.c.name == name)
        )
    ).first()
    return "endpoint" if row is not None and row.endpoint else "mailbox"


async def route_ack(
    writer: records.Transaction,
    original: MessageRecord,
    receiver: str,
    ack_bundle: dict[str, Any],
    ack_signed: str,
) -> None:
    """Record ``receiver``'s Acknowledgement of ``original`` and route it to the sender.

    ``ok`` → acknowledged, ``fatal-error`` → failed (the OperationOutcome in last_error),
    ``transient-error`` → stays pending (the worker retries; it is not routed to the sender,
    whose message is not in trouble yet). A final acknowledgement becomes a message of its own
    (sender = the receiver, ``reply_to`` = the original) with a ``reply`` delivery to the
    original sender. Idempotent: the same acknowledgement again, or any after a final one,
    changes nothing.
    """
    info = read_ack_header(ack_bundle)
    if info.acknowledged != original.message_id:
        raise BadRequest(
            f"the acknowledgement answers {info.acknowledged}, not {original.message_id}",
            expression="MessageHeader.response.identifier",
        )
    delivery = await records.get_delivery(writer.conn, original.key, receiver)
    if delivery is None:
        raise NotFound(f"message {original.message_id} was not sent to {receiver}")
    if delivery.ack == ack_bundle or delivery.ack_code in FINAL_ACK_CODES:
        return
    values: dict[str, Any] = {"ack": ack_bundle, "ack_code": info.code}
    if info.code == ACK_OK:
        values.update(status=records.ACKNOWLEDGED, last_error=None)
    elif info.code == ACK_FATAL:
        detail = f": {info.diagnostics}" if info.diagnostics else ""
        values.update(status=records.FAILED, last_error=f"fatal-error from {receiver}{detail}")
    else:
        detail = f": {info.diagnostics}" if info.diagnostics else ""
        values["last_error"] = f"transient-error from {receiver}{detail}"
    await records.set_delivery(writer.conn, original.key, receiver, **values)
    if info.code not in FINAL_ACK_CODES:
        return
    if await records.find_message(writer.conn, receiver, info.ack_id) is not None:
        return
    reply = MessageRecord(
        key=str(uuid.uuid4()),
        sender=receiver,
        message_id=info.ack_id,
        event=ACK_EVENT,
        received_at=utc_now(),
        content_sha256=hashlib.sha256(envelope.canonical_json(ack_bundle)).hexdigest(),
        bundle=ack_bundle,
        signed=ack_signed,
        ack_code=ACK_OK,
        ack={},
        resources=[],
        reply_to=original.key,
    )
    await records.insert_message(writer, reply)
    await records.insert_delivery(
        writer,
        reply.key,
        original.sender,
        role="reply",
        mode=await _mode_of(writer, original.sender),
    )
