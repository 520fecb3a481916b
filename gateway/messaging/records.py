"""The messaging tables: message records and per-receiver deliveries (SQLAlchemy Core).

Every function that writes takes an open ``Writer`` (``Store.write()``), so message records
commit in the same transaction as the resources the message stored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import and_, insert, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.search.dates import utc_now
from gateway.store.schema import deliveries, messages
from profiles import fhir_json


class Transaction(Protocol):
    """An open write transaction (the store's or the guarded one): message records ride on it,
    so a message commits together with its content."""

    @property
    def conn(self) -> AsyncConnection: ...


PENDING = "pending"
DELIVERED = "delivered"
ACKNOWLEDGED = "acknowledged"
FAILED = "failed"
STATUSES = (PENDING, DELIVERED, ACKNOWLEDGED, FAILED)


@dataclass(frozen=True, slots=True)
class MessageRecord:
    key: str
    sender: str
    message_id: str
    event: str
    received_at: datetime
    content_sha256: str
    bundle: dict[str, Any]
    signed: str
    ack_code: str
    ack: dict[str, Any]
    resources: list[str]
    reply_to: str | None
    # fullUrl (and Type/id) in the message → the "Type/id" it was stored as.
    origins: dict[str, str] | None = None


@dataclass(frozen=True, slots=True)
class Delivery:
    message_key: str
    receiver: str
    role: str  # primary | cc | reply (an acknowledgement routed back to the sender)
    mode: str  # endpoint | mailbox
    status: str
    attempts: int
    next_attempt_at: datetime
    lease_owner: str | None
    lease_until: datetime | None
    last_error: str | None
    updated_at: datetime
    ack_code: str | None
    ack: dict[str, Any] | None

    def to_json(self) -> dict[str, Any]:
        return {
            "receiver": self.receiver,
            "role": self.role,
            "mode": self.mode,
            "status": self.status,
            "attempts": self.attempts,
            "next_attempt_at": self.next_attempt_at.isoformat() + "Z",
            "last_error": self.last_error,
            "updated_at": self.updated_at.isoformat() + "Z",
            "ack_code": self.ack_code,
        }


def message_from_row(row: Row[Any]) -> MessageRecord:
    return MessageRecord(
        key=row.key,
        sender=row.sender,
        message_id=row.message_id,
        event=row.event,
        received_at=row.received_at,
        content_sha256=row.content_sha256,
        bundle=fhir_json.loads(row.bundle),
        signed=row.signed,
        ack_code=row.ack_code,
        ack=fhir_json.loads(row.ack),
        resources=fhir_json.loads(row.resources),
        reply_to=row.reply_to,
        origins=None if row.origins is None else json.loads(row.origins),
    )


def delivery_from_row(row: Row[Any]) -> Delivery:
    return Delivery(
        message_key=row.message_key,
        receiver=row.receiver,
        role=row.role,
        mode=row.mode,
        status=row.status,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        lease_owner=row.lease_owner,
        lease_until=row.lease_until,
        last_error=row.last_error,
        updated_at=row.updated_at,
        ack_code=row.ack_code,
        ack=None if row.ack is None else fhir_json.loads(row.ack),
    )


async def find_message(conn: AsyncConnection, sender: str, message_id: str) -> MessageRecord | None:
    row = (
        await conn.execute(
            select(messages).where(messages.c.sender == sender, messages.c.message_id == message_id)
        )
    ).first()
    return None if row is None else message_from_row(row)


async def get_message(conn: AsyncConnection, key: str) -> MessageRecord | None:
    row = (await conn.execute(select(messages).where(messages.c.key == key))).first()
    return None if row is None else message_from_row(row)


async def find_by_message_id(conn: AsyncConnection, message_id: str) -> list[MessageRecord]:
    """Every record with this MessageHeader.id (ids are UUIDs: normally one)."""
    rows = await conn.execute(select(messages).where(messages.c.message_id == message_id))
    return [message_from_row(r) for r in rows]


async def insert_message(writer: Transaction, record: MessageRecord) -> None:
    await writer.conn.execute(
        insert(messages).values(
            key=record.key,
            sender=record.sender,
            message_id=record.message_id,
            event=record.event,
            received_at=record.received_at,
            content_sha256=record.content_sha256,
            bundle=fhir_json.dumps(record.bundle),
            signed=record.signed,
            ack_code=record.ack_code,
            ack=fhir_json.dumps(record.ack),
            resources=json.dumps(record.resources),
            reply_to=record.reply_to,
            origins=None if record.origins is None else json.dumps(record.origins),
        )
    )


async def insert_delivery(
    writer: Transaction, message_key: str, receiver: str, *, role: str, mode: str
) -> None:
    """A new ``pending`` delivery, due now (idempotent per message and receiver)."""
    now = utc_now()
    exists = (
        await writer.conn.execute(
            select(deliveries.c.receiver).where(
                deliveries.c.message_key == message_key, deliveries.c.receiver == receiver
            )
        )
    ).first()
    if exists is not None:
        return
    await writer.conn.execute(
        insert(deliveries).values(
            message_key=message_key,
            receiver=receiver,
            role=role,
            mode=mode,
            status=PENDING,
            attempts=0,
            next_attempt_at=now,
            updated_at=now,
        )
    )


async def deliveries_of(conn: AsyncConnection, message_key: str) -> list[Delivery]:
    rows = await conn.execute(
        select(deliveries)
        .where(deliveries.c.message_key == message_key)
        .order_by(deliveries.c.role, deliveries.c.receiver)
    )
    return [delivery_from_row(r) for r in rows]


async def get_delivery(conn: AsyncConnection, message_key: str, receiver: str) -> Delivery | None:
    row = (
        await conn.execute(
            select(deliveries).where(
                and_(deliveries.c.message_key == message_key, deliveries.c.receiver == receiver)
            )
        )
    ).first()
    return None if row is None else delivery_from_row(row)


async def set_delivery(
    conn: AsyncConnection, message_key: str, receiver: str, **values: Any
) -> int:
    """Update one delivery row (``updated_at`` is set); returns the row count."""
    values.setdefault("updated_at", utc_now())
    if "ack" in values and isinstance(values["ack"], dict):
        values["ack"] = fhir_json.dumps(values["ack"])
    result = await conn.execute(
        update(deliveries)
        .where(deliveries.c.message_key == message_key, deliveries.c.receiver == receiver)
        .values(**values)
    )
    return int(result.rowcount or 0)
