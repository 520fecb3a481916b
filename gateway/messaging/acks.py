"""MedCom Acknowledgement messages: ``ok``, ``transient-error`` or ``fatal-error``.

The shape follows MedCom Acknowledgement 2.0.3: a message Bundle whose MessageHeader has
event ``acknowledgement-message`` and ``response`` (identifier = the acknowledged
MessageHeader.id, code, details → an OperationOutcome when the code is not ``ok``), a
Provenance with activity ``acknowledgement`` naming the acknowledged message, and the two
Organizations.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from gateway.errors import Issue, operation_outcome
from gateway.messaging.message import (
    ACKNOWLEDGEMENT,
    DESTINATION_USE_SYSTEM,
    DESTINATION_USE_URL,
    MEDCOM_EVENTS,
    message_bundle,
    provenance_entry,
)
from gateway.search.dates import format_instant

OK = "ok"
TRANSIENT = "transient-error"
FATAL = "fatal-error"
CODES = (OK, TRANSIENT, FATAL)
PARTICIPANT_SYSTEM = "http://brobygger.dk/fhir/sid/participant"
GATEWAY_NAME = "brobygger-gateway"


def gateway_organization() -> dict[str, Any]:
    return {
        "resourceType": "Organization",
        "id": str(uuid.uuid4()),
        "identifier": [{"system": PARTICIPANT_SYSTEM, "value": GATEWAY_NAME}],
        "name": "Brobygger gateway",
    }


def unknown_organization() -> dict[str, Any]:
    """Stands in for a sender the gateway could not read (a message too broken to parse)."""
    return {"resourceType": "Organization", "id": str(uuid.uuid4()), "name": "unknown sender"}


def build_ack(
    *,
    acknowledged: str,
    code: str,
    issues: list[Issue] | None = None,
    sender_org: dict[str, Any] | None = None,
    receiver_org: dict[str, Any] | None = None,
    base: str = "https://brobygger.dk/message",
    receiver_endpoint: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The Acknowledgement of MessageHeader ``acknowledged`` (its id) with ``code``.

    ``sender_org`` acknowledges (default: the gateway); ``receiver_org`` is the sender of
    the acknowledged message.
    """
    if code not in CODES:
        raise ValueError(f"acknowledgement code must be one of {CODES}")
    moment = format_instant(now or datetime.now(UTC))
    sender = dict(sender_org or gateway_organization())
    receiver = dict(receiver_org or unknown_organization())
    header_id = str(uuid.uuid4())
    header_url = f"{base}/MessageHeader/{header_id}"
    sender_url = f"{base}/Organization/{sender['id']}"
    receiver_url = f"{base}/Organization/{receiver['id']}"
    response: dict[str, Any] = {"identifier": acknowledged, "code": code}
    entries: list[dict[str, Any]] = []
    if code != OK or issues:
        outcome_id = str(uuid.uuid4())
        outcome = {
            "id": outcome_id,
            **operation_outcome(issues or [Issue("informational", code, severity="information")]),
        }
        outcome = {"resourceType": "OperationOutcome", **outcome}
        response["details"] = {"reference": f"{base}/OperationOutcome/{outcome_id}"}
        entries.append({"fullUrl": response["details"]["reference"], "resource": outcome})
    header = {
        "resourceType": "MessageHeader",
        "id": header_id,
        "eventCoding": {"system": MEDCOM_EVENTS, "code": ACKNOWLEDGEMENT},
        "destination": [
            {
                "extension": [
                    {
                        "url": DESTINATION_USE_URL,
                        "valueCoding": {"system": DESTINATION_USE_SYSTEM, "code": "primary"},
                    }
                ],
                "endpoint": receiver_endpoint or f"{base}/mailbox",
                "receiver": {"reference": receiver_url},
            }
        ],
        "sender": {"reference": sender_url},
        "source": {"endpoint": f"{base}/$process-message"},
        "response": response,
    }
    provenance = provenance_entry(
        base=base,
        header_url=header_url,
        agent_url=sender_url,
        activity="acknowledgement",
        moment=moment,
        entity=[{"role": "revision", "what": {"identifier": {"value": acknowledged}}}],
    )
    return message_bundle(
        moment,
        [
            {"fullUrl": header_url, "resource": header},
            *entries,
            provenance,
            {"fullUrl": sender_url, "resource": sender},
            {"fullUrl": receiver_url, "resource": receiver},
        ],
    )


def read_ack(bundle: dict[str, Any]) -> tuple[str, str]:
    """(acknowledged MessageHeader.id, code) of an Acknowledgement; ValueError if not one."""
    entries = bundle.get("entry") if isinstance(bundle, dict) else None
    header = entries[0].get("resource") if isinstance(entries, list) and entries else None
    if not isinstance(header, dict) or header.get("resourceType") != "MessageHeader":
        raise ValueError("not a message: the first entry is not a MessageHeader")
    coding = header.get("eventCoding") or {}
    if coding.get("code") != ACKNOWLEDGEMENT:
        raise ValueError("not an acknowledgement-message")
    response = header.get("response") or {}
    identifier, code = response.get("identifier"), response.get("code")
    if not isinstance(identifier, str) or code not in CODES:
        raise ValueError("MessageHeader.response needs an identifier and a code")
    return identifier, str(code)


def ack_issues(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    """The OperationOutcome issues an Acknowledgement carries (empty for a plain ok)."""
    for entry in bundle.get("entry", []):
        resource = entry.get("resource") or {}
        if resource.get("resourceType") == "OperationOutcome":
            return list(resource.get("issue", []))
    return []
