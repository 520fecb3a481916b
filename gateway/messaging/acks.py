"""MedCom Acknowledgement messages: ``ok``, ``transient-error`` or ``fatal-error``.

The shape follows MedCom Acknowledgement 2.0.3 and MedCom's acknowledgement TestScripts
(medcomdk/dk-medcom-acknowledgement-testscripts, ``input/fsh/Asserts.fsh``): a message Bundle
whose MessageHeader has event ``acknowledgement-message``, a narrative, and ``response``
(identifier = the acknowledged MessageHeader.id, code, details → an OperationOutcome when the
code is not ``ok``); **two** Provenances — the acknowledged message's own Provenance, and the
acknowledgement's (activity ``acknowledgement``, target = this MessageHeader, ``entity.what``
= a *reference* to ``MessageHeader/[acknowledged id]``, role ``revision``); and the two
Organizations, each with SOR and EAN.

Two acknowledgements answer a message sent through the gateway, told apart by their sender:
the gateway's (MessageHeader.sender = the gateway Organization, SOR/EAN from
``BROBYGGER_GATEWAY_SOR``/``_EAN``, ``meta.tag`` ``gateway-receipt``) answers the
``$process-message`` call: "stored, and will be delivered". The receiver's (sender = the
receiver's own Organization) arrives later as a message of its own: "the receiver has it".
"""

from __future__ import annotations

import copy
import html
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
from gateway.participants.identifiers import EAN, SOR
from gateway.search.dates import format_instant
from gateway.settings import DEV_GATEWAY_EAN, DEV_GATEWAY_SOR

OK = "ok"
TRANSIENT = "transient-error"
FATAL = "fatal-error"
CODES = (OK, TRANSIENT, FATAL)
PARTICIPANT_SYSTEM = "http://brobygger.dk/fhir/sid/participant"
GATEWAY_NAME = "brobygger-gateway"
# Marks the gateway's own acknowledgement (the receipt of $process-message), so that a sender
# never mistakes it for the receiver's.
ACK_KIND_SYSTEM = "http://brobygger.dk/fhir/CodeSystem/acknowledgement-kind"
GATEWAY_RECEIPT = "gateway-receipt"
ACK_PROFILE = (
    "http://medcomfhir.dk/ig/acknowledgement/StructureDefinition/medcom-messaging-acknowledgement"
)
ACK_HEADER_PROFILE = (
    "http://medcomfhir.dk/ig/acknowledgement/StructureDefinition/"
    "medcom-messaging-acknowledgementHeader"
)


def narrative(text: str) -> dict[str, str]:
    """A generated narrative: one escaped paragraph (ids and codes only, never health data)."""
    return {
        "status": "generated",
        "div": f'<div xmlns="http://www.w3.org/1999/xhtml"><p>{html.escape(text)}</p></div>',
    }


def gateway_organization(sor: str = DEV_GATEWAY_SOR, ean: str = DEV_GATEWAY_EAN) -> dict[str, Any]:
    """The gateway as the sender of its own acknowledgements: SOR and EAN (settings)."""
    return {
        "resourceType": "Organization",
        "id": str(uuid.uuid4()),
        "identifier": [
            {"system": EAN, "value": ean},
            {"system": SOR, "value": sor},
            {"system": PARTICIPANT_SYSTEM, "value": GATEWAY_NAME},
        ],
        "name": "Brobygger gateway",
    }


def unknown_organization() -> dict[str, Any]:
    """Stands in for a sender the gateway could not read (a message too broken to parse)."""
    return {"resourceType": "Organization", "id": str(uuid.uuid4()), "name": "unknown sender"}


def acknowledged_provenance(bundle: dict[str, Any], header_id: str) -> dict[str, Any] | None:
    """The acknowledged message's own Provenance: the one that targets its MessageHeader."""
    entries = bundle.get("entry") if isinstance(bundle, dict) else None
    if not isinstance(entries, list) or not header_id:
        return None
    first = entries[0] if entries and isinstance(entries[0], dict) else {}
    names = {f"MessageHeader/{header_id}"}
    if isinstance(first.get("fullUrl"), str):
        names.add(first["fullUrl"])
    for entry in entries:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict) or resource.get("resourceType") != "Provenance":
            continue
        targets = resource.get("target") or []
        if any(isinstance(t, dict) and t.get("reference") in names for t in targets):
            return resource
    return None


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
    original_provenance: dict[str, Any] | None = None,
    receipt: bool = False,
) -> dict[str, Any]:
    """The Acknowledgement of MessageHeader ``acknowledged`` (its id) with ``code``.

    ``sender_org`` acknowledges (default: the gateway with placeholder SOR/EAN);
    ``receiver_org`` is the sender of the acknowledged message; ``original_provenance`` its
    Provenance (``acknowledged_provenance``), carried as MedCom's TestScripts expect.
    ``receipt`` tags the gateway's own acknowledgement.
    """
    if code not in CODES:
        raise ValueError(f"acknowledgement code must be one of {CODES}")
    moment = format_instant(now or datetime.now(UTC))
    sender = dict(sender_org or gateway_organization())
    receiver = dict(receiver_org or unknown_organization())
    sender.setdefault("text", narrative(f"Organization: {sender.get('name', 'sender')}"))
    receiver.setdefault("text", narrative(f"Organization: {receiver.get('name', 'receiver')}"))
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
    header: dict[str, Any] = {
        "resourceType": "MessageHeader",
        "id": header_id,
        "meta": {"profile": [ACK_HEADER_PROFILE]},
        "text": narrative(f"Acknowledgement ({code}) of message {acknowledged}"),
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
    if receipt:
        header["meta"]["tag"] = [{"system": ACK_KIND_SYSTEM, "code": GATEWAY_RECEIPT}]
    provenance = provenance_entry(
        base=base,
        header_url=header_url,
        agent_url=sender_url,
        activity="acknowledgement",
        moment=moment,
        entity=[{"role": "revision", "what": {"reference": f"MessageHeader/{acknowledged}"}}],
    )
    provenance["resource"]["text"] = narrative(f"Acknowledgement of message {acknowledged}")
    provenances = [provenance]
    if original_provenance is not None:
        carried = copy.deepcopy(original_provenance)
        carried.setdefault("id", str(uuid.uuid4()))
        # Its agent was the acknowledged message's sender: in this Bundle, the receiver.
        carried["agent"] = [{"who": {"reference": receiver_url}}]
        carried.setdefault("text", narrative(f"Provenance of message {acknowledged}"))
        provenances.insert(
            0, {"fullUrl": f"{base}/Provenance/{carried['id']}", "resource": carried}
        )
    bundle = message_bundle(
        moment,
        [
            {"fullUrl": header_url, "resource": header},
            *entries,
            *provenances,
            {"fullUrl": sender_url, "resource": sender},
            {"fullUrl": receiver_url, "resource": receiver},
        ],
    )
    bundle["meta"] = {"profile": [ACK_PROFILE]}
    return bundle


def reissued(ack: dict[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """The same acknowledgement sent again (MedCom reliable messaging): the same
    MessageHeader.id and content in a new Bundle with a new id and timestamp."""
    again = copy.deepcopy(ack)
    if again:
        again["id"] = str(uuid.uuid4())
        again["timestamp"] = format_instant(now or datetime.now(UTC))
    return again


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
