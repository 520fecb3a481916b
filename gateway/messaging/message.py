"""The message Bundle: MedCom's messaging rules, checked on the way in and followed when the
gateway or the CLI builds a message.

    Bundle.type = message, id, timestamp
    entry[0] is the MessageHeader: id, eventCoding (MedCom's or ours), sender, destination
      (receivers: Organizations in the Bundle with SOR/EAN/YDER/CVR; exactly one primary,
      any number of cc by MedCom's destination-use extension), focus (in the Bundle)
    at least one Provenance naming the MessageHeader, activity from MedCom's activity codes

Failures are ``MessageInvalid`` (answered with a ``fatal-error`` Acknowledgement), each issue
naming the element (FHIRPath) and the rule.
"""

from __future__ import annotations

import base64
import contextlib
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gateway.errors import BadRequest, Issue, UnprocessableResource
from gateway.participants.directory import Participant
from gateway.participants.identifiers import UNIQUE_SYSTEMS, normalise_identifier
from gateway.search.dates import format_instant, has_valid_offset

MEDCOM_EVENTS = "http://medcomfhir.dk/ig/terminology/CodeSystem/medcom-messaging-eventCodes"
OUR_EVENTS = "http://brobygger.dk/fhir/CodeSystem/message-event"
ACTIVITY_SYSTEM = "http://medcomfhir.dk/ig/terminology/CodeSystem/medcom-messaging-activityCodes"
DESTINATION_USE_URL = (
    "http://medcomfhir.dk/ig/messaging/StructureDefinition/medcom-messaging-destinationUseExtension"
)
DESTINATION_USE_SYSTEM = (
    "http://medcomfhir.dk/ig/terminology/CodeSystem/medcom-messaging-destinationUse"
)

CARE_COMMUNICATION = "care-communication-message"
HOSPITAL_NOTIFICATION = "hospital-notification-message"
ACKNOWLEDGEMENT = "acknowledgement-message"
REHAB_PLAN = "rehab-plan"
STATEMENT_REQUEST = "medical-statement-request"
STATEMENT = "medical-statement"
CASE = "sickness-benefit-case"
CONSENT_UPDATE = "consent-update"
# The round-table invitation belongs to the job centre's sickness-benefit case: the contract
# CodeSystem (formats/identifiers.md) has no code of its own for it.
MEETING_INVITATION = CASE

# Event code → its system (codes are unique across both systems).
EVENTS: dict[str, str] = {
    CARE_COMMUNICATION: MEDCOM_EVENTS,
    HOSPITAL_NOTIFICATION: MEDCOM_EVENTS,
    ACKNOWLEDGEMENT: MEDCOM_EVENTS,
    REHAB_PLAN: OUR_EVENTS,
    STATEMENT_REQUEST: OUR_EVENTS,
    STATEMENT: OUR_EVENTS,
    CASE: OUR_EVENTS,
    CONSENT_UPDATE: OUR_EVENTS,
}
# MedCom's events whose sender and receivers are MedCom parties: each Organization carries
# both its SOR and its EAN when the directory knows both (medcom-messaging-organization).
MEDCOM_STANDARD_EVENTS = frozenset({CARE_COMMUNICATION, HOSPITAL_NOTIFICATION})
# MedCom's activity codes a message's Provenance may carry: CodeSystem
# http://medcomfhir.dk/ig/terminology/CodeSystem/medcom-messaging-activityCodes 1.8.1
# (medcomdk/dk-medcom-terminology, input/fsh/MedComMessagingActivityCodes.fsh).
_STAY_EVENTS = (
    "admit-emergency",
    "admit-inpatient",
    "start-leave-inpatient",
    "end-leave-inpatient",
    "discharge-emergency-home",
    "discharge-inpatient-home",
)
# HospitalNotification's activities (ValueSet medcom-hospitalNotification-messageActivities):
# each stay event, its revision and its cancellation.
HOSPITAL_NOTIFICATION_ACTIVITIES = frozenset(
    {code for event in _STAY_EVENTS for code in (event, f"revise-{event}", f"cancel-{event}")}
)
ACTIVITIES = (
    frozenset(
        {
            "new-message",
            "reply-message",
            "forward-message",
            "modified-message",
            "retract-message",
            "carboncopy-message",
            "acknowledgement",
        }
    )
    | HOSPITAL_NOTIFICATION_ACTIVITIES
)
XML_TYPES = frozenset({"application/xml", "text/xml"})


class MessageInvalid(UnprocessableResource):
    """The message breaks MedCom's messaging rules or ours."""


@dataclass(slots=True)
class Party:
    """A sender or receiver as the message names it."""

    reference: str
    identifiers: list[dict[str, str]]
    role: str = "primary"  # primary | cc (receivers)

    def unique_identifiers(self) -> list[dict[str, str]]:
        return [i for i in self.identifiers if i["system"] in UNIQUE_SYSTEMS]


@dataclass(slots=True)
class ParsedMessage:
    bundle: dict[str, Any]
    header: dict[str, Any]
    header_id: str
    event: str
    timestamp: datetime
    sender: Party
    receivers: list[Party]
    focus: list[dict[str, Any]]
    binary: bytes | None = None
    content_type: str | None = None
    responds_to: str | None = None
    response_code: str | None = None
    issues: list[Issue] = field(default_factory=list)

    @property
    def primary(self) -> Party:
        return next(r for r in self.receivers if r.role == "primary")


def _entries(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    entries = bundle.get("entry")
    return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []


def resolver(bundle: dict[str, Any]) -> dict[str, tuple[int, dict[str, Any]]]:
    """Reference → (entry index, resource): by fullUrl and by ``Type/id``."""
    found: dict[str, tuple[int, dict[str, Any]]] = {}
    for index, entry in enumerate(_entries(bundle)):
        resource = entry.get("resource")
        if not isinstance(resource, dict):
            continue
        full_url = entry.get("fullUrl")
        if isinstance(full_url, str) and full_url:
            found[full_url] = (index, resource)
        rtype, rid = resource.get("resourceType"), resource.get("id")
        if isinstance(rtype, str) and isinstance(rid, str):
            found.setdefault(f"{rtype}/{rid}", (index, resource))
    return found


def normalised_identifiers(org: dict[str, Any]) -> list[dict[str, str]]:
    """The resource's identifiers in canonical form; malformed ones are left out."""
    out: list[dict[str, str]] = []
    for ident in org.get("identifier") or []:
        if not isinstance(ident, dict):
            continue
        system, value = ident.get("system"), ident.get("value")
        if not isinstance(system, str) or not isinstance(value, str):
            continue
        with contextlib.suppress(ValueError, BadRequest):  # a malformed one names nobody
            out.append(normalise_identifier(system, value))
    return out


def _party(
    ref_holder: Any, where: str, refs: dict[str, tuple[int, dict[str, Any]]], issues: list[Issue]
) -> Party | None:
    reference = ref_holder.get("reference") if isinstance(ref_holder, dict) else None
    if not isinstance(reference, str):
        issues.append(Issue("required", "a reference to an Organization is required", where))
        return None
    target = refs.get(reference)
    if target is None or target[1].get("resourceType") != "Organization":
        issues.append(Issue("invalid", f"{reference} is not an Organization in the Bundle", where))
        return None
    identifiers = normalised_identifiers(target[1])
    if not any(i["system"] in UNIQUE_SYSTEMS for i in identifiers):
        issues.append(
            Issue(
                "invalid",
                "the Organization carries no SOR, EAN, YDER or CVR identifier",
                f"Bundle.entry[{target[0]}].resource.identifier",
            )
        )
        return None
    return Party(reference, identifiers)


def _destination_use(destination: dict[str, Any]) -> str | None:
    for ext in destination.get("extension") or []:
        if isinstance(ext, dict) and ext.get("url") == DESTINATION_USE_URL:
            coding = ext.get("valueCoding") or {}
            code = coding.get("code") if isinstance(coding, dict) else None
            return code if isinstance(code, str) else None
    return None


def parse_timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str) or "T" not in value or not has_valid_offset(value):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.astimezone(UTC) if moment.tzinfo is not None else None


def parse_message(bundle: Any) -> ParsedMessage:
    """Check the MedCom messaging rules; raise ``MessageInvalid`` naming every problem."""
    issues: list[Issue] = []
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise MessageInvalid("the message is not a Bundle", expression="Bundle")
    if bundle.get("type") != "message":
        issues.append(Issue("value", "Bundle.type must be 'message'", "Bundle.type"))
    if not isinstance(bundle.get("id"), str):
        issues.append(Issue("required", "a message Bundle has an id", "Bundle.id"))
    timestamp = parse_timestamp(bundle.get("timestamp"))
    if timestamp is None:
        issues.append(
            Issue("required", "Bundle.timestamp is an instant with a time zone", "Bundle.timestamp")
        )
    entries = _entries(bundle)
    header = entries[0].get("resource") if entries else None
    if not isinstance(header, dict) or header.get("resourceType") != "MessageHeader":
        issues.append(
            Issue("structure", "the first entry must be the MessageHeader", "Bundle.entry[0]")
        )
        raise MessageInvalid("the message breaks MedCom's messaging rules", issues=issues)
    where = "Bundle.entry[0].resource"
    header_id = header.get("id")
    if not isinstance(header_id, str) or not header_id:
        issues.append(Issue("required", "MessageHeader.id is required", f"{where}.id"))
        header_id = ""
    coding = header.get("eventCoding") or {}
    event = coding.get("code") if isinstance(coding, dict) else None
    if not isinstance(event, str) or EVENTS.get(event) != coding.get("system"):
        issues.append(
            Issue(
                "code-invalid",
                "eventCoding must be one of MedCom's or Brobygger's message events: "
                + ", ".join(f"{s}|{c}" for c, s in EVENTS.items()),
                f"{where}.eventCoding",
            )
        )
        event = ""
    refs = resolver(bundle)
    sender = _party(header.get("sender"), f"{where}.sender", refs, issues)
    receivers: list[Party] = []
    destinations = header.get("destination")
    if not isinstance(destinations, list) or not destinations:
        issues.append(Issue("required", "at least one destination", f"{where}.destination"))
        destinations = []
    for index, destination in enumerate(destinations):
        dwhere = f"{where}.destination[{index}]"
        if not isinstance(destination, dict):
            continue
        party = _party(destination.get("receiver"), f"{dwhere}.receiver", refs, issues)
        use = _destination_use(destination) or ("primary" if len(destinations) == 1 else None)
        if use not in ("primary", "cc"):
            issues.append(
                Issue(
                    "required",
                    "each destination says primary or cc (medcom-messaging-destinationUse)",
                    f"{dwhere}.extension",
                )
            )
        elif party is not None:
            party.role = use
            receivers.append(party)
    if (
        destinations
        and sum(1 for r in receivers if r.role == "primary") != 1
        and not any(i.expression and ".destination" in i.expression for i in issues)
    ):
        issues.append(Issue("invariant", "exactly one primary receiver", f"{where}.destination"))
    focus: list[dict[str, Any]] = []
    for index, ref in enumerate(header.get("focus") or []):
        reference = ref.get("reference") if isinstance(ref, dict) else None
        target = refs.get(reference) if isinstance(reference, str) else None
        if target is None:
            issues.append(
                Issue("invalid", "the focus must be in the Bundle", f"{where}.focus[{index}]")
            )
        else:
            focus.append(target[1])
    header_refs = {f"MessageHeader/{header_id}"}
    if isinstance(entries[0].get("fullUrl"), str):
        header_refs.add(entries[0]["fullUrl"])
    provenances = [
        e["resource"]
        for e in entries
        if isinstance(e.get("resource"), dict) and e["resource"].get("resourceType") == "Provenance"
    ]
    if not provenances:
        issues.append(
            Issue("required", "a message carries at least one Provenance", "Bundle.entry")
        )
    elif not any(
        any(t.get("reference") in header_refs for t in p.get("target") or [] if isinstance(t, dict))
        for p in provenances
    ):
        issues.append(
            Issue("invalid", "no Provenance targets the MessageHeader", "Provenance.target")
        )
    else:
        for p in provenances:
            codings = (p.get("activity") or {}).get("coding") or []
            if not any(
                isinstance(c, dict)
                and c.get("system") == ACTIVITY_SYSTEM
                and c.get("code") in ACTIVITIES
                for c in codings
            ):
                issues.append(
                    Issue(
                        "code-invalid",
                        "Provenance.activity must be one of MedCom's activity codes: "
                        + ", ".join(sorted(ACTIVITIES)),
                        "Provenance.activity",
                    )
                )
                break
    response = header.get("response") if isinstance(header.get("response"), dict) else None
    responds_to = response.get("identifier") if response else None
    if event == ACKNOWLEDGEMENT and not isinstance(responds_to, str):
        issues.append(
            Issue(
                "required",
                "an acknowledgement names the message it answers",
                f"{where}.response.identifier",
            )
        )
    if event and event != ACKNOWLEDGEMENT and not focus:
        issues.append(Issue("required", "the message needs a focus", f"{where}.focus"))
    binary: bytes | None = None
    content_type: str | None = None
    if len(focus) == 1 and focus[0].get("resourceType") == "Binary":
        content_type = str(focus[0].get("contentType", "")).split(";")[0].strip().lower()
        if content_type not in XML_TYPES:
            issues.append(
                Issue(
                    "not-supported",
                    "a Binary focus carries a legacy document as application/xml",
                    "Binary.contentType",
                )
            )
        try:
            binary = base64.b64decode(str(focus[0].get("data", "")), validate=True)
        except ValueError:
            issues.append(Issue("value", "Binary.data is not base64", "Binary.data"))
        if binary is not None and not binary:
            issues.append(Issue("required", "Binary.data is empty", "Binary.data"))
    if issues or sender is None or timestamp is None:
        raise MessageInvalid("the message breaks MedCom's messaging rules", issues=issues)
    return ParsedMessage(
        bundle=bundle,
        header=header,
        header_id=header_id,
        event=event,
        timestamp=timestamp,
        sender=sender,
        receivers=receivers,
        focus=focus,
        binary=binary,
        content_type=content_type,
        responds_to=responds_to if isinstance(responds_to, str) else None,
        response_code=response.get("code") if response else None,
    )


# --- building ------------------------------------------------------------------------------


def provenance_entry(
    *,
    base: str,
    header_url: str,
    agent_url: str,
    activity: str,
    moment: str,
    entity: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The message's Provenance (MedCom: targets the MessageHeader, a MedCom activity)."""
    provenance_id = str(uuid.uuid4())
    provenance: dict[str, Any] = {
        "resourceType": "Provenance",
        "id": provenance_id,
        "target": [{"reference": header_url}],
        "occurredDateTime": moment,
        "recorded": moment,
        "activity": {"coding": [{"system": ACTIVITY_SYSTEM, "code": activity}]},
        "agent": [{"who": {"reference": agent_url}}],
    }
    if entity:
        provenance["entity"] = entity
    return {"fullUrl": f"{base}/Provenance/{provenance_id}", "resource": provenance}


def message_bundle(moment: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
    """A Bundle of type message (``entries`` start with the MessageHeader's)."""
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "type": "message",
        "timestamp": moment,
        "entry": entries,
    }


def organization_entry(participant: Participant, base: str) -> dict[str, Any]:
    oid = str(uuid.uuid4())
    resource: dict[str, Any] = {
        "resourceType": "Organization",
        "id": oid,
        "identifier": [dict(i) for i in participant.identifiers],
        "name": participant.display,
    }
    return {"fullUrl": f"{base}/Organization/{oid}", "resource": resource}


def binary_resource(document: bytes, content_type: str = "application/xml") -> dict[str, Any]:
    return {
        "resourceType": "Binary",
        "id": str(uuid.uuid4()),
        "contentType": content_type,
        "data": base64.b64encode(document).decode("ascii"),
    }


def build_message(
    *,
    event: str,
    sender: Participant,
    receivers: list[tuple[Participant, str]],
    content: list[dict[str, Any]],
    focus: list[dict[str, Any]] | None = None,
    base: str = "https://brobygger.dk/message",
    activity: str = "new-message",
    response: dict[str, Any] | None = None,
    now: datetime | None = None,
    header_id: str | None = None,
) -> dict[str, Any]:
    """A MedCom-style message Bundle from ``sender`` to ``receivers`` ((participant, role)).

    ``content`` is the resources the message carries (each keeps its id, or gets one);
    ``focus`` the ones MessageHeader.focus names (default: the first of ``content``).
    """
    moment = format_instant(now or datetime.now(UTC))
    header_id = header_id or str(uuid.uuid4())
    sender_entry = organization_entry(sender, base)
    receiver_entries = [(organization_entry(p, base), role) for p, role in receivers]
    content_entries: list[dict[str, Any]] = []
    given_ids: dict[int, str] = {}  # id() of a given resource → the id its entry got
    for given in content:
        resource = dict(given)
        resource.setdefault("id", str(uuid.uuid4()))
        given_ids[id(given)] = resource["id"]
        content_entries.append(
            {"fullUrl": f"{base}/{resource['resourceType']}/{resource['id']}", "resource": resource}
        )
    focus_resources = focus if focus is not None else content[:1]
    # A focus without an id is one of ``content`` (the same object): it has the id given above.
    focus_ids = {(r["resourceType"], r.get("id") or given_ids.get(id(r))) for r in focus_resources}
    header: dict[str, Any] = {
        "resourceType": "MessageHeader",
        "id": header_id,
        "eventCoding": {"system": EVENTS[event], "code": event},
        "destination": [
            {
                "extension": [
                    {
                        "url": DESTINATION_USE_URL,
                        "valueCoding": {"system": DESTINATION_USE_SYSTEM, "code": role},
                    }
                ],
                "endpoint": participant.endpoint or f"{base}/mailbox/{participant.name}",
                "receiver": {"reference": entry["fullUrl"]},
            }
            for entry, (participant, role) in zip(
                [e for e, _ in receiver_entries], receivers, strict=True
            )
        ],
        "sender": {"reference": sender_entry["fullUrl"]},
        "source": {"endpoint": f"{base}/participant/{sender.name}"},
    }
    focus_refs = [
        {"reference": e["fullUrl"]}
        for e in content_entries
        if (e["resource"]["resourceType"], e["resource"]["id"]) in focus_ids
    ]
    if focus_refs:
        header["focus"] = focus_refs
    if response is not None:
        header["response"] = response
    header_url = f"{base}/MessageHeader/{header_id}"
    provenance = provenance_entry(
        base=base,
        header_url=header_url,
        agent_url=sender_entry["fullUrl"],
        activity=activity,
        moment=moment,
    )
    return message_bundle(
        moment,
        [
            {"fullUrl": header_url, "resource": header},
            *content_entries,
            provenance,
            sender_entry,
            *[e for e, _ in receiver_entries],
        ],
    )
