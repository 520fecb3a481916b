"""The gateway's own notices as MedCom-shaped message Bundles (one home for both kinds).

A deadline notice (a Task turned overdue, to its owner) and a plan-change notice (a part of a
shared plan changed, to the parties that follow it) differ only in their event, reason and
focus: the header, the Provenance and the organisation entries are built here once.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from gateway.messaging import envelope, records
from gateway.messaging.message import (
    OUR_EVENTS,
    message_bundle,
    organization_entry,
    provenance_entry,
)
from gateway.participants.directory import Participant
from gateway.search.dates import format_instant, utc_now

__all__ = ["notice_bundle", "record_notice"]


def notice_bundle(
    *,
    base: str,
    header_id: str,
    event_code: str,
    sender: Participant,
    source_name: str,
    receivers: list[Participant],
    reason: str,
    focus: dict[str, Any],
) -> dict[str, Any]:
    """A message from ``sender`` to ``receivers`` about ``focus`` (a stored resource)."""
    moment = format_instant(utc_now())
    sender_entry = organization_entry(sender, base)
    receiver_entries = [organization_entry(r, base) for r in receivers]
    focus_url = f"{base}/{focus['resourceType']}/{focus['id']}"
    header_url = f"urn:uuid:{header_id}"
    header = {
        "resourceType": "MessageHeader",
        "id": header_id,
        "eventCoding": {"system": OUR_EVENTS, "code": event_code},
        "destination": [
            {
                "endpoint": r.endpoint or f"{base}/mailbox/{r.name}",
                "receiver": {"reference": e["fullUrl"]},
            }
            for r, e in zip(receivers, receiver_entries, strict=True)
        ],
        "sender": {"reference": sender_entry["fullUrl"]},
        "source": {"endpoint": f"{base}/participant/{source_name}"},
        "reason": {"text": reason},
        "focus": [{"reference": focus_url}],
    }
    provenance = provenance_entry(
        base=base,
        header_url=header_url,
        agent_url=sender_entry["fullUrl"],
        activity="new-message",
        moment=moment,
    )
    return message_bundle(
        moment,
        [
            {"fullUrl": header_url, "resource": header},
            {"fullUrl": focus_url, "resource": focus},
            provenance,
            sender_entry,
            *receiver_entries,
        ],
    )


async def record_notice(
    writer: records.Transaction,
    *,
    sender: str,
    message_id: str,
    event: str,
    bundle: dict[str, Any],
    resources: list[str],
    receivers: list[Participant],
) -> None:
    """Store a notice as a message from ``sender`` with one pending delivery per receiver (the
    outbound worker delivers it like any other message)."""
    record = records.MessageRecord(
        key=str(uuid.uuid4()),
        sender=sender,
        message_id=message_id,
        event=event,
        received_at=utc_now(),
        content_sha256=hashlib.sha256(envelope.canonical_json(bundle)).hexdigest(),
        bundle=bundle,
        signed="",
        ack_code="ok",
        ack={},
        resources=resources,
        reply_to=None,
    )
    await records.insert_message(writer, record)
    for receiver in receivers:
        await records.insert_delivery(
            writer,
            record.key,
            receiver.name,
            role="primary",
            mode="endpoint" if receiver.endpoint else "mailbox",
        )
