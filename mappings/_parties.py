"""Patients, organisations and practitioners: built from plain values, matched by identifier.

Matching (the store's ``ifNoneExist``) uses the single strongest identifier, in the order
SOR, YDER, municipality code, CVR, EAN: EAN numbers are messaging addresses that several
departments may share, so they match only when nothing better is known. A party without any
identifier belongs to the document (a derived identifier) and is not matched across documents.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mappings._bundle import BundleBuilder, Ref, stable_uuid
from mappings._codes import PARTICIPANT_KIND_SYSTEM, URI_SYSTEM, concept
from mappings._identifiers import (
    AUTHORISATION_SYSTEM,
    CPR_SYSTEM,
    CVR_SYSTEM,
    EAN_SYSTEM,
    MUNICIPALITY_SYSTEM,
    SOR_SYSTEM,
    YDER_SYSTEM,
)


@dataclass(frozen=True, slots=True)
class Address:
    line: str | None = None
    postal_code: str | None = None
    city: str | None = None

    def to_fhir(self) -> dict[str, Any] | None:
        out: dict[str, Any] = {}
        if self.line:
            out["line"] = [self.line]
        if self.city:
            out["city"] = self.city
        if self.postal_code:
            out["postalCode"] = self.postal_code
        return out or None


@dataclass(frozen=True, slots=True)
class OrganizationInfo:
    """An organisation as a source document names it (all identifiers already checked)."""

    name: str | None
    kind: str | None = None  # participant-kind code
    sor: str | None = None
    yder: str | None = None
    municipality: str | None = None
    cvr: str | None = None
    ean: str | None = None
    address: Address | None = None
    telephone: str | None = None
    contact: str | None = None

    def identifiers(self) -> list[tuple[str, str]]:
        pairs = (
            (SOR_SYSTEM, self.sor),
            (YDER_SYSTEM, self.yder),
            (MUNICIPALITY_SYSTEM, self.municipality),
            (CVR_SYSTEM, self.cvr),
            (EAN_SYSTEM, self.ean),
        )
        return [(system, value) for system, value in pairs if value]


@dataclass(frozen=True, slots=True)
class Contact:
    """A relative or other contact person of a patient."""

    relationship: str | None
    given: str | None
    family: str | None
    telephone: str | None = None


@dataclass(frozen=True, slots=True)
class PersonInfo:
    """A person's name: given and family when the source splits them, else the full text."""

    given: tuple[str, ...] = ()
    family: str | None = None
    text: str | None = None

    def to_fhir_name(self) -> dict[str, Any]:
        out: dict[str, Any] = {"use": "official"}
        if self.family:
            out["family"] = self.family
        if self.given:
            out["given"] = list(self.given)
        if self.text:
            out["text"] = self.text
        return out


@dataclass(frozen=True, slots=True)
class Party:
    """An entry in the Bundle and the identifier it is matched by (None: document-owned)."""

    ref: Ref
    match: tuple[str, str] | None


def _telecom(telephone: str | None) -> list[dict[str, str]] | None:
    return [{"system": "phone", "value": telephone}] if telephone else None


def add_patient(
    builder: BundleBuilder,
    *,
    cpr: str,
    name: PersonInfo,
    address: Address | None = None,
    telephone: str | None = None,
    contacts: tuple[Contact, ...] = (),
) -> Party:
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "identifier": [{"use": "official", "system": CPR_SYSTEM, "value": cpr}],
        "name": [name.to_fhir_name()],
    }
    if (telecom := _telecom(telephone)) is not None:
        resource["telecom"] = telecom
    if address is not None and (fhir_address := address.to_fhir()) is not None:
        resource["address"] = [fhir_address]
    fhir_contacts = []
    for contact in contacts:
        entry: dict[str, Any] = {}
        if contact.relationship:
            entry["relationship"] = [{"text": contact.relationship}]
        person = PersonInfo(given=(contact.given,) if contact.given else (), family=contact.family)
        entry["name"] = {k: v for k, v in person.to_fhir_name().items() if k != "use"}
        if (telecom := _telecom(contact.telephone)) is not None:
            entry["telecom"] = telecom
        fhir_contacts.append(entry)
    if fhir_contacts:
        resource["contact"] = fhir_contacts
    match = (CPR_SYSTEM, cpr)
    return Party(builder.shared(resource, match), match)


def add_organization(builder: BundleBuilder, info: OrganizationInfo, local_key: str) -> Party:
    resource: dict[str, Any] = {"resourceType": "Organization", "active": True}
    identifiers = info.identifiers()
    if identifiers:
        resource["identifier"] = [{"system": s, "value": v} for s, v in identifiers]
    if info.kind:
        resource["type"] = [concept(PARTICIPANT_KIND_SYSTEM, info.kind)]
    if info.name:
        resource["name"] = info.name
    if (telecom := _telecom(info.telephone)) is not None:
        resource["telecom"] = telecom
    if info.address is not None and (fhir_address := info.address.to_fhir()) is not None:
        resource["address"] = [fhir_address]
    if info.contact:
        resource["contact"] = [{"name": {"text": info.contact}}]
    if identifiers:
        return Party(builder.shared(resource, identifiers[0]), identifiers[0])
    return Party(builder.owned(resource, local_key=local_key), None)


def add_practitioner(
    builder: BundleBuilder,
    *,
    name: PersonInfo,
    authorisation: str | None,
    local_key: str,
    match: tuple[str, str] | None = None,
) -> Party:
    """A practitioner: shared when an authorisation id (or a given ``match``) identifies them."""
    resource: dict[str, Any] = {"resourceType": "Practitioner", "name": [name.to_fhir_name()]}
    if authorisation:
        resource["identifier"] = [{"system": AUTHORISATION_SYSTEM, "value": authorisation}]
        match = (AUTHORISATION_SYSTEM, authorisation)
    elif match is not None:
        resource["identifier"] = [{"system": match[0], "value": match[1]}]
    if match is not None:
        return Party(builder.shared(resource, match), match)
    return Party(builder.owned(resource, local_key=local_key), None)


def add_practitioner_role(
    builder: BundleBuilder,
    *,
    practitioner: Party,
    organization: Party,
    title: str | None,
    local_key: str,
) -> Party:
    resource: dict[str, Any] = {
        "resourceType": "PractitionerRole",
        "active": True,
        "practitioner": practitioner.ref(),
        "organization": organization.ref(),
    }
    if title:
        resource["code"] = [{"text": title}]
    if practitioner.match is not None and organization.match is not None:
        value = "urn:uuid:" + stable_uuid(
            "practitioner-role", *practitioner.match, *organization.match
        )
        resource["identifier"] = [{"system": URI_SYSTEM, "value": value}]
        match = (URI_SYSTEM, value)
        return Party(builder.shared(resource, match), match)
    return Party(builder.owned(resource, local_key=local_key), None)


_KEY_PREFIXES = {
    SOR_SYSTEM: "sor",
    YDER_SYSTEM: "yder",
    MUNICIPALITY_SYSTEM: "kommune",
    CVR_SYSTEM: "cvr",
    EAN_SYSTEM: "ean",
}


def party_key(info: OrganizationInfo) -> str | None:
    """A short, stable name for an organisation (``yder:045612``), to scope its documents' ids."""
    identifiers = info.identifiers()
    if not identifiers:
        return None
    system, value = identifiers[0]
    return f"{_KEY_PREFIXES[system]}:{value}"
