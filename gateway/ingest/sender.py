"""Who sent a document: its sender Organization in the Bundle, and the registered participant.

The sender is the author of the Bundle's DocumentReference (the hospital department, the GP
clinic, the job centre). A participant *is* that sender when it carries one of the sender's
unique identifiers (SOR, YDER, EAN, CVR), or the sender's municipality code while being of the
sender's kind (a municipality code is shared by all of a municipality's departments).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.participants.directory import Participant, ParticipantDirectory
from gateway.participants.identifiers import (
    MUNICIPALITY,
    UNIQUE_SYSTEMS,
    InvalidIdentifier,
    normalise_identifier,
)

_PARTICIPANT_KIND_SYSTEM = "http://brobygger.dk/fhir/CodeSystem/participant-kind"

# Where each format names its sender (for OperationOutcome.issue.expression).
SENDER_XPATH: dict[str, str] = {
    "rehab-plan": "/Emessage/RehabilitationPlan/Sender",
    "gp-statement": "/Blanket/Meta/Afsender",
    "jobcentre-case": "/Sygedagpengesag/Jobcenter",
}


@dataclass(frozen=True, slots=True)
class DocumentSender:
    """The sender as the document names it: normalised identifiers and participant kind."""

    identifiers: tuple[tuple[str, str], ...]
    kind: str | None

    def is_participant(self, participant: Participant) -> bool:
        held = {(i["system"], i["value"]) for i in participant.identifiers}
        for pair in self.identifiers:
            if pair not in held:
                continue
            if pair[0] in UNIQUE_SYSTEMS:
                return True
            if pair[0] == MUNICIPALITY and self.kind is not None and participant.kind == self.kind:
                return True
        return False


def document_sender(bundle: dict[str, Any]) -> DocumentSender:
    """The author of the DocumentReference, looked up among the Bundle's entries."""
    by_url = {e.get("fullUrl"): e.get("resource") or {} for e in bundle.get("entry", [])}
    document = next(
        (r for r in by_url.values() if r.get("resourceType") == "DocumentReference"), {}
    )
    authors = document.get("author") or [{}]
    organization = by_url.get(authors[0].get("reference")) or {}
    identifiers: list[tuple[str, str]] = []
    for ident in organization.get("identifier", []):
        try:
            normalised = normalise_identifier(ident.get("system", ""), ident.get("value", ""))
        except InvalidIdentifier:
            continue  # not a registry identifier (a derived one): cannot name a participant
        identifiers.append((normalised["system"], normalised["value"]))
    kind = next(
        (
            c.get("code")
            for t in organization.get("type", [])
            for c in t.get("coding", [])
            if c.get("system") == _PARTICIPANT_KIND_SYSTEM
        ),
        None,
    )
    return DocumentSender(tuple(identifiers), kind)


async def registered_sender(
    directory: ParticipantDirectory, sender: DocumentSender
) -> Participant | None:
    """The registered participant that is the document's sender, if any."""
    for participant in await directory.list():
        if sender.is_participant(participant):
            return participant
    return None
