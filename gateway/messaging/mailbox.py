"""``/messages``: receivers without an endpoint poll their mailbox and acknowledge what they
got; senders follow the delivery of what they sent.

    GET  /messages?role=received&status=pending   what waits for my acknowledgement, each
                                                  with its envelope (sealed for me now)
    GET  /messages?role=sent[&status=failed]      my messages and each receiver's delivery
    GET  /messages/{key}                          one message (its sender or a receiver)
    POST /messages/{key}/ack                      my signed Acknowledgement (application/jose)

Delivery is at least once: fetching marks a ``pending`` delivery ``delivered``, and it is
handed out again (as ``delivered``) until the receiver's acknowledgement arrives. The
receiver dedupes by MessageHeader.id, which the gateway keeps when it re-seals a message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import JSONResponse

from gateway.deps import DatabaseDep, PrincipalDep, SettingsDep, StoreDep
from gateway.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from gateway.limits import json_limits, load_json
from gateway.messaging import envelope, outbound, records
from gateway.messaging.keys import gateway_encryption_keys, signing_keys
from gateway.messaging.records import Delivery, MessageRecord
from gateway.participants.directory import PLAIN, Participant, ParticipantDirectory
from gateway.search.dates import format_instant
from gateway.settings import Settings
from gateway.store.database import Database
from gateway.store.repository import Store
from gateway.store.schema import deliveries, messages

FHIR_JSON = "application/fhir+json"

router = APIRouter(tags=["messaging"])

RECEIVED = "received"
SENT = "sent"
ROLES = (RECEIVED, SENT)
MAILBOX = "mailbox"
REPLY = "reply"
# A receiver's "pending": everything still waiting for its acknowledgement.
_UNACKNOWLEDGED = (records.PENDING, records.DELIVERED)
_WITHHELD = "withheld: consent does not let this receiver see the message's focus"


@dataclass(frozen=True, slots=True)
class _Item:
    record: MessageRecord
    delivery: Delivery


def _ack_path(key: str) -> str:
    return f"/messages/{key}/ack"


def _summary(record: MessageRecord) -> dict[str, Any]:
    """What anyone entitled to see the message may know about it (no content)."""
    return {
        "key": record.key,
        "message_id": record.message_id,
        "sender": record.sender,
        "event": record.event,
        "received_at": format_instant(record.received_at),
        "reply_to": record.reply_to,
    }


def _received_view(item: _Item, sealed: str | dict[str, Any] | None) -> dict[str, Any]:
    view = _summary(item.record)
    view["delivery"] = item.delivery.to_json()
    if sealed is not None:
        # A participant registered for plain transport gets the Bundle itself.
        view["bundle" if isinstance(sealed, dict) else "envelope"] = sealed
        view["ack"] = _ack_path(item.record.key)
    return view


def _sent_view(record: MessageRecord, sent_to: list[Delivery]) -> dict[str, Any]:
    view = _summary(record)
    view["ack_code"] = record.ack_code  # the gateway's answer to the sender
    view["deliveries"] = [d.to_json() for d in sent_to]
    return view


def _choice(value: str | None, allowed: tuple[str, ...], name: str) -> str | None:
    if value is not None and value not in allowed:
        raise BadRequest(f"{name} must be one of {', '.join(allowed)}", expression=name)
    return value


def _limit(value: int | None, settings: Settings) -> int:
    if value is None:
        return settings.default_page_size
    if value < 1:
        raise BadRequest("limit must be a positive number", expression="limit")
    return min(value, settings.max_page_size)


# --- reading ---------------------------------------------------------------------------------


async def _received(
    conn: AsyncConnection, receiver: str, statuses: tuple[str, ...], limit: int
) -> list[_Item]:
    query = (
        select(messages, deliveries)
        .join(deliveries, deliveries.c.message_key == messages.c.key)
        .where(deliveries.c.receiver == receiver, deliveries.c.status.in_(statuses))
    )
    if set(statuses) <= set(_UNACKNOWLEDGED):
        # Rows bound for an endpoint are the delivery worker's; the mailbox never hands them
        # out (or two parties would deliver the same row at once).
        query = query.where(deliveries.c.mode == MAILBOX)
    rows = await conn.execute(query.order_by(messages.c.received_at, messages.c.key).limit(limit))
    return [_Item(records.message_from_row(r), records.delivery_from_row(r)) for r in rows]


async def _sent(
    conn: AsyncConnection, sender: str, status: str | None, limit: int
) -> list[MessageRecord]:
    query = select(messages).where(messages.c.sender == sender)
    if status is not None:
        query = query.where(
            messages.c.key.in_(
                select(deliveries.c.message_key).where(deliveries.c.status == status)
            )
        )
    rows = await conn.execute(
        query.order_by(messages.c.received_at.desc(), messages.c.key).limit(limit)
    )
    return [records.message_from_row(r) for r in rows]


async def _caller(database: Database, name: str) -> Participant:
    participant = await ParticipantDirectory(database).find(name)
    if participant is None:
        raise Forbidden(f"{name} is not a registered participant")
    return participant


async def _seal(
    store: Store, settings: Settings, items: list[_Item], receiver: Participant
) -> list[dict[str, Any]]:
    """Seal each unacknowledged mailbox item for the receiver and mark it delivered.

    Sealing renders through consent (and audits the disclosure), so it happens outside the
    write transaction; a copy consent withholds is ``failed`` with the reason, never silent.
    """
    sealed: dict[tuple[str, str], str | dict[str, Any] | None] = {}
    refused: dict[tuple[str, str], str] = {}
    for item in items:
        key = (item.record.key, item.delivery.receiver)
        if item.delivery.mode == MAILBOX and item.delivery.status in _UNACKNOWLEDGED:
            try:
                sealed[key] = await outbound.copy_for(store, settings, item.record, receiver)
            except outbound.NoEncryptionKey as exc:  # as the delivery worker: failed, visibly
                sealed[key], refused[key] = None, str(exc)
    updated: dict[tuple[str, str], Delivery] = {}
    if sealed:
        async with store.write("mailbox fetch") as writer:
            for (message_key, name), token in sealed.items():
                current = await records.get_delivery(writer.conn, message_key, name)
                if current is None or current.status not in _UNACKNOWLEDGED:
                    continue  # acknowledged meanwhile
                if token is None:
                    reason = refused.get((message_key, name), _WITHHELD)
                    await records.set_delivery(
                        writer.conn, message_key, name, status=records.FAILED, last_error=reason
                    )
                elif current.status == records.PENDING:
                    await records.set_delivery(
                        writer.conn,
                        message_key,
                        name,
                        status=records.DELIVERED,
                        attempts=current.attempts + 1,
                        last_error=None,
                    )
                fresh = await records.get_delivery(writer.conn, message_key, name)
                if fresh is not None:
                    updated[(message_key, name)] = fresh
    views: list[dict[str, Any]] = []
    for item in items:
        key = (item.record.key, item.delivery.receiver)
        delivery = updated.get(key, item.delivery)
        token = sealed.get(key)
        if key in sealed and token is None:
            continue  # withheld: nothing to hand out
        views.append(_received_view(_Item(item.record, delivery), token))
    return views


# --- endpoints -------------------------------------------------------------------------------


@router.get("/messages")
async def list_messages(
    principal: PrincipalDep,
    store: StoreDep,
    settings: SettingsDep,
    database: DatabaseDep,
    status: str | None = None,
    role: str = RECEIVED,
    limit: int | None = None,
) -> JSONResponse:
    """The caller's mailbox (``role=received``) or its sent messages (``role=sent``).

    ``role=received``: ``status=pending`` (the default) is every message still waiting for the
    caller's acknowledgement, each with ``envelope`` (a compact JWE sealed for the caller) and
    the ``ack`` path; handing it out marks it ``delivered``, and it comes back (as
    ``delivered``) until acknowledged. ``delivered`` lists only those fetched before;
    ``acknowledged`` and ``failed`` list delivery state without envelopes.
    ``role=sent``: the caller's messages with every receiver's delivery state (``status``
    keeps those with at least one delivery in that state).
    """
    _choice(role, ROLES, "role")
    _choice(status, records.STATUSES, "status")
    count = _limit(limit, settings)
    caller = principal.participant
    if role == SENT:
        async with store.read_connection() as conn:
            sent = await _sent(conn, caller, status, count)
            views = [_sent_view(r, await records.deliveries_of(conn, r.key)) for r in sent]
        return JSONResponse({"messages": views})
    wanted = _UNACKNOWLEDGED if status in (None, records.PENDING) else (str(status),)
    async with store.read_connection() as conn:
        items = await _received(conn, caller, wanted, count)
    if status not in (None, records.PENDING, records.DELIVERED):
        return JSONResponse({"messages": [_received_view(i, None) for i in items]})
    receiver = await _caller(database, caller)
    return JSONResponse({"messages": await _seal(store, settings, items, receiver)})


@router.get("/messages/{key}")
async def get_message(
    key: str,
    principal: PrincipalDep,
    store: StoreDep,
    settings: SettingsDep,
    database: DatabaseDep,
) -> JSONResponse:
    """One message, for its sender (every delivery) or a receiver (its own, with envelope)."""
    caller = principal.participant
    async with store.read_connection() as conn:
        record = await records.get_message(conn, key)
        mine = None if record is None else await records.get_delivery(conn, key, caller)
        sent_to = (
            await records.deliveries_of(conn, key)
            if record is not None and record.sender == caller
            else []
        )
    if record is None or (record.sender != caller and mine is None):
        raise NotFound(f"no message {key} for {caller}")
    if mine is None:
        return JSONResponse(_sent_view(record, sent_to))
    receiver = await _caller(database, caller)
    sealed = await _seal(store, settings, [_Item(record, mine)], receiver)
    if sealed:
        view = sealed[0]
    else:  # consent withholds it: the (now failed) delivery, without content
        async with store.read_connection() as conn:
            current = await records.get_delivery(conn, key, caller)
        view = _received_view(_Item(record, current or mine), None)
    if record.sender == caller:
        view["deliveries"] = [d.to_json() for d in sent_to]
    return JSONResponse(view)


async def _jose_body(request: Request, settings: Settings) -> tuple[bytes, str]:
    """The body (empty allowed) and its media type, refused when too large or neither
    ``application/jose`` nor (plain transport) ``application/fhir+json``."""
    declared = request.headers.get("content-length")
    limit = settings.max_body_bytes
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the acknowledgement is larger than {limit} bytes")
    body = await request.body()
    if len(body) > limit:
        raise PayloadTooLarge(f"the acknowledgement is larger than {limit} bytes")
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if body and media not in (envelope.MEDIA_TYPE, FHIR_JSON):
        raise UnsupportedMediaType(
            f"send the signed Acknowledgement as {envelope.MEDIA_TYPE}", expression="Content-Type"
        )
    return body, media


def _read_bundle(payload: bytes, settings: Settings) -> dict[str, Any]:
    bundle = load_json(payload, json_limits(settings), what="the signed payload")
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise BadRequest("the signed payload is not a Bundle", expression="body")
    return bundle


async def _locked_delivery(conn: AsyncConnection, key: str, receiver: str) -> Delivery | None:
    """The delivery row, locked until the transaction ends (PostgreSQL; SQLite's write lock
    already serialises writers), so two acknowledgements at once route only one reply."""
    row = (
        await conn.execute(
            select(deliveries)
            .where(and_(deliveries.c.message_key == key, deliveries.c.receiver == receiver))
            .with_for_update()
        )
    ).first()
    return None if row is None else records.delivery_from_row(row)


@router.post("/messages/{key}/ack")
async def acknowledge(
    key: str,
    request: Request,
    principal: PrincipalDep,
    store: StoreDep,
    settings: SettingsDep,
    database: DatabaseDep,
) -> JSONResponse:
    """Record the caller's signed Acknowledgement of message ``key`` and route it back.

    The body is a compact JWS (or a JWE of one, to the gateway's encryption key) by one of the
    caller's registered signing keys over an Acknowledgement message whose
    ``MessageHeader.response.identifier`` is this message's MessageHeader.id. ``ok`` makes
    the delivery ``acknowledged``, ``fatal-error`` ``failed``, ``transient-error`` leaves it
    waiting. The same acknowledgement again changes nothing. An acknowledgement routed back
    to its sender (a ``reply`` delivery) is not acknowledged in turn: an empty body closes it.
    """
    caller = principal.participant
    body, media = await _jose_body(request, settings)
    async with store.read_connection() as conn:
        record = await records.get_message(conn, key)
        mine = None if record is None else await records.get_delivery(conn, key, caller)
    if record is None or (mine is None and record.sender != caller):
        raise NotFound(f"no message {key} for {caller}")
    if mine is None:
        raise Forbidden("only a receiver of the message acknowledges it", expression="key")
    if mine.role == REPLY and not body:
        async with store.write("mailbox acknowledgement") as writer:
            current = await _locked_delivery(writer.conn, key, caller)
            if current is not None and current.status != records.ACKNOWLEDGED:
                await records.set_delivery(
                    writer.conn, key, caller, status=records.ACKNOWLEDGED, last_error=None
                )
            final = await records.get_delivery(writer.conn, key, caller)
        return _ack_answer(record, final or mine)
    if not body:
        raise UnsupportedMediaType(
            f"send the signed Acknowledgement as {envelope.MEDIA_TYPE}", expression="Content-Type"
        )
    participant = await _caller(database, caller)
    if media == FHIR_JSON:
        # A MedCom system registered for plain transport answers with the Bundle itself.
        if participant.transport != PLAIN:
            raise UnsupportedMediaType(
                f"{caller} is registered for the JOSE envelope: send the signed "
                f"Acknowledgement as {envelope.MEDIA_TYPE}",
                expression="Content-Type",
            )
        ack_bundle = _read_bundle(body, settings)
        signed = body.decode("utf-8", errors="replace")
    else:
        opened = envelope.open_envelope(
            body, gateway_encryption_keys(settings), max_bytes=settings.max_body_bytes
        )
        envelope.verify(opened, signing_keys(participant), who=caller)
        ack_bundle = _read_bundle(opened.payload, settings)
        signed = opened.signed
    info = outbound.read_ack_header(ack_bundle)
    if info.acknowledged != record.message_id:
        raise BadRequest(
            f"the acknowledgement answers {info.acknowledged}, not {record.message_id}",
            expression="MessageHeader.response.identifier",
        )
    async with store.write("mailbox acknowledgement") as writer:
        current = await _locked_delivery(writer.conn, key, caller)
        if current is None:
            raise NotFound(f"no message {key} for {caller}")
        if current.status == records.FAILED and current.ack is None:
            raise Conflict(
                f"the delivery to {caller} failed ({current.last_error}); nothing to acknowledge"
            )
        if (
            current.ack is not None
            and current.ack_code in outbound.FINAL_ACK_CODES
            and current.ack_code != info.code
        ):
            raise Conflict(
                f"{caller} already answered {current.ack_code} for this message",
                expression="MessageHeader.response.code",
            )
        if mine.role == REPLY:
            # An acknowledgement is not acknowledged in turn: record it, route nothing.
            await records.set_delivery(
                writer.conn,
                key,
                caller,
                status=records.ACKNOWLEDGED,
                ack_code=info.code,
                ack=ack_bundle,
                last_error=None,
            )
        else:
            await outbound.route_ack(writer, record, caller, ack_bundle, signed)
        final = await records.get_delivery(writer.conn, key, caller)
    return _ack_answer(record, final or mine)


def _ack_answer(record: MessageRecord, delivery: Delivery) -> JSONResponse:
    return JSONResponse(
        {"key": record.key, "message_id": record.message_id, "delivery": delivery.to_json()}
    )
