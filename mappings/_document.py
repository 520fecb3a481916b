"""Nothing lost: the original bytes as a DocumentReference, and a Provenance to all derived.

The SHA-256 of the bytes is ``DocumentReference.masterIdentifier`` (system
``http://brobygger.dk/fhir/sid/sha256``, lowercase hex): R4's ``attachment.hash`` is SHA-1, which
is also given, base64 as R4 prescribes. The DocumentReference is updated by that identifier, so
the same bytes ingested twice are one DocumentReference.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import date, datetime
from typing import Any

from mappings._bundle import BundleBuilder, Ref
from mappings._codes import (
    DOCUMENT_TYPE_SYSTEM,
    PROVENANCE_AGENT_TYPE_SYSTEM,
    SHA256_SYSTEM,
    URI_SYSTEM,
    concept,
    identifier_system,
    security,
)
from mappings._values import fhir_date_time, fhir_instant

CLIENT_ID_SYSTEM = identifier_system("client-id")


def sha256_hex(xml_bytes: bytes) -> str:
    return hashlib.sha256(xml_bytes).hexdigest()


def add_original(
    builder: BundleBuilder,
    *,
    xml_bytes: bytes,
    namespace: str,
    document_type: str,
    subject: Ref,
    author: Ref,
    identifiers: list[dict[str, str]],
    categories: list[str],
    now: datetime,
) -> Ref:
    """The source document itself, bytes inline (base64), hashed."""
    digest = sha256_hex(xml_bytes)
    resource: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "meta": {"security": security(*categories)},
        "masterIdentifier": {"system": SHA256_SYSTEM, "value": digest},
        "status": "current",
        "docStatus": "final",
        "type": concept(DOCUMENT_TYPE_SYSTEM, document_type),
        "subject": subject(),
        "date": fhir_instant(now),
        "author": [author()],
        "content": [
            {
                "attachment": {
                    "contentType": "application/xml",
                    "data": base64.b64encode(xml_bytes).decode("ascii"),
                    "size": len(xml_bytes),
                    "hash": base64.b64encode(hashlib.sha1(xml_bytes).digest()).decode("ascii"),  # noqa: S324 - R4 defines attachment.hash as SHA-1
                },
                "format": {"system": URI_SYSTEM, "code": namespace},
            }
        ],
    }
    if identifiers:
        resource["identifier"] = identifiers
    return builder.owned(resource, identifier=(SHA256_SYSTEM, digest))


def add_provenance(
    builder: BundleBuilder,
    *,
    document: Ref,
    authors: list[Ref],
    occurred: datetime | date,
    categories: list[str],
    now: datetime,
    sender: str | None,
) -> Ref:
    """Provenance: every resource in the Bundle so far was derived from ``document``."""
    targets = [ref() for ref in builder.references() if ref.full_url != document.full_url]
    agents: list[dict[str, Any]] = [
        {"type": concept(PROVENANCE_AGENT_TYPE_SYSTEM, "author"), "who": author()}
        for author in authors
    ]
    if sender is not None:
        # The system that handed the document to the gateway (the authenticated client).
        agents.append(
            {
                "type": concept(PROVENANCE_AGENT_TYPE_SYSTEM, "informant"),
                "who": {"identifier": {"system": CLIENT_ID_SYSTEM, "value": sender}},
            }
        )
    resource: dict[str, Any] = {
        "resourceType": "Provenance",
        "meta": {"security": security(*categories)},
        "target": targets,
        "occurredDateTime": fhir_date_time(occurred),
        "recorded": fhir_instant(now),
        "agent": agents,
        "entity": [{"role": "source", "what": document()}],
    }
    # The DocumentReference's fullUrl derives from the SHA-256: one Provenance per bytes.
    return builder.by_id(resource, "provenance|" + document.full_url)
