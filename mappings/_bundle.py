"""The transaction Bundle every adapter returns, and its ``collection`` twin for ``brobygger map``.

Shared things (Patient, Organization, Practitioner with an authorisation id) are conditional
creates (``POST`` + ``ifNoneExist``) so the store links them to what it already holds.
Things that belong to one source document are conditional updates by identifier
(``PUT Type?identifier=system|value``) so that re-ingesting updates instead of duplicating.
A resource without a business identifier gets a derived one: ``urn:ietf:rfc:3986`` +
``urn:uuid:<uuid5 of the document key and the resource's local key>``.
Every ``fullUrl`` is ``urn:uuid:<uuid5>``: the same input always gives the same Bundle.
"""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from mappings._codes import BROBYGGER_BASE, SOURCE_DOCUMENT_TAG_SYSTEM, URI_SYSTEM

_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, BROBYGGER_BASE)

# Resource types whose ``identifier`` is a single Identifier in R4, not a list.
_SINGLE_IDENTIFIER = frozenset({"QuestionnaireResponse"})


def stable_uuid(*parts: str) -> str:
    """A uuid5 under the project namespace; the same parts always give the same id."""
    return str(uuid.uuid5(_NAMESPACE, "\x1f".join(parts)))


def _escape_search_value(value: str) -> str:
    # FHIR search escaping: \ , | $ are escaped with a backslash.
    out = value.replace("\\", "\\\\")
    for ch in ",|$":
        out = out.replace(ch, "\\" + ch)
    return out


def identifier_criteria(*identifiers: tuple[str, str]) -> str:
    """``identifier=system|value[,system|value…]``, escaped and URL-encoded for a request URL."""
    joined = ",".join(f"{system}|{_escape_search_value(value)}" for system, value in identifiers)
    return "identifier=" + quote(joined, safe=":/|,.-_~")


@dataclass(frozen=True, slots=True)
class Ref:
    """A reference to an entry of the Bundle being built (its ``urn:uuid:`` fullUrl)."""

    full_url: str
    resource_type: str

    def __call__(self, display: str | None = None) -> dict[str, Any]:
        # ``type`` lets a reader (and validators) know the target before the store resolves it.
        out: dict[str, Any] = {"reference": self.full_url, "type": self.resource_type}
        if display is not None:
            out["display"] = display
        return out


class BundleBuilder:
    """Collects entries in order; the same shared resource added twice is one entry."""

    def __init__(self, document_key: str) -> None:
        self.document_key = document_key
        self._entries: list[dict[str, Any]] = []
        self._by_url: dict[str, dict[str, Any]] = {}

    def _add(self, full_url: str, resource: dict[str, Any], request: dict[str, str]) -> Ref:
        if full_url not in self._by_url:
            entry = {"fullUrl": full_url, "resource": resource, "request": request}
            self._entries.append(entry)
            self._by_url[full_url] = entry
        return Ref(full_url, resource["resourceType"])

    def shared(self, resource: dict[str, Any], match: tuple[str, str]) -> Ref:
        """A conditional create, matched by one identifier (system, value)."""
        rtype = resource["resourceType"]
        full_url = "urn:uuid:" + stable_uuid(rtype, *match)
        request = {"method": "POST", "url": rtype, "ifNoneExist": identifier_criteria(match)}
        return self._add(full_url, resource, request)

    def derived_ref(self, rtype: str, local_key: str) -> Ref:
        """The reference an ``owned(…, local_key=…)`` entry will have (to point at it early)."""
        return Ref(self.derived_identifier(rtype, local_key)["value"], rtype)

    def derived_identifier(self, rtype: str, local_key: str) -> dict[str, str]:
        value = "urn:uuid:" + stable_uuid("derived", self.document_key, rtype, local_key)
        return {"system": URI_SYSTEM, "value": value}

    def owned(
        self,
        resource: dict[str, Any],
        *,
        local_key: str | None = None,
        identifier: tuple[str, str] | None = None,
    ) -> Ref:
        """A conditional update by business identifier, or by a derived one from ``local_key``.

        The resource is tagged with the document key so the store can find what an earlier
        version of the same document produced.
        """
        rtype = resource["resourceType"]
        if identifier is None:
            if local_key is None:
                raise ValueError("owned() needs an identifier or a local key")
            derived = self.derived_identifier(rtype, local_key)
            match = (derived["system"], derived["value"])
            full_url = derived["value"]
            self._attach_identifier(resource, derived)
        else:
            match = identifier
            full_url = "urn:uuid:" + stable_uuid(rtype, *identifier)
        meta = resource.setdefault("meta", {})
        meta["tag"] = [{"system": SOURCE_DOCUMENT_TAG_SYSTEM, "code": self.document_key}]
        request = {"method": "PUT", "url": f"{rtype}?{identifier_criteria(match)}"}
        return self._add(full_url, resource, request)

    def by_id(self, resource: dict[str, Any], local_key: str) -> Ref:
        """A plain update of a deterministic id (for types without an identifier: Provenance)."""
        rtype = resource["resourceType"]
        rid = stable_uuid("derived", self.document_key, rtype, local_key)
        return self._add("urn:uuid:" + rid, resource, {"method": "PUT", "url": f"{rtype}/{rid}"})

    @staticmethod
    def _attach_identifier(resource: dict[str, Any], identifier: dict[str, str]) -> None:
        if resource["resourceType"] in _SINGLE_IDENTIFIER:
            resource.setdefault("identifier", identifier)
        else:
            resource.setdefault("identifier", []).append(identifier)

    def references(self) -> list[Ref]:
        return [Ref(e["fullUrl"], e["resource"]["resourceType"]) for e in self._entries]

    def build(self, timestamp: str) -> dict[str, Any]:
        return {
            "resourceType": "Bundle",
            "type": "transaction",
            "timestamp": timestamp,
            "entry": self._entries,
        }


def as_collection(bundle: dict[str, Any]) -> dict[str, Any]:
    """The same Bundle as type ``collection``: no ``request``s (what ``brobygger map`` prints)."""
    out = copy.deepcopy(bundle)
    out["type"] = "collection"
    for entry in out.get("entry", []):
        entry.pop("request", None)
    return out
