"""What the engine reads off a resource (FHIR JSON): patient, author, addressees, labels, date."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from consent._codes import (
    ADDRESSEE_SYSTEM,
    AUTHOR_KIND_SYSTEM,
    AUTHOR_SOURCE_PREFIX,
    DATA_CATEGORY_SYSTEM,
    LEGAL_BASES,
    LEGAL_BASIS_SYSTEM,
    PARTICIPANT_KINDS,
)
from consent._dates import Interval, parse_interval

# FHIR JSON as json.loads makes it: nested objects are dicts (anything else reads as absent,
# which fails closed: no patient, no author, no addressee).
Resource = Mapping[str, Any]

# Where a resource names its patient, in the order tried. Provenance, AuditEvent and Appointment
# name several things; for them the first reference to a Patient wins.
_PATIENT_ELEMENTS = ("patient", "subject", "for", "beneficiary")

# Elements naming the Organization(s) a resource is addressed to.
_ADDRESSEE_ELEMENTS: dict[str, tuple[tuple[str, ...], ...]] = {
    "ServiceRequest": (("performer",),),
    "Task": (("owner",), ("restriction", "recipient")),
    "Communication": (("recipient",),),
    "CommunicationRequest": (("recipient",),),
    "Appointment": (("participant", "actor"),),
}

# Elements naming the Organization that keeps a record as its own ("own department").
_OWNER_ELEMENTS: dict[str, tuple[tuple[str, ...], ...]] = {
    "EpisodeOfCare": (("managingOrganization",),),
    "DocumentReference": (("custodian",),),
    "Encounter": (("serviceProvider",),),
    "ServiceRequest": (("requester",),),
    "Task": (("requester",),),
    "CarePlan": (("author",),),
    "CareTeam": (("managingOrganization",),),
    "Communication": (("sender",),),
    "CommunicationRequest": (("sender",), ("requester",)),
}

# The clinical date of a resource, for Consent.provision.dataPeriod; meta.lastUpdated otherwise.
_DATA_DATE_ELEMENTS: dict[str, tuple[tuple[str, ...], ...]] = {
    "Observation": (
        ("effectiveDateTime",),
        ("effectivePeriod", "start"),
        ("effectiveInstant",),
        ("issued",),
    ),
    "Condition": (("recordedDate",), ("onsetDateTime",)),
    "QuestionnaireResponse": (("authored",),),
    "CarePlan": (("period", "start"), ("created",)),
    "CareTeam": (("period", "start"),),
    "Goal": (("startDate",), ("statusDate",)),
    "ServiceRequest": (("authoredOn",),),
    "Task": (("authoredOn",),),
    "Communication": (("sent",),),
    "DocumentReference": (("date",),),
    "Encounter": (("period", "start"),),
    "EpisodeOfCare": (("period", "start"),),
    "Appointment": (("start",),),
    "Consent": (("dateTime",),),
    "Provenance": (("recorded",),),
    "AuditEvent": (("recorded",),),
}


def local_reference(reference: Any) -> str | None:
    """``Type/id`` of a literal reference (absolute URLs and ``/_history/n`` dropped)."""
    if not isinstance(reference, str) or not reference or reference.startswith("#"):
        return None
    parts = reference.split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) < 2 or not parts[-1] or not parts[-2][:1].isupper():
        return None
    return f"{parts[-2]}/{parts[-1]}"


def _walk(value: Any, path: tuple[str, ...]) -> Iterator[Any]:
    """Every value at ``path`` below ``value``, stepping through lists."""
    if isinstance(value, list):
        for item in value:
            yield from _walk(item, path)
        return
    if not path:
        yield value
        return
    if isinstance(value, dict) and path[0] in value:
        yield from _walk(value[path[0]], path[1:])


def _references(resource: Resource, path: tuple[str, ...]) -> Iterator[str]:
    for found in _walk(resource, path):
        if isinstance(found, dict):
            local = local_reference(found.get("reference"))
            if local is not None:
                yield local


def reference_of(resource: Resource) -> str | None:
    """``Type/id`` of the resource itself, or None when it has no id yet."""
    kind, ident = resource.get("resourceType"), resource.get("id")
    if isinstance(kind, str) and isinstance(ident, str) and kind and ident:
        return f"{kind}/{ident}"
    return None


def patient_of(resource: Resource) -> str | None:
    """The ``Patient/<id>`` a resource is about, or None (directory data, a Group subject, …)."""
    kind = resource.get("resourceType")
    if kind == "Patient":
        return reference_of(resource)
    if kind == "Provenance":
        paths: tuple[tuple[str, ...], ...] = (("target",),)
    elif kind == "AuditEvent":
        paths = (("entity", "what"),)
    elif kind == "Appointment":
        paths = (("participant", "actor"),)
    else:
        for name in _PATIENT_ELEMENTS:
            found = resource.get(name)
            if isinstance(found, dict):
                local = local_reference(found.get("reference"))
                if local is not None and local.startswith("Patient/"):
                    return local
        return None
    for path in paths:
        for local in _references(resource, path):
            if local.startswith("Patient/"):
                return local
    return None


def author_of(resource: Resource) -> str | None:
    """The participant that wrote the resource, from ``meta.source`` as the gateway stamps it."""
    meta = resource.get("meta")
    source = meta.get("source") if isinstance(meta, dict) else None
    if isinstance(source, str) and source.startswith(AUTHOR_SOURCE_PREFIX):
        name = source[len(AUTHOR_SOURCE_PREFIX) :]
        return name or None
    return None


def _tags(resource: Resource) -> list[Any]:
    meta = resource.get("meta")
    tags = meta.get("tag") if isinstance(meta, dict) else None
    return tags if isinstance(tags, list) else []


def _tag_codes(resource: Resource, system: str) -> frozenset[str]:
    return frozenset(
        tag["code"]
        for tag in _tags(resource)
        if isinstance(tag, dict)
        and tag.get("system") == system
        and isinstance(tag.get("code"), str)
    )


def author_kind_of(resource: Resource) -> str | None:
    """The participant kind of the author, from the ``meta.tag`` the gateway stamps; else None.

    None (unknown) when there is no author, no author-kind tag, several different ones, or a
    code that is no participant kind: callers must treat unknown as the most protected case.
    """
    if author_of(resource) is None:
        return None
    codes = _tag_codes(resource, AUTHOR_KIND_SYSTEM)
    if len(codes) != 1:
        return None
    (kind,) = codes
    return kind if kind in PARTICIPANT_KINDS else None


def legal_bases_of(resource: Resource) -> frozenset[str]:
    """The known legal-basis codes in ``meta.tag`` (``LEGAL_BASES``; unknown codes are ignored)."""
    return frozenset(
        code for code in _tag_codes(resource, LEGAL_BASIS_SYSTEM) if code in LEGAL_BASES
    )


def stamp_author(resource: Resource, participant: str, kind: str | None = None) -> dict[str, Any]:
    """A copy of ``resource`` with ``meta.source`` naming ``participant`` as its author.

    With ``kind`` (the author's participant kind) the author-kind ``meta.tag`` is set to it,
    replacing any other. Without, an author-kind tag is kept only when ``participant`` already
    was the author (re-stamping the same author); otherwise it is removed, as it described
    someone else (an unknown kind is then the most protected case).
    """
    if not participant:
        raise ValueError("participant must be a non-empty name")
    if kind is not None and kind not in PARTICIPANT_KINDS:
        raise ValueError(f"unknown participant kind {kind!r}")
    keep_kind = kind is None and author_of(resource) == participant
    stamped = dict(resource)
    meta = stamped.get("meta")
    new_meta: dict[str, Any] = {
        **(meta if isinstance(meta, dict) else {}),
        "source": AUTHOR_SOURCE_PREFIX + participant,
    }
    if not keep_kind:
        tags = [
            tag
            for tag in _tags(resource)
            if not (isinstance(tag, dict) and tag.get("system") == AUTHOR_KIND_SYSTEM)
        ]
        if kind is not None:
            tags.append({"system": AUTHOR_KIND_SYSTEM, "code": kind})
        if tags:
            new_meta["tag"] = tags
        else:
            new_meta.pop("tag", None)
    stamped["meta"] = new_meta
    return stamped


_GATEWAY_TAG_SYSTEMS = frozenset({AUTHOR_KIND_SYSTEM, LEGAL_BASIS_SYSTEM})


def strip_gateway_tags(resource: Resource) -> dict[str, Any]:
    """A copy of a client's resource without what only the gateway stamps.

    Removes ``meta.source`` (the author) and the ``meta.tag`` entries of the author-kind and
    legal-basis systems, so that a client can never forge them; the gateway stamps them again
    (:func:`stamp_author`). Other tags (addressee, source document, …) and labels stay. An
    emptied ``meta.tag`` or ``meta`` is dropped. The input is left alone.
    """
    stripped = dict(resource)
    meta = stripped.get("meta")
    if not isinstance(meta, dict):
        return stripped
    new_meta = {key: value for key, value in meta.items() if key != "source"}
    if "tag" in meta:
        tags = meta["tag"]
        kept = (
            [
                tag
                for tag in tags
                if not (isinstance(tag, dict) and tag.get("system") in _GATEWAY_TAG_SYSTEMS)
            ]
            if isinstance(tags, list)
            else []
        )
        if kept:
            new_meta["tag"] = kept
        else:
            new_meta.pop("tag", None)
    if new_meta:
        stripped["meta"] = new_meta
    else:
        del stripped["meta"]
    return stripped


def data_categories(resource: Resource) -> frozenset[str]:
    """The data-category codes in ``meta.security``."""
    meta = resource.get("meta")
    labels = meta.get("security") if isinstance(meta, dict) else None
    if not isinstance(labels, list):
        return frozenset()
    return frozenset(
        label["code"]
        for label in labels
        if isinstance(label, dict)
        and label.get("system") == DATA_CATEGORY_SYSTEM
        and isinstance(label.get("code"), str)
    )


def addressee_tags(resource: Resource) -> frozenset[str]:
    """Participant names in ``meta.tag`` codes of the addressee system."""
    return _tag_codes(resource, ADDRESSEE_SYSTEM)


def _names(resource: Resource, table: dict[str, tuple[tuple[str, ...], ...]], ref: str) -> bool:
    paths = table.get(str(resource.get("resourceType")), ())
    return any(local == ref for path in paths for local in _references(resource, path))


def is_addressed_to(resource: Resource, participant: str, organization: str | None) -> bool:
    """True when tagged for ``participant`` or a recipient element references ``organization``."""
    if participant in addressee_tags(resource):
        return True
    return organization is not None and _names(resource, _ADDRESSEE_ELEMENTS, organization)


def is_owned_by(resource: Resource, organization: str | None) -> bool:
    """True when an ownership element (managing org, custodian, requester…) is ``organization``."""
    return organization is not None and _names(resource, _OWNER_ELEMENTS, organization)


def data_date(resource: Resource) -> Interval | None:
    """When the data was recorded: the clinical date where one exists, else meta.lastUpdated."""
    for path in _DATA_DATE_ELEMENTS.get(str(resource.get("resourceType")), ()):
        for found in _walk(resource, path):
            parsed = parse_interval(found)
            if parsed is not None:
                return parsed
    meta = resource.get("meta")
    if isinstance(meta, dict):
        return parse_interval(meta.get("lastUpdated"))
    return None
